//! Vertical scaling: what a workload's policies recommend for its
//! containers' CPU and memory (contract 0.2.0, `decision.resources`),
//! bounded by the binding's vertical guardrails, and — in mode `in-place` —
//! which pod to resize next and to what. Pure: the pipeline observes,
//! calls [`plan`], and actuates what it returns through the cluster port.
//!
//! The rules are VPA's updater's and Kubernetes' in-place resize
//! (KEP-1287), from the shared reference:
//! - a pod is updated when a request is outside [lower, upper] (or unset),
//!   or — once the pod is `update_after` old — when its requests differ
//!   from the targets by `update_threshold` or more (Σ|request − target| /
//!   Σ request); scale-ups first, then the larger difference;
//! - one pod at a time: the next only when the last resize is done
//!   (neither `PodResizePending` nor `PodResizeInProgress`), never while a
//!   pod's resize is `Infeasible`, `Deferred` past `deferred_timeout`, or
//!   failed (`PodResizeInProgress` reason `Error`): the workload stops with
//!   that reason until the recommendation changes;
//! - limits follow requests proportionally (`requests-and-limits`: limit ×
//!   new request / old request; limit = request stays equal; no limit
//!   stays none), or stay and cap the request (`requests-only`);
//! - the QoS class never changes (a resize that would change it is
//!   skipped, with the reason), a resource whose `resizePolicy` is
//!   `RestartContainer` is left alone unless `allow_restart`, and a memory
//!   limit is never lowered below the container's current usage (the
//!   kubelet would hold the resize in progress);
//! - guardrails: `min_allowed`/`max_allowed`, `max_step` (largest change of
//!   a request in one resize), `cooldown` between resizes of the workload.

pub use crate::cluster::ContainerResize;
use crate::snapshot::{Compute, Container, ContainerRecommendation, Pod};
use std::collections::BTreeMap;
use std::time::Duration;

/// What the host does with recommendations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Publish them (admin API, gauges, an Event when they change).
    Off,
    /// Resize pods through their `resize` subresource.
    InPlace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ControlledValues {
    RequestsAndLimits,
    RequestsOnly,
}

/// `workloads[].vertical`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub mode: Mode,
    /// Which resources the host may change.
    pub cpu: bool,
    pub memory: bool,
    pub min_allowed: Compute,
    pub max_allowed: Compute,
    /// Largest change of a request in one resize, as a fraction (0.5 = ±50 %).
    pub max_step: Option<f64>,
    pub cooldown: Duration,
    pub update_threshold: f64,
    pub update_after: Duration,
    pub deferred_timeout: Duration,
    pub controlled_values: ControlledValues,
    pub allow_restart: bool,
    /// An Event when a target moves by this fraction or more.
    pub event_threshold: f64,
}

impl Default for Spec {
    fn default() -> Spec {
        Spec {
            mode: Mode::Off,
            cpu: true,
            memory: true,
            min_allowed: Compute::default(),
            max_allowed: Compute::default(),
            max_step: None,
            cooldown: Duration::from_secs(60),
            update_threshold: 0.1,
            update_after: Duration::from_secs(12 * 3600),
            deferred_timeout: Duration::from_secs(300),
            controlled_values: ControlledValues::RequestsAndLimits,
            allow_restart: false,
            event_threshold: 0.1,
        }
    }
}

/// One resource's recommendation after the guardrails.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Bounds {
    pub target: f64,
    pub lower: f64,
    pub upper: f64,
}

/// A container's recommendation after the guardrails.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Recommended {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Bounds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<Bounds>,
}

/// Merges the policies' recommendations (the largest target per container
/// and resource, like `combine: max` for replicas), keeps the resources the
/// spec controls, and applies `min_allowed`/`max_allowed` to all three values.
pub fn recommended<'a>(
    spec: &Spec,
    from: impl IntoIterator<Item = &'a ContainerRecommendation>,
) -> BTreeMap<String, Recommended> {
    let mut out: BTreeMap<String, Recommended> = BTreeMap::new();
    for rec in from {
        let entry = out.entry(rec.container.clone()).or_default();
        for r in &rec.resources {
            let (slot, min, max) = match r.resource.as_str() {
                "cpu" if spec.cpu => (&mut entry.cpu, spec.min_allowed.cpu, spec.max_allowed.cpu),
                "memory" if spec.memory => (&mut entry.memory, spec.min_allowed.memory, spec.max_allowed.memory),
                _ => continue,
            };
            let cap = |v: f64| {
                let v = min.map_or(v, |m| v.max(m));
                max.map_or(v, |m| v.min(m))
            };
            let bounds = Bounds { target: cap(r.target), lower: cap(r.lower_bound), upper: cap(r.upper_bound) };
            if slot.is_none_or(|b| bounds.target > b.target) {
                *slot = Some(bounds);
            }
        }
    }
    out.retain(|_, r| r.cpu.is_some() || r.memory.is_some());
    out
}

