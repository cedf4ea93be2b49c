//! Captured evaluations: the exact snapshot each recent decision of a
//! workload was made on, with every binding's params and state as the
//! policy received them and what it answered — so that "what would v2 have
//! done" can be asked of real inputs (`scalegate replay`). Served by the
//! admin API (`GET /v1/workloads/{ns}/{name}/snapshots`).
//!
//! Bounded like the decision log: a number per workload (`--capture`,
//! default 8), fewer in a large fleet (at most [`CAPTURED_SNAPSHOTS`] in
//! all), and at most [`CAPTURE_BYTES`] per workload, oldest dropped first.
//! The snapshot is kept as the JSON text the inputs digest was computed
//! from, so capturing costs no serialization.

use base64::Engine as _;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Arc;

/// Snapshots kept across the fleet at most.
pub const CAPTURED_SNAPSHOTS: usize = 20_000;

/// Bytes of captured snapshots one workload keeps at most (the newest is
/// always kept, however large).
pub const CAPTURE_BYTES: usize = 1 << 20;

/// One evaluation as captured.
#[derive(Debug, Clone)]
pub struct Captured {
    pub at_ms: u64,
    /// The snapshot JSON without params and state (what the inputs digest covers).
    pub snapshot: Arc<[u8]>,
    pub calls: Vec<CapturedCall>,
    /// The count decided after combining and guardrails.
    pub replicas: u32,
    pub applied: bool,
}

/// One binding's call within a captured evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct CapturedCall {
    /// The binding's name (`policies[].name`).
    pub name: String,
    /// `name@version` that was called.
    pub policy: Arc<str>,
    pub params: Arc<serde_json::Value>,
    /// The state it was given, base64 (as in a snapshot).
    #[serde(serialize_with = "base64_bytes")]
    pub state: Vec<u8>,
    pub desired: Option<u32>,
    pub reason: String,
    pub error: Option<String>,
}

fn base64_bytes<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
}

impl Captured {
    /// What this capture holds of its own. Params are not counted: they
    /// are the binding's, shared (an `Arc`) by every capture made while the
    /// configuration held them — counting them per capture over-counted a
    /// workload's memory by its params times the captures, and serialized
    /// them on every decision to do so.
    fn bytes(&self) -> usize {
        self.snapshot.len()
            + self
                .calls
                .iter()
                .map(|c| c.name.len() + c.reason.len() + c.state.len() + c.error.as_ref().map_or(0, String::len) + 64)
                .sum::<usize>()
    }

    /// The capture as served: the snapshot as `scalegate eval` reads it,
    /// carrying the first binding's params and state (so it evaluates as
    /// that call did), and every binding's call beside it.
    pub fn to_json(&self, workload: &str) -> serde_json::Value {
        let mut snapshot: serde_json::Value = serde_json::from_slice(&self.snapshot).unwrap_or_default();
        if let (Some(object), Some(first)) = (snapshot.as_object_mut(), self.calls.first()) {
            object.insert("params".into(), (*first.params).clone());
            object.insert("state".into(), base64::engine::general_purpose::STANDARD.encode(&first.state).into());
        }
        serde_json::json!({
            "at_ms": self.at_ms,
            "workload": workload,
            "snapshot": snapshot,
            "policies": self.calls,
            "replicas": self.replicas,
            "applied": self.applied,
        })
    }
}

/// A workload's recent captures, oldest first.
#[derive(Debug, Clone)]
pub struct CaptureLog {
    /// Each with its `Captured::bytes`, counted once.
    entries: VecDeque<(usize, Captured)>,
    capacity: usize,
    bytes: usize,
}

impl CaptureLog {
    pub fn new(capacity: usize) -> CaptureLog {
        CaptureLog { entries: VecDeque::new(), capacity, bytes: 0 }
    }

    /// Captures each of `workloads` keeps when each may keep `per_workload`.
    pub fn capacity_for(per_workload: usize, workloads: usize) -> usize {
        if per_workload == 0 {
            return 0;
        }
        (CAPTURED_SNAPSHOTS / workloads.max(1)).clamp(1, per_workload)
    }

    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
        while self.entries.len() > capacity {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((bytes, _)) = self.entries.pop_front() {
            self.bytes -= bytes.min(self.bytes);
        }
    }

