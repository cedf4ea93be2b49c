//! Leader election through a `coordination.k8s.io/v1` Lease, so that two
//! or more replicas can run and exactly one writes.
//!
//! Every `retry_period` each replica reads the Lease:
//! - no Lease → create it holding it;
//! - held by this replica → renew (`renewTime`, optimistic update);
//! - held by another → remember when its `resourceVersion` last changed, by
//!   the local clock; once it has not changed for the Lease's
//!   `leaseDurationSeconds` (or nobody holds it), take it over with an
//!   optimistic update (a `409` means another replica was faster).
//!
//! A leader leads until `renew_deadline` after it *sent* its last successful
//! renewal (`renew_deadline < lease_duration`): if renewals fail it stops
//! writing before any other replica can consider the Lease expired, since
//! they start counting only when they see that renewal. Expiry is judged
//! from observed changes, not from timestamps in the Lease, so clock skew
//! between nodes does not matter. On shutdown the leader stops writing
//! first, then releases the Lease (empty holder) so a standby takes over at
//! its next read instead of after a full lease duration.
//!
//! With [`LeaderElector::labelling`], the leader labels its own pod
//! [`LEADER_LABEL`]` = "true"` and every other replica keeps the label off
//! its pod, so a Service selecting the label reaches the leader only.

use crate::leadership::Leadership;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (the pod name in a cluster).
    pub identity: String,
    /// How long others wait after the last renewal before taking over.
    pub lease_duration: Duration,
    /// How long a leader keeps writing after the last renewal it sent.
    pub renew_deadline: Duration,
    /// Time between reads/renewals.
    pub retry_period: Duration,
}

impl LeaseSettings {
    /// Renew deadline ⅔ and retry period ⅕ of the lease duration
    /// (Kubernetes' own controllers use 15 s / 10 s / 2 s).
    pub fn new(namespace: &str, name: &str, identity: &str, lease_duration: Duration) -> LeaseSettings {
        LeaseSettings {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration,
            renew_deadline: lease_duration * 2 / 3,
            retry_period: lease_duration / 5,
        }
    }
}

/// The label the leader keeps on its own pod (`"true"`), so that a Service
/// can send leader-only requests (pushes, pins) to it.
pub const LEADER_LABEL: &str = "scalegate.dev/leader";

/// Runs the election and keeps a [`Leadership`] up to date.
pub struct LeaderElector {
    api: Api<Lease>,
    settings: LeaseSettings,
    leadership: Arc<Leadership>,
    /// This replica's pod, labelled [`LEADER_LABEL`] while it leads.
    own_pod: Option<(Api<Pod>, String)>,
    /// The label value last written (`None`: not written yet).
    labelled: Option<bool>,
    /// The holder's last seen resourceVersion and when it was first seen.
    observed: Option<(String, Instant)>,
    leading: bool,
    on_change: Option<Box<dyn Fn(bool) + Send + Sync>>,
}

enum Step {
    Leading,
    Following(Option<String>),
}

impl LeaderElector {
    pub fn new(client: kube::Client, settings: LeaseSettings, leadership: Arc<Leadership>) -> LeaderElector {
        LeaderElector {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            leadership,
            observed: None,
            leading: false,
            on_change: None,
            own_pod: None,
            labelled: None,
        }
    }

    /// Keeps [`LEADER_LABEL`] on this replica's pod `name` in the Lease's
    /// namespace while it leads, and off it otherwise (also after a crash:
    /// a restarted replica removes a label it no longer deserves).
    pub fn labelling(mut self, client: kube::Client, name: &str) -> LeaderElector {
        self.own_pod = Some((Api::namespaced(client, &self.settings.namespace), name.to_string()));
        self
    }

    /// Puts the pod label in line with `leading`; retried at the next step
    /// when it fails.
    async fn label(&mut self, leading: bool) {
        let Some((pods, name)) = &self.own_pod else { return };
        if self.labelled == Some(leading) {
            return;
        }
        let value = if leading { serde_json::json!("true") } else { serde_json::Value::Null };
        let patch = Patch::Merge(serde_json::json!({"metadata": {"labels": {LEADER_LABEL: value}}}));
        let params = PatchParams { field_manager: Some(self.settings.identity.clone()), ..PatchParams::default() };
        match tokio::time::timeout(
            self.settings.retry_period.max(Duration::from_millis(100)),
            pods.patch(name, &params, &patch),
        )
        .await
        {
            Ok(Ok(_)) => self.labelled = Some(leading),
            Ok(Err(error)) => tracing::warn!(pod = %name, %error, "cannot set the leader label on this pod"),
            Err(_) => tracing::warn!(pod = %name, "setting the leader label on this pod timed out"),
        }
    }

