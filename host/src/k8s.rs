//! The Kubernetes side: reading targets and pods, writing scale decisions,
//! pod deletion costs and Events, and leader election (`lease`).
//!
//! Requests the actuator makes (and the RBAC in `deploy/` allows):
//!
//! | verb  | resource                                  | why                                   |
//! |-------|-------------------------------------------|---------------------------------------|
//! | get   | `<targets>/scale`                         | current/desired replicas, pod selector |
//! | update| `<targets>/scale`                         | write the decision (`resourceVersion`) |
//! | list, watch | `pods` (namespaces with workloads)  | pod phase, readiness, requests        |
//! | list  | `metrics.k8s.io/pods` (with `pod_metrics` inputs) | pod CPU and memory usage       |
//! | patch | `pods`                                    | `controller.kubernetes.io/pod-deletion-cost` |
//! | create| `events.k8s.io/events`                    | one Event per scale                   |
//! | get, create, update | `coordination.k8s.io/leases` | leader election                     |
//! | patch | `pods` (scalegate's own namespace)        | the leader label on its own pod       |
//! | get, list, create, update | `scalegate.dev/scalegatestates` | decision state (`state`)     |
//!
//! Writes are optimistic: the `/scale` update carries the `resourceVersion`
//! the decision was based on. On a conflict the scale is read again: already
//! at the new count → done (a retried write that had landed is not repeated);
//! changed by someone else → the write is abandoned and the next evaluation
//! decides on fresh data; unchanged → written again with the new version.
//! Transient failures (timeouts, transport errors, 429, 5xx) are retried
//! with exponential backoff; 401/403/404/422 are not, and are reported as
//! they are (a 403 names the RBAC rule that is missing).

mod lease;
mod metrics;
mod pods;
pub mod quantity;
mod requests;
pub mod selector;
mod state;

pub use lease::{LEADER_LABEL, LeaderElector, LeaseSettings};
pub use pods::DELETION_COST_ANNOTATION;
pub use requests::KubeSettings;

use crate::cluster::{Cluster, ClusterError, PodUsage, ResourceMetrics, StoredState, Target};
use crate::snapshot::{Observation, PodDeletionCost};
use futures::future::BoxFuture;
use k8s_openapi::api::autoscaling::v1::{Scale, ScaleSpec};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams};
use requests::{CallError, Requests};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// The client scalegate talks to the API with: kube's built-in retry layer
/// (up to 15 retries of 429/503/504, inside one call) is off, so a call's
/// deadline and retries are the ones [`KubeSettings`] states.
pub fn client(mut config: kube::Config) -> Result<kube::Client, kube::Error> {
    config.default_retry = false;
    kube::Client::try_from(config)
}

/// What the last read of a target's `/scale` showed.
#[derive(Debug, Clone)]
struct ObservedScale {
    resource_version: Option<String>,
    /// `status.selector`, parsed; `None` when the target reports none.
    selector: Option<selector::PodSelector>,
}

/// [`Cluster`] over the Kubernetes API.
pub struct KubeCluster {
    client: kube::Client,
    requests: Requests,
    pods: pods::PodCaches,
    scales: parking_lot::Mutex<HashMap<String, ObservedScale>>,
    states: state::StateObjects,
}

