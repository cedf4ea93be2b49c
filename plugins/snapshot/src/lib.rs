//! The JSON form of a scalegate snapshot and decision: what `scalegate eval
//! --snapshot FILE.json` reads and prints, what `scalegate test` cases hold,
//! and what a policy's native tests (the Rust SDK's `testing` module) feed
//! to `evaluate`.
//!
//! These records mirror the WIT records of the newest contract one to one
//! (field names in snake_case), so the JSON is a stable, documented interface
//! (`docs/SNAPSHOT.md`). Two conveniences differ from the WIT form: `params`
//! is any JSON value (the policy receives it as text) and `state` is base64;
//! and per-pod samples name their pod (the WIT form carries its index into
//! `pods`). The host and the SDK each convert to their generated types.

pub mod wit;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Evaluation time, ms since the Unix epoch.
    pub now_ms: u64,
    pub workload: Workload,
    #[serde(default)]
    pub pods: Vec<Pod>,
    #[serde(default)]
    pub metrics: Vec<Metric>,
    #[serde(default)]
    pub signals: Vec<Signal>,
    #[serde(default)]
    pub forecasts: Vec<Forecast>,
    #[serde(default)]
    pub recommendations: Vec<Recommendation>,
    #[serde(default)]
    pub scale_events: Vec<ScaleEvent>,
    /// The binding's parameters; `{}` when absent.
    #[serde(default = "empty_object")]
    pub params: serde_json::Value,
    /// What the policy returned last time, base64; empty at first.
    #[serde(default, with = "base64_bytes", skip_serializing_if = "Vec::is_empty")]
    pub state: Vec<u8>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    #[serde(default = "default_kind")]
    pub kind: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub name: String,
    /// `/scale` `spec.replicas`.
    pub current_replicas: u32,
    /// `/scale` `status.replicas`; defaults to `current_replicas`.
    #[serde(default)]
    pub status_replicas: Option<u32>,
    /// Running and Ready pods; defaults to `current_replicas`.
    #[serde(default)]
    pub ready_replicas: Option<u32>,
    #[serde(default = "default_min")]
    pub min_replicas: u32,
    pub max_replicas: u32,
}

fn default_kind() -> String {
    "Deployment".into()
}
fn default_namespace() -> String {
    "default".into()
}
fn default_min() -> u32 {
    1
}

impl Workload {
    pub fn status_replicas(&self) -> u32 {
        self.status_replicas.unwrap_or(self.current_replicas)
    }
    pub fn ready_replicas(&self) -> u32 {
        self.ready_replicas.unwrap_or(self.current_replicas)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceRequest {
    pub resource: String,
    /// Absent: the pod's total request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Base units: cores for cpu, bytes for memory.
    pub amount: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pod {
    pub name: String,
    #[serde(default = "default_phase")]
    pub phase: PodPhase,
    /// The `Ready` condition; absent when the pod has none.
    #[serde(default)]
    pub ready: Option<bool>,
    #[serde(default)]
    pub ready_transition_ms: Option<u64>,
    #[serde(default)]
    pub start_ms: Option<u64>,
    #[serde(default)]
    pub terminating: bool,
    #[serde(default)]
    pub deletion_cost: Option<i32>,
    /// Total CPU request of the pod, cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_request: Option<f64>,
    /// Total memory request of the pod, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_request: Option<f64>,
    /// Other requests: other resources, per-container requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<ResourceRequest>,
    /// The pod's containers (contract 0.2.0: handed to policies that read
    /// "containers").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<Container>,
    /// The kubelet's progress on an in-place resize (host-only: for the
    /// vertical actuator, never handed to a policy).
    #[serde(skip)]
    pub resize: Option<ResizeStatus>,
}

/// A pod's resize as the kubelet reports it (`PodResizePending`,
/// `PodResizeInProgress` conditions).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResizeStatus {
    /// `Deferred` or `Infeasible` while `PodResizePending` is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_message: Option<String>,
    /// `PodResizeInProgress` is true.
    #[serde(default)]
    pub in_progress: bool,
    /// Its reason when it is `Error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ResizeStatus {
    pub fn settled(&self) -> bool {
        self.pending.is_none() && !self.in_progress
    }
}

/// CPU (cores) and memory (bytes) of one container's requests or limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compute {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<f64>,
}

/// How a container's previous run ended (`lastState.terminated`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Termination {
    /// e.g. `OOMKilled`.
    pub reason: String,
    #[serde(default)]
    pub exit_code: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
}

