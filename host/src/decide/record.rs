//! The audit record of one decision: what went in, what each policy said,
//! what the guardrails did, what was written. Kept in a bounded per-workload
//! log and served by the admin API.

use crate::guardrails::{Clamp, Outcome};
use crate::telemetry::Metrics;
use serde::{Serialize, Serializer};
use std::collections::VecDeque;
use std::sync::Arc;

/// What one policy said in one evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyVerdict {
    /// `name@version` (shared with the loaded policy, as is the digest).
    pub policy: Arc<str>,
    pub digest: Arc<str>,
    /// Desired replicas, when the policy gave one.
    pub desired: Option<u32>,
    pub reason: String,
    /// Error kind (`timeout`, `trap`, `declined`, …) when it did not decide.
    pub error: Option<String>,
    pub duration_us: u64,
    /// True when this workload was rolled back to this version after faults.
    pub rolled_back: bool,
}

/// One decision of one workload.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionRecord {
    pub at_ms: u64,
    pub workload: String,
    /// sha256 of the snapshot JSON the policies saw (without their state).
    pub inputs_digest: InputsDigest,
    /// Short summary of the inputs: replicas, pods, metric values.
    pub inputs: String,
    pub current_replicas: u32,
    pub policies: Vec<PolicyVerdict>,
    /// Evaluated beside the active policies, never actuated.
    pub shadow: Option<Box<PolicyVerdict>>,
    /// Whether the shadow would have chosen differently.
    pub shadow_diverged: bool,
    pub guardrails: Outcome,
    /// True when the new count was written to the cluster.
    pub applied: bool,
    /// Why writing failed, if it did.
    pub apply_error: Option<String>,
    /// Where the time of this evaluation went.
    pub timing: Timing,
}

/// A sha256, kept as bytes (a fleet keeps hundreds of thousands of
/// records) and shown as lowercase hex; empty when nothing was observed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InputsDigest(pub Option<[u8; 32]>);

impl Serialize for InputsDigest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.map(hex::encode).unwrap_or_default())
    }
}

/// Where the time of one evaluation went, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Timing {
    /// From the arrival of the oldest signal it acted on to the start of the
    /// evaluation (0 without signals).
    pub signal_wait_us: u64,
    /// Reading the target through the cluster port.
    pub observe_us: u64,
    /// The policy calls (and the shadow), waiting for a slot included.
    pub policies_us: u64,
    /// Deletion costs and the `/scale` write (0 without a write).
    pub write_us: u64,
}

impl DecisionRecord {
    /// Bounded label of what came of it: `scaled`, `failed_write`,
    /// `dry_run`, `standby` or `unchanged`.
    pub fn outcome(&self) -> &'static str {
        let clamped = |kind: fn(&Clamp) -> bool| self.guardrails.clamps.iter().any(kind);
        if self.applied {
            "scaled"
        } else if self.apply_error.is_some() {
            "failed_write"
        } else if clamped(|c| matches!(c, Clamp::DryRun { .. })) {
            "dry_run"
        } else if clamped(|c| matches!(c, Clamp::Standby { .. })) {
            "standby"
        } else {
            "unchanged"
        }
    }

    /// Counts the decision, its clamps and its policy calls.
    pub fn count(&self, metrics: &Metrics) {
        Metrics::count(&metrics.decisions, self.outcome());
        for clamp in &self.guardrails.clamps {
            Metrics::count(&metrics.clamps, clamp.metric_label());
        }
        for verdict in self.policies.iter().chain(self.shadow.as_deref()) {
            metrics.evaluation_seconds.observe(verdict.duration_us as f64 / 1e6);
        }
    }
}

/// Appends to a queue of at most `capacity` items, dropping the oldest.
fn push_bounded<T>(queue: &mut VecDeque<T>, item: T, capacity: usize) {
    if queue.len() >= capacity.max(1) {
        queue.pop_front();
    }
    queue.push_back(item);
}

/// A fixed-capacity log, oldest dropped first.
#[derive(Debug, Clone)]
pub struct DecisionLog {
    records: VecDeque<DecisionRecord>,
    capacity: usize,
}

impl DecisionLog {
    pub fn new(capacity: usize) -> DecisionLog {
        DecisionLog { records: VecDeque::with_capacity(capacity.min(64)), capacity: capacity.max(1) }
    }

    pub fn push(&mut self, record: DecisionRecord) {
        push_bounded(&mut self.records, record, self.capacity);
    }

    /// Newest first.
    pub fn recent(&self, limit: usize) -> Vec<DecisionRecord> {
        self.records.iter().rev().take(limit).cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}
