//! `queue`: KEDA-compatible backlog scaling — a queue's backlog (NATS
//! JetStream pending messages, Kafka consumer lag, a Redis list length…)
//! divided by what one replica works through, with KEDA's activation
//! threshold and scale to zero.
//!
//! - backlog > `activation_threshold` (default 0): active, desired =
//!   `max(1, ceil(backlog / target))` — at least one replica on the first
//!   message;
//! - backlog ≤ `activation_threshold`: idle, desired = 0. The host keeps the
//!   replicas until the workload has been idle for its `idle_before_zero`
//!   (KEDA's `cooldownPeriod`, counted from the last activity) and only
//!   goes to zero when `min_replicas` is 0;
//! - a backlog older than `max_age_seconds` (default 60) → no opinion; no
//!   such metric → `missing-input`.
//!
//! This is the formula KEDA's HPA applies for an `AverageValue` target,
//! without the HPA's 10 % tolerance (the host's guardrails and cooldowns
//! govern how fast it moves). params: `{"metric": "pending", "target": 50}`

use scalegate_policy_sdk::prelude::*;

/// The backlog metric and what one replica works through.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Name of the backlog metric in the snapshot.
    metric: String,
    /// Backlog one replica works through (KEDA's `lagThreshold`, `queueLength`…).
    #[schemars(extend("exclusiveMinimum" = 0))]
    target: f64,
    /// Active only above this backlog (KEDA's `activationLagThreshold`…).
    #[serde(default)]
    #[schemars(range(min = 0))]
    activation_threshold: f64,
    /// Older backlogs give no opinion.
    #[serde(default = "sixty")]
    #[schemars(range(min = 0))]
    max_age_seconds: f64,
}

fn sixty() -> f64 {
    60.0
}

struct Queue;

impl Policy for Queue {
    type Params = Params;
    const INFO: Info = Info::new(
        "queue",
        env!("CARGO_PKG_VERSION"),
        "KEDA-compatible backlog scaling: ceil(backlog / target), activation threshold, zero when idle",
    )
    .reads(&["metrics"]);

    fn decide(snapshot: Snapshot, params: &Params) -> Result<Decision, PolicyError> {
        let metric = match snapshot.fresh_metric(&params.metric, (params.max_age_seconds * 1000.0) as u64) {
            Ok(metric) => metric,
            Err(stale @ Unusable::Stale { .. }) => return Ok(Decision::no_opinion(stale.to_string())),
            Err(missing) => return Err(missing.into()),
        };
        let backlog = if metric.value.is_finite() { metric.value.max(0.0) } else { 0.0 };
        let needed = backlog / params.target;
        let decision = if backlog <= params.activation_threshold {
            Decision::replicas(
                0,
                format!("idle: {} {backlog} <= activation threshold {}", params.metric, params.activation_threshold),
            )
        } else {
            let desired = needed.ceil().clamp(1.0, f64::from(u32::MAX)) as u32;
            Decision::replicas(
                desired,
                format!("{} {backlog} / {} per replica -> {desired}", params.metric, params.target),
            )
        };
        Ok(decision.with_metric("replicas-needed", needed))
    }
}

scalegate_policy_sdk::export_policy!(Queue);

#[cfg(test)]
mod tests {
    use super::*;
    use scalegate_policy_sdk::testing;

    fn backlog(value: f64, activation: f64) -> testing::Snapshot {
        let mut snapshot = testing::snapshot(
            r#"{"now_ms": 1000, "workload": {"name": "worker", "current_replicas": 0, "min_replicas": 0, "max_replicas": 20},
                "metrics": [{"name": "pending", "value": 0, "timestamp_ms": 1000}],
                "params": {"metric": "pending", "target": 50}}"#,
        )
        .unwrap();
        snapshot.metrics[0].value = value;
        snapshot.params["activation_threshold"] = serde_json::json!(activation);
        snapshot
    }

    fn desired(value: f64, activation: f64) -> Option<u32> {
        testing::evaluate::<Queue>(&backlog(value, activation)).unwrap().desired_replicas
    }

    #[test]
    fn zero_when_idle_one_on_the_first_message_then_the_backlog_over_the_target() {
        assert_eq!(desired(0.0, 0.0), Some(0));
        assert_eq!(desired(1.0, 0.0), Some(1));
        assert_eq!(desired(50.0, 0.0), Some(1));
        assert_eq!(desired(51.0, 0.0), Some(2));
        assert_eq!(desired(1000.0, 0.0), Some(20));
    }

    #[test]
    fn the_activation_threshold_keeps_a_small_backlog_idle() {
        assert_eq!(desired(10.0, 10.0), Some(0));
        assert_eq!(desired(11.0, 10.0), Some(1));
        assert_eq!(desired(f64::NAN, 0.0), Some(0));
    }
}
