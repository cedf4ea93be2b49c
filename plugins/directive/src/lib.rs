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

use scalegate_policy_sdk::Guest;
use scalegate_policy_sdk::types::{Decision, PodDeletionCost, PolicyError, PolicyInfo, ScaleAction, Snapshot};

struct Directive;

struct Params {
    kinds: Vec<String>,
    step_out: [u32; 4],
    step_in: u32,
    deletion_cost_metric: Option<String>,
}

fn params(text: &str) -> Result<Params, PolicyError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| PolicyError::InvalidParams(format!("params are not JSON: {e}")))?;
    let kinds = match value.get("kinds") {
        None => vec![],
        Some(kinds) => kinds
            .as_array()
            .and_then(|k| k.iter().map(|s| s.as_str().map(str::to_string)).collect::<Option<Vec<_>>>())
            .ok_or_else(|| PolicyError::InvalidParams("params.kinds must be a list of strings".into()))?,
    };
    let mut step_out = [1, 1, 2, 5];
    if let Some(steps) = value.get("step_out") {
        let steps = steps
            .as_array()
            .filter(|s| s.len() == 4)
            .and_then(|s| s.iter().map(|v| v.as_u64().and_then(|v| u32::try_from(v).ok())).collect::<Option<Vec<_>>>())
            .ok_or_else(|| PolicyError::InvalidParams("params.step_out must be 4 non-negative integers".into()))?;
        step_out.copy_from_slice(&steps);
    }
    let step_in = match value.get("step_in") {
        None => 1,
        Some(v) => v
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| PolicyError::InvalidParams("params.step_in must be a non-negative integer".into()))?,
    };
    let deletion_cost_metric = match value.get("deletion_cost_metric") {
        None => None,
        Some(name) => Some(
            name.as_str()
                .map(str::to_string)
                .ok_or_else(|| PolicyError::InvalidParams("params.deletion_cost_metric must be a string".into()))?,
        ),
    };
    Ok(Params { kinds, step_out, step_in, deletion_cost_metric })
}

impl Guest for Directive {
    fn metadata() -> PolicyInfo {
        PolicyInfo {
            name: "directive".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Follows scale directives (Kafka ScaleSignal, pushed events): target replicas or urgency-sized steps; deletion costs from a per-pod metric".into(),
            params_schema: r#"{"type":"object","properties":{"kinds":{"type":"array","items":{"type":"string"}},"step_out":{"type":"array","items":{"type":"integer","minimum":0},"minItems":4,"maxItems":4},"step_in":{"type":"integer","minimum":0},"deletion_cost_metric":{"type":"string"}},"additionalProperties":false}"#.into(),
            reads: vec!["signals".into(), "metrics".into(), "pods".into()],
        }
    }

    fn evaluate(snapshot: Snapshot) -> Result<Decision, PolicyError> {
        let params = params(&snapshot.params)?;
        let followed = followed_ms(&snapshot.state);
        let mut decision = decide(&snapshot, &params, followed)?;
        if let Some(metric) = params.deletion_cost_metric.as_deref().and_then(|name| snapshot.metric(name)) {
            decision.deletion_costs = metric
                .pods
                .iter()
                .filter_map(|sample| {
                    let pod = snapshot.pods.get(sample.pod as usize)?;
                    let cost = sample.value.round().clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32;
                    Some(PodDeletionCost { pod: pod.name.clone(), cost })
                })
                .collect();
        }
        Ok(decision)
    }
}

/// The state: `{"followed_ms": <timestamp of the newest directive followed>}`.
fn followed_ms(state: &[u8]) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(state).ok()?;
    value["followed_ms"].as_u64()
}

fn keeping(mut decision: Decision, followed: Option<u64>) -> Decision {
    if let Some(followed) = followed {
        decision.state = serde_json::json!({ "followed_ms": followed }).to_string().into_bytes();
    }
    decision
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
        return Ok(keeping(Decision::no_opinion("no directive in this evaluation"), followed));
    };
    if followed.is_some_and(|followed| signal.timestamp_ms < followed) {
        let why = format!("the newest directive here ({} ms) is older than the one followed", signal.timestamp_ms);
        return Ok(keeping(Decision::no_opinion(why), followed));
    }
    let followed = Some(signal.timestamp_ms);
    let why = |what: String| {
        if signal.reason.is_empty() { what } else { format!("{what} ({})", signal.reason) }
    };
    let decision = follow(signal, current, params, why)?;
    Ok(keeping(decision, followed))
}

fn follow(
    signal: &scalegate_policy_sdk::types::Signal,
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