impl KubeCluster {
    pub fn new(client: kube::Client, settings: KubeSettings) -> KubeCluster {
        let requests = Requests::new(settings);
        KubeCluster {
            pods: pods::PodCaches::new(client.clone()),
            states: state::StateObjects::new(client.clone(), requests.clone()),
            client,
            requests,
            scales: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    fn settings(&self) -> &KubeSettings {
        &self.requests.settings
    }

    /// Starts the pod watches of these namespaces now rather than at the
    /// first evaluation.
    pub fn watch_namespaces<'a>(&self, namespaces: impl IntoIterator<Item = &'a str>) {
        for namespace in namespaces {
            self.pods.get(namespace);
        }
    }

    fn scalable(&self, target: &Target) -> Api<DynamicObject> {
        let (group, version) = target.api_version.split_once('/').unwrap_or(("", target.api_version.as_str()));
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &target.kind));
        Api::namespaced_with(self.client.clone(), &target.namespace, &resource)
    }

    /// Pods of a namespace once its watch cache holds the first list.
    async fn synced_pods(&self, namespace: &str) -> Result<Arc<pods::PodCache>, ClusterError> {
        let cache = self.pods.get(namespace);
        if !cache.wait_synced(self.settings().cache_sync_timeout).await {
            return Err(ClusterError::NotSynced(format!(
                "pods of namespace {namespace} not listed yet (watch not synced within {})",
                humantime::format_duration(self.settings().cache_sync_timeout)
            )));
        }
        Ok(cache)
    }

    /// Reads the target's scale and remembers its version and selector.
    async fn read_scale(&self, target: &Target) -> Result<(Scale, Option<selector::PodSelector>), ClusterError> {
        let api = self.scalable(target);
        let scale = self
            .requests
            .retrying(|| api.get_scale(&target.name))
            .await
            .map_err(|e| e.describe("get", &scale_of(target)))?;
        let selector = match scale.status.as_ref().and_then(|s| s.selector.as_deref()).filter(|s| !s.is_empty()) {
            Some(text) => Some(
                selector::parse(text)
                    .map_err(|e| ClusterError::Invalid(format!("{}: status.selector: {e}", scale_of(target))))?,
            ),
            None => None,
        };
        let observed =
            ObservedScale { resource_version: scale.metadata.resource_version.clone(), selector: selector.clone() };
        self.scales.lock().insert(key(target), observed);
        Ok((scale, selector))
    }

    /// Records one Event for a scale, in the background: the decision does
    /// not wait for it (client-go's event recorder is asynchronous too), and
    /// a failed Event does not fail the scale.
    fn record_event(&self, target: &Target, from: u32, to: u32, reason: &str) {
        let kind = if to > from { "ScaledUp" } else { "ScaledDown" };
        self.post_event(target, "Scale", kind, &format!("{from} → {to}: {reason}"));
    }

    /// One Event on the target, in the background.
    fn post_event(&self, target: &Target, action: &str, reason: &str, note: &str) {
        let now = k8s_openapi::jiff::Timestamp::now();
        let note: String = note.chars().take(1000).collect();
        let identity = self.settings().identity.clone();
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:x}", target.name, now.as_nanosecond())),
                namespace: Some(target.namespace.clone()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(action.into()),
            reason: Some(reason.into()),
            note: Some(note),
            type_: Some("Normal".into()),
            regarding: Some(ObjectReference {
                api_version: Some(target.api_version.clone()),
                kind: Some(target.kind.clone()),
                namespace: Some(target.namespace.clone()),
                name: Some(target.name.clone()),
                ..ObjectReference::default()
            }),
            reporting_controller: Some("scalegate.dev/scalegate".into()),
            reporting_instance: Some(identity.clone()),
            ..Event::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &target.namespace);
        let (requests, object) = (self.requests.clone(), scale_of(target));
        tokio::spawn(async move {
            let params = PostParams { field_manager: Some(identity), ..PostParams::default() };
            if let Err(error) = requests.retrying(|| api.create(&params, &event)).await {
                let error = error.describe("create an Event for", &object);
                tracing::warn!(target = %object, %error, "the Event was not recorded");
            }
        });
    }
}

fn key(target: &Target) -> String {
    format!("{}/{}/{}/{}", target.api_version, target.kind, target.namespace, target.name)
}

fn scale_of(target: &Target) -> String {
    format!("{} {}/{} (scale)", target.kind, target.namespace, target.name)
}

fn replicas(value: Option<i32>) -> u32 {
    value.unwrap_or(0).max(0) as u32
}

impl Cluster for KubeCluster {
    async fn observe(&self, target: &Target) -> Result<Observation, ClusterError> {
        let (scale, selector) = self.read_scale(target).await?;
        let spec_replicas = replicas(scale.spec.as_ref().and_then(|s| s.replicas));
        let status = scale.status.unwrap_or_default();
        let mut observation = Observation {
            spec_replicas,
            status_replicas: replicas(Some(status.replicas)),
            ready_replicas: replicas(Some(status.replicas)),
            ..Observation::default()
        };
        // without a selector (some custom resources) there are no pods to show
        let Some(selector) = selector else {
            return Ok(observation);
        };
        let cache = self.synced_pods(&target.namespace).await?;
        observation.pods = cache.matching(&selector);
        observation.ready_replicas =
            observation.pods.iter().filter(|p| p.ready == Some(true) && !p.terminating).count() as u32;
        if !cache.healthy() {
            observation.stale_inputs.push(format!("kubernetes:pods/{}", target.namespace));
        }
        Ok(observation)
    }

