//! `urgency`: seed 001's load-balancer analysis as a policy. Every socket
//! node reports a heartbeat (CPU, memory, connections, messages/s, latency,
//! Kafka lag…) as per-pod metrics; the policy averages each over the pods,
//! derives an urgency level 0–3 from how many marks are crossed and how far,
//! scales out by the step of that level, scales in by one when everything
//! has been calm for a hold time, and ranks pods so the least loaded goes
//! first.
//!
//! - Each metric has `high` and `low` marks and a `critical` one (default
//!   `high + (high − low)`). A metric is *over* when its average is above
//!   `high`; its severity is `(average − high) / (critical − high)`.
//! - Urgency 3: a metric at or over its critical mark, or three or more over;
//!   2: a metric half-way to critical, or two over; 1: one over; 0: none.
//! - Urgency ≥ 1: `current + step_out[urgency − 1]` (default +1, +2, +5).
//! - Every metric fresh and below its `low` mark for `scale_in_after_seconds`
//!   (the hold, carried in `state`): `current − 1`, and the hold restarts —
//!   one pod per hold. Anything between: stay, the hold resets.
//! - Deletion costs on scale-in: each pod's load, the largest of its values
//!   over their `high` marks (× 1000), or `deletion_cost_metric` when set —
//!   lowest first, so the least-loaded pod is removed.
//! - Per-pod samples older than `max_age_seconds` are ignored; a metric with
//!   none left (or no value at all) does not count, and blocks scale-in. No
//!   usable metric → no opinion (every one absent → `missing-input`).
//!
//! params: `{"metrics": {"cpu": {"high": 70, "low": 30}, "connections": {"high": 800, "low": 200}}}`

use scalegate_policy_sdk::prelude::*;
use std::collections::BTreeMap;

/// Marks of one heartbeat metric (its average over the pods).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Marks {
    /// Over this the metric asks for capacity.
    high: f64,
    /// Under this (every metric) the workload is calm (`low <= high`).
    low: f64,
    /// At or over this the urgency is 3 (default `high + (high - low)`; above `high`).
    #[serde(default)]
    critical: Option<f64>,
}

/// The heartbeat analysis.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Heartbeat metric name → its marks.
    #[schemars(extend("minProperties" = 1))]
    metrics: BTreeMap<String, Marks>,
    /// Pods to add at urgency 1, 2 and 3.
    #[serde(default = "steps")]
    step_out: [u32; 3],
    /// How long everything must stay under its low mark before one pod goes.
    #[serde(default = "three_hundred")]
    #[schemars(range(max = 86400))]
    scale_in_after_seconds: u32,
    /// Rank pods for scale-in by this per-pod metric alone (default: their load over all marks).
    #[serde(default)]
    deletion_cost_metric: Option<String>,
    /// Older per-pod samples are ignored.
    #[serde(default = "thirty")]
    #[schemars(range(min = 0))]
    max_age_seconds: f64,
}

fn steps() -> [u32; 3] {
    [1, 2, 5]
}
fn three_hundred() -> u32 {
    300
}
fn thirty() -> f64 {
    30.0
}

/// Since when every metric has been under its low mark.
#[derive(Default, Serialize, Deserialize)]
struct State {
    calm_since_ms: Option<u64>,
}

/// A metric's average over its fresh samples of pods that are not going away.
struct Reading<'a> {
    name: &'a str,
    marks: &'a Marks,
    average: f64,
}

impl Reading<'_> {
    fn critical(&self) -> f64 {
        self.marks.critical.unwrap_or(self.marks.high + (self.marks.high - self.marks.low))
    }

    /// How far over `high`, as a share of the way to `critical` (≤ 0: not over).
    fn severity(&self) -> f64 {
        let span = self.critical() - self.marks.high;
        if span > 0.0 { (self.average - self.marks.high) / span } else { f64::INFINITY }
    }
}