/// Whether any container's target moved enough since `published` (the
/// recommendations last told of) to tell of it again.
pub fn moved(spec: &Spec, published: &BTreeMap<String, Recommended>, now: &BTreeMap<String, Recommended>) -> bool {
    now.iter().any(|(name, r)| published.get(name).is_none_or(|before| changed_significantly(spec, before, r)))
}

/// `redis: cpu 587m memory 561Mi, sidecar: cpu 25m`: the targets, for an Event.
pub fn describe(recommended: &BTreeMap<String, Recommended>) -> String {
    let part = |resource: &str, b: Option<Bounds>| {
        b.map(|b| format!(" {resource} {}", show(resource, b.target))).unwrap_or_default()
    };
    recommended
        .iter()
        .map(|(name, r)| format!("{name}:{}{}", part("cpu", r.cpu), part("memory", r.memory)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a target moved enough since the last Event to tell of it.
fn changed_significantly(spec: &Spec, before: &Recommended, now: &Recommended) -> bool {
    let moved = |a: Option<Bounds>, b: Option<Bounds>| match (a, b) {
        (Some(a), Some(b)) => a.target <= 0.0 || ((b.target - a.target) / a.target).abs() >= spec.event_threshold,
        (None, None) => false,
        _ => true,
    };
    moved(before.cpu, now.cpu) || moved(before.memory, now.memory)
}

/// Kubernetes' QoS class of a pod from its containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

pub fn qos(containers: &[Container]) -> Qos {
    let any = containers.iter().any(|c| {
        c.requests.cpu.is_some() || c.requests.memory.is_some() || c.limits.cpu.is_some() || c.limits.memory.is_some()
    });
    if !any {
        return Qos::BestEffort;
    }
    let guaranteed = !containers.is_empty()
        && containers.iter().all(|c| {
            let same = |request: Option<f64>, limit: Option<f64>| {
                limit.is_some() && request.unwrap_or(limit.unwrap_or(0.0)) == limit.unwrap_or(0.0)
            };
            same(c.requests.cpu, c.limits.cpu) && same(c.requests.memory, c.limits.memory)
        });
    if guaranteed { Qos::Guaranteed } else { Qos::Burstable }
}

/// The resize the host asked for last and has not seen finished.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InFlight {
    pub pod: String,
    pub since_ms: u64,
    /// What was asked for: done once the pod shows it and nothing pending.
    pub containers: Vec<ContainerResize>,
}

impl InFlight {
    /// The pod's spec shows the resize (the watch may lag behind the write).
    pub fn seen_on(&self, pod: &Pod) -> bool {
        let same = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(1.0),
            (None, None) => true,
            _ => false,
        };
        let equal = |a: &Compute, b: &Compute| same(a.cpu, b.cpu) && same(a.memory, b.memory);
        self.containers.iter().all(|asked| {
            pod.containers
                .iter()
                .find(|c| c.name == asked.container)
                .is_some_and(|c| equal(&c.requests, &asked.requests) && equal(&c.limits, &asked.limits))
        })
    }

    /// Done: the pod is gone, or shows the resize carried out.
    pub fn done(&self, pods: &[Pod]) -> bool {
        pods.iter().find(|p| p.name == self.pod).is_none_or(|p| p.resize.is_none() && self.seen_on(p))
    }
}

/// What a workload remembers between evaluations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    pub in_flight: Option<InFlight>,
    pub last_resize_ms: Option<u64>,
    /// The recommendations last told of in an Event.
    pub published: BTreeMap<String, Recommended>,
}

