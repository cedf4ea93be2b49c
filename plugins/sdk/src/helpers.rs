//! Helpers on the generated records: reading a snapshot, building a decision.

use crate::types::{
    Decision, Metric, Pod, PodDeletionCost, PodPhase, PodSample, PolicyError, ReportedMetric, Snapshot,
};
use std::fmt;

/// Why a metric cannot be used.
#[derive(Debug, Clone, PartialEq)]
pub enum Unusable {
    /// The host did not gather it (not configured, or its source never answered).
    Missing { name: String },
    /// Its value is older than the policy accepts.
    Stale { name: String, age_ms: u64 },
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unusable::Missing { name } => write!(f, "metric {name} is not in the snapshot"),
            Unusable::Stale { name, age_ms } => write!(f, "metric {name} is stale ({age_ms} ms old)"),
        }
    }
}

impl From<Unusable> for PolicyError {
    /// `missing-input`, with the reason.
    fn from(u: Unusable) -> PolicyError {
        PolicyError::MissingInput(u.to_string())
    }
}

impl Snapshot {
    /// The metric with this name, if the host gathered it.
    pub fn metric(&self, name: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.name == name)
    }

    /// The metric with this name if it is at most `max_age_ms` old at `now_ms`.
    pub fn fresh_metric(&self, name: &str, max_age_ms: u64) -> Result<&Metric, Unusable> {
        let metric = self.metric(name).ok_or_else(|| Unusable::Missing { name: name.to_string() })?;
        let age_ms = self.age_ms(metric.timestamp_ms);
        if age_ms > max_age_ms {
            return Err(Unusable::Stale { name: name.to_string(), age_ms });
        }
        Ok(metric)
    }

    /// How long before `now_ms` a time was (0 for times in the future).
    pub fn age_ms(&self, timestamp_ms: u64) -> u64 {
        self.now_ms.saturating_sub(timestamp_ms)
    }

    /// A per-pod metric's samples joined to their pods.
    pub fn pod_values<'a>(&'a self, metric: &'a Metric) -> impl Iterator<Item = (&'a Pod, &'a PodSample)> + 'a {
        metric.pods.iter().filter_map(|s| Some((self.pods.get(s.pod as usize)?, s)))
    }

    /// Pods that serve: Running, Ready and not terminating.
    pub fn ready_pods(&self) -> impl Iterator<Item = &Pod> {
        self.pods.iter().filter(|p| serving(p))
    }

    /// Pods that do not serve (yet or any more): the complement of [`Snapshot::ready_pods`].
    pub fn unready_pods(&self) -> impl Iterator<Item = &Pod> {
        self.pods.iter().filter(|p| !serving(p))
    }

    /// Deletion costs from a per-pod metric: each pod's value, floored and
    /// clamped to `i32`. Kubernetes removes the lowest cost first, so the
    /// least-loaded pods go first on scale-in.
    pub fn deletion_costs_by(&self, metric: &Metric) -> Vec<PodDeletionCost> {
        self.pod_values(metric)
            .map(|(pod, s)| PodDeletionCost {
                pod: pod.name.clone(),
                cost: s.value.floor().clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32,
            })
            .collect()
    }

    /// The largest replica count this policy recommended within `window_ms`
    /// before now (the host keeps the recent recommendations).
    pub fn highest_recommendation_within(&self, window_ms: u64) -> Option<u32> {
        self.recommendations.iter().filter(|r| self.age_ms(r.timestamp_ms) <= window_ms).map(|r| r.replicas).max()
    }

    /// When the workload was last scaled (by anyone the host saw), if ever.
    pub fn last_scale_ms(&self) -> Option<u64> {
        self.scale_events.iter().map(|e| e.timestamp_ms).max()
    }

    /// The latest signal of this kind, if any.
    pub fn latest_signal(&self, kind: &str) -> Option<&crate::types::Signal> {
        self.signals.iter().filter(|s| s.kind == kind).max_by_key(|s| s.timestamp_ms)
    }

    /// The state returned last time as `S` (see [`crate::state::load`]).
    pub fn state<S: serde::de::DeserializeOwned>(&self) -> Option<S> {
        crate::state::load(self)
    }
}

fn serving(p: &Pod) -> bool {
    p.phase == PodPhase::Running && p.ready == Some(true) && !p.terminating
}

impl Decision {
    /// A decision with a desired replica count and a reason, nothing else.
    pub fn replicas(desired: u32, reason: impl Into<String>) -> Self {
        Self {
            desired_replicas: Some(desired),
            reason: reason.into(),
            state: Vec::new(),
            deletion_costs: Vec::new(),
            metrics: Vec::new(),
            resources: Vec::new(),
        }
    }

    /// "No opinion": the host keeps the current replica count (or what the
    /// workload's other policies say).
    pub fn no_opinion(reason: impl Into<String>) -> Self {
        Self { desired_replicas: None, ..Self::replicas(0, reason) }
    }

    /// Adds a metric for the host to export and log (`scalegate_policy_metric`).
    pub fn with_metric(mut self, name: impl Into<String>, value: f64) -> Self {
        self.metrics.push(ReportedMetric { name: name.into(), value });
        self
    }

    pub fn with_deletion_costs(mut self, costs: Vec<PodDeletionCost>) -> Self {
        self.deletion_costs = costs;
        self
    }

    /// Per-container recommendations (vertical scaling, contract 0.2.0).
    pub fn with_resources(mut self, resources: Vec<crate::resources::ContainerRecommendation>) -> Self {
        self.resources = resources;
        self
    }

    /// Remembers `state` for the next evaluation (JSON, size-checked: see [`crate::state::save`]).
    pub fn with_state<S: serde::Serialize>(mut self, state: &S) -> Result<Self, PolicyError> {
        self.state = crate::state::save(state)?;
        Ok(self)
    }
}
