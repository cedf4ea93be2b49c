//! `kpa`: the Knative Pod Autoscaler's decision (`autoscaler.Scale` of
//! knative/serving) — a stable and a panic window over a concurrency or
//! requests-per-second metric, the panic threshold, no scale-down while
//! panicking, scale-up/down rate limits, activation scale and scale-down
//! delay. The windows travel in `decision.state`.
//!
//! - Each evaluation records the metric's aggregate (the sum over pods) at
//!   its second; a sample holds until the next one (Knative scrapes every
//!   second into 1 s buckets). `stable` is the average over the stable window
//!   (over the seconds since the first sample while the window is not yet
//!   full), `panic` over the panic window (`stable × panic_window_percentage`).
//! - target per pod = `target × target_utilization_percentage / 100` (at
//!   least 0.01); `dspc = ceil(stable / target)`, `dppc = ceil(panic / target)`,
//!   both clamped to `[floor(ready / max_scale_down_rate), ceil(ready × max_scale_up_rate)]`.
//! - Panic when `dppc / ready >= panic_threshold_percentage / 100`; it ends a
//!   stable window after the last time over the threshold. While panicking
//!   the count is `max(stable, panic)` and never goes down.
//! - A fresh state with more than one ready pod starts in panic at the ready
//!   count (Knative's cold-start rule: no history must not scale down).
//! - `scale_down_delay_seconds`: the highest count of that window.
//! - Scale to zero is the host's (`min_replicas: 0`, `idle_before_zero`).
//!
//! params: `{"metric": "concurrency", "target": 100}`

use scalegate_policy_sdk::prelude::*;

/// Knative's autoscaler settings (config-autoscaler / revision annotations).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Name of the concurrency or requests-per-second metric (the sum over pods).
    metric: String,
    /// What one pod should carry at 100 % (containerConcurrency, or the rps target).
    #[schemars(extend("exclusiveMinimum" = 0))]
    target: f64,
    /// Share of `target` to aim for.
    #[serde(default = "seventy")]
    #[schemars(extend("exclusiveMinimum" = 0, "maximum" = 100))]
    target_utilization_percentage: f64,
    /// The stable window, whole seconds.
    #[serde(default = "sixty")]
    #[schemars(range(min = 6, max = 3600))]
    stable_window_seconds: u32,
    /// The panic window as a share of the stable window.
    #[serde(default = "ten")]
    #[schemars(range(min = 1, max = 100))]
    panic_window_percentage: f64,
    /// Panic when the panic-window count reaches this share of the ready pods.
    #[serde(default = "two_hundred")]
    #[schemars(range(min = 110, max = 1000))]
    panic_threshold_percentage: f64,
    /// At most this many times the ready pods per decision.
    #[serde(default = "thousand")]
    #[schemars(extend("exclusiveMinimum" = 1))]
    max_scale_up_rate: f64,
    /// At least the ready pods divided by this per decision.
    #[serde(default = "two")]
    #[schemars(extend("exclusiveMinimum" = 1))]
    max_scale_down_rate: f64,
    /// A non-zero count is at least this.
    #[serde(default = "one")]
    #[schemars(range(min = 1))]
    activation_scale: u32,
    /// Scale down only to the highest count of this window.
    #[serde(default)]
    #[schemars(range(max = 3600))]
    scale_down_delay_seconds: u32,
    /// A metric older than this is no data.
    #[serde(default = "sixty_f")]
    #[schemars(range(min = 0))]
    max_age_seconds: f64,
}

fn seventy() -> f64 {
    70.0
}
fn sixty() -> u32 {
    60
}
fn sixty_f() -> f64 {
    60.0
}
fn ten() -> f64 {
    10.0
}
fn two_hundred() -> f64 {
    200.0
}
fn thousand() -> f64 {
    1000.0
}
fn two() -> f64 {
    2.0
}
fn one() -> u32 {
    1
}

/// The windows and the panic mode, from one evaluation to the next.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// (second, value) samples within the stable window, oldest first.
    samples: Vec<(u64, f64)>,
    /// When the panic-window count last reached the threshold (ms), while panicking.
    panic_since_ms: Option<u64>,
    /// The highest count while panicking.
    max_panic_pods: u32,
    /// (second, desired) within the scale-down delay.
    delay: Vec<(u64, u32)>,
}

/// Samples kept at most (one per second of the longest stable window).
const MAX_SAMPLES: usize = 3600;

/// Average of the held sample values over the last `window` seconds up to
/// `now` (only the seconds since the first sample while the window is not full).
fn window_average(samples: &[(u64, f64)], now: u64, window: u64) -> Option<f64> {
    let first = samples.first()?.0;
    let start = now.saturating_sub(window.saturating_sub(1)).max(first);
    let (mut sum, mut seconds) = (0.0, 0u64);
    for (i, &(at, value)) in samples.iter().enumerate() {
        let until = samples.get(i + 1).map_or(now + 1, |next| next.0);
        let (from, to) = (at.max(start), until.min(now + 1));
        if to > from {
            sum += value * (to - from) as f64;
            seconds += to - from;
        }
    }
    (seconds > 0).then(|| sum / seconds as f64)
}

