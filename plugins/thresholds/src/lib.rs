//! `thresholds`: replica levels chosen by bands of a smoothed metric — the
//! Prometheus threshold/EMA autoscaler, as a policy.
//!
//! - The metric (e.g. rps) is smoothed with an exponential moving average:
//!   `ema = alpha × value + (1 − alpha) × previous ema` (the first value is
//!   taken as it is); the average travels in `state`.
//! - `levels` maps a replica count to its band `[upper, lower]`: "N pods
//!   serve lower…upper". Bands overlap, which gives hysteresis: at N pods
//!   (counts above the highest level use the highest band), `ema >= upper`
//!   moves up to the smallest level whose upper bound is above the ema,
//!   `ema < lower` moves down to the largest level whose lower bound is at
//!   most the ema; in between nothing changes.
//! - How fast and how often are the host's guardrails (`max_step_up`,
//!   `cooldown_up`…), not this policy's.
//! - A metric older than `max_age_seconds` (default 60) → no opinion.
//!
//! params: `{"metric": "rps", "alpha": 0.7,
//!           "levels": {"1": [10, 0], "2": [30, 8], "3": [60, 25], "4": [100, 50], "5": [999999, 90]}}`

use scalegate_policy_sdk::Guest;
use scalegate_policy_sdk::types::{Decision, PolicyError, PolicyInfo, ReportedMetric, Snapshot};

struct Thresholds;

struct Params {
    metric: String,
    alpha: f64,
    /// (replicas, upper, lower), by replicas.
    levels: Vec<(u32, f64, f64)>,
    max_age_ms: u64,
}

fn params(text: &str) -> Result<Params, PolicyError> {
    let invalid = |m: String| PolicyError::InvalidParams(m);
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| invalid(format!("params are not JSON: {e}")))?;
    let metric =
        value.get("metric").and_then(|m| m.as_str()).ok_or_else(|| invalid("params.metric must be a string".into()))?;
    let alpha = match value.get("alpha") {
        None => 0.7,
        Some(a) => a
            .as_f64()
            .filter(|a| *a > 0.0 && *a <= 1.0)
            .ok_or_else(|| invalid("params.alpha must be a number in (0, 1]".into()))?,
    };
    let object = value
        .get("levels")
        .and_then(|l| l.as_object())
        .filter(|l| !l.is_empty())
        .ok_or_else(|| invalid("params.levels must map replica counts to [upper, lower]".into()))?;
    let mut levels = Vec::new();
    for (key, band) in object {
        let replicas: u32 =
            key.parse().map_err(|_| invalid(format!("params.levels: {key:?} is not a replica count")))?;
        let pair = band.as_array().filter(|b| b.len() == 2).and_then(|b| Some((b[0].as_f64()?, b[1].as_f64()?)));
        let Some((upper, lower)) = pair.filter(|(upper, lower)| lower <= upper) else {
            return Err(invalid(format!("params.levels.{key} must be [upper, lower] with lower <= upper")));
        };
        levels.push((replicas, upper, lower));
    }
    levels.sort_by_key(|l| l.0);
    let max_age = match value.get("max_age_seconds") {
        None => 60.0,
        Some(v) => v
            .as_f64()
            .filter(|s| *s >= 0.0)
            .ok_or_else(|| invalid("params.max_age_seconds must be a number >= 0".into()))?,
    };
    Ok(Params { metric: metric.to_string(), alpha, levels, max_age_ms: (max_age * 1000.0) as u64 })
}

/// The level to run at `current` replicas with the smoothed value `ema`.
fn level(levels: &[(u32, f64, f64)], current: u32, ema: f64) -> (u32, String) {
    // the band of the current count: its own level, or the nearest below (or the lowest)
    let index = levels.iter().rposition(|l| l.0 <= current).unwrap_or(0);
    let (at, upper, lower) = levels[index];
    if ema >= upper && index + 1 < levels.len() {
        let to = levels[index + 1..].iter().find(|l| ema < l.1).unwrap_or(&levels[levels.len() - 1]);
        return (to.0, format!("{ema:.1} >= {upper} (upper bound at {at})"));
    }
    if ema < lower && index > 0 {
        let to = levels[..index].iter().rev().find(|l| ema >= l.2).unwrap_or(&levels[0]);
        return (to.0, format!("{ema:.1} < {lower} (lower bound at {at})"));
    }
    (current, format!("{ema:.1} within {lower}..{upper} (band of {at})"))
}

impl Guest for Thresholds {
    fn metadata() -> PolicyInfo {
        PolicyInfo {
            name: "thresholds".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Replica levels by overlapping bands of an exponentially smoothed metric".into(),
            params_schema: r#"{"type":"object","required":["metric","levels"],"properties":{"metric":{"type":"string"},"alpha":{"type":"number","exclusiveMinimum":0,"maximum":1,"default":0.7},"levels":{"type":"object","additionalProperties":{"type":"array","items":{"type":"number"},"minItems":2,"maxItems":2}},"max_age_seconds":{"type":"number","minimum":0,"default":60}},"additionalProperties":false}"#.into(),
            reads: vec!["metrics".into(), "state".into()],
        }
    }

    fn evaluate(snapshot: Snapshot) -> Result<Decision, PolicyError> {
        let params = params(&snapshot.params)?;
        let metric = snapshot
            .metric(&params.metric)
            .ok_or_else(|| PolicyError::MissingInput(format!("metric {} is not in the snapshot", params.metric)))?;
        let age_ms = snapshot.now_ms.saturating_sub(metric.timestamp_ms);
        if age_ms > params.max_age_ms {
            let mut decision = Decision::no_opinion(format!("metric {} is stale ({} ms old)", params.metric, age_ms));
            decision.state = snapshot.state.clone();
            return Ok(decision);
        }
        let previous =
            std::str::from_utf8(&snapshot.state).ok().and_then(|s| s.parse::<f64>().ok()).filter(|e| e.is_finite());
        let value = metric.value.max(0.0);
        let ema = match previous {
            Some(previous) => params.alpha * value + (1.0 - params.alpha) * previous,
            None => value,
        };
        let current = snapshot.workload.current_replicas;
        let (desired, why) = level(&params.levels, current, ema);
        let mut decision = Decision::replicas(desired, format!("{} ema {why} -> {desired}", params.metric));
        decision.state = ema.to_string().into_bytes();
        decision.metrics = vec![ReportedMetric { name: format!("{}-ema", params.metric), value: ema }];
        Ok(decision)
    }
}

scalegate_policy_sdk::export_policy!(Thresholds);
