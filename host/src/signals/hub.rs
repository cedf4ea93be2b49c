//! The input hub: the latest value of every declared metric of every
//! workload, each with when it arrived, and the signals queued for each
//! workload's next evaluation. Sources write here; the decision loop reads
//! at every evaluation ([`SignalHub::collect`]).
//!
//! - A metric older than its `max_age` (or never received) is left out of
//!   the snapshot; if it is required it is reported stale, which holds
//!   scale-down (guardrails). A failing source therefore never makes a
//!   workload shrink on old data, and never blocks other sources.
//! - Signals (events such as a `ScaleSignal`) are queued per workload (at
//!   most [`SIGNAL_QUEUE`], fewer with many workloads — [`QUEUED_SIGNALS`]
//!   in all — oldest dropped), trigger an immediate
//!   evaluation, and are delivered to the next evaluation once.
//! - Failures are counted by source and kind and logged when a metric goes
//!   from working to failing (and when it recovers), not on every attempt.
//! - [`SignalHub::reconfigure`] follows a configuration reload: values of
//!   metrics that stay declared (same name and source) and queued signals of
//!   workloads that stay are kept.

use super::delivery::{Delivery, Handled, Receipt};
use super::input::{MetricSpec, SourceError};
use crate::cluster::Target;
use crate::snapshot::{Forecast, Metric, Signal};
use crate::telemetry::Metrics;
use parking_lot::{Mutex, RwLock};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};

/// Signals kept per workload between evaluations, at most.
pub const SIGNAL_QUEUE: usize = 256;

/// Signals kept across all workloads, about: each workload's queue holds
/// `QUEUED_SIGNALS / workloads`, between 16 and [`SIGNAL_QUEUE`] (10,000
/// workloads under a flood of directives keep ~100 MB of them, not 2.5 GB).
pub const QUEUED_SIGNALS: usize = 100_000;

/// What the hub gives one evaluation.
#[derive(Debug, Default)]
pub struct Inputs {
    pub metrics: Vec<Metric>,
    /// The signals queued since the last evaluation, oldest first.
    pub signals: Vec<Delivery>,
    pub forecasts: Vec<Forecast>,
    /// `source:name` of required inputs that are stale or missing.
    pub stale: Vec<String>,
}

#[derive(Debug)]
struct Slot {
    /// Bounded label of the source (`prometheus`, `push`).
    source: &'static str,
    max_age_ms: u64,
    required: bool,
    latest: Option<Metric>,
    /// When `latest` arrived, by the host's clock.
    received_ms: u64,
    /// The last failure, until a value arrives.
    failing: Option<String>,
    /// Sources that deliver a series (forecasts) keep it beside the metric.
    forecast: Option<Forecast>,
}

/// A workload's slots by metric name: a few per workload, so a vector kept
/// sorted by name (a map's nodes would weigh ~2.7 KB per workload).
#[derive(Debug, Default)]
struct Slots(Vec<(String, Slot)>);

impl Slots {
    fn position(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(key, _)| key.as_str().cmp(name))
    }

    fn get(&self, name: &str) -> Option<&Slot> {
        self.position(name).ok().map(|i| &self.0[i].1)
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut Slot> {
        self.position(name).ok().map(|i| &mut self.0[i].1)
    }

    fn remove(&mut self, name: &str) -> Option<Slot> {
        self.position(name).ok().map(|i| self.0.remove(i).1)
    }

    fn insert(&mut self, name: String, slot: Slot) {
        match self.position(&name) {
            Ok(i) => self.0[i].1 = slot,
            Err(i) => self.0.insert(i, (name, slot)),
        }
    }

    /// In name order.
    fn iter(&self) -> impl Iterator<Item = (&String, &Slot)> {
        self.0.iter().map(|(name, slot)| (name, slot))
    }
}

#[derive(Debug, Default)]
struct WorkloadInputs {
    slots: Slots,
    signals: VecDeque<Delivery>,
    dropped_signals: u64,
}

type Trigger = Arc<dyn Fn(&str) + Send + Sync>;

