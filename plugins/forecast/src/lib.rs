//! `forecast`: scale ahead of predicted demand — the lead-time rule of a
//! forecast-driven KEDA external scaler, as a policy.
//!
//! The forecast named `params.forecast` (a series from the host's forecast
//! source, or any series in `snapshot.forecasts`) is read from the step
//! that contains `now` over the next `lead_time_seconds` — at least one
//! step, `lead_time / step_seconds` steps otherwise — and the maximum
//! decides: capacity is in place before the demand arrives.
//! - Without `target` the series are replica counts: desired = ceil(max).
//! - With `target` they are load (rps, messages): desired = ceil(max / target).
//! - A forecast older than `max_age_seconds` (default 900) or one whose
//!   points all lie in the past → no opinion; no such forecast → missing input.
//!
//! params: `{"forecast": "replicas", "lead_time_seconds": 600, "target": 100}`

use scalegate_policy_sdk::Guest;
use scalegate_policy_sdk::types::{Decision, PolicyError, PolicyInfo, ReportedMetric, Snapshot};

struct ForecastPolicy;

struct Params {
    forecast: String,
    lead_ms: u64,
    target: Option<f64>,
    max_age_ms: u64,
}

fn params(text: &str) -> Result<Params, PolicyError> {
    let invalid = |m: &str| PolicyError::InvalidParams(m.to_string());
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| PolicyError::InvalidParams(format!("params are not JSON: {e}")))?;
    let forecast =
        value.get("forecast").and_then(|f| f.as_str()).ok_or_else(|| invalid("params.forecast must be a string"))?;
    let seconds = |key: &str, default: f64| -> Result<f64, PolicyError> {
        match value.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .filter(|s| *s >= 0.0)
                .ok_or_else(|| PolicyError::InvalidParams(format!("params.{key} must be a number >= 0"))),
        }
    };
    let target = match value.get("target") {
        None => None,
        Some(t) => Some(t.as_f64().filter(|t| *t > 0.0).ok_or_else(|| invalid("params.target must be a number > 0"))?),
    };
    Ok(Params {
        forecast: forecast.to_string(),
        lead_ms: (seconds("lead_time_seconds", 300.0)? * 1000.0) as u64,
        target,
        max_age_ms: (seconds("max_age_seconds", 900.0)? * 1000.0) as u64,
    })
}

impl Guest for ForecastPolicy {
    fn metadata() -> PolicyInfo {
        PolicyInfo {
            name: "forecast".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Scales ahead of a forecast: the maximum over the lead time, as replicas or load / target".into(),
            params_schema: r#"{"type":"object","required":["forecast"],"properties":{"forecast":{"type":"string"},"lead_time_seconds":{"type":"number","minimum":0,"default":300},"target":{"type":"number","exclusiveMinimum":0},"max_age_seconds":{"type":"number","minimum":0,"default":900}},"additionalProperties":false}"#.into(),
            reads: vec!["forecasts".into()],
        }
    }

    fn evaluate(snapshot: Snapshot) -> Result<Decision, PolicyError> {
        let params = params(&snapshot.params)?;
        let forecast =
            snapshot.forecasts.iter().find(|f| f.name == params.forecast).ok_or_else(|| {
                PolicyError::MissingInput(format!("forecast {} is not in the snapshot", params.forecast))
            })?;
        let now = snapshot.now_ms;
        let age_ms = now.saturating_sub(forecast.generated_ms);
        if age_ms > params.max_age_ms {
            return Ok(Decision::no_opinion(format!("forecast {} is stale ({} s old)", forecast.name, age_ms / 1000)));
        }
        let step_ms = u64::from(forecast.step_seconds.max(1)) * 1000;
        let first = (now.saturating_sub(forecast.start_ms) / step_ms) as usize;
        let steps = (params.lead_ms / step_ms).max(1) as usize;
        let window: Vec<f64> =
            forecast.values.iter().skip(first).take(steps).copied().filter(|v| v.is_finite()).collect();
        let Some(peak) = window.iter().copied().reduce(f64::max) else {
            return Ok(Decision::no_opinion(format!("forecast {} has no point from now on", forecast.name)));
        };
        let needed = match params.target {
            Some(target) => peak.max(0.0) / target,
            None => peak.max(0.0),
        };
        let desired = needed.ceil().min(f64::from(u32::MAX)) as u32;
        let what = match params.target {
            Some(target) => format!("peak {peak} / target {target}"),
            None => format!("peak {peak} replicas"),
        };
        let mut decision = Decision::replicas(
            desired,
            format!(
                "forecast {} over the next {} s ({} points): {what} -> {desired}",
                forecast.name,
                params.lead_ms / 1000,
                window.len()
            ),
        );
        decision.metrics = vec![ReportedMetric { name: "desired_replicas".into(), value: f64::from(desired) }];
        Ok(decision)
    }
}

scalegate_policy_sdk::export_policy!(ForecastPolicy);
