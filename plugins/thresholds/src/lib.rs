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

use scalegate_policy_sdk::prelude::*;
use std::collections::BTreeMap;

/// The metric, its smoothing and the replica levels.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Name of the metric in the snapshot.
    metric: String,
    /// Weight of the newest value in the moving average.
    #[serde(default = "default_alpha")]
    #[schemars(extend("exclusiveMinimum" = 0, "maximum" = 1))]
    alpha: f64,
    /// Replica count → `[upper, lower]`: N pods serve lower…upper
    /// (`lower <= upper`, checked after the schema).
    #[schemars(extend("minProperties" = 1))]
    levels: BTreeMap<u32, [f64; 2]>,
    /// Older metrics give no opinion.
    #[serde(default = "sixty")]
    #[schemars(range(min = 0))]
    max_age_seconds: f64,
}

fn default_alpha() -> f64 {
    0.7
}

fn sixty() -> f64 {
    60.0
}

/// (replicas, upper, lower), by replicas; a band with lower > upper is refused.
fn bands(levels: &BTreeMap<u32, [f64; 2]>) -> Result<Vec<(u32, f64, f64)>, PolicyError> {
    levels
        .iter()
        .map(|(&replicas, &[upper, lower])| {
            if lower <= upper {
                Ok((replicas, upper, lower))
            } else {
                Err(PolicyError::InvalidParams(format!(
                    "params.levels.{replicas} must be [upper, lower] with lower <= upper"
                )))
            }
        })
        .collect()
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

struct Thresholds;

impl Policy for Thresholds {
    type Params = Params;
    const INFO: Info = Info::new(
        "thresholds",
        env!("CARGO_PKG_VERSION"),
        "Replica levels by overlapping bands of an exponentially smoothed metric",
    )
    .reads(&["metrics", "state"]);

    fn prepare(params: Params) -> Result<Params, PolicyError> {
        bands(&params.levels)?;
        Ok(params)
    }

    fn decide(snapshot: Snapshot, params: &Params) -> Result<Decision, PolicyError> {
        let levels = bands(&params.levels)?;
        let metric = match snapshot.fresh_metric(&params.metric, (params.max_age_seconds * 1000.0) as u64) {
            Ok(metric) => metric,
            Err(stale @ Unusable::Stale { .. }) => {
                // the average is kept as it was
                let mut decision = Decision::no_opinion(stale.to_string());
                decision.state = snapshot.state.clone();
                return Ok(decision);
            }
            Err(missing) => return Err(missing.into()),
        };
        let previous = snapshot.state::<f64>().filter(|e| e.is_finite());
        let value = metric.value.max(0.0);
        let ema = match previous {
            Some(previous) => params.alpha * value + (1.0 - params.alpha) * previous,
            None => value,
        };
        let current = snapshot.workload.current_replicas;
        let (desired, why) = level(&levels, current, ema);
        Decision::replicas(desired, format!("{} ema {why} -> {desired}", params.metric))
            .with_metric(format!("{}-ema", params.metric), ema)
            .with_state(&ema)
    }
}

scalegate_policy_sdk::export_policy!(Thresholds);

#[cfg(test)]
mod tests {
    use super::*;
    use scalegate_policy_sdk::testing;

    const EXAMPLE: &str = "../../examples/prometheus-ema/snapshot.json";

    #[test]
    fn the_average_travels_in_the_state_from_call_to_call() {
        // rps steps from 65 to 5: the EMA (alpha 0.7) walks down, the level follows with hysteresis
        let decisions = testing::evaluate_sequence::<Thresholds>(4, |step| {
            let mut snapshot = testing::snapshot_file(EXAMPLE);
            snapshot.metrics[0].value = if step == 0 { 65.0 } else { 5.0 };
            snapshot.workload.current_replicas = 4;
            snapshot
        });
        let emas: Vec<f64> = decisions.iter().map(|d| d.as_ref().unwrap().metrics[0].value).collect();
        // the sequence starts without state: the first value is taken as it is
        assert_eq!(emas[0], 65.0);
        for pair in emas.windows(2) {
            assert!((pair[1] - (0.7 * 5.0 + 0.3 * pair[0])).abs() < 1e-9, "{emas:?}");
        }
        let last = decisions.last().unwrap().as_ref().unwrap();
        assert!(last.desired_replicas.unwrap() < 4, "{}", last.reason);
    }
}