/// Latest inputs of every workload.
pub struct SignalHub {
    workloads: RwLock<HashMap<String, Arc<Mutex<WorkloadInputs>>>>,
    /// Signals each workload's queue holds (see [`QUEUED_SIGNALS`]).
    queue: std::sync::atomic::AtomicUsize,
    /// Every name a message may use for a workload → the workload's name.
    routes: RwLock<HashMap<String, String>>,
    trigger: OnceLock<Trigger>,
    /// Called when an input wakes from zero (see [`SignalHub::update`]).
    wake: OnceLock<Trigger>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for SignalHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SignalHub({} workloads)", self.workloads.read().len())
    }
}

/// Why an input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("no workload {0:?}")]
    UnknownWorkload(String),
    #[error("workload {workload:?} declares no metric {metric:?} with source {via}")]
    UndeclaredMetric { workload: String, metric: String, via: &'static str },
    #[error("{0}")]
    Invalid(String),
}

impl InputError {
    /// Bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            InputError::UnknownWorkload(_) => "unknown_workload",
            InputError::UndeclaredMetric { .. } => "undeclared",
            InputError::Invalid(_) => "invalid",
        }
    }
}

/// One workload as the hub needs it: its name, its target and its
/// declared metrics.
pub type Declared<'a> = (&'a str, &'a Target, &'a [MetricSpec]);