struct Kpa;

impl Policy for Kpa {
    type Params = Params;
    const INFO: Info = Info::new(
        "kpa",
        env!("CARGO_PKG_VERSION"),
        "Knative's pod autoscaler: stable and panic windows, panic threshold, no scale-down while panicking",
    )
    .reads(&["metrics"]);

    fn decide(snapshot: Snapshot, params: &Params) -> Result<Decision, PolicyError> {
        let mut state: State = snapshot.state().unwrap_or_default();
        let fresh = snapshot.state.is_empty();
        let now_ms = snapshot.now_ms;
        let now = now_ms / 1000;
        let stable_window = u64::from(params.stable_window_seconds);
        let panic_window = ((stable_window as f64 * params.panic_window_percentage / 100.0).round() as u64).max(1);
        // Knative's ReadyCount: the endpoints that serve (the workload's ready replicas)
        let ready = snapshot.workload.ready_replicas;
        let ready_pods = f64::from(ready.max(1));

        match snapshot.fresh_metric(&params.metric, (params.max_age_seconds * 1000.0) as u64) {
            Ok(metric) => {
                let value = if metric.value.is_finite() { metric.value.max(0.0) } else { 0.0 };
                state.samples.retain(|(at, _)| *at != now);
                state.samples.push((now, value));
            }
            Err(Unusable::Missing { .. }) if state.samples.is_empty() => {
                return Err(PolicyError::MissingInput(format!("metric {} is not in the snapshot", params.metric)));
            }
            Err(_) => {}
        }
        // keep what the stable window still needs: the last sample before it starts, and after
        let horizon = now.saturating_sub(stable_window);
        let keep_from = state.samples.iter().rposition(|(at, _)| *at <= horizon).unwrap_or(0);
        state.samples.drain(..keep_from);
        if state.samples.len() > MAX_SAMPLES {
            let excess = state.samples.len() - MAX_SAMPLES;
            state.samples.drain(..excess);
        }
        let (Some(stable), Some(panic)) =
            (window_average(&state.samples, now, stable_window), window_average(&state.samples, now, panic_window))
        else {
            return Decision::no_opinion("no data in the stable window").with_state(&state);
        };

        let target = (params.target * params.target_utilization_percentage / 100.0).max(0.01);
        let max_up = (params.max_scale_up_rate * ready_pods).ceil();
        let max_down = (ready_pods / params.max_scale_down_rate).floor();
        let dspc = (stable / target).ceil();
        let dppc = (panic / target).ceil();
        let clamp = |x: f64| x.clamp(max_down, max_up).min(f64::from(u32::MAX)) as u32;
        let activation = |n: u32| if n > 0 { n.max(params.activation_scale) } else { 0 };
        let (desired_stable, desired_panic) = (activation(clamp(dspc)), activation(clamp(dppc)));

        if fresh && ready > 1 {
            // cold start: no history must not scale down
            state.panic_since_ms = Some(now_ms);
            state.max_panic_pods = ready;
        }
        let over = dppc / ready_pods >= params.panic_threshold_percentage / 100.0;
        let mut note = String::new();
        if over {
            if state.panic_since_ms.is_none() {
                note = "; panicking".into();
            }
            state.panic_since_ms = Some(now_ms);
        } else if let Some(since) = state.panic_since_ms
            && since + stable_window * 1000 < now_ms
        {
            state.panic_since_ms = None;
            state.max_panic_pods = 0;
            note = "; un-panicking".into();
        }
        let mut desired = desired_stable;
        if state.panic_since_ms.is_some() {
            desired = desired_stable.max(desired_panic);
            state.max_panic_pods = state.max_panic_pods.max(desired);
            desired = state.max_panic_pods;
            note = if note.is_empty() { "; in panic, not scaling down".into() } else { note };
        }
        if params.scale_down_delay_seconds > 0 {
            let delay = u64::from(params.scale_down_delay_seconds);
            state.delay.retain(|(at, _)| *at != now && *at + delay > now);
            state.delay.push((now, desired));
            desired = state.delay.iter().map(|(_, d)| *d).max().unwrap_or(desired);
        } else {
            state.delay.clear();
        }
        let reason = format!(
            "{} stable {stable:.1} / panic {panic:.1} at {target:.2} per pod ({ready} ready) -> {desired}{note}",
            params.metric
        );
        Decision::replicas(desired, reason)
            .with_metric("kpa.stable", stable)
            .with_metric("kpa.panic", panic)
            .with_metric("kpa.panicking", if state.panic_since_ms.is_some() { 1.0 } else { 0.0 })
            .with_state(&state)
    }
}

scalegate_policy_sdk::export_policy!(Kpa);

#[cfg(test)]
mod tests {
    use super::*;
    use scalegate_policy_sdk::testing;