/// Urgency 0–3 from the readings, with the metrics over their marks.
fn urgency(readings: &[Reading]) -> (u32, Vec<String>) {
    let over: Vec<&Reading> = readings.iter().filter(|r| r.average > r.marks.high).collect();
    let worst = over.iter().map(|r| r.severity()).fold(0.0, f64::max);
    let level = match over.len() {
        0 => 0,
        n if worst >= 1.0 || n >= 3 => 3,
        n if worst >= 0.5 || n >= 2 => 2,
        _ => 1,
    };
    (level, over.iter().map(|r| format!("{} {:.1} > {}", r.name, r.average, r.marks.high)).collect())
}

struct Urgency;

impl Urgency {
    /// The fresh per-pod samples of a metric, of pods not terminating
    /// (its single value when it has no per-pod samples).
    fn values<'a>(snapshot: &'a Snapshot, name: &str, max_age_ms: u64) -> Option<Vec<(Option<&'a str>, f64)>> {
        let metric = snapshot.metric(name)?;
        if metric.pods.is_empty() {
            return (snapshot.age_ms(metric.timestamp_ms) <= max_age_ms && metric.value.is_finite())
                .then(|| vec![(None, metric.value)]);
        }
        let values: Vec<_> = snapshot
            .pod_values(metric)
            .filter(|(pod, s)| !pod.terminating && snapshot.age_ms(s.timestamp_ms) <= max_age_ms && s.value.is_finite())
            .map(|(pod, s)| (Some(pod.name.as_str()), s.value))
            .collect();
        (!values.is_empty()).then_some(values)
    }

    /// Deletion costs: the lowest for the least-loaded pod.
    fn costs(snapshot: &Snapshot, params: &Params, max_age_ms: u64) -> Vec<PodDeletionCost> {
        if let Some(name) = &params.deletion_cost_metric {
            return snapshot.metric(name).map(|m| snapshot.deletion_costs_by(m)).unwrap_or_default();
        }
        let mut load: BTreeMap<&str, f64> = BTreeMap::new();
        for (name, marks) in &params.metrics {
            for (pod, value) in Self::values(snapshot, name, max_age_ms).unwrap_or_default() {
                if let (Some(pod), true) = (pod, marks.high > 0.0) {
                    let entry = load.entry(pod).or_insert(0.0);
                    *entry = entry.max(value / marks.high);
                }
            }
        }
        load.into_iter()
            .map(|(pod, l)| PodDeletionCost {
                pod: pod.to_string(),
                cost: (l * 1000.0).floor().clamp(0.0, f64::from(i32::MAX)) as i32,
            })
            .collect()
    }
}

impl Policy for Urgency {
    type Params = Params;
    const INFO: Info = Info::new(
        "urgency",
        env!("CARGO_PKG_VERSION"),
        "Seed 001's load-balancer analysis: urgency 0-3 from per-pod heartbeats, +1..+5 out, -1 in after a calm hold, least-loaded pods first",
    )
    .reads(&["metrics", "pods", "state"]);

    fn prepare(params: Params) -> Result<Params, PolicyError> {
        for (name, marks) in &params.metrics {
            if marks.low > marks.high {
                return Err(PolicyError::InvalidParams(format!(
                    "params.metrics.{name}: low ({}) must be <= high ({})",
                    marks.low, marks.high
                )));
            }
            if let Some(critical) = marks.critical
                && critical <= marks.high
            {
                return Err(PolicyError::InvalidParams(format!(
                    "params.metrics.{name}: critical ({critical}) must be > high ({})",
                    marks.high
                )));
            }
        }
        Ok(params)
    }

