//! `directive`: follows scale directives — Kafka `ScaleSignal` messages,
//! pushed events — carried by the snapshot's signals.
//!
//! The newest signal (of the kinds in `params.kinds`, default any) decides:
//! - `target_replicas` set → exactly that count;
//! - else a `delta` attribute (the load balancer's +1…+5 / −1) → current + delta;
//! - else `action: scale_out` → current + `params.step_out[urgency]`
//!   (default `[1, 1, 2, 5]`, urgency 0–3, as the load balancer steps);
//! - `action: scale_in` → current − `params.step_in` (default 1);
//! - `action: hold` or nothing usable → no opinion.
//!
//! With no signal in this evaluation it has no opinion: the count stays
//! where the last directive put it (the host's guardrails still apply).
//!
//! The timestamp of the newest directive followed is kept in `state`: a
//! directive older than that is ignored (no opinion). Directives of one
//! workload that travel on different Kafka partitions, or are sent again,
//! may arrive out of order; the newest one wins whatever the order.
//!
//! `params.deletion_cost_metric` names a per-pod metric (e.g. the
//! `connections` of Redis heartbeats): each pod with a sample gets that
//! value, rounded, as its deletion cost, so a scale-in removes the
//! least-loaded pods first (the host writes costs only before a scale-in).

use scalegate_policy_sdk::prelude::*;

/// Which directives to follow and how far to step.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Signal kinds to follow; empty: any.
    #[serde(default)]
    kinds: Vec<String>,
    /// Scale-out step per urgency 0–3.
    #[serde(default = "default_step_out")]
    step_out: [u32; 4],
    /// Scale-in step.
    #[serde(default = "one")]
    step_in: u32,
    /// Per-pod metric whose values become deletion costs.
    #[serde(default)]
    deletion_cost_metric: Option<String>,
}

fn default_step_out() -> [u32; 4] {
    [1, 1, 2, 5]
}

fn one() -> u32 {
    1
}

/// What the policy remembers: the timestamp of the newest directive followed.
#[derive(Serialize, Deserialize)]
struct Followed {
    followed_ms: u64,
}

struct Directive;

impl Policy for Directive {
    type Params = Params;
    const INFO: Info = Info::new(
        "directive",
        env!("CARGO_PKG_VERSION"),
        "Follows scale directives (Kafka ScaleSignal, pushed events): target replicas or urgency-sized steps; deletion costs from a per-pod metric",
    )
    .reads(&["signals", "metrics", "pods"]);

    fn decide(snapshot: Snapshot, params: &Params) -> Result<Decision, PolicyError> {
        let followed = snapshot.state::<Followed>().map(|f| f.followed_ms);
        let mut decision = decide(&snapshot, params, followed)?;
        if let Some(metric) = params.deletion_cost_metric.as_deref().and_then(|name| snapshot.metric(name)) {
            decision.deletion_costs = snapshot
                .pod_values(metric)
                .map(|(pod, sample)| PodDeletionCost {
                    pod: pod.name.clone(),
                    cost: sample.value.round().clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32,
                })
                .collect();
        }
        Ok(decision)
    }
}

fn keeping(decision: Decision, followed: Option<u64>) -> Result<Decision, PolicyError> {
    match followed {
        Some(followed_ms) => decision.with_state(&Followed { followed_ms }),
        None => Ok(decision),
    }
}

/// The decision of the newest directive, if it is not older than the one
/// followed before.
fn decide(snapshot: &Snapshot, params: &Params, followed: Option<u64>) -> Result<Decision, PolicyError> {
    let current = snapshot.workload.current_replicas;
    let newest = snapshot
        .signals
        .iter()
        .filter(|s| params.kinds.is_empty() || params.kinds.contains(&s.kind))
        .max_by_key(|s| s.timestamp_ms);
    let Some(signal) = newest else {
        return keeping(Decision::no_opinion("no directive in this evaluation"), followed);
    };
    if followed.is_some_and(|followed| signal.timestamp_ms < followed) {
        let why = format!("the newest directive here ({} ms) is older than the one followed", signal.timestamp_ms);
        return keeping(Decision::no_opinion(why), followed);
    }
    let followed = Some(signal.timestamp_ms);
    let why = |what: String| {
        if signal.reason.is_empty() { what } else { format!("{what} ({})", signal.reason) }
    };
    let decision = follow(signal, current, params, why)?;
    keeping(decision, followed)
}

fn follow(
    signal: &Signal,
    current: u32,
    params: &Params,
    why: impl Fn(String) -> String,
) -> Result<Decision, PolicyError> {
    if let Some(target) = signal.target_replicas {
        return Ok(Decision::replicas(target, why(format!("{} asks for {target} replicas", signal.source))));
    }
    let delta = signal.attributes.iter().find(|(k, _)| k == "delta").and_then(|(_, v)| v.parse::<i64>().ok());
    if let Some(delta) = delta {
        let desired = (i64::from(current) + delta).clamp(0, i64::from(u32::MAX)) as u32;
        return Ok(Decision::replicas(desired, why(format!("{} asks for {delta:+} replicas", signal.source))));
    }
    let urgency = signal.urgency.unwrap_or(0).min(3);
    match signal.action {
        Some(ScaleAction::ScaleOut) => {
            let step = params.step_out[urgency as usize];
            Ok(Decision::replicas(
                current.saturating_add(step),
                why(format!("scale out by {step} (urgency {urgency})")),
            ))
        }
        Some(ScaleAction::ScaleIn) => Ok(Decision::replicas(
            current.saturating_sub(params.step_in),
            why(format!("scale in by {}", params.step_in)),
        )),
        Some(ScaleAction::Hold) | None => Ok(Decision::no_opinion(why("hold".into()))),
    }
}

scalegate_policy_sdk::export_policy!(Directive);

#[cfg(test)]
mod tests {
    use super::*;
    use scalegate_policy_sdk::testing;

    const EXAMPLE: &str = "../../examples/kafka-scale-signal/snapshot.json";

    #[test]
    fn follows_the_directive_once_and_ignores_an_older_one() {
        let first = testing::evaluate_file::<Directive>(EXAMPLE).unwrap();
        assert_eq!(first.desired_replicas, Some(8), "{}", first.reason);
        // the same snapshot again, with the state it returned, but the directive now older
        let mut again = testing::snapshot_file(EXAMPLE);
        again.state = first.state.clone();
        for signal in &mut again.signals {
            signal.timestamp_ms -= 1;
        }
        let second = testing::evaluate::<Directive>(&again).unwrap();
        assert_eq!(second.desired_replicas, None, "{}", second.reason);
        assert!(second.reason.contains("older than the one followed"), "{}", second.reason);
    }
}