    /// A snapshot at `second` with `ready` ready pods and the metric at `value`.
    fn at(second: u64, ready: usize, value: f64) -> testing::Snapshot {
        let pods: Vec<serde_json::Value> = (0..ready).map(|i| serde_json::json!({"name": format!("p-{i}")})).collect();
        testing::snapshot(
            &serde_json::json!({
                "now_ms": second * 1000,
                "workload": {"name": "svc", "current_replicas": ready, "min_replicas": 0, "max_replicas": 100},
                "pods": pods,
                "metrics": [{"name": "concurrency", "value": value, "timestamp_ms": second * 1000}],
                "params": {"metric": "concurrency", "target": 10, "target_utilization_percentage": 100,
                           "stable_window_seconds": 60, "panic_window_percentage": 10}
            })
            .to_string(),
        )
        .unwrap()
    }

    /// Runs the steps (second, ready pods, metric value) with the state fed back.
    fn run(steps: &[(u64, usize, f64)]) -> Vec<u32> {
        run_with(steps, serde_json::json!({}))
    }

    /// [`run`] with these params changed.
    fn run_with(steps: &[(u64, usize, f64)], changes: serde_json::Value) -> Vec<u32> {
        testing::evaluate_sequence::<Kpa>(steps.len(), |i| {
            let mut snapshot = at(steps[i].0, steps[i].1, steps[i].2);
            for (key, value) in changes.as_object().unwrap() {
                snapshot.params[key] = value.clone();
            }
            snapshot
        })
        .into_iter()
        .map(|d| d.unwrap().desired_replicas.unwrap())
        .collect()
    }

    /// Panic out of the way (it would need 10 × the ready pods).
    fn calm() -> serde_json::Value {
        serde_json::json!({"panic_threshold_percentage": 1000})
    }

    #[test]
    fn the_stable_window_averages_and_the_count_follows() {
        // one pod, 35 concurrent at 10 per pod, every 2 s: ceil(35 / 10) = 4
        let steady: Vec<(u64, usize, f64)> = (0..5).map(|i| (1000 + 2 * i, 1, 35.0)).collect();
        assert_eq!(run(&steady).last(), Some(&4));
        // the window average, not the last value: a minute at 20 (4 ready), then 6 s at 80:
        // (55 × 20 + 5 × 80) / 60 = 25 → 3 at the third, where the last value alone would say 8
        let mut steps = vec![(1000, 1, 20.0)];
        steps.extend((1..31).map(|i| (1000 + 2 * i, 4, 20.0)));
        steps.extend((0..3).map(|i| (1062 + 2 * i, 4, 80.0)));
        let decisions = run_with(&steps, calm());
        assert_eq!(decisions[30], 2, "{decisions:?}");
        assert_eq!(decisions[31..], [3, 3, 3], "{decisions:?}");
    }

    #[test]
    fn panic_is_entered_held_for_a_stable_window_and_left() {
        // two ready pods (cold start: panicking at 2), load 15 → stable says 2
        let mut steps: Vec<(u64, usize, f64)> = (0..40).map(|i| (2000 + 2 * i, 2, 15.0)).collect();
        // a burst: 60 for 6 s → dppc 6 over 2 ready = 3 >= 2: panic at 6
        steps.extend((0..3).map(|i| (2080 + 2 * i, 2, 60.0)));
        // the burst ends: load back to 5 (stable alone would say 1 or 2)
        steps.extend((0..40).map(|i| (2086 + 2 * i, 6, 5.0)));
        let decisions = run(&steps);
        let burst = &decisions[40..43];
        assert_eq!(burst.last(), Some(&6), "{decisions:?}");
        // no scale-down while panicking: a stable window after the last time over the threshold
        let calm = &decisions[43..];
        let held = calm.iter().take_while(|d| **d == 6).count();
        assert!((28..=31).contains(&held), "held {held} evaluations (2 s each) ≈ 60 s: {decisions:?}");
        assert!(calm.last().unwrap() < &6, "un-panicked and scaled down: {decisions:?}");
        // and down by at most half per decision
        for pair in calm.windows(2) {
            assert!(pair[1] * 2 >= pair[0], "{decisions:?}");
        }
    }

    #[test]
    fn a_cold_start_with_ready_pods_does_not_scale_down_at_once() {
        assert_eq!(run(&[(5000, 8, 0.0)]), vec![8]);
        assert_eq!(run(&[(5000, 1, 0.0)]), vec![0], "one pod, no load: down (halved from 1)");
    }

    #[test]
    fn the_scale_down_delay_keeps_the_highest_count_of_its_window() {
        // 50 on one pod → 5; 4 s later no load on 5 pods: the stable average (40) says 4
        let steps = [(3000, 1, 50.0), (3004, 5, 0.0)];
        assert_eq!(run_with(&steps, calm()), vec![5, 4]);
        let mut delayed = calm();
        delayed["scale_down_delay_seconds"] = serde_json::json!(10);
        assert_eq!(run_with(&steps, delayed), vec![5, 5], "within the delay: the highest of the window");
    }

    #[test]
    fn window_average_holds_each_sample_until_the_next() {
        let samples = [(10, 10.0), (12, 20.0)];
        // seconds 10, 11 at 10; 12, 13 at 20
        assert_eq!(window_average(&samples, 13, 60), Some(15.0));
        assert_eq!(window_average(&samples, 13, 2), Some(20.0));
        assert_eq!(window_average(&[], 13, 2), None);
    }
}
