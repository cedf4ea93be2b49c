//! Normalization of the metric proposal: stabilization windows and rate
//! limits (§4 and §5 of `docs/reference/hpa-algorithm.md`).

use crate::params::{PolicyType, ScalingRules, SelectPolicy};

/// One stored recommendation: the *unstabilized* desired count and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Recommendation {
    pub replicas: i32,
    pub timestamp_ms: i64,
}

/// A scale event as the behavior rate limits count it (`replicaChange ≥ 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeEvent {
    pub change: i32,
    pub timestamp_ms: i64,
}

/// The outcome of normalization with the condition reasons the HPA would set.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    pub stabilized: i32,
    pub desired: i32,
    /// `AbleToScale` reason: ReadyForNewScale | ScaleUpStabilized | ScaleDownStabilized.
    pub able_to_scale: &'static str,
    /// `ScalingLimited` reason: DesiredWithinRange | TooFewReplicas | TooManyReplicas | ScaleUpLimit | ScaleDownLimit.
    pub scaling_limited: &'static str,
}

const SCALE_UP_LIMIT_FACTOR: f64 = 2.0;
const SCALE_UP_LIMIT_MINIMUM: f64 = 4.0;

/// §4: no `behavior`. `window_ms` is the controller's downscale stabilization.
pub fn without_behavior(
    recommendations: &mut Vec<Recommendation>,
    now_ms: i64,
    window_ms: i64,
    current: i32,
    desired: i32,
    min: i32,
    max: i32,
) -> Normalized {
    // stabilizeRecommendation: the window is inclusive of ts == cutoff
    let cutoff = now_ms - window_ms;
    let stabilized =
        recommendations.iter().filter(|r| r.timestamp_ms >= cutoff).map(|r| r.replicas).fold(desired, i32::max);
    // Entries older than the window never count again: dropping them all is
    // equivalent to the controller's replace-one-stale-entry bookkeeping.
    recommendations.retain(|r| r.timestamp_ms >= cutoff);
    recommendations.push(Recommendation { replicas: desired, timestamp_ms: now_ms });

    // convertDesiredReplicasWithRules
    let scale_up_limit = (SCALE_UP_LIMIT_FACTOR * f64::from(current)).max(SCALE_UP_LIMIT_MINIMUM) as i32;
    let (max_allowed, too_many) =
        if max > scale_up_limit { (scale_up_limit, "ScaleUpLimit") } else { (max, "TooManyReplicas") };
    let (final_desired, scaling_limited) = if stabilized < min {
        (min, "TooFewReplicas")
    } else if stabilized > max_allowed {
        (max_allowed, too_many)
    } else {
        (stabilized, "DesiredWithinRange")
    };
    Normalized {
        stabilized,
        desired: final_desired,
        able_to_scale: if stabilized != desired { "ScaleDownStabilized" } else { "ReadyForNewScale" },
        scaling_limited,
    }
}

/// Everything §5 needs besides the recommendation list.
pub struct BehaviorArgs<'a> {
    pub now_ms: i64,
    pub current: i32,
    pub desired: i32,
    pub min: i32,
    pub max: i32,
    pub scale_up: &'a ScalingRules,
    pub scale_down: &'a ScalingRules,
    pub up_events: &'a [ChangeEvent],
    pub down_events: &'a [ChangeEvent],
}

/// §5: with `behavior`.
pub fn with_behavior(recommendations: &mut Vec<Recommendation>, args: &BehaviorArgs) -> Normalized {
    let prenormalized = args.desired;
    let stabilized = stabilize_with_behavior(recommendations, args);
    let (final_desired, scaling_limited) = rate_limit(args, stabilized);
    let able_to_scale = if stabilized == prenormalized {
        "ReadyForNewScale"
    } else if prenormalized >= args.current {
        "ScaleUpStabilized"
    } else {
        "ScaleDownStabilized"
    };
    Normalized { stabilized, desired: final_desired, able_to_scale, scaling_limited }
}