    pub fn push(&mut self, entry: Captured) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity {
            self.pop_oldest();
        }
        let bytes = entry.bytes();
        self.bytes += bytes;
        self.entries.push_back((bytes, entry));
        while self.bytes > CAPTURE_BYTES && self.entries.len() > 1 {
            self.pop_oldest();
        }
    }

    /// The last `limit`, oldest first (the order to replay them in).
    pub fn recent(&self, limit: usize) -> Vec<Captured> {
        let skip = self.entries.len().saturating_sub(limit);
        self.entries.iter().skip(skip).map(|(_, entry)| entry.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured(at_ms: u64, snapshot_bytes: usize) -> Captured {
        let pad = "x".repeat(snapshot_bytes);
        let snapshot = format!(
            r#"{{"now_ms":{at_ms},"workload":{{"name":"web","current_replicas":2,"max_replicas":9}},"pad":"{pad}"}}"#
        );
        Captured {
            at_ms,
            snapshot: snapshot.into_bytes().into(),
            calls: vec![CapturedCall {
                name: "main".into(),
                policy: "fixed@0.2.0".into(),
                params: Arc::new(serde_json::json!({"replicas": 3})),
                state: b"s1".to_vec(),
                desired: Some(3),
                reason: "pinned".into(),
                error: None,
            }],
            replicas: 3,
            applied: true,
        }
    }

    #[test]
    fn bounded_in_count_and_bytes_oldest_first() {
        let mut log = CaptureLog::new(4);
        for at in 1..=6 {
            log.push(captured(at, 10));
        }
        assert_eq!(log.recent(10).iter().map(|c| c.at_ms).collect::<Vec<_>>(), [3, 4, 5, 6]);
        assert_eq!(log.recent(2).iter().map(|c| c.at_ms).collect::<Vec<_>>(), [5, 6]);
        // half a megabyte each: two fit, never fewer than the newest
        for at in 7..=9 {
            log.push(captured(at, CAPTURE_BYTES / 2 - 1_000));
        }
        assert_eq!(log.recent(10).iter().map(|c| c.at_ms).collect::<Vec<_>>(), [8, 9]);
        log.push(captured(10, 2 * CAPTURE_BYTES));
        assert_eq!(log.len(), 1);
        let mut off = CaptureLog::new(0);
        off.push(captured(1, 10));
        assert!(off.is_empty());
    }

    /// Large params are the binding's, one `Arc` for every capture: eight
    /// captures sharing 400 KB of params all stay (counted per capture
    /// they came to 3.2 MB, so only two did).
    #[test]
    fn params_shared_by_captures_are_not_counted_per_capture() {
        let params = Arc::new(serde_json::json!({"table": "p".repeat(400_000)}));
        let mut log = CaptureLog::new(8);
        for at in 1..=8 {
            let mut entry = captured(at, 100);
            entry.calls[0].params = params.clone();
            log.push(entry);
        }
        assert_eq!(log.len(), 8);
        assert!(log.bytes < 8 * 1_000, "{} bytes counted", log.bytes);
    }

    #[test]
    fn fleets_share_a_total() {
        assert_eq!(CaptureLog::capacity_for(8, 1), 8);
        assert_eq!(CaptureLog::capacity_for(8, 10_000), 2);
        assert_eq!(CaptureLog::capacity_for(8, 1_000_000), 1);
        assert_eq!(CaptureLog::capacity_for(0, 1), 0);
    }

    #[test]
    fn served_as_an_eval_snapshot_with_the_first_bindings_params_and_state() {
        let json = captured(7, 0).to_json("shop/web");
        assert_eq!(json["snapshot"]["params"], serde_json::json!({"replicas": 3}));
        assert_eq!(json["snapshot"]["state"], "czE=");
        assert_eq!(json["policies"][0]["state"], "czE=");
        assert_eq!(json["policies"][0]["desired"], 3);
        assert_eq!((json["at_ms"].as_u64(), json["replicas"].as_u64()), (Some(7), Some(3)));
    }
}