    fn decide(snapshot: Snapshot, params: &Params) -> Result<Decision, PolicyError> {
        let mut state: State = snapshot.state().unwrap_or_default();
        let max_age_ms = (params.max_age_seconds * 1000.0) as u64;
        let current = snapshot.workload.current_replicas;
        let mut readings = Vec::new();
        let mut unusable = Vec::new();
        for (name, marks) in &params.metrics {
            match Self::values(&snapshot, name, max_age_ms) {
                Some(values) => {
                    let average = values.iter().map(|(_, v)| v).sum::<f64>() / values.len() as f64;
                    readings.push(Reading { name, marks, average });
                }
                None => unusable.push(name.as_str()),
            }
        }
        if readings.is_empty() {
            state.calm_since_ms = None;
            if params.metrics.keys().all(|name| snapshot.metric(name).is_none()) {
                return Err(PolicyError::MissingInput(format!(
                    "no heartbeat metric in the snapshot (expected {})",
                    params.metrics.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
            return Decision::no_opinion(format!("no fresh heartbeats ({} stale)", unusable.join(", ")))
                .with_state(&state);
        }
        let (level, over) = urgency(&readings);
        let averages = readings.iter().map(|r| format!("{} {:.1}", r.name, r.average)).collect::<Vec<_>>().join(", ");
        let decision = if level > 0 {
            state.calm_since_ms = None;
            let step = params.step_out[level as usize - 1];
            let desired = current.saturating_add(step);
            Decision::replicas(desired, format!("urgency {level} ({}): +{step} -> {desired}", over.join(", ")))
        } else if unusable.is_empty() && readings.iter().all(|r| r.average < r.marks.low) {
            let since = *state.calm_since_ms.get_or_insert(snapshot.now_ms);
            let calm_ms = snapshot.age_ms(since);
            let hold_ms = u64::from(params.scale_in_after_seconds) * 1000;
            if calm_ms >= hold_ms && current > 0 {
                state.calm_since_ms = Some(snapshot.now_ms);
                Decision::replicas(
                    current - 1,
                    format!("calm for {}s ({averages}): -1 -> {}", calm_ms / 1000, current - 1),
                )
                .with_deletion_costs(Self::costs(&snapshot, params, max_age_ms))
            } else {
                Decision::replicas(
                    current,
                    format!("calm for {}s of {}s ({averages}): hold", calm_ms / 1000, params.scale_in_after_seconds),
                )
            }
        } else {
            state.calm_since_ms = None;
            let missing =
                if unusable.is_empty() { String::new() } else { format!("; {} not fresh", unusable.join(", ")) };
            Decision::replicas(current, format!("urgency 0 ({averages}){missing}: stay"))
        };
        decision.with_metric("urgency", f64::from(level)).with_state(&state)
    }
}

scalegate_policy_sdk::export_policy!(Urgency);

#[cfg(test)]
mod tests {
    use super::*;
    use scalegate_policy_sdk::testing;

    /// Three pods at `second` with (cpu, connections) per pod.
    fn at(second: u64, load: [(f64, f64); 3]) -> testing::Snapshot {
        let ms = second * 1000;
        let pods: Vec<_> = (0..3)
            .map(|i| serde_json::json!({"name": format!("socket-{i}"), "phase": "Running", "ready": true}))
            .collect();
        let samples = |pick: fn(&(f64, f64)) -> f64| -> Vec<serde_json::Value> {
            load.iter()
                .enumerate()
                .map(|(i, l)| serde_json::json!({"pod": format!("socket-{i}"), "value": pick(l), "timestamp_ms": ms}))
                .collect()
        };
        testing::snapshot(
            &serde_json::json!({
                "now_ms": ms,
                "workload": {"name": "socket", "current_replicas": 3, "min_replicas": 2, "max_replicas": 50},
                "pods": pods,
                "metrics": [
                    {"name": "cpu", "value": 0, "timestamp_ms": ms, "pods": samples(|l| l.0)},
                    {"name": "connections", "value": 0, "timestamp_ms": ms, "pods": samples(|l| l.1)}
                ],
                "params": {"metrics": {"cpu": {"high": 70, "low": 30, "critical": 90},
                                       "connections": {"high": 800, "low": 200}},
                           "scale_in_after_seconds": 60}
            })
            .to_string(),
        )
        .unwrap()
    }

    fn decide(snapshot: &testing::Snapshot) -> testing::Decision {
        testing::evaluate::<Urgency>(snapshot).unwrap()
    }

    #[test]
    fn urgency_grows_with_how_many_marks_are_crossed_and_how_far() {
        // nothing over: stay at 3
        assert_eq!(decide(&at(1, [(50.0, 500.0); 3])).desired_replicas, Some(3));
        // cpu 75 over 70 (a quarter of the way to 90): urgency 1, +1
        assert_eq!(decide(&at(1, [(75.0, 500.0); 3])).desired_replicas, Some(4));
        // cpu 82 (60 % of the way): urgency 2, +2
        assert_eq!(decide(&at(1, [(82.0, 500.0); 3])).desired_replicas, Some(5));
        // cpu 75 and connections 900: two over, urgency 2
        assert_eq!(decide(&at(1, [(75.0, 900.0); 3])).desired_replicas, Some(5));
        // cpu at its critical mark: urgency 3, +5
        let critical = decide(&at(1, [(95.0, 100.0), (90.0, 100.0), (85.0, 100.0)]));
        assert_eq!(critical.desired_replicas, Some(8));
        assert!(critical.reason.contains("urgency 3"), "{}", critical.reason);
        // connections default critical: 800 + (800 - 200) = 1400
        assert_eq!(decide(&at(1, [(10.0, 1400.0); 3])).desired_replicas, Some(8));
    }

    #[test]
    fn scale_in_waits_the_hold_removes_one_and_ranks_the_least_loaded_first() {
        let calm = [(10.0, 150.0), (20.0, 20.0), (5.0, 100.0)];
        let decisions = testing::evaluate_sequence::<Urgency>(4, |i| at(1000 + [0, 30, 60, 90][i], calm));
        let replicas: Vec<_> = decisions.iter().map(|d| d.as_ref().unwrap().desired_replicas).collect();
        // calm at 0 s, 30 s (hold), 60 s (-1, the hold restarts), 90 s (the snapshot
        // still shows 3 pods: held, not another -1 within the new hold)
        assert_eq!(replicas, [Some(3), Some(3), Some(2), Some(3)]);
        assert!(decisions[3].as_ref().unwrap().reason.contains("calm for 30s of 60s"));
        let costs = &decisions[2].as_ref().unwrap().deletion_costs;
        let least = costs.iter().min_by_key(|c| c.cost).unwrap();
        // loads: socket-0 max(10/70, 150/800) = 0.19; socket-1 max(0.29, 0.025) = 0.29; socket-2 0.125
        assert_eq!(least.pod, "socket-2", "{costs:?}");
        assert_eq!(costs.len(), 3);
    }

    #[test]
    fn load_between_the_marks_resets_the_hold() {
        let calm = [(10.0, 100.0); 3];
        let between = [(50.0, 100.0); 3];
        let steps = [(1000, calm), (1040, between), (1070, calm), (1100, calm), (1130, calm)];
        let decisions = testing::evaluate_sequence::<Urgency>(steps.len(), |i| at(steps[i].0, steps[i].1));
        let replicas: Vec<_> = decisions.iter().map(|d| d.as_ref().unwrap().desired_replicas.unwrap()).collect();
        // the hold counts from 1070: 1100 is 30 s, 1130 is 60 s
        assert_eq!(replicas, [3, 3, 3, 3, 2]);
    }

    #[test]
    fn stale_heartbeats_count_for_nothing_and_block_scale_in() {
        let mut snapshot = at(1000, [(10.0, 100.0); 3]);
        snapshot.metrics[0].pods.iter_mut().for_each(|s| s.timestamp_ms = 900_000);
        let decision = decide(&snapshot);
        assert_eq!(decision.desired_replicas, Some(3));
        assert!(decision.reason.contains("cpu not fresh"), "{}", decision.reason);
        snapshot.metrics[1].pods.iter_mut().for_each(|s| s.timestamp_ms = 900_000);
        assert_eq!(decide(&snapshot).desired_replicas, None);
        snapshot.metrics.clear();
        assert!(matches!(testing::evaluate::<Urgency>(&snapshot), Err(PolicyError::MissingInput(_))));
    }
}
