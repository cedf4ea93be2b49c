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
    /// Ready replicas when it was observed.
    pub ready_replicas: u32,
    pub policies: Vec<PolicyVerdict>,
    /// How the policies' counts became one, when there was a choice
    /// (`combine` rules, `only` restrictions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub combined: Option<String>,
    /// Evaluated beside the active policies, never actuated.
    pub shadow: Option<Box<PolicyVerdict>>,
    /// Whether the shadow would have chosen differently.
    pub shadow_diverged: bool,
    pub guardrails: Outcome,
    /// True when the new count was written to the cluster.
    pub applied: bool,
    /// Why writing failed, if it did.
    pub apply_error: Option<String>,
    /// The replicas served to KEDA (actuator `keda`), which scales the workload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub served: Option<u32>,
    /// Vertical scaling (workloads with `vertical`): recommendations and the resize planned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vertical: Option<Box<crate::vertical::Record>>,
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
    /// About how many bytes the record holds (its strings and lists, and
    /// itself), for the per-workload byte budget.
    pub fn approx_bytes(&self) -> usize {
        let verdict = |v: &PolicyVerdict| {
            std::mem::size_of::<PolicyVerdict>() + v.reason.len() + v.error.as_ref().map_or(0, String::len)
        };
        let clamp_text = |c: &Clamp| match c {
            Clamp::NoOpinion { reason } | Clamp::Fault { reason } => reason.len(),
            Clamp::StaleHold { inputs, .. } => inputs.iter().map(String::len).sum(),
            _ => 0,
        };
        std::mem::size_of::<DecisionRecord>()
            + self.workload.len()
            + self.inputs.len()
            + self.policies.iter().map(verdict).sum::<usize>()
            + self.combined.as_ref().map_or(0, String::len)
            + self.shadow.as_deref().map_or(0, verdict)
            + self.guardrails.clamps.iter().map(|c| std::mem::size_of::<Clamp>() + clamp_text(c)).sum::<usize>()
            + self.apply_error.as_ref().map_or(0, String::len)
            + self.vertical.as_deref().map_or(0, crate::vertical::Record::approx_bytes)
    }

    /// The decision on one line, for logs and the demo:
    /// `shop/web  3 → 9   hpa@0.1.0 wants 9  [replicas 3 (3 ready), …]  guardrails: max_step_up`.
    pub fn line(&self) -> String {
        let change = match (self.applied, self.served) {
            (true, _) => format!("{:>2} → {:<2}", self.current_replicas, self.guardrails.replicas),
            (false, Some(served)) => format!("{:>2} ⇢ {served:<2} (served to KEDA)", self.current_replicas),
            (false, None) => format!("{:>2}      ", self.current_replicas),
        };
        let verdicts: Vec<String> = self
            .policies
            .iter()
            .map(|p| match (&p.desired, &p.error) {
                (Some(d), _) => format!("{} wants {d}", p.policy),
                (None, Some(kind)) => format!("{} {kind}", p.policy),
                (None, None) => format!("{} no opinion", p.policy),
            })
            .collect();
        let clamps: Vec<&str> = self.guardrails.clamps.iter().map(|c| c.metric_label()).collect();
        let mut text = format!("{:<10} {change}  {}  [{}]", self.workload, verdicts.join(", "), self.inputs);
        if let Some(combined) = &self.combined {
            text.push_str(&format!("  ({combined})"));
        }
        if !clamps.is_empty() {
            text.push_str(&format!("  guardrails: {}", clamps.join(",")));
        }
        if let Some(shadow) = self.shadow.as_ref().filter(|_| self.shadow_diverged) {
            text.push_str(&format!("  shadow would pick {}", shadow.desired.map_or("-".into(), |d| d.to_string())));
        }
        if let Some(error) = &self.apply_error {
            text.push_str(&format!("  write failed: {error}"));
        }
        text
    }

    /// Worth a log line at `info`: it scaled (or failed to), served KEDA a
    /// new count, a policy faulted, or a guardrail changed what was
    /// wanted (a policy with no opinion, or a standby, is routine).
    pub fn notable(&self) -> bool {
        self.applied
            || self.apply_error.is_some()
            || self.served.is_some_and(|served| served != self.current_replicas)
            || self.policies.iter().any(|p| p.error.as_deref().is_some_and(|e| e != "declined"))
            || self.guardrails.clamps.iter().any(|c| !matches!(c, Clamp::NoOpinion { .. } | Clamp::Standby { .. }))
    }

    /// Bounded label of what came of it: `scaled`, `served` (to KEDA),
    /// `failed_write`, `dry_run`, `standby` or `unchanged`.
    pub fn outcome(&self) -> &'static str {
        let clamped = |kind: fn(&Clamp) -> bool| self.guardrails.clamps.iter().any(kind);
        if self.served.is_some() {
            "served"
        } else if self.applied {
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

/// Decision records kept in memory across all workloads, about: each
/// workload keeps its configured number (16) while the fleet has room, and
/// fewer, at least 4, beyond 100,000 in all — a record takes ~500 B, so
/// 10,000 workloads keep ~50 MB of them rather than ~80 MB. Every applied
/// decision also goes to the sinks (the Kafka audit topic).
pub const DECISION_RECORDS: usize = 100_000;

/// Bytes of decision records one workload keeps at most: with every string
/// a policy returns bounded (16 KiB reasons), a workload whose policy fails
/// with long messages keeps fewer records, never fewer than the newest one.
pub const DECISION_LOG_BYTES: usize = 64 << 10;

/// A log bounded in records and in bytes, oldest dropped first.
#[derive(Debug, Clone)]
pub struct DecisionLog {
    records: VecDeque<DecisionRecord>,
    capacity: usize,
    /// `approx_bytes` of the records kept.
    bytes: usize,
}

impl DecisionLog {
    pub fn new(capacity: usize) -> DecisionLog {
        DecisionLog { records: VecDeque::new(), capacity: capacity.max(1), bytes: 0 }
    }

    fn pop_oldest(&mut self) {
        if let Some(record) = self.records.pop_front() {
            self.bytes -= record.approx_bytes().min(self.bytes);
        }
    }

    /// Bytes the records kept hold, about.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Records each of `workloads` keeps when each may keep `per_workload`.
    pub fn capacity_for(per_workload: usize, workloads: usize) -> usize {
        let per_workload = per_workload.max(1);
        (DECISION_RECORDS / workloads.max(1)).clamp(per_workload.min(4), per_workload)
    }

    /// Keeps at most `capacity` records from now on (the oldest go first).
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
        while self.records.len() > self.capacity {
            self.pop_oldest();
        }
        self.records.shrink_to(self.capacity);
    }

    pub fn push(&mut self, record: DecisionRecord) {
        if self.records.capacity() == 0 {
            // room for exactly the records kept, on first use
            self.records.reserve_exact(self.capacity);
        }
        if self.records.len() >= self.capacity {
            self.pop_oldest();
        }
        self.bytes += record.approx_bytes();
        self.records.push_back(record);
        while self.bytes > DECISION_LOG_BYTES && self.records.len() > 1 {
            self.pop_oldest();
        }
    }

    /// The newest record.
    pub fn last(&self) -> Option<&DecisionRecord> {
        self.records.back()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(at_ms: u64) -> DecisionRecord {
        DecisionRecord {
            at_ms,
            workload: "shop/web".into(),
            inputs_digest: InputsDigest::default(),
            inputs: String::new(),
            current_replicas: 1,
            ready_replicas: 1,
            policies: vec![],
            combined: None,
            shadow: None,
            shadow_diverged: false,
            guardrails: Outcome { replicas: 1, actuate: false, clamps: vec![] },
            applied: false,
            apply_error: None,
            served: None,
            vertical: None,
            timing: Timing::default(),
        }
    }

    #[test]
    fn notable_decisions_and_their_line() {
        let mut scaled = record(1);
        scaled.applied = true;
        scaled.guardrails.replicas = 5;
        scaled.policies.push(PolicyVerdict {
            policy: "hpa@0.1.0".into(),
            digest: "d".into(),
            desired: Some(5),
            reason: "cpu".into(),
            error: None,
            duration_us: 1,
            rolled_back: false,
        });
        assert!(scaled.notable());
        let line = scaled.line();
        assert!(
            line.starts_with("shop/web") && line.contains(" 1 → 5 ") && line.contains("hpa@0.1.0 wants 5"),
            "{line}"
        );
        let routine = record(2);
        assert!(!routine.notable(), "nothing happened");
        let mut no_opinion = record(3);
        no_opinion.guardrails.clamps.push(Clamp::NoOpinion { reason: "idle".into() });
        assert!(!no_opinion.notable());
        let mut clamped = record(4);
        clamped.guardrails.clamps.push(Clamp::Max { from: 30, to: 20 });
        assert!(clamped.notable());
        let mut served = record(5);
        served.served = Some(4);
        assert!(served.notable() && served.line().contains("⇢ 4"), "{}", served.line());
        served.served = Some(1);
        assert!(!served.notable(), "served the count it has");
    }

    #[test]
    fn the_log_is_bounded_in_bytes_too() {
        let mut log = DecisionLog::new(16);
        let mut long = record(1);
        long.policies.push(PolicyVerdict {
            policy: "p@1.0.0".into(),
            digest: "d".into(),
            desired: None,
            reason: "x".repeat(16 << 10),
            error: Some("declined".into()),
            duration_us: 1,
            rolled_back: false,
        });
        for at in 0..16 {
            log.push(DecisionRecord { at_ms: at, ..long.clone() });
            assert!(log.bytes() <= DECISION_LOG_BYTES, "{} bytes kept", log.bytes());
        }
        assert_eq!(log.len(), 3, "three 16 KiB records fit in 64 KiB");
        assert_eq!(log.recent(1)[0].at_ms, 15, "the newest is kept");
        // short records: the count bounds
        for at in 100..120 {
            log.push(record(at));
        }
        assert_eq!(log.len(), 16);
        // a single record over the budget is still kept (the newest)
        let mut huge = long.clone();
        huge.policies[0].reason = "y".repeat(100 << 10);
        log.push(huge);
        assert_eq!(log.len(), 1);
    }

    #[test]
    fn a_large_fleet_keeps_fewer_records_each_but_never_fewer_than_four() {
        assert_eq!(DecisionLog::capacity_for(16, 1), 16);
        assert_eq!(DecisionLog::capacity_for(16, 6_250), 16);
        assert_eq!(DecisionLog::capacity_for(16, 10_000), 10);
        assert_eq!(DecisionLog::capacity_for(16, 1_000_000), 4);
        // a smaller configured log is not raised to the floor
        assert_eq!(DecisionLog::capacity_for(2, 1_000_000), 2);
    }

    #[test]
    fn lowering_the_capacity_drops_the_oldest_records() {
        let mut log = DecisionLog::new(16);
        for at in 0..16 {
            log.push(record(at));
        }
        log.set_capacity(10);
        assert_eq!(log.len(), 10);
        let kept: Vec<u64> = log.recent(100).iter().map(|r| r.at_ms).collect();
        assert_eq!(kept, (6..16).rev().collect::<Vec<_>>());
        log.push(record(16));
        assert_eq!(log.len(), 10);
        assert_eq!(log.recent(1)[0].at_ms, 16);
    }

    #[test]
    fn the_inputs_digest_reads_as_hex_or_empty() {
        assert_eq!(serde_json::to_value(InputsDigest(Some([0xab; 32]))).unwrap(), "ab".repeat(32));
        assert_eq!(serde_json::to_value(InputsDigest(None)).unwrap(), "");
    }
}