    /// Called with `true` when this replica becomes leader (its new term is
    /// `Leadership::term`), `false` when it stops.
    pub fn on_change(mut self, callback: impl Fn(bool) + Send + Sync + 'static) -> LeaderElector {
        self.on_change = Some(Box::new(callback));
        self
    }

    /// Campaigns until `shutdown`, then stops leading and releases the Lease.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let sent = Instant::now();
            let step = tokio::time::timeout(self.settings.retry_period.max(Duration::from_millis(100)), self.step())
                .await
                .unwrap_or_else(|_| Err("no answer from the API server".into()));
            match step {
                Ok(Step::Leading) => {
                    if !self.leading {
                        // a new term, before the lease counts: it must not
                        // inherit the readiness of an earlier one
                        self.leadership.begin_term();
                    }
                    self.leadership.lead_until(sent + self.settings.renew_deadline);
                    self.leadership.set_holder(Some(self.settings.identity.clone()));
                    self.set_leading(true, None);
                }
                Ok(Step::Following(holder)) => {
                    self.leadership.revoke();
                    self.leadership.set_holder(holder.clone());
                    self.set_leading(false, holder.as_deref());
                }
                // the deadline of the last renewal still stands
                Err(error) => tracing::warn!(lease = %self.settings.name, %error, "leader election step failed"),
            }
            if self.leading && !self.leadership.is_leader() {
                self.set_leading(false, None);
            }
            self.label(self.leading).await;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.settings.retry_period) => {}
            }
        }
        self.leadership.revoke();
        if self.leading {
            self.release().await;
            self.set_leading(false, None);
        }
        self.label(false).await;
    }

    fn set_leading(&mut self, leading: bool, holder: Option<&str>) {
        if leading != self.leading {
            self.leading = leading;
            if leading {
                tracing::info!(identity = %self.settings.identity, lease = %self.settings.name, "became leader");
            } else {
                tracing::info!(identity = %self.settings.identity, holder = holder.unwrap_or("?"), "not leading");
            }
            if let Some(callback) = &self.on_change {
                callback(leading);
            }
        }
    }

    fn fresh_spec(&self, transitions: i32) -> LeaseSpec {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.settings.identity.clone()),
            lease_duration_seconds: Some(self.settings.lease_duration.as_secs().max(1) as i32),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    async fn step(&mut self) -> Result<Step, String> {
        let params = PostParams { field_manager: Some(self.settings.identity.clone()), ..PostParams::default() };
        let lease = match self.api.get_opt(&self.settings.name).await {
            Ok(lease) => lease,
            Err(error) => return Err(error.to_string()),
        };
        let Some(mut lease) = lease else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.settings.name.clone()),
                    namespace: Some(self.settings.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.fresh_spec(0)),
            };
            return match self.api.create(&params, &lease).await {
                Ok(_) => Ok(Step::Leading),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(Step::Following(None)),
                Err(error) => Err(error.to_string()),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        let now = Instant::now();
        if holder.as_deref() == Some(self.settings.identity.as_str()) {
            let mut renewed = spec;
            renewed.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
            renewed.lease_duration_seconds = Some(self.settings.lease_duration.as_secs().max(1) as i32);
            lease.spec = Some(renewed);
            return match self.api.replace(&self.settings.name, &params, &lease).await {
                Ok(_) => Ok(Step::Leading),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(Step::Following(None)),
                Err(error) => Err(error.to_string()),
            };
        }
        let duration = spec
            .lease_duration_seconds
            .filter(|s| *s > 0)
            .map_or(self.settings.lease_duration, |s| Duration::from_secs(s as u64));
        let first_seen = match &self.observed {
            Some((seen, at)) if *seen == version => *at,
            _ => {
                self.observed = Some((version, now));
                now
            }
        };
        if holder.is_some() && now.duration_since(first_seen) < duration {
            return Ok(Step::Following(holder));
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + 1;
        lease.spec = Some(self.fresh_spec(transitions));
        match self.api.replace(&self.settings.name, &params, &lease).await {
            Ok(_) => {
                tracing::info!(previous = holder.as_deref().unwrap_or("none"), "lease taken over");
                Ok(Step::Leading)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Step::Following(holder)),
            Err(error) => Err(error.to_string()),
        }
    }

    async fn release(&self) {
        let params = PostParams { field_manager: Some(self.settings.identity.clone()), ..PostParams::default() };
        let result = async {
            let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else { return Ok(()) };
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            self.api.replace(&self.settings.name, &params, &lease).await.map(|_| ())
        };
        match tokio::time::timeout(self.settings.retry_period.max(Duration::from_secs(1)), result).await {
            Ok(Ok(())) => tracing::info!(lease = %self.settings.name, "lease released"),
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not release the lease; a standby takes over when it expires")
            }
            Err(_) => tracing::warn!("releasing the lease timed out; a standby takes over when it expires"),
        }
    }
}
