//! `{{name}}`: desired = ceil(metric / target per replica).
//!
//! A starting point: change `Params` (its JSON Schema is generated from the
//! type) and `decide`, keep the cases in `cases/` passing.

use scalegate_policy_sdk::prelude::*;

/// `{"metric": "rps", "target": 100}`
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Name of the metric in the snapshot (as the binding's inputs call it).
    pub metric: String,
    /// What one replica should carry.
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub target: f64,
    /// Older values give no opinion.
    #[serde(default = "sixty")]
    #[schemars(range(min = 0))]
    pub max_age_seconds: f64,
}

fn sixty() -> f64 {
    60.0
}

pub struct {{type}};

impl Policy for {{type}} {
    type Params = Params;
    const INFO: Info = Info::new("{{name}}", env!("CARGO_PKG_VERSION"), "desired = ceil(metric / target per replica)");

    fn decide(snapshot: Snapshot, params: &Params) -> Result<Decision, PolicyError> {
        let metric = match snapshot.fresh_metric(&params.metric, (params.max_age_seconds * 1000.0) as u64) {
            Ok(metric) => metric,
            Err(stale @ Unusable::Stale { .. }) => return Ok(Decision::no_opinion(stale.to_string())),
            Err(missing) => return Err(missing.into()),
        };
        let needed = metric.value.max(0.0) / params.target;
        let desired = needed.ceil().min(f64::from(u32::MAX)) as u32;
        let reason = format!("{} {} / {} per replica -> {desired}", params.metric, metric.value, params.target);
        Ok(Decision::replicas(desired, reason).with_metric("replicas-needed", needed))
    }
}

scalegate_policy_sdk::export_policy!({{type}});

#[cfg(test)]
mod tests {
    use super::*;
    use scalegate_policy_sdk::testing;

    #[test]
    fn needs_three_replicas_for_250_at_100() {
        let mut snapshot = testing::snapshot(
            r#"{"now_ms": 1000, "workload": {"name": "web", "current_replicas": 2, "max_replicas": 10},
                "metrics": [{"name": "rps", "value": 250, "timestamp_ms": 1000}],
                "params": {"metric": "rps", "target": 100}}"#,
        )
        .unwrap();
        assert_eq!(testing::evaluate::<{{type}}>(&snapshot).unwrap().desired_replicas, Some(3));
        snapshot.params = serde_json::json!({"metric": "rps", "target": 0});
        assert!(testing::evaluate::<{{type}}>(&snapshot).is_err());
    }
}