/// The vertical part of a decision record.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Record {
    pub mode: Mode,
    /// Per container, after the guardrails.
    pub recommended: BTreeMap<String, Recommended>,
    pub plan: Plan,
    /// The resize was sent.
    pub applied: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Record {
    /// Heap and inline bytes, for the decision log's byte bound.
    pub fn approx_bytes(&self) -> usize {
        let plan = match &self.plan {
            Plan::Idle { reason } => reason.len(),
            Plan::Waiting { pod, reason } | Plan::Halted { pod, reason } => pod.len() + reason.len(),
            Plan::Resize { pod, containers, reason } => {
                pod.len()
                    + reason.len()
                    + containers
                        .iter()
                        .map(|c| std::mem::size_of::<ContainerResize>() + c.container.len())
                        .sum::<usize>()
            }
        };
        std::mem::size_of::<Record>()
            + self.recommended.keys().map(|name| name.len() + std::mem::size_of::<Recommended>()).sum::<usize>()
            + plan
            + self.error.as_ref().map_or(0, String::len)
    }
}

/// What the vertical stage does this evaluation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Plan {
    /// Nothing to change (or mode `off`).
    Idle { reason: String },
    /// A pod's resize is still being carried out.
    Waiting { pod: String, reason: String },
    /// Stopped: the kubelet cannot carry out the last resize.
    Halted { pod: String, reason: String },
    /// Resize this pod.
    Resize { pod: String, containers: Vec<ContainerResize>, reason: String },
}

/// The next step for the workload (see the module doc for the rules).
pub fn plan(
    spec: &Spec,
    pods: &[Pod],
    recommended: &BTreeMap<String, Recommended>,
    in_flight: Option<&InFlight>,
    last_resize_ms: Option<u64>,
    now_ms: u64,
) -> Plan {
    if spec.mode == Mode::Off {
        return Plan::Idle { reason: "mode off: recommendations published, nothing resized".into() };
    }
    if recommended.is_empty() {
        return Plan::Idle { reason: "no recommendation".into() };
    }
    // the resize in flight, or any pod the kubelet is still working on
    for pod in pods {
        let Some(status) = &pod.resize else { continue };
        let ours = in_flight.is_some_and(|f| f.pod == pod.name);
        if let Some(pending) = &status.pending {
            let detail = status.pending_message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
            if pending == "Infeasible" {
                return Plan::Halted {
                    pod: pod.name.clone(),
                    reason: format!("resize of {} is Infeasible{detail}", pod.name),
                };
            }
            let since = in_flight.filter(|_| ours).map_or(now_ms, |f| f.since_ms);
            if now_ms.saturating_sub(since) >= spec.deferred_timeout.as_millis() as u64 {
                return Plan::Halted {
                    pod: pod.name.clone(),
                    reason: format!(
                        "resize of {} {pending} for more than {}{detail}",
                        pod.name,
                        humantime::format_duration(spec.deferred_timeout)
                    ),
                };
            }
            return Plan::Waiting { pod: pod.name.clone(), reason: format!("resize {pending}{detail}") };
        }
        if let Some(error) = &status.error {
            return Plan::Halted { pod: pod.name.clone(), reason: format!("resize of {} failed: {error}", pod.name) };
        }
        if status.in_progress {
            return Plan::Waiting { pod: pod.name.clone(), reason: "resize in progress".into() };
        }
    }
    if let Some(flight) = in_flight
        && let Some(pod) = pods.iter().find(|p| p.name == flight.pod)
        && !flight.seen_on(pod)
    {
        if now_ms.saturating_sub(flight.since_ms) >= spec.deferred_timeout.as_millis() as u64 {
            return Plan::Halted {
                pod: pod.name.clone(),
                reason: format!("resize of {} sent but never shown on the pod", pod.name),
            };
        }
        return Plan::Waiting { pod: pod.name.clone(), reason: "resize sent, not yet seen on the pod".into() };
    }
    if let Some(last) = last_resize_ms {
        let cooldown = spec.cooldown.as_millis() as u64;
        if now_ms < last + cooldown {
            return Plan::Idle { reason: format!("cooldown: {} s since the last resize", (now_ms - last) / 1000) };
        }
    }

    let mut candidates = vec![];
    let mut skipped = vec![];
    for pod in pods {
        if pod.terminating || pod.containers.is_empty() {
            continue;
        }
        let age_ms = pod.start_ms.map_or(0, |s| now_ms.saturating_sub(s));
        match pod_update(spec, pod, recommended, age_ms >= spec.update_after.as_millis() as u64) {
            Ok(Some(update)) => candidates.push((pod, update)),
            Ok(None) => {}
            Err(reason) => skipped.push(format!("{}: {reason}", pod.name)),
        }
    }
    // scale-ups first, then the larger difference
    candidates.sort_by(|(_, a), (_, b)| b.up.cmp(&a.up).then(b.diff.total_cmp(&a.diff)));
    match candidates.into_iter().next() {
        Some((pod, update)) => {
            Plan::Resize { pod: pod.name.clone(), containers: update.containers, reason: update.reason }
        }
        None if skipped.is_empty() => {
            Plan::Idle { reason: "every pod's requests are within the recommended bounds".into() }
        }
        None => Plan::Idle { reason: skipped.join("; ") },
    }
}

