//! `target-tracking`: desired = ceil(metric / target per replica).
//!
//! The small algorithm implemented identically in Rust (here), Python
//! (`plugins/python/target-tracking`) and JavaScript
//! (`plugins/js/target-tracking`), each on its language's SDK; the host's
//! tests check that all three decide the same on the same snapshots and
//! publish the same params schema. Keep the three in step.
//!
//! params: `{"metric": "rps", "target": 100, "max_age_seconds": 60}`
//! - no such metric → `missing-input` error;
//! - metric older than `max_age_seconds` → no opinion;
//! - on scale-in, per-pod samples become deletion costs (least loaded first);
//! - state: the last desired count (a JSON number).

use scalegate_policy_sdk::prelude::*;

/// Tracks one metric against a target per replica.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Name of the metric in the snapshot.
    metric: String,
    /// What one replica should carry.
    #[schemars(extend("exclusiveMinimum" = 0))]
    target: f64,
    /// Older metrics give no opinion.
    #[serde(default = "sixty")]
    #[schemars(range(min = 0))]
    max_age_seconds: f64,
}

fn sixty() -> f64 {
    60.0
}

struct TargetTracking;

impl Policy for TargetTracking {
    type Params = Params;
    const INFO: Info = Info::new(
        "target-tracking",
        "1.0.0",
        "desired = ceil(metric / target per replica); least-loaded pods removed first",
    )
    .reads(&["metrics"]);

    fn decide(snapshot: Snapshot, params: &Params) -> Result<Decision, PolicyError> {
        let metric = match snapshot.fresh_metric(&params.metric, (params.max_age_seconds * 1000.0) as u64) {
            Ok(metric) => metric,
            Err(stale @ Unusable::Stale { .. }) => return Ok(Decision::no_opinion(stale.to_string())),
            Err(missing) => return Err(missing.into()),
        };
        let ratio = metric.value.max(0.0) / params.target;
        let desired = ratio.ceil().min(f64::from(u32::MAX)) as u32;
        let percent = (metric.value.max(0.0) * 100.0 / params.target).floor() as i64;
        let mut decision = Decision::replicas(
            desired,
            format!("{} at {}% of one replica's target -> {} replicas", params.metric, percent, desired),
        )
        .with_metric("replicas-needed", ratio)
        .with_state(&desired)?;
        if desired < snapshot.workload.current_replicas {
            decision = decision.with_deletion_costs(snapshot.deletion_costs_by(metric));
        }
        Ok(decision)
    }
}

scalegate_policy_sdk::export_policy!(TargetTracking);

#[cfg(test)]
mod tests {
    use super::*;
    use scalegate_policy_sdk::testing;

    const SCALE_IN: &str = "../../examples/snapshots/target-tracking-scale-in.json";

    #[test]
    fn scales_in_and_ranks_the_least_loaded_pod_first() {
        let decision = testing::evaluate_file::<TargetTracking>(SCALE_IN).unwrap();
        assert!(decision.desired_replicas.unwrap() < testing::snapshot_file(SCALE_IN).workload.current_replicas);
        let lowest = decision.deletion_costs.iter().min_by_key(|c| c.cost).expect("costs on scale-in");
        assert!(decision.deletion_costs.iter().all(|c| c.cost >= lowest.cost));
        assert_eq!(decision.state, decision.desired_replicas.unwrap().to_string().into_bytes());
    }

    #[test]
    fn a_stale_metric_gives_no_opinion_and_a_missing_one_an_error() {
        let mut snapshot = testing::snapshot_file(SCALE_IN);
        snapshot.now_ms += 3_600_000;
        let decision = testing::evaluate::<TargetTracking>(&snapshot).unwrap();
        assert_eq!(decision.desired_replicas, None);
        assert!(decision.reason.contains("stale"), "{}", decision.reason);
        snapshot.metrics.clear();
        assert!(matches!(testing::evaluate::<TargetTracking>(&snapshot), Err(PolicyError::MissingInput(_))));
    }
}