impl SignalHub {
    /// Slots for every metric the workloads declare.
    pub fn new<'a>(workloads: impl IntoIterator<Item = Declared<'a>>, metrics: Arc<Metrics>) -> SignalHub {
        let hub = SignalHub {
            workloads: RwLock::new(HashMap::new()),
            queue: std::sync::atomic::AtomicUsize::new(SIGNAL_QUEUE),
            routes: RwLock::new(HashMap::new()),
            trigger: OnceLock::new(),
            wake: OnceLock::new(),
            metrics,
        };
        hub.reconfigure(workloads);
        hub
    }

    /// Follows a new set of workloads: slots of metrics that stay declared
    /// with the same source keep their value (with the new `max_age` and
    /// `required`), new ones start empty, the rest go; queued signals of
    /// workloads that stay are kept.
    pub fn reconfigure<'a>(&self, workloads: impl IntoIterator<Item = Declared<'a>>) {
        let workloads: Vec<Declared<'a>> = workloads.into_iter().collect();
        *self.routes.write() = route_table(workloads.iter().map(|(name, target, _)| (*name, *target)));
        let mut table = self.workloads.write();
        let mut next = HashMap::new();
        for (name, _, metrics) in workloads {
            let entry = table.remove(name).unwrap_or_default();
            {
                let mut inputs = entry.lock();
                let mut old = std::mem::take(&mut inputs.slots);
                for spec in metrics {
                    let mut slot = match old.remove(&spec.name) {
                        Some(slot) if slot.source == spec.label => slot,
                        _ => Slot {
                            source: spec.label,
                            max_age_ms: 0,
                            required: true,
                            latest: None,
                            received_ms: 0,
                            failing: None,
                            forecast: None,
                        },
                    };
                    slot.max_age_ms = spec.max_age.as_millis() as u64;
                    slot.required = spec.required;
                    inputs.slots.insert(spec.name.clone(), slot);
                }
            }
            next.insert(name.to_string(), entry);
        }
        let queue = (QUEUED_SIGNALS / next.len().max(1)).clamp(16, SIGNAL_QUEUE);
        self.queue.store(queue, std::sync::atomic::Ordering::Relaxed);
        *table = next;
    }

    /// Signals each workload's queue holds.
    fn queue(&self) -> usize {
        self.queue.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The workload a message means by `routing`: its name, its target's
    /// `namespace/name`, or its target's bare name when no other workload's
    /// target has that name.
    pub fn resolve(&self, routing: &str) -> Option<String> {
        self.routes.read().get(routing).cloned()
    }

    /// Called with a workload's name when a signal for it arrives (the loop
    /// evaluates it at once). Set once.
    pub fn set_trigger(&self, trigger: impl Fn(&str) + Send + Sync + 'static) {
        let _ = self.trigger.set(Arc::new(trigger));
    }

    fn workload(&self, name: &str) -> Result<Arc<Mutex<WorkloadInputs>>, InputError> {
        self.workloads.read().get(name).cloned().ok_or_else(|| InputError::UnknownWorkload(name.to_string()))
    }

    /// A new value of a declared metric, received at `now_ms`. A value that
    /// wakes the input (positive after zero) is announced to the wake
    /// handler, so an idle workload scaled to zero comes back without
    /// waiting for its interval.
    pub fn update(
        &self,
        workload: &str,
        source: &'static str,
        metric: Metric,
        forecast: Option<Forecast>,
        now_ms: u64,
    ) -> Result<(), InputError> {
        check_finite(&metric)?;
        let entry = self.workload(workload)?;
        let mut inputs = entry.lock();
        let slot = inputs.slots.get_mut(&metric.name).filter(|s| s.source == source).ok_or_else(|| {
            InputError::UndeclaredMetric { workload: workload.into(), metric: metric.name.clone(), via: source }
        })?;
        let woke = slot.store(workload, metric, forecast, now_ms);
        drop(inputs);
        if woke {
            self.wake(workload);
        }
        Ok(())
    }

    /// Pushed inputs (`POST /v1/signals`), all or nothing: every metric must
    /// be declared with `push` and finite, every signal must have a kind.
    /// `receipt` goes with the last signal (they are handled together).
    /// Returns how many metrics and signals were taken.
    pub fn push(
        &self,
        workload: &str,
        metrics: Vec<Metric>,
        signals: Vec<Signal>,
        receipt: Option<Receipt>,
        now_ms: u64,
    ) -> Result<(usize, usize), InputError> {
        let counts = (metrics.len(), signals.len());
        let mut woke = false;
        {
            let entry = self.workload(workload)?;
            let mut inputs = entry.lock();
            for metric in &metrics {
                check_finite(metric)?;
                if inputs.slots.get(&metric.name).is_none_or(|s| s.source != "push") {
                    return Err(InputError::UndeclaredMetric {
                        workload: workload.into(),
                        metric: metric.name.clone(),
                        via: "push",
                    });
                }
            }
            if let Some(index) = signals.iter().position(|s| s.kind.trim().is_empty()) {
                return Err(InputError::Invalid(format!("signals[{index}].kind must not be empty")));
            }
            for metric in metrics {
                let slot = inputs.slots.get_mut(&metric.name).expect("checked above");
                woke |= slot.store(workload, metric, None, now_ms);
            }
            let last = signals.len().saturating_sub(1);
            let mut receipt = receipt;
            for (index, signal) in signals.into_iter().enumerate() {
                let receipt = if index == last { receipt.take() } else { None };
                let received = std::time::Instant::now();
                inputs.enqueue(Delivery { signal, receipt, received }, self.queue(), &self.metrics);
            }
        }
        if counts.1 > 0 {
            self.fire(workload);
        } else if woke {
            self.wake(workload);
        }
        Ok(counts)
    }

    /// A failed attempt to read a metric: counted, logged when it starts
    /// failing; the last value stays until it is too old.
    pub fn fail(&self, workload: &str, name: &str, error: &SourceError) {
        let kind = error.kind();
        let Ok(entry) = self.workload(workload) else {
            self.metrics.count_source_error("unknown", kind);
            return;
        };
        let mut inputs = entry.lock();
        let Some(slot) = inputs.slots.get_mut(name) else {
            self.metrics.count_source_error("unknown", kind);
            return;
        };
        self.metrics.count_source_error(slot.source, kind);
        if slot.failing.is_none() {
            tracing::warn!(%workload, metric = %name, source = slot.source, %error, "input failing; stale after its max age");
        }
        slot.failing = Some(error.to_string());
    }

    /// A discrete signal for a workload; triggers an evaluation. The
    /// receipt, if any, is settled when the loop has handled the signal
    /// (see `signals::delivery`); an unknown workload hands it back.
    pub fn signal(
        &self,
        workload: &str,
        signal: Signal,
        receipt: Option<Receipt>,
    ) -> Result<(), (InputError, Option<Receipt>)> {
        let entry = match self.workload(workload) {
            Ok(entry) => entry,
            Err(error) => return Err((error, receipt)),
        };
        let received = std::time::Instant::now();
        entry.lock().enqueue(Delivery { signal, receipt, received }, self.queue(), &self.metrics);
        self.fire(workload);
        Ok(())
    }

    /// Puts back signals an evaluation could not handle (its write failed),
    /// ahead of any that arrived meanwhile; they are delivered again at the
    /// workload's next evaluation.
    pub fn requeue(&self, workload: &str, deliveries: Vec<Delivery>) {
        let Ok(entry) = self.workload(workload) else { return };
        let mut inputs = entry.lock();
        for delivery in deliveries.into_iter().rev() {
            inputs.signals.push_front(delivery);
        }
        while inputs.signals.len() > self.queue() {
            if let Some(dropped) = inputs.signals.pop_front() {
                inputs.dropped_signals += 1;
                if let Some(receipt) = dropped.receipt {
                    receipt.settle(&Handled::Superseded);
                }
            }
        }
    }

    /// Sets what happens when an input of a workload wakes from zero.
    pub fn set_wake(&self, wake: impl Fn(&str) + Send + Sync + 'static) {
        let _ = self.wake.set(Arc::new(wake));
    }

    fn wake(&self, workload: &str) {
        if let Some(wake) = self.wake.get() {
            wake(workload);
        }
    }

    fn fire(&self, workload: &str) {
        if let Some(trigger) = self.trigger.get() {
            trigger(workload);
        }
    }

    /// The inputs of one evaluation at `now_ms`: fresh metrics, the signals
    /// queued since the last evaluation, and the required inputs that are stale.
    pub fn collect(&self, workload: &str, now_ms: u64) -> Inputs {
        let Ok(entry) = self.workload(workload) else { return Inputs::default() };
        let mut inputs = entry.lock();
        let mut out = Inputs { signals: inputs.signals.drain(..).collect(), ..Inputs::default() };
        for (name, slot) in inputs.slots.iter() {
            match &slot.latest {
                Some(metric) if now_ms.saturating_sub(slot.received_ms) <= slot.max_age_ms => {
                    out.metrics.push(metric.clone());
                    out.forecasts.extend(slot.forecast.clone());
                }
                _ if slot.required => out.stale.push(format!("{}:{name}", slot.source)),
                _ => {}
            }
        }
        out
    }

    /// Per metric of a workload: (name, age of the last value in ms if any,
    /// fresh), for the per-workload gauges.
    pub fn freshness(&self, workload: &str, now_ms: u64) -> Vec<(String, Option<u64>, bool)> {
        let Ok(entry) = self.workload(workload) else { return vec![] };
        let inputs = entry.lock();
        inputs
            .slots
            .iter()
            .map(|(name, slot)| {
                let age = slot.latest.as_ref().map(|_| now_ms.saturating_sub(slot.received_ms));
                (name.clone(), age, age.is_some_and(|a| a <= slot.max_age_ms))
            })
            .collect()
    }

    /// Per workload and metric: source, age of the last value, last error.
    pub fn status(&self, workload: &str, now_ms: u64) -> Option<serde_json::Value> {
        let entry = self.workload(workload).ok()?;
        let inputs = entry.lock();
        let metrics: serde_json::Map<String, serde_json::Value> = inputs
            .slots
            .iter()
            .map(|(name, slot)| {
                let age = slot.latest.as_ref().map(|_| now_ms.saturating_sub(slot.received_ms));
                let value = serde_json::json!({
                    "source": slot.source,
                    "value": slot.latest.as_ref().map(|m| m.value),
                    "age_ms": age,
                    "max_age_ms": slot.max_age_ms,
                    "fresh": age.is_some_and(|a| a <= slot.max_age_ms),
                    "required": slot.required,
                    "error": slot.failing,
                });
                (name.clone(), value)
            })
            .collect();
        Some(serde_json::json!({
            "metrics": metrics,
            "queued_signals": inputs.signals.len(),
            "dropped_signals": inputs.dropped_signals,
        }))
    }
}