struct Update {
    containers: Vec<ContainerResize>,
    up: bool,
    diff: f64,
    reason: String,
}

/// The resize one pod needs, if any; `Err` names why it cannot have it.
fn pod_update(
    spec: &Spec,
    pod: &Pod,
    recommended: &BTreeMap<String, Recommended>,
    old_enough: bool,
) -> Result<Option<Update>, String> {
    let mut outside = vec![];
    let (mut sum_requests, mut sum_diff) = (0.0, 0.0);
    let mut after = pod.containers.clone();
    let mut changed = vec![];
    let mut up = false;
    let mut notes = vec![];
    for (index, c) in pod.containers.iter().enumerate() {
        let Some(rec) = recommended.get(&c.name) else { continue };
        let mut new = after[index].clone();
        for (resource, bounds) in [("cpu", rec.cpu), ("memory", rec.memory)] {
            let Some(bounds) = bounds else { continue };
            let request = if resource == "cpu" { c.requests.cpu } else { c.requests.memory };
            let limit = if resource == "cpu" { c.limits.cpu } else { c.limits.memory };
            match request {
                Some(r) if r >= bounds.lower && r <= bounds.upper => {}
                Some(r) => outside.push(format!(
                    "{}/{resource} {} outside [{}, {}]",
                    c.name,
                    show(resource, r),
                    show(resource, bounds.lower),
                    show(resource, bounds.upper)
                )),
                None => outside.push(format!("{}/{resource} has no request", c.name)),
            }
            let current = request.unwrap_or(0.0);
            // normalise CPU and memory to compare them: relative to the request
            if current > 0.0 {
                sum_requests += 1.0;
                sum_diff += (current - bounds.target).abs() / current;
            }
            if c.restart_on_resize.iter().any(|r| r == resource) && !spec.allow_restart {
                notes.push(format!("{}/{resource} needs a restart to resize (resizePolicy RestartContainer)", c.name));
                continue;
            }
            let mut target = bounds.target;
            if let (Some(step), Some(r)) = (spec.max_step, request) {
                target = target.clamp(r * (1.0 - step), r * (1.0 + step));
            }
            if spec.controlled_values == ControlledValues::RequestsOnly
                && let Some(l) = limit
            {
                target = target.min(l);
            }
            let target = round(resource, target);
            let new_limit = match (spec.controlled_values, limit, request) {
                (ControlledValues::RequestsOnly, l, _) => l,
                (_, None, _) => None,
                (_, Some(l), Some(r)) if l != r && r > 0.0 => Some(round_down(resource, l * target / r)),
                (_, Some(_), _) => Some(target),
            };
            // never lower a memory limit below what the container uses now
            let new_limit = match (resource, new_limit, limit, c.usage) {
                ("memory", Some(n), Some(l), Some(usage)) if n < l && n < usage.memory => {
                    notes.push(format!(
                        "{}/memory limit kept at {} (usage {})",
                        c.name,
                        show("memory", l),
                        show("memory", usage.memory)
                    ));
                    Some(l)
                }
                _ => new_limit,
            };
            if let Some(n) = new_limit
                && n < target
            {
                notes.push(format!("{}/{resource} request kept under its limit", c.name));
                continue;
            }
            if Some(target) != request || new_limit != limit {
                up |= request.is_none_or(|r| target > r);
                if resource == "cpu" {
                    new.requests.cpu = Some(target);
                    new.limits.cpu = new_limit;
                } else {
                    new.requests.memory = Some(target);
                    new.limits.memory = new_limit;
                }
            }
        }
        if new.requests != c.requests || new.limits != c.limits {
            changed.push(ContainerResize { container: c.name.clone(), requests: new.requests, limits: new.limits });
            after[index] = new;
        }
    }
    let diff = if sum_requests > 0.0 { sum_diff / sum_requests } else { 0.0 };
    let due = !outside.is_empty() || (old_enough && diff >= spec.update_threshold);
    if !due || changed.is_empty() {
        return if due && !notes.is_empty() { Err(notes.join(", ")) } else { Ok(None) };
    }
    let (before, now) = (qos(&pod.containers), qos(&after));
    if before != now {
        return Err(format!("the resize would change its QoS class from {before:?} to {now:?}"));
    }
    let mut reason = if outside.is_empty() {
        format!("requests {:.0} % from the targets", diff * 100.0)
    } else {
        outside.join(", ")
    };
    if !notes.is_empty() {
        reason.push_str(&format!(" ({})", notes.join(", ")));
    }
    Ok(Some(Update { containers: changed, up, diff, reason }))
}