    async fn scale(&self, target: &Target, from: u32, to: u32, reason: &str) -> Result<(), ClusterError> {
        let api = self.scalable(target);
        let object = scale_of(target);
        let params = PostParams { field_manager: Some(self.settings().identity.clone()), ..PostParams::default() };
        let mut version = self.scales.lock().get(&key(target)).and_then(|s| s.resource_version.clone());
        let mut conflicts = 0;
        loop {
            let resource_version = match version.take() {
                Some(version) => version,
                None => {
                    let (fresh, _) = self.read_scale(target).await?;
                    let now = replicas(fresh.spec.as_ref().and_then(|s| s.replicas));
                    if now == to {
                        // our earlier write landed (its answer was lost) or someone agreed
                        tracing::info!(target = %object, to, "scale already at the decided count");
                        return Ok(());
                    }
                    if now != from {
                        return Err(ClusterError::Conflict(format!(
                            "{object}: replicas changed {from} → {now} by another writer; deciding again on fresh data"
                        )));
                    }
                    fresh.metadata.resource_version.unwrap_or_default()
                }
            };
            let body = Scale {
                metadata: ObjectMeta {
                    name: Some(target.name.clone()),
                    namespace: Some(target.namespace.clone()),
                    resource_version: Some(resource_version),
                    ..ObjectMeta::default()
                },
                spec: Some(ScaleSpec { replicas: Some(to as i32) }),
                status: None,
            };
            match self.requests.retrying(|| api.replace_scale(&target.name, &params, &body)).await {
                Ok(written) => {
                    if let Some(observed) = self.scales.lock().get_mut(&key(target)) {
                        observed.resource_version = written.metadata.resource_version;
                    }
                    self.record_event(target, from, to, reason);
                    return Ok(());
                }
                Err(CallError::Status(409, _)) if conflicts < self.settings().conflict_retries => {
                    conflicts += 1;
                    tracing::debug!(target = %object, conflicts, "scale changed since it was read; reading again");
                    tokio::time::sleep(self.settings().backoff * conflicts).await;
                }
                Err(error) => return Err(error.describe("update", &object)),
            }
        }
    }