/// Workload names by every name a message may use for them.
fn route_table<'a>(workloads: impl IntoIterator<Item = (&'a str, &'a Target)>) -> HashMap<String, String> {
    let mut table = HashMap::new();
    let mut bare: HashMap<&str, Vec<&str>> = HashMap::new();
    for (name, target) in workloads {
        table.insert(name.to_string(), name.to_string());
        table.insert(target.path(), name.to_string());
        bare.entry(&target.name).or_default().push(name);
    }
    for (name, owners) in bare {
        if let [only] = owners.as_slice() {
            table.entry(name.to_string()).or_insert_with(|| only.to_string());
        }
    }
    table
}

fn check_finite(metric: &Metric) -> Result<(), InputError> {
    if !metric.value.is_finite() || metric.pods.iter().any(|p| !p.value.is_finite()) {
        return Err(InputError::Invalid(format!("metric {:?}: values must be finite numbers", metric.name)));
    }
    Ok(())
}

impl Slot {
    /// A new value, received at `now_ms`; ends a failure. True when it
    /// wakes the input: positive after none, or after zero or less (the
    /// first message after an idle spell).
    fn store(&mut self, workload: &str, metric: Metric, forecast: Option<Forecast>, now_ms: u64) -> bool {
        let woke = metric.value > 0.0 && self.latest.as_ref().is_none_or(|last| last.value <= 0.0);
        if let Some(error) = self.failing.take() {
            tracing::info!(%workload, metric = %metric.name, source = self.source, previous_error = %error, "input recovered");
        }
        // a forecast is as old as its generation, however recently it arrived
        self.received_ms = forecast.as_ref().map_or(now_ms, |f| f.generated_ms.min(now_ms));
        self.latest = Some(metric);
        self.forecast = forecast;
        woke
    }
}

