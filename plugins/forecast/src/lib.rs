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

use scalegate_policy_sdk::prelude::*;

/// Which forecast to follow and how far ahead.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Name of the forecast series in the snapshot.
    forecast: String,
    /// How far ahead capacity must be in place.
    #[serde(default = "five_minutes")]
    #[schemars(range(min = 0))]
    lead_time_seconds: f64,
    /// Load one replica carries; absent: the series are replica counts.
    #[serde(default)]
    #[schemars(extend("exclusiveMinimum" = 0))]
    target: Option<f64>,
    /// Older forecasts give no opinion.
    #[serde(default = "fifteen_minutes")]
    #[schemars(range(min = 0))]
    max_age_seconds: f64,
}

fn five_minutes() -> f64 {
    300.0
}

fn fifteen_minutes() -> f64 {
    900.0
}

struct ForecastPolicy;

impl Policy for ForecastPolicy {
    type Params = Params;
    const INFO: Info = Info::new(
        "forecast",
        env!("CARGO_PKG_VERSION"),
        "Scales ahead of a forecast: the maximum over the lead time, as replicas or load / target",
    )
    .reads(&["forecasts"]);

    fn decide(snapshot: Snapshot, params: &Params) -> Result<Decision, PolicyError> {
        let lead_ms = (params.lead_time_seconds * 1000.0) as u64;
        let max_age_ms = (params.max_age_seconds * 1000.0) as u64;
        let forecast =
            snapshot.forecasts.iter().find(|f| f.name == params.forecast).ok_or_else(|| {
                PolicyError::MissingInput(format!("forecast {} is not in the snapshot", params.forecast))
            })?;
        let now = snapshot.now_ms;
        let age_ms = now.saturating_sub(forecast.generated_ms);
        if age_ms > max_age_ms {
            return Ok(Decision::no_opinion(format!("forecast {} is stale ({} s old)", forecast.name, age_ms / 1000)));
        }
        let step_ms = u64::from(forecast.step_seconds.max(1)) * 1000;
        let first = (now.saturating_sub(forecast.start_ms) / step_ms) as usize;
        let steps = (lead_ms / step_ms).max(1) as usize;
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
        Ok(Decision::replicas(
            desired,
            format!(
                "forecast {} over the next {} s ({} points): {what} -> {desired}",
                forecast.name,
                lead_ms / 1000,
                window.len()
            ),
        )
        .with_metric("desired_replicas", f64::from(desired)))
    }
}

scalegate_policy_sdk::export_policy!(ForecastPolicy);