/// One usage sample of a container (`metrics.k8s.io`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    /// Cores.
    pub cpu: f64,
    /// Working-set bytes.
    pub memory: f64,
    pub timestamp_ms: u64,
    #[serde(default)]
    pub window_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Container {
    pub name: String,
    #[serde(default)]
    pub requests: Compute,
    #[serde(default)]
    pub limits: Compute,
    #[serde(default)]
    pub restart_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_termination: Option<Termination>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Resources whose `resizePolicy` is `RestartContainer` (host-only: the
    /// vertical actuator leaves them alone unless allowed to restart).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restart_on_resize: Vec<String>,
}

impl Pod {
    /// A Running pod started at `start_ms`, Ready since `ready_ms`, with
    /// pod-total CPU (cores) and memory (bytes) requests.
    pub fn running(
        name: impl Into<String>,
        start_ms: u64,
        ready_ms: u64,
        cpu_request: f64,
        memory_request: f64,
    ) -> Pod {
        Pod {
            name: name.into(),
            phase: PodPhase::Running,
            ready: Some(true),
            ready_transition_ms: Some(ready_ms),
            start_ms: Some(start_ms),
            terminating: false,
            deletion_cost: None,
            cpu_request: Some(cpu_request),
            memory_request: Some(memory_request),
            requests: vec![],
            containers: vec![],
            resize: None,
        }
    }
}

fn default_phase() -> PodPhase {
    PodPhase::Running
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodSample {
    /// Name of a pod in `pods`; samples of other pods are dropped on the way
    /// to the policy (which sees the pod's index).
    pub pod: String,
    pub value: f64,
    pub timestamp_ms: u64,
    #[serde(default)]
    pub window_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metric {
    pub name: String,
    #[serde(default)]
    pub source: String,
    /// Object/external value, or the sum of the per-pod samples.
    #[serde(default)]
    pub value: f64,
    pub timestamp_ms: u64,
    #[serde(default)]
    pub pods: Vec<PodSample>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleAction {
    ScaleOut,
    ScaleIn,
    Hold,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signal {
    pub kind: String,
    #[serde(default)]
    pub source: String,
    pub timestamp_ms: u64,
    #[serde(default)]
    pub action: Option<ScaleAction>,
    #[serde(default)]
    pub target_replicas: Option<u32>,
    /// 0 (routine) to 3 (critical).
    #[serde(default)]
    pub urgency: Option<u8>,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub attributes: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forecast {
    pub name: String,
    pub generated_ms: u64,
    pub start_ms: u64,
    pub step_seconds: u32,
    pub values: Vec<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recommendation {
    pub timestamp_ms: u64,
    pub replicas: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleEvent {
    pub timestamp_ms: u64,
    pub from_replicas: u32,
    pub to_replicas: u32,
}

/// A policy's answer, after the host validated its size limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// `None`: no opinion, keep the current replica count.
    pub desired_replicas: Option<u32>,
    pub reason: String,
    #[serde(default, with = "base64_bytes")]
    pub state: Vec<u8>,
    #[serde(default)]
    pub deletion_costs: Vec<PodDeletionCost>,
    #[serde(default)]
    pub metrics: Vec<ReportedMetric>,
    /// Per-container resource recommendations (contract 0.2.0).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ContainerRecommendation>,
}

/// What a policy recommends for one container (by name, for every pod).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecommendation {
    pub container: String,
    pub resources: Vec<ResourceRecommendation>,
}

/// A recommendation for one resource, as VPA's recommender gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceRecommendation {
    /// `cpu` (cores) or `memory` (bytes).
    pub resource: String,
    pub target: f64,
    pub lower_bound: f64,
    pub upper_bound: f64,
    pub uncapped_target: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodDeletionCost {
    pub pod: String,
    pub cost: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportedMetric {
    pub name: String,
    pub value: f64,
}

/// Serde adapter: `Vec<u8>` as a standard base64 string.
mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(de)?;
        STANDARD.decode(text.as_bytes()).map_err(|e| serde::de::Error::custom(format!("state is not base64: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_snapshot_fills_defaults() {
        let snapshot: Snapshot = serde_json::from_str(
            r#"{"now_ms": 1000, "workload": {"name": "web", "current_replicas": 3, "max_replicas": 10}}"#,
        )
        .unwrap();
        assert_eq!(snapshot.workload.kind, "Deployment");
        assert_eq!(snapshot.workload.min_replicas, 1);
        assert_eq!(snapshot.workload.status_replicas(), 3);
        assert_eq!(snapshot.params, serde_json::json!({}));
        assert!(snapshot.state.is_empty());
    }

    #[test]
    fn unknown_fields_are_named() {
        let err = serde_json::from_str::<Snapshot>(
            r#"{"now_ms": 1, "workload": {"name": "web", "current_replicas": 3, "max_replicas": 10, "replicas": 2}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `replicas`"), "{err}");
    }

    #[test]
    fn state_round_trips_as_base64() {
        let decision = Decision {
            desired_replicas: Some(2),
            reason: "r".into(),
            state: b"hello".to_vec(),
            deletion_costs: vec![],
            metrics: vec![],
            resources: vec![],
        };
        let json = serde_json::to_value(&decision).unwrap();
        assert_eq!(json["state"], "aGVsbG8=");
        assert_eq!(serde_json::from_value::<Decision>(json).unwrap(), decision);
    }
}