impl WorkloadInputs {
    /// Queues a signal, dropping (and counting) the oldest when `capacity`
    /// is reached: a newer signal for the workload supersedes it.
    fn enqueue(&mut self, delivery: Delivery, capacity: usize, metrics: &Metrics) {
        let mut dropped = None;
        if self.signals.len() >= capacity {
            dropped = self.signals.pop_front();
            self.dropped_signals += 1;
        }
        metrics.count_signal(&delivery.signal.source, dropped.as_ref().map(|d| d.signal.source.as_str()));
        if let Some(receipt) = dropped.and_then(|d| d.receipt) {
            receipt.settle(&Handled::Superseded);
        }
        self.signals.push_back(delivery);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signals::input::Configured;
    use std::time::Duration;

    fn pushed(name: &str, max_age_s: u64, required: bool) -> MetricSpec {
        MetricSpec {
            name: name.into(),
            source: "push",
            label: "push",
            spec: Configured::new(serde_json::json!({}), ()),
            max_age: Duration::from_secs(max_age_s),
            required,
        }
    }

    pub fn target(namespace: &str, name: &str) -> Target {
        Target {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// `a/b` declares `rps` (30 s) and `extra` (5 s, not required), both pushed.
    fn hub() -> SignalHub {
        let specs = [pushed("rps", 30, true), pushed("extra", 5, false)];
        SignalHub::new([("a/b", &target("a", "b"), &specs[..])], Arc::new(Metrics::new()))
    }

    fn metric(name: &str, value: f64) -> Metric {
        Metric { name: name.into(), source: "push".into(), value, timestamp_ms: 1_000, pods: vec![] }
    }

    #[test]
    fn fresh_values_are_delivered_and_old_required_ones_are_stale() {
        let hub = hub();
        assert_eq!(hub.collect("a/b", 0).stale, ["push:rps"], "never received");
        hub.update("a/b", "push", metric("rps", 12.0), None, 1_000).unwrap();
        hub.update("a/b", "push", metric("extra", 1.0), None, 1_000).unwrap();
        let inputs = hub.collect("a/b", 5_000);
        assert_eq!(inputs.metrics.len(), 2);
        assert!(inputs.stale.is_empty());
        // rps may be 30 s old, extra 5 s
        let inputs = hub.collect("a/b", 10_000);
        assert_eq!(inputs.metrics.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["rps"]);
        assert!(inputs.stale.is_empty(), "extra is not required");
        let inputs = hub.collect("a/b", 40_000);
        assert!(inputs.metrics.is_empty());
        assert_eq!(inputs.stale, ["push:rps"]);
    }

    #[test]
    fn undeclared_unknown_and_non_finite_inputs_are_refused() {
        let hub = hub();
        assert!(matches!(hub.update("x/y", "push", metric("rps", 1.0), None, 0), Err(InputError::UnknownWorkload(_))));
        assert!(matches!(
            hub.update("a/b", "push", metric("cpu", 1.0), None, 0),
            Err(InputError::UndeclaredMetric { .. })
        ));
        assert!(matches!(
            hub.update("a/b", "prometheus", metric("rps", 1.0), None, 0),
            Err(InputError::UndeclaredMetric { .. })
        ));
        assert!(matches!(hub.update("a/b", "push", metric("rps", f64::NAN), None, 0), Err(InputError::Invalid(_))));
        assert!(hub.collect("a/b", 0).metrics.is_empty(), "nothing refused was stored");
    }

    #[test]
    fn signals_trigger_once_and_are_delivered_once() {
        let hub = hub();
        let triggered = Arc::new(Mutex::new(Vec::new()));
        let seen = triggered.clone();
        hub.set_trigger(move |w| seen.lock().push(w.to_string()));
        let signal = Signal {
            kind: "scale".into(),
            source: "push".into(),
            timestamp_ms: 1,
            action: None,
            target_replicas: Some(4),
            urgency: Some(3),
            reason: String::new(),
            attributes: vec![],
        };
        for _ in 0..SIGNAL_QUEUE + 3 {
            hub.signal("a/b", signal.clone(), None).unwrap();
        }
        assert_eq!(triggered.lock().len(), SIGNAL_QUEUE + 3);
        assert_eq!(hub.status("a/b", 0).unwrap()["dropped_signals"], 3);
        let exposed = hub.metrics.render();
        assert!(
            exposed.contains(&format!("scalegate_signals_total{{source=\"push\"}} {}", SIGNAL_QUEUE + 3)),
            "{exposed}"
        );
        assert!(exposed.contains("scalegate_signals_dropped_total{source=\"push\"} 3"), "{exposed}");
        assert_eq!(hub.collect("a/b", 0).signals.len(), SIGNAL_QUEUE);
        assert!(hub.collect("a/b", 0).signals.is_empty());
    }

    #[test]
    fn receipts_of_superseded_signals_are_settled_and_requeued_ones_come_first() {
        let hub = hub();
        let settled = Arc::new(Mutex::new(Vec::new()));
        let receipt = |n: i64| {
            let settled = settled.clone();
            let origin = Some(crate::signals::delivery::Origin { stream: "kafka:t/0".into(), offset: n });
            Receipt::new(origin, move |handled| settled.lock().push((n, handled.clone())))
        };
        let signal = |n: u32| Signal {
            kind: "scale-signal".into(),
            source: "kafka:t".into(),
            timestamp_ms: u64::from(n),
            action: None,
            target_replicas: Some(n),
            urgency: None,
            reason: String::new(),
            attributes: vec![],
        };
        for n in 0..SIGNAL_QUEUE as u32 + 1 {
            hub.signal("a/b", signal(n), Some(receipt(i64::from(n)))).unwrap();
        }
        assert_eq!(*settled.lock(), [(0, Handled::Superseded)], "the oldest gave way to a newer one");
        let taken = hub.collect("a/b", 0).signals;
        assert_eq!(taken.len(), SIGNAL_QUEUE);
        hub.signal("a/b", signal(999), None).unwrap();
        hub.requeue("a/b", taken);
        let again = hub.collect("a/b", 0).signals;
        let order: Vec<u32> = again.iter().map(|d| d.signal.target_replicas.unwrap()).collect();
        assert_eq!(order.len(), SIGNAL_QUEUE, "bounded: the oldest gave way again");
        assert_eq!((order[0], *order.last().unwrap()), (2, 999), "requeued first, the newer one last");
        let (error, back) = hub.signal("x/y", signal(1), Some(receipt(7))).unwrap_err();
        assert!(matches!(error, InputError::UnknownWorkload(_)) && back.is_some(), "the receipt comes back");
    }
}

#[cfg(test)]
mod reconfigure_tests {
    use super::*;
    use crate::signals::input::Configured;
    use std::time::Duration;

    fn spec(name: &str, label: &'static str, max_age_s: u64) -> MetricSpec {
        MetricSpec {
            name: name.into(),
            source: label,
            label,
            spec: Configured::new(serde_json::json!({}), ()),
            max_age: Duration::from_secs(max_age_s),
            required: true,
        }
    }

    #[test]
    fn reconfiguring_keeps_what_stays_and_drops_the_rest() {
        let metric =
            |name: &str| Metric { name: name.into(), source: "push".into(), value: 7.0, timestamp_ms: 0, pods: vec![] };
        let before = [spec("rps", "push", 30), spec("lag", "push", 30)];
        let (ab, cd, ef) =
            (super::tests::target("a", "b"), super::tests::target("c", "d"), super::tests::target("e", "f"));
        let hub = SignalHub::new([("a/b", &ab, &before[..]), ("c/d", &cd, &before[..])], Arc::new(Metrics::new()));
        hub.update("a/b", "push", metric("rps"), None, 1_000).unwrap();
        hub.update("a/b", "push", metric("lag"), None, 1_000).unwrap();
        hub.push(
            "a/b",
            vec![],
            vec![Signal {
                kind: "event".into(),
                source: "push".into(),
                timestamp_ms: 1,
                action: None,
                target_replicas: Some(3),
                urgency: None,
                reason: String::new(),
                attributes: vec![],
            }],
            None,
            1_000,
        )
        .unwrap();
        // rps stays (max age now 60 s), lag now comes from Prometheus, c/d goes, e/f comes
        let after = [spec("rps", "push", 60), spec("lag", "prometheus", 30)];
        hub.reconfigure([("a/b", &ab, &after[..]), ("e/f", &ef, &after[..])]);
        let inputs = hub.collect("a/b", 50_000);
        assert_eq!(
            inputs.metrics.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
            ["rps"],
            "kept, with its new max age"
        );
        assert_eq!(inputs.stale, ["prometheus:lag"], "a new source starts empty");
        assert_eq!(inputs.signals.len(), 1, "queued signals stay");
        assert!(matches!(hub.update("c/d", "push", metric("rps"), None, 0), Err(InputError::UnknownWorkload(_))));
        assert_eq!(hub.collect("e/f", 0).stale.len(), 2);
        assert_eq!(hub.resolve("f").as_deref(), Some("e/f"), "routes follow");
        assert_eq!(hub.resolve("d"), None);
    }

    #[test]
    fn names_resolve_to_workloads_and_ambiguous_bare_names_do_not() {
        let (one, two, three) = (
            super::tests::target("rtc", "socket"),
            super::tests::target("eu", "socket"),
            super::tests::target("shop", "web"),
        );
        let hub = SignalHub::new(
            [("rtc/socket", &one, &[][..]), ("eu-socket", &two, &[][..]), ("web", &three, &[][..])],
            Arc::new(Metrics::new()),
        );
        assert_eq!(hub.resolve("rtc/socket").as_deref(), Some("rtc/socket"));
        assert_eq!(hub.resolve("eu/socket").as_deref(), Some("eu-socket"));
        assert_eq!(hub.resolve("eu-socket").as_deref(), Some("eu-socket"));
        assert_eq!(hub.resolve("socket"), None, "two targets are called socket");
        assert_eq!(hub.resolve("shop/web").as_deref(), Some("web"));
        assert_eq!(hub.resolve("checkout"), None);
    }
}
