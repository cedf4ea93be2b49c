//! Inputs from outside the cluster: named metrics and discrete signals per
//! workload, each with its timestamp, collected by sources (Prometheus, the
//! admin API's push endpoint, …) into a [`SignalHub`] that the decision
//! loop reads at every evaluation.
//!
//! - A workload declares its metrics in the config (`workloads[].metrics`),
//!   each with one source, a maximum age and whether it is required.
//! - A metric older than its `max_age` (or never received) is left out of
//!   the snapshot; if it is required it is reported stale, which holds
//!   scale-down (guardrails). A failing source therefore never makes a
//!   workload shrink on old data, and never blocks other sources.
//! - Signals (events such as a `ScaleSignal`) are queued per workload (at
//!   most [`SIGNAL_QUEUE`], oldest dropped), trigger an immediate
//!   evaluation, and are delivered to the next evaluation once.
//! - Failures are counted by source and kind and logged when a metric goes
//!   from working to failing (and when it recovers), not on every attempt.

pub mod forecast;
pub mod kafka;
pub mod nats;
pub mod pod_metrics;
pub mod poll;
pub mod prometheus;
pub mod redis;

use crate::config::{MetricSource, Workload};
use crate::snapshot::{Forecast, Metric, Signal};
use crate::telemetry::Metrics;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Signals kept per workload between evaluations.
pub const SIGNAL_QUEUE: usize = 256;

/// What the hub gives one evaluation.
#[derive(Debug, Default, Clone)]
pub struct Inputs {
    pub metrics: Vec<Metric>,
    pub signals: Vec<Signal>,
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

#[derive(Debug, Default)]
struct WorkloadInputs {
    slots: BTreeMap<String, Slot>,
    signals: VecDeque<Signal>,
    dropped_signals: u64,
}

type Trigger = Arc<dyn Fn(&str) + Send + Sync>;

impl std::fmt::Debug for SignalHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SignalHub({} workloads)", self.workloads.len())
    }
}

/// Latest inputs of every workload.
pub struct SignalHub {
    workloads: HashMap<String, Mutex<WorkloadInputs>>,
    trigger: OnceLock<Trigger>,
    metrics: Arc<Metrics>,
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

impl SignalHub {
    /// Slots for every metric the workloads declare.
    pub fn new(workloads: &[Workload], metrics: Arc<Metrics>) -> SignalHub {
        let workloads = workloads
            .iter()
            .map(|w| {
                let slots = w
                    .metrics
                    .iter()
                    .map(|m| {
                        let slot = Slot {
                            source: m.source.label(),
                            max_age_ms: m.max_age.as_millis() as u64,
                            required: m.required,
                            latest: None,
                            received_ms: 0,
                            failing: None,
                            forecast: None,
                        };
                        (m.name.clone(), slot)
                    })
                    .collect();
                (w.name.clone(), Mutex::new(WorkloadInputs { slots, ..WorkloadInputs::default() }))
            })
            .collect();
        SignalHub { workloads, trigger: OnceLock::new(), metrics }
    }

    /// Called with a workload's name when a signal for it arrives (the loop
    /// evaluates it at once). Set once.
    pub fn set_trigger(&self, trigger: impl Fn(&str) + Send + Sync + 'static) {
        let _ = self.trigger.set(Arc::new(trigger));
    }

    fn workload(&self, name: &str) -> Result<&Mutex<WorkloadInputs>, InputError> {
        self.workloads.get(name).ok_or_else(|| InputError::UnknownWorkload(name.to_string()))
    }

    /// A new value of a declared metric, received at `now_ms`.
    pub fn update(
        &self,
        workload: &str,
        source: &'static str,
        metric: Metric,
        forecast: Option<Forecast>,
        now_ms: u64,
    ) -> Result<(), InputError> {
        check_finite(&metric)?;
        let mut inputs = self.workload(workload)?.lock();
        let slot = inputs.slots.get_mut(&metric.name).filter(|s| s.source == source).ok_or_else(|| {
            InputError::UndeclaredMetric { workload: workload.into(), metric: metric.name.clone(), via: source }
        })?;
        slot.store(workload, metric, forecast, now_ms);
        Ok(())
    }

    /// Pushed inputs (`POST /v1/signals`), all or nothing: every metric must
    /// be declared with `push` and finite, every signal must have a kind.
    /// Returns how many metrics and signals were taken.
    pub fn push(
        &self,
        workload: &str,
        metrics: Vec<Metric>,
        signals: Vec<Signal>,
        now_ms: u64,
    ) -> Result<(usize, usize), InputError> {
        let counts = (metrics.len(), signals.len());
        {
            let mut inputs = self.workload(workload)?.lock();
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
                slot.store(workload, metric, None, now_ms);
            }
            for signal in signals {
                inputs.enqueue(signal, &self.metrics);
            }
        }
        if counts.1 > 0
            && let Some(trigger) = self.trigger.get()
        {
            trigger(workload);
        }
        Ok(counts)
    }

    /// A failed attempt to read a metric: counted, logged when it starts
    /// failing; the last value stays until it is too old.
    pub fn fail(&self, workload: &str, name: &str, kind: &'static str, error: String) {
        let Ok(inputs) = self.workload(workload) else {
            self.metrics.count_source_error("unknown", kind);
            return;
        };
        let mut inputs = inputs.lock();
        let Some(slot) = inputs.slots.get_mut(name) else {
            self.metrics.count_source_error("unknown", kind);
            return;
        };
        self.metrics.count_source_error(slot.source, kind);
        if slot.failing.is_none() {
            tracing::warn!(%workload, metric = %name, source = slot.source, %error, "input failing; stale after its max age");
        }
        slot.failing = Some(error);
    }

