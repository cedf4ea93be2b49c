//! The cluster port: what the decision loop needs from the cluster it
//! scales, whoever implements it — the Kubernetes API (`k8s`) or the
//! in-process simulator (`sim`).
//!
//! - [`Cluster::observe`]: the target's replicas and pods, as an
//!   [`Observation`] (the signal hub's inputs are added to it afterwards);
//! - [`Cluster::scale`]: write a new replica count (and record why);
//! - [`Cluster::set_deletion_costs`]: rank pods for the next scale-in;
//! - [`Cluster::load_states`] / [`Cluster::save_state`]: the decision state
//!   of each workload binding (and the policy pins), kept in the cluster so
//!   that a new leader or a restarted daemon continues where the last
//!   writer stopped;
//! - [`Cluster::wait_synced`]: resolves once the caches that observations
//!   read from are filled (readiness waits for it).
//!
//! [`ResourceMetrics`] is the cluster's resource metrics API, which the
//! `pod_metrics` signal source reads.
//!
//! Failures are [`ClusterError`]s with a stable [`ClusterError::kind`].

use crate::snapshot::{Observation, PodDeletionCost};
use serde::Deserialize;
use std::future::Future;

/// The scale target: any resource with a `/scale` subresource.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    #[serde(default = "default_api_version")]
    pub api_version: String,
    #[serde(default = "default_kind")]
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

fn default_api_version() -> String {
    "apps/v1".into()
}

fn default_kind() -> String {
    "Deployment".into()
}

impl Target {
    /// `namespace/name`.
    pub fn path(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Why a cluster operation failed (after the implementation's own retries).
/// The message names the object and, where there is one, the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error("{0}")]
    NotFound(String),
    /// The object changed under us (optimistic concurrency).
    #[error("{0}")]
    Conflict(String),
    /// Refused by authorization (RBAC).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Timeout(String),
    /// The server answered with an error status (5xx, 429), after retries.
    #[error("{0}")]
    Http(String),
    /// No connection or a broken one, after retries.
    #[error("{0}")]
    Unavailable(String),
    /// Refused as invalid, or an answer that makes no sense.
    #[error("{0}")]
    Invalid(String),
    /// The caches observations are read from are not filled yet.
    #[error("{0}")]
    NotSynced(String),
}

impl ClusterError {
    /// Bounded label for metrics and decision records.
    pub fn kind(&self) -> &'static str {
        match self {
            ClusterError::NotFound(_) => "not_found",
            ClusterError::Conflict(_) => "conflict",
            ClusterError::Forbidden(_) => "forbidden",
            ClusterError::Timeout(_) => "timeout",
            ClusterError::Http(_) => "http",
            ClusterError::Unavailable(_) => "unavailable",
            ClusterError::Invalid(_) => "invalid",
            ClusterError::NotSynced(_) => "not_synced",
        }
    }
}

/// Decision state kept in the cluster: what the loop (or the daemon, for
/// policy pins) serialised, under a key unique in its namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredState {
    pub namespace: String,
    /// The workload binding's name, or [`PINS_KEY`].
    pub key: String,
    pub data: serde_json::Value,
}

/// The key of the policy pins' stored state.
pub const PINS_KEY: &str = "policy-pins";

/// Reads workload state and writes scale decisions.
pub trait Cluster: Send + Sync + 'static {
    fn observe(&self, target: &Target) -> impl Future<Output = Result<Observation, ClusterError>> + Send;

    fn scale(
        &self,
        target: &Target,
        from: u32,
        to: u32,
        reason: &str,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;

    fn set_deletion_costs(
        &self,
        target: &Target,
        costs: &[PodDeletionCost],
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// The stored decision states in these namespaces.
    fn load_states(&self, namespaces: &[String])
    -> impl Future<Output = Result<Vec<StoredState>, ClusterError>> + Send;

    /// Stores one decision state (creating or replacing it).
    fn save_state(&self, state: &StoredState) -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// Resolves once observations of these namespaces can be served from
    /// filled caches (immediately where there are none).
    fn wait_synced(&self, namespaces: &[String]) -> impl Future<Output = ()> + Send;

    /// Per-container usage of these pods of the target (`metrics.k8s.io`),
    /// for workloads scaled vertically. None where the cluster has no such API.
    fn container_usage(
        &self,
        target: &Target,
        pods: &[String],
    ) -> impl Future<Output = Result<Vec<PodUsage>, ClusterError>> + Send {
        let _ = (target, pods);
        async { Ok(vec![]) }
    }

    /// Resizes one pod's containers in place (the pod's `resize`
    /// subresource); the kubelet carries it out and reports progress in the
    /// pod's conditions.
    fn resize(
        &self,
        target: &Target,
        pod: &str,
        containers: &[ContainerResize],
        reason: &str,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// Records an Event on the target (in the background; best effort).
    fn event(&self, target: &Target, reason: &str, note: &str) {
        let _ = (target, reason, note);
    }
}

/// New requests and limits for one container of a pod (base units).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ContainerResize {
    pub container: String,
    pub requests: crate::snapshot::Compute,
    pub limits: crate::snapshot::Compute,
}

/// One pod's resource usage, as the cluster's resource metrics API
/// (metrics-server) reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodUsage {
    pub pod: String,
    /// End of the sampling window (ms since the epoch).
    pub timestamp_ms: u64,
    pub window_ms: u64,
    /// Container name → resource → amount in base units (cores, bytes).
    pub containers: std::collections::BTreeMap<String, std::collections::BTreeMap<String, f64>>,
}

/// The cluster's resource metrics API (`metrics.k8s.io`), which the
/// `pod_metrics` source reads.
pub trait ResourceMetrics: Send + Sync + 'static {
    /// Usage of every pod of a namespace.
    fn list_pod_usage<'a>(
        &'a self,
        namespace: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Vec<PodUsage>, ClusterError>>;

    /// Names of the target's pods.
    fn pods_of<'a>(
        &'a self,
        target: &'a Target,
    ) -> futures::future::BoxFuture<'a, Result<std::collections::HashSet<String>, ClusterError>>;
}