/// Requests in the units Kubernetes keeps: whole millicores, whole bytes.
fn round(resource: &str, value: f64) -> f64 {
    if resource == "cpu" { (value * 1000.0).round() / 1000.0 } else { value.round() }
}

fn round_down(resource: &str, value: f64) -> f64 {
    if resource == "cpu" { (value * 1000.0).floor() / 1000.0 } else { value.floor() }
}

/// `250m`, `512Mi`.
pub fn show(resource: &str, value: f64) -> String {
    if resource == "cpu" {
        format!("{}m", (value * 1000.0).round() as i64)
    } else if value >= 1024.0 * 1024.0 {
        format!("{}Mi", (value / (1024.0 * 1024.0)).round() as i64)
    } else {
        format!("{}", value as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{ResizeStatus, ResourceRecommendation, Usage};

    const MI: f64 = 1024.0 * 1024.0;

    fn container(cpu: f64, memory: f64, limits: Compute) -> Container {
        Container {
            name: "redis".into(),
            requests: Compute { cpu: Some(cpu), memory: Some(memory) },
            limits,
            restart_count: 0,
            last_termination: None,
            usage: None,
            restart_on_resize: vec![],
        }
    }

    fn pod(name: &str, c: Container) -> Pod {
        let mut pod = Pod::running(name, 0, 0, 0.0, 0.0);
        pod.containers = vec![c];
        pod
    }

    fn rec(cpu: (f64, f64, f64), memory: (f64, f64, f64)) -> ContainerRecommendation {
        let r = |resource: &str, (target, lower, upper): (f64, f64, f64)| ResourceRecommendation {
            resource: resource.into(),
            target,
            lower_bound: lower,
            upper_bound: upper,
            uncapped_target: target,
        };
        ContainerRecommendation { container: "redis".into(), resources: vec![r("cpu", cpu), r("memory", memory)] }
    }

    fn in_place() -> Spec {
        Spec { mode: Mode::InPlace, cooldown: Duration::ZERO, ..Spec::default() }
    }

    #[test]
    fn outside_the_bounds_one_pod_is_resized_with_limits_in_proportion() {
        let spec = in_place();
        let recs = recommended(&spec, &[rec((0.5, 0.4, 1.0), (600.0 * MI, 500.0 * MI, 900.0 * MI))]);
        let limits = Compute { cpu: Some(0.5), memory: Some(512.0 * MI) };
        let pods =
            [pod("redis-0", container(0.25, 256.0 * MI, limits)), pod("redis-1", container(0.25, 256.0 * MI, limits))];
        let Plan::Resize { pod, containers, reason } = plan(&spec, &pods, &recs, None, None, 1) else {
            panic!("expected a resize")
        };
        assert_eq!(pod, "redis-0");
        assert!(reason.contains("redis/cpu 250m outside [400m, 1000m]"), "{reason}");
        // limit × new / old: 0.5 × 0.5 / 0.25 = 1.0; 512Mi × 600/256 = 1200Mi
        assert_eq!(containers[0].requests, Compute { cpu: Some(0.5), memory: Some(600.0 * MI) });
        assert_eq!(containers[0].limits, Compute { cpu: Some(1.0), memory: Some(1200.0 * MI) });
    }

    #[test]
    fn a_resize_not_yet_seen_on_the_pod_is_waited_for_not_sent_again() {
        let spec = in_place();
        let recs = recommended(&spec, &[rec((0.5, 0.4, 1.0), (600.0 * MI, 500.0 * MI, 900.0 * MI))]);
        let pods = [pod("redis-0", container(0.25, 256.0 * MI, Compute::default()))];
        let Plan::Resize { pod: name, containers, .. } = plan(&spec, &pods, &recs, None, None, 1) else { panic!() };
        let flight = InFlight { pod: name, since_ms: 1, containers };
        // the watch still shows the old requests: wait, do not resize again
        assert!(!flight.done(&pods));
        assert!(matches!(plan(&spec, &pods, &recs, Some(&flight), Some(1), 2), Plan::Waiting { .. }));
        assert!(matches!(plan(&spec, &pods, &recs, Some(&flight), Some(1), 400_000), Plan::Halted { .. }));
        // shown and settled: done
        let mut resized = pods.clone();
        resized[0].containers[0].requests = flight.containers[0].requests;
        resized[0].containers[0].limits = flight.containers[0].limits;
        assert!(flight.done(&resized));
        assert!(flight.done(&[]), "the pod is gone");
    }

    #[test]
    fn inside_the_bounds_nothing_happens_and_mode_off_never_resizes() {
        let spec = in_place();
        let recs = recommended(&spec, &[rec((0.5, 0.2, 1.0), (600.0 * MI, 200.0 * MI, 900.0 * MI))]);
        let pods = [pod("redis-0", container(0.25, 256.0 * MI, Compute::default()))];
        assert!(matches!(plan(&spec, &pods, &recs, None, None, 1), Plan::Idle { .. }));
        // old enough and 50 %+ away from the targets: resized after all
        let mut older = pods.clone();
        older[0].start_ms = Some(0);
        let now = 13 * 3600 * 1000;
        assert!(matches!(plan(&spec, &older, &recs, None, None, now), Plan::Resize { .. }));
        let off = Spec { mode: Mode::Off, ..in_place() };
        assert!(matches!(plan(&off, &older, &recs, None, None, now), Plan::Idle { .. }));
    }

    #[test]
    fn guaranteed_stays_guaranteed_and_burstable_never_becomes_guaranteed() {
        let spec = in_place();
        let recs = recommended(&spec, &[rec((0.5, 0.4, 1.0), (600.0 * MI, 500.0 * MI, 900.0 * MI))]);
        let guaranteed = container(0.25, 256.0 * MI, Compute { cpu: Some(0.25), memory: Some(256.0 * MI) });
        let pods = [pod("g", guaranteed)];
        let Plan::Resize { containers, .. } = plan(&spec, &pods, &recs, None, None, 1) else { panic!() };
        assert_eq!(containers[0].limits, Compute { cpu: Some(0.5), memory: Some(600.0 * MI) });
        // requests-only, targets above the limits: each request would be capped at its
        // limit, making requests == limits — Guaranteed from Burstable: refused
        let requests_only = Spec { controlled_values: ControlledValues::RequestsOnly, ..in_place() };
        let recs = recommended(&requests_only, &[rec((0.8, 0.6, 1.0), (800.0 * MI, 700.0 * MI, 900.0 * MI))]);
        let burstable = container(0.25, 256.0 * MI, Compute { cpu: Some(0.5), memory: Some(512.0 * MI) });
        let pods = [pod("b", burstable)];
        match plan(&requests_only, &pods, &recs, None, None, 1) {
            Plan::Idle { reason } => assert!(reason.contains("QoS class from Burstable to Guaranteed"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn infeasible_halts_deferred_waits_then_halts_and_restart_policy_is_honoured() {
        let spec = in_place();
        let recs = recommended(&spec, &[rec((0.5, 0.4, 1.0), (600.0 * MI, 500.0 * MI, 900.0 * MI))]);
        let pods = [pod("redis-0", container(0.25, 256.0 * MI, Compute::default()))];
        let infeasible = ResizeStatus {
            pending: Some("Infeasible".into()),
            pending_message: Some("Node didn't have enough capacity".into()),
            ..ResizeStatus::default()
        };
        let mut view = pods.clone();
        view[0].resize = Some(infeasible);
        let flight = InFlight { pod: "redis-0".into(), since_ms: 0, containers: vec![] };
        match plan(&spec, &view, &recs, Some(&flight), None, 1_000) {
            Plan::Halted { reason, .. } => {
                assert!(reason.contains("Infeasible: Node didn't have enough capacity"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        let deferred = ResizeStatus { pending: Some("Deferred".into()), ..ResizeStatus::default() };
        view[0].resize = Some(deferred);
        assert!(matches!(plan(&spec, &view, &recs, Some(&flight), None, 60_000), Plan::Waiting { .. }));
        assert!(matches!(plan(&spec, &view, &recs, Some(&flight), None, 301_000), Plan::Halted { .. }));

        let mut restarts = container(0.25, 256.0 * MI, Compute::default());
        restarts.restart_on_resize = vec!["memory".into()];
        let pods = [pod("redis-0", restarts)];
        let Plan::Resize { containers, reason, .. } = plan(&spec, &pods, &recs, None, None, 1) else { panic!() };
        assert_eq!(containers[0].requests.memory, Some(256.0 * MI), "memory left alone");
        assert_eq!(containers[0].requests.cpu, Some(0.5));
        assert!(reason.contains("needs a restart"), "{reason}");
    }

    #[test]
    fn a_memory_limit_is_not_lowered_below_usage_and_steps_are_bounded() {
        let spec = Spec { max_step: Some(0.5), ..in_place() };
        let recs = recommended(&spec, &[rec((1.0, 0.9, 2.0), (100.0 * MI, 80.0 * MI, 150.0 * MI))]);
        let mut c = container(0.25, 512.0 * MI, Compute { cpu: None, memory: Some(512.0 * MI) });
        c.usage = Some(Usage { cpu: 0.2, memory: 300.0 * MI, timestamp_ms: 0, window_ms: 0 });
        let pods = [pod("redis-0", c)];
        let Plan::Resize { containers, .. } = plan(&spec, &pods, &recs, None, None, 1) else { panic!() };
        // cpu: 250m → at most +50 % = 375m; memory 512Mi → at most −50 % = 256Mi
        assert_eq!(containers[0].requests, Compute { cpu: Some(0.375), memory: Some(256.0 * MI) });
        // limit = request before: it would follow to 256Mi, below the 300Mi in use: kept
        assert_eq!(containers[0].limits.memory, Some(512.0 * MI));
    }

    #[test]
    fn an_event_is_due_when_a_target_moves_by_the_threshold() {
        let spec = in_place();
        let before = recommended(&spec, &[rec((0.5, 0.4, 1.0), (600.0 * MI, 500.0 * MI, 900.0 * MI))]);
        assert!(moved(&spec, &BTreeMap::new(), &before), "first seen");
        let small = recommended(&spec, &[rec((0.54, 0.4, 1.0), (600.0 * MI, 500.0 * MI, 900.0 * MI))]);
        assert!(!moved(&spec, &before, &small), "8 % is under the 10 % threshold");
        let large = recommended(&spec, &[rec((0.56, 0.4, 1.0), (600.0 * MI, 500.0 * MI, 900.0 * MI))]);
        assert!(moved(&spec, &before, &large));
        assert_eq!(describe(&large), "redis: cpu 560m memory 600Mi");
    }

    #[test]
    fn a_record_counts_its_text_toward_the_decision_log_bound() {
        let spec = in_place();
        let recs = recommended(&spec, &[rec((0.5, 0.4, 1.0), (600.0 * MI, 500.0 * MI, 900.0 * MI))]);
        let small = Record {
            mode: Mode::InPlace,
            recommended: recs.clone(),
            plan: Plan::Idle { reason: String::new() },
            applied: false,
            error: None,
        };
        let large =
            Record { plan: Plan::Idle { reason: "x".repeat(10_000) }, error: Some("y".repeat(500)), ..small.clone() };
        assert!(large.approx_bytes() >= small.approx_bytes() + 10_500);
        assert!(small.approx_bytes() > std::mem::size_of::<Record>(), "the recommendations count");
    }

    #[test]
    fn min_and_max_allowed_bound_every_value() {
        let spec = Spec {
            min_allowed: Compute { cpu: Some(0.1), memory: None },
            max_allowed: Compute { cpu: None, memory: Some(400.0 * MI) },
            ..in_place()
        };
        let recs = recommended(&spec, &[rec((0.05, 0.01, 0.2), (600.0 * MI, 500.0 * MI, 900.0 * MI))]);
        let r = recs["redis"];
        assert_eq!(r.cpu, Some(Bounds { target: 0.1, lower: 0.1, upper: 0.2 }));
        assert_eq!(r.memory, Some(Bounds { target: 400.0 * MI, lower: 400.0 * MI, upper: 400.0 * MI }));
    }
}
