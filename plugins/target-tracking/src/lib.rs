//! `target-tracking`: desired = ceil(metric / target per replica).
//!
//! The small algorithm implemented identically in Rust (here), Python
//! (`plugins/python/target-tracking`) and JavaScript
//! (`plugins/js/target-tracking`); the host's tests check that all three
//! decide the same on the same snapshots. Keep the three in step.
//!
//! params: `{"metric": "rps", "target": 100, "max_age_seconds": 60}`
//! - no such metric → `missing-input` error;
//! - metric older than `max_age_seconds` → no opinion;
//! - on scale-in, per-pod samples become deletion costs (least loaded first);
//! - state: the last desired count as decimal text.

use scalegate_policy_sdk::Guest;
use scalegate_policy_sdk::types::{Decision, PodDeletionCost, PolicyError, PolicyInfo, ReportedMetric, Snapshot};

struct TargetTracking;

struct Params {
    metric: String,
    target: f64,
    max_age_ms: u64,
}

fn params(json: &str) -> Result<Params, PolicyError> {
    let invalid = |m: &str| PolicyError::InvalidParams(m.to_string());
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| invalid(&format!("params are not JSON: {e}")))?;
    let metric =
        value.get("metric").and_then(|m| m.as_str()).ok_or_else(|| invalid("params.metric must be a string"))?;
    let target = value
        .get("target")
        .and_then(serde_json::Value::as_f64)
        .filter(|t| *t > 0.0)
        .ok_or_else(|| invalid("params.target must be a number > 0"))?;
    let max_age = match value.get("max_age_seconds") {
        None => 60.0,
        Some(v) => {
            v.as_f64().filter(|s| *s >= 0.0).ok_or_else(|| invalid("params.max_age_seconds must be a number >= 0"))?
        }
    };
    Ok(Params { metric: metric.to_string(), target, max_age_ms: (max_age * 1000.0) as u64 })
}

impl Guest for TargetTracking {
    fn metadata() -> PolicyInfo {
        PolicyInfo {
            name: "target-tracking".into(),
            version: "1.0.0".into(),
            description: "desired = ceil(metric / target per replica); least-loaded pods removed first".into(),
            params_schema: r#"{"type":"object","required":["metric","target"],"properties":{"metric":{"type":"string"},"target":{"type":"number","exclusiveMinimum":0},"max_age_seconds":{"type":"number","minimum":0,"default":60}}}"#.into(),
            reads: vec!["metrics".into()],
        }
    }

    fn evaluate(snapshot: Snapshot) -> Result<Decision, PolicyError> {
        let params = params(&snapshot.params)?;
        let metric = snapshot
            .metric(&params.metric)
            .ok_or_else(|| PolicyError::MissingInput(format!("metric {} is not in the snapshot", params.metric)))?;
        let age_ms = snapshot.now_ms.saturating_sub(metric.timestamp_ms);
        if age_ms > params.max_age_ms {
            return Ok(Decision::no_opinion(format!("metric {} is stale ({} ms old)", params.metric, age_ms)));
        }
        let ratio = metric.value.max(0.0) / params.target;
        let desired = ratio.ceil().min(f64::from(u32::MAX)) as u32;
        let percent = (metric.value.max(0.0) * 100.0 / params.target).floor() as i64;
        let mut decision = Decision::replicas(
            desired,
            format!("{} at {}% of one replica's target -> {} replicas", params.metric, percent, desired),
        );
        if desired < snapshot.workload.current_replicas {
            decision.deletion_costs = metric
                .pods
                .iter()
                .filter_map(|s| {
                    let pod = snapshot.pods.get(s.pod as usize)?;
                    let cost = s.value.floor().clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32;
                    Some(PodDeletionCost { pod: pod.name.clone(), cost })
                })
                .collect();
        }
        decision.metrics = vec![ReportedMetric { name: "replicas-needed".into(), value: ratio }];
        decision.state = desired.to_string().into_bytes();
        Ok(decision)
    }
}

scalegate_policy_sdk::export_policy!(TargetTracking);