    /// A discrete signal for a workload; triggers an evaluation.
    pub fn signal(&self, workload: &str, signal: Signal) -> Result<(), InputError> {
        self.workload(workload)?.lock().enqueue(signal, &self.metrics);
        if let Some(trigger) = self.trigger.get() {
            trigger(workload);
        }
        Ok(())
    }

    /// The inputs of one evaluation at `now_ms`: fresh metrics, the signals
    /// queued since the last evaluation, and the required inputs that are stale.
    pub fn collect(&self, workload: &str, now_ms: u64) -> Inputs {
        let Ok(inputs) = self.workload(workload) else { return Inputs::default() };
        let mut inputs = inputs.lock();
        let mut out = Inputs { signals: inputs.signals.drain(..).collect(), ..Inputs::default() };
        for (name, slot) in &inputs.slots {
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

    /// Per workload and metric: source, age of the last value, last error.
    pub fn status(&self, workload: &str, now_ms: u64) -> Option<serde_json::Value> {
        let inputs = self.workloads.get(workload)?.lock();
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

fn check_finite(metric: &Metric) -> Result<(), InputError> {
    if !metric.value.is_finite() || metric.pods.iter().any(|p| !p.value.is_finite()) {
        return Err(InputError::Invalid(format!("metric {:?}: values must be finite numbers", metric.name)));
    }
    Ok(())
}

impl Slot {
    /// A new value, received at `now_ms`; ends a failure.
    fn store(&mut self, workload: &str, metric: Metric, forecast: Option<Forecast>, now_ms: u64) {
        if let Some(error) = self.failing.take() {
            tracing::info!(%workload, metric = %metric.name, source = self.source, previous_error = %error, "input recovered");
        }
        // a forecast is as old as its generation, however recently it arrived
        self.received_ms = forecast.as_ref().map_or(now_ms, |f| f.generated_ms.min(now_ms));
        self.latest = Some(metric);
        self.forecast = forecast;
    }
}

impl WorkloadInputs {
    /// Queues a signal, dropping (and counting) the oldest when full.
    fn enqueue(&mut self, signal: Signal, metrics: &Metrics) {
        let mut dropped = None;
        if self.signals.len() >= SIGNAL_QUEUE {
            dropped = self.signals.pop_front();
            self.dropped_signals += 1;
        }
        metrics.count_signal(&signal.source, dropped.as_ref().map(|d| d.source.as_str()));
        self.signals.push_back(signal);
    }
}

impl MetricSource {
    /// Bounded label for metrics and stale-input names.
    pub fn label(&self) -> &'static str {
        match self {
            MetricSource::Prometheus(_) => "prometheus",
            MetricSource::Nats(_) => "nats",
            MetricSource::Forecast(_) => "forecast",
            MetricSource::Redis(_) => "redis",
            MetricSource::KafkaLag(_) => "kafka",
            MetricSource::PodMetrics(_) => "pod-metrics",
            MetricSource::Push => "push",
        }
    }
}

/// Logs the first of a burst of similar problems, then at most one line per
/// 10 s saying how many more there were.
pub struct BurstLog {
    what: &'static str,
    window: Option<std::time::Instant>,
    suppressed: u64,
}

impl BurstLog {
    pub fn new(what: &'static str) -> BurstLog {
        BurstLog { what, window: None, suppressed: 0 }
    }

    pub fn note(&mut self, detail: &str) {
        let now = std::time::Instant::now();
        match self.window {
            Some(start) if now.duration_since(start) < Duration::from_secs(10) => self.suppressed += 1,
            _ => {
                if self.suppressed > 0 {
                    tracing::warn!(what = self.what, count = self.suppressed, "more of the same in the last 10 s");
                }
                tracing::warn!(what = self.what, %detail, "input problem");
                self.window = Some(now);
                self.suppressed = 0;
            }
        }
    }
}

/// Validation shared by the sources' settings: an http(s) URL and a poll
/// interval of at least 100 ms.
pub fn check_endpoint(field: &'static str, url: &str, interval: Duration) -> Result<(), (&'static str, String)> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err((field, format!("{url:?} is not an http(s) URL")));
    }
    check_interval(interval)
}

/// A source's poll interval: at least 100 ms.
pub fn check_interval(interval: Duration) -> Result<(), (&'static str, String)> {
    if interval < Duration::from_millis(100) {
        return Err(("interval", "must be at least 100ms".into()));
    }
    Ok(())
}

/// Default maximum age of a metric: three polls of its source, and at
/// least the 1 s any `max_age` must be.
pub fn default_max_age(poll: Duration) -> Duration {
    (poll * 3).max(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn hub() -> SignalHub {
        let config = Config::parse(
            "workloads:\n  - target: {namespace: a, name: b}\n    max_replicas: 5\n    interval: 10s\n    policies: [{policy: fixed}]\n    metrics:\n      - {name: rps, push: {}}\n      - {name: extra, push: {}, required: false, max_age: 5s}\n",
        )
        .unwrap();
        SignalHub::new(&config.workloads, Arc::new(Metrics::new()))
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
        // push metrics default to 3 × the workload interval (30 s); extra has 5 s
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
            hub.signal("a/b", signal.clone()).unwrap();
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
}