/// §5.1 `stabilizeRecommendationWithBehaviors`: strict `ts > cutoff`.
fn stabilize_with_behavior(recommendations: &mut Vec<Recommendation>, args: &BehaviorArgs) -> i32 {
    let up_cutoff = args.now_ms - args.scale_up.stabilization_window_seconds * 1000;
    let down_cutoff = args.now_ms - args.scale_down.stabilization_window_seconds * 1000;
    let (mut up_rec, mut down_rec) = (args.desired, args.desired);
    for r in recommendations.iter() {
        if r.timestamp_ms > up_cutoff {
            up_rec = up_rec.min(r.replicas);
        }
        if r.timestamp_ms > down_cutoff {
            down_rec = down_rec.max(r.replicas);
        }
    }
    let mut result = args.current;
    if result < up_rec {
        result = up_rec;
    }
    if result > down_rec {
        result = down_rec;
    }
    // Entries older than both cutoffs can never count again.
    recommendations.retain(|r| !(r.timestamp_ms < up_cutoff && r.timestamp_ms < down_cutoff));
    recommendations.push(Recommendation { replicas: args.desired, timestamp_ms: args.now_ms });
    result
}

/// §5.2 `convertDesiredReplicasWithBehaviorRate`.
fn rate_limit(args: &BehaviorArgs, desired: i32) -> (i32, &'static str) {
    if desired > args.current {
        let limit = scale_up_limit(args).max(args.current);
        let (max_allowed, reason) =
            if args.max > limit { (limit, "ScaleUpLimit") } else { (args.max, "TooManyReplicas") };
        if desired > max_allowed {
            return (max_allowed, reason);
        }
    } else if desired < args.current {
        let limit = scale_down_limit(args).min(args.current);
        let (min_allowed, reason) =
            if args.min < limit { (limit, "ScaleDownLimit") } else { (args.min, "TooFewReplicas") };
        if desired < min_allowed {
            return (min_allowed, reason);
        }
    }
    (desired, "DesiredWithinRange")
}

/// `getReplicasChangePerPeriod`: strict `ts > now − period`.
fn change_in_period(now_ms: i64, period_seconds: i32, events: &[ChangeEvent]) -> i64 {
    let cutoff = now_ms - i64::from(period_seconds) * 1000;
    events.iter().filter(|e| e.timestamp_ms > cutoff).map(|e| i64::from(e.change)).sum()
}

fn period_start_replicas(args: &BehaviorArgs, period_seconds: i32) -> i64 {
    i64::from(args.current) - change_in_period(args.now_ms, period_seconds, args.up_events)
        + change_in_period(args.now_ms, period_seconds, args.down_events)
}

fn to_i32(value: i64) -> i32 {
    value.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// §5.3 `calculateScaleUpLimitWithScalingRules`.
fn scale_up_limit(args: &BehaviorArgs) -> i32 {
    let rules = args.scale_up;
    let (mut result, pick): (i32, fn(i32, i32) -> i32) = match rules.select_policy {
        SelectPolicy::Disabled => return args.current,
        SelectPolicy::Min => (i32::MAX, i32::min),
        SelectPolicy::Max => (i32::MIN, i32::max),
    };
    for policy in &rules.policies {
        let start = period_start_replicas(args, policy.period_seconds);
        let proposed = match policy.kind {
            PolicyType::Pods => to_i32(start + i64::from(policy.value)),
            PolicyType::Percent => to_i32((start as f64 * (1.0 + f64::from(policy.value) / 100.0)).ceil() as i64),
        };
        result = pick(result, proposed);
    }
    result
}

/// §5.3 `calculateScaleDownLimitWithBehaviors`.
fn scale_down_limit(args: &BehaviorArgs) -> i32 {
    let rules = args.scale_down;
    let (mut result, pick): (i32, fn(i32, i32) -> i32) = match rules.select_policy {
        SelectPolicy::Disabled => return args.current,
        // Min = the smallest change = the highest floor
        SelectPolicy::Min => (i32::MIN, i32::max),
        SelectPolicy::Max => (i32::MAX, i32::min),
    };
    for policy in &rules.policies {
        let start = period_start_replicas(args, policy.period_seconds);
        let proposed = match policy.kind {
            PolicyType::Pods => to_i32(start - i64::from(policy.value)),
            // truncation toward zero, may be negative
            PolicyType::Percent => to_i32((start as f64 * (1.0 - f64::from(policy.value) / 100.0)) as i64),
        };
        result = pick(result, proposed);
    }
    result
}