    async fn set_deletion_costs(&self, target: &Target, costs: &[PodDeletionCost]) -> Result<(), ClusterError> {
        use futures::StreamExt;
        // a policy may only rank pods of its own workload
        let cache = self.pods.get(&target.namespace);
        let selector = self.scales.lock().get(&key(target)).and_then(|s| s.selector.clone());
        let own: std::collections::HashSet<String> = match selector {
            Some(selector) => cache.matching(&selector).into_iter().map(|p| p.name).collect(),
            None => Default::default(),
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &target.namespace);
        let params = PatchParams { field_manager: Some(self.settings().identity.clone()), ..PatchParams::default() };
        let results: Vec<Result<(), ClusterError>> = futures::stream::iter(costs.iter().cloned())
            .map(|cost: PodDeletionCost| {
                let (api, params, own) = (&api, &params, &own);
                async move {
                    if !own.contains(&cost.pod) {
                        tracing::warn!(target = %scale_of(target), pod = %cost.pod, "deletion cost for a pod outside the workload ignored");
                        return Ok(());
                    }
                    let patch = Patch::Merge(serde_json::json!({
                        "metadata": {"annotations": {DELETION_COST_ANNOTATION: cost.cost.to_string()}}
                    }));
                    self.requests.retrying(|| api.patch(&cost.pod, params, &patch))
                        .await
                        .map(|_| ())
                        .map_err(|e| e.describe("patch", &format!("pod {}/{}", target.namespace, cost.pod)))
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        results.into_iter().collect()
    }

    async fn load_states(&self, namespaces: &[String]) -> Result<Vec<StoredState>, ClusterError> {
        self.states.load(namespaces).await
    }

    async fn save_state(&self, state: &StoredState) -> Result<(), ClusterError> {
        self.states.save(state).await
    }

    async fn container_usage(&self, target: &Target, pods: &[String]) -> Result<Vec<PodUsage>, ClusterError> {
        let listed = self.list_pod_usage(&target.namespace).await?;
        Ok(listed.into_iter().filter(|usage| pods.contains(&usage.pod)).collect())
    }

    async fn resize(
        &self,
        target: &Target,
        pod: &str,
        containers: &[crate::cluster::ContainerResize],
        reason: &str,
    ) -> Result<(), ClusterError> {
        let list = |c: &crate::snapshot::Compute| {
            let mut out = serde_json::Map::new();
            if let Some(cpu) = c.cpu {
                out.insert("cpu".into(), format!("{}m", (cpu * 1000.0).round() as i64).into());
            }
            if let Some(memory) = c.memory {
                out.insert("memory".into(), format!("{}", memory.round() as i64).into());
            }
            serde_json::Value::Object(out)
        };
        let patch = serde_json::json!({"spec": {"containers": containers.iter().map(|c| serde_json::json!({
            "name": c.container,
            "resources": {"requests": list(&c.requests), "limits": list(&c.limits)},
        })).collect::<Vec<_>>()}});
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &target.namespace);
        let params = PatchParams { field_manager: Some(self.settings().identity.clone()), ..PatchParams::default() };
        let what = format!("pod {}/{pod} (resize)", target.namespace);
        let patch = Patch::Strategic(patch);
        self.requests
            .retrying(|| api.patch_subresource("resize", pod, &params, &patch))
            .await
            .map_err(|e| e.describe("patch", &what))?;
        self.post_event(target, "Resize", "Resized", &format!("{pod}: {reason}"));
        Ok(())
    }

    fn event(&self, target: &Target, reason: &str, note: &str) {
        self.post_event(target, "Recommend", reason, note);
    }

    async fn wait_synced(&self, namespaces: &[String]) {
        for namespace in namespaces {
            let cache = self.pods.get(namespace);
            while !cache.wait_synced(Duration::from_secs(5)).await {
                tracing::info!(%namespace, "waiting for the pod cache to fill");
            }
        }
    }
}

impl ResourceMetrics for KubeCluster {
    fn list_pod_usage<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Vec<PodUsage>, ClusterError>> {
        Box::pin(async move {
            let resource = ApiResource {
                group: "metrics.k8s.io".into(),
                version: "v1beta1".into(),
                api_version: "metrics.k8s.io/v1beta1".into(),
                kind: "PodMetrics".into(),
                plural: "pods".into(),
            };
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &resource);
            // one attempt: the next poll is the retry
            let what = format!("pod metrics of namespace {namespace}");
            let listed =
                self.requests.attempt(api.list(&ListParams::default())).await.map_err(|error| match error {
                    CallError::Status(404, _) => ClusterError::NotFound(format!(
                        "{what}: metrics.k8s.io is not served (is metrics-server installed?)"
                    )),
                    CallError::Status(403, message) => ClusterError::Forbidden(format!(
                        "{what}: forbidden (scalegate's role needs list on metrics.k8s.io pods): {message}"
                    )),
                    other => other.describe("list", &what),
                })?;
            listed
                .items
                .iter()
                .map(|item| {
                    let name = item.metadata.name.as_deref().unwrap_or_default();
                    metrics::parse(name, &item.data).map_err(ClusterError::Invalid)
                })
                .collect()
        })
    }

    fn pods_of<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<HashSet<String>, ClusterError>> {
        Box::pin(async move {
            let known = self.scales.lock().get(&key(target)).map(|s| s.selector.clone());
            let selector = match known {
                Some(selector) => selector,
                None => self.read_scale(target).await?.1,
            };
            let selector = selector
                .ok_or_else(|| ClusterError::Invalid(format!("{} reports no pod selector", scale_of(target))))?;
            let cache = self.synced_pods(&target.namespace).await?;
            Ok(cache.names_matching(&selector))
        })
    }
}
