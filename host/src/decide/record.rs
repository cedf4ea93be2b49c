//! The audit record of one decision: what went in, what each policy said,
//! what the guardrails did, what was written. Kept in a bounded per-workload
//! log and served by the admin API.

use crate::guardrails::Outcome;
use serde::Serialize;
use std::collections::VecDeque;

/// What one policy said in one evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyVerdict {
    /// `name@version`.
    pub policy: String,
    pub digest: String,
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
    pub inputs_digest: String,
    /// Short summary of the inputs: replicas, pods, metric values.
    pub inputs: String,
    pub current_replicas: u32,
    pub policies: Vec<PolicyVerdict>,
    /// Evaluated beside the active policies, never actuated.
    pub shadow: Option<PolicyVerdict>,
    /// Whether the shadow would have chosen differently.
    pub shadow_diverged: bool,
    pub guardrails: Outcome,
    /// True when the new count was written to the cluster.
    pub applied: bool,
    /// Why writing failed, if it did.
    pub apply_error: Option<String>,
}

/// Appends to a queue of at most `capacity` items, dropping the oldest.
pub(super) fn push_bounded<T>(queue: &mut VecDeque<T>, item: T, capacity: usize) {
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
