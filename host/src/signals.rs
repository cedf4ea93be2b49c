//! Inputs from outside the cluster: named metrics and discrete signals per
//! workload, each with its timestamp, gathered by sources into the
//! [`SignalHub`] that the decision loop reads at every evaluation.
//!
//! - [`input`]: what an input is — a metric's spec, a parsed block of
//!   settings, the errors of settings and reads.
//! - [`hub`]: the latest value of every declared metric, freshness, the
//!   signal queues.
//! - [`delivery`]: how a signal is acknowledged once it was acted on
//!   (receipts: Kafka offsets, push answers) and recognised when read twice.
//! - [`source`]: what a source is ([`source::Source`]), what it starts with,
//!   and the shared pieces (endpoints, bursts of log lines).
//! - [`poll`]: the loop every polling source runs.
//! - One file per source: [`prometheus`], [`kafka`] (directives, lag,
//!   audit), [`forecast`], [`redis`], [`nats`], [`pod_metrics`], [`push`].
//!
//! [`REGISTRY`] lists the sources; configuration ([`Sources`]), start-up and
//! reload ([`Running`]) go through it. Adding a source is its file plus one
//! line in [`REGISTRY`].

pub mod delivery;
pub mod forecast;
pub mod hub;
pub mod input;
pub mod kafka;
pub mod nats;
pub mod pod_metrics;
pub mod poll;
pub mod prometheus;
pub mod push;
pub mod redis;
pub mod source;

pub use delivery::{Delivery, Handled, Origin, Receipt};
pub use hub::{Declared, InputError, Inputs, SIGNAL_QUEUE, SignalHub};
pub use source::{Context, FieldError, MetricSpec, SourceError};

use crate::sink::DecisionSink;
use source::{Configured, Entry, Job, Registered, default_max_age};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Every source, in the order their keys are listed in messages.
pub static REGISTRY: &[&dyn Registered] = &[
    &Entry::<prometheus::Prometheus>::new(),
    &Entry::<nats::Nats>::new(),
    &Entry::<forecast::Forecasts>::new(),
    &Entry::<redis::Heartbeats>::new(),
    &Entry::<kafka::Kafka>::new(),
    &Entry::<pod_metrics::PodMetricsSource>::new(),
    &Entry::<push::Push>::new(),
];

fn registered(name: &str) -> Option<&'static dyn Registered> {
    REGISTRY.iter().copied().find(|entry| entry.name() == name)
}

/// `sources:` of the configuration: the settings of each source given
/// there, by the source's name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sources {
    settings: BTreeMap<&'static str, Configured>,
}

impl Sources {
    /// Parses and validates every block; the error's field is relative to
    /// `sources` (e.g. `kafka.brokers`).
    pub fn parse(blocks: BTreeMap<String, serde_json::Value>) -> Result<Sources, FieldError> {
        let mut settings = BTreeMap::new();
        for (key, raw) in blocks {
            let entry = registered(&key).ok_or_else(|| {
                let known: Vec<&str> = REGISTRY.iter().map(|e| e.name()).collect();
                FieldError::new(&key, format!("unknown source `{key}`, expected one of {}", known.join(", ")))
            })?;
            let configured = entry.settings(raw).map_err(|e| FieldError::new(e.under(&key), e.message))?;
            settings.insert(entry.name(), configured);
        }
        Ok(Sources { settings })
    }

    /// A workload metric: `fields` are the metric's keys besides `name`,
    /// `max_age` and `required` — exactly one of them must name a source.
    /// `workload_interval` is the default refresh of sources without one
    /// (pushed metrics). The error's field is relative to the metric.
    pub fn metric(
        &self,
        name: &str,
        fields: BTreeMap<String, serde_json::Value>,
        max_age: Option<Duration>,
        required: Option<bool>,
        workload_interval: Duration,
    ) -> Result<MetricSpec, FieldError> {
        let keys: Vec<&str> = REGISTRY.iter().filter_map(|e| e.metric_key()).collect();
        let exactly_one = || {
            let (last, rest) = keys.split_last().expect("sources have metric keys");
            FieldError::new("", format!("give exactly one source: {} or {last}", rest.join(", ")))
        };
        let mut fields = fields.into_iter();
        let (Some((key, raw)), None) = (fields.next(), fields.next()) else { return Err(exactly_one()) };
        let entry = REGISTRY.iter().copied().find(|e| e.metric_key() == Some(key.as_str())).ok_or_else(|| {
            FieldError::new(
                &key,
                format!("unknown field `{key}`, expected one of name, max_age, required, {}", keys.join(", ")),
            )
        })?;
        let settings = match self.settings.get(entry.name()).cloned().or_else(|| entry.default_settings()) {
            Some(settings) => settings,
            None => {
                return Err(FieldError::new(
                    &key,
                    format!("no {} configured (add sources.{})", entry.title(), entry.name()),
                ));
            }
        };
        let spec = entry.metric(raw).map_err(|e| FieldError::new(e.under(&key), e.message))?;
        let refresh = entry.refresh(&settings).unwrap_or(workload_interval);
        let max_age = max_age.unwrap_or(default_max_age(refresh));
        if max_age < Duration::from_secs(1) {
            return Err(FieldError::new("max_age", "must be at least 1s"));
        }
        Ok(MetricSpec {
            name: name.to_string(),
            source: entry.name(),
            label: entry.label(),
            spec,
            max_age,
            required: required.unwrap_or(true),
        })
    }

    /// The settings each source runs with: those given, else its defaults.
    fn effective(&self, entry: &dyn Registered) -> Option<Configured> {
        self.settings.get(entry.name()).cloned().or_else(|| entry.default_settings())
    }
}

/// Why sources could not start: the setting at fault, by its path under
/// `sources` (e.g. `sources.prometheus.ca_file`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct StartError {
    pub path: String,
    pub message: String,
}

/// What one source runs with: its settings and its jobs.
#[derive(Clone, PartialEq)]
struct Plan {
    settings: Configured,
    jobs: Vec<Job<Configured>>,
}

struct RunningSource {
    plan: Plan,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    sink: Option<Arc<dyn DecisionSink>>,
}

/// The running sources. [`Running::apply`] starts what a configuration
/// asks for and restarts only the sources whose settings or jobs changed.
#[derive(Default)]
pub struct Running {
    sources: BTreeMap<&'static str, RunningSource>,
}

impl Running {
    /// Starts, restarts and stops sources to match `sources` and
    /// `workloads`. All or nothing: when a source cannot start, what ran
    /// before keeps running and the error names the setting. `context`'s
    /// shutdown token stops every source; each also gets its own.
    pub fn apply<'a>(
        &mut self,
        sources: &Sources,
        workloads: impl IntoIterator<Item = Declared<'a>> + Clone,
        context: &Context,
    ) -> Result<(), StartError> {
        let mut plans = BTreeMap::new();
        for entry in REGISTRY.iter().copied() {
            let jobs: Vec<Job<Configured>> = workloads
                .clone()
                .into_iter()
                .flat_map(|(workload, target, metrics)| {
                    metrics.iter().filter(|m| m.source == entry.name()).map(move |m| Job {
                        workload: workload.to_string(),
                        target: target.clone(),
                        metric: m.name.clone(),
                        spec: m.spec.clone(),
                    })
                })
                .collect();
            let explicit = sources.settings.contains_key(entry.name());
            if !explicit && jobs.is_empty() {
                continue;
            }
            let Some(settings) = sources.effective(entry) else { continue };
            plans.insert(entry.name(), Plan { settings, jobs });
        }
        // build every changed source first; nothing stops before all could start
        let mut fresh = BTreeMap::new();
        for (name, plan) in &plans {
            if self.sources.get(name).is_some_and(|running| &running.plan == plan) {
                continue;
            }
            let entry = registered(name).expect("planned from the registry");
            let stop = context.shutdown.child_token();
            let own = Context { shutdown: stop.clone(), ..context.clone() };
            let jobs = plan
                .jobs
                .iter()
                .map(|job| Job {
                    workload: job.workload.clone(),
                    target: job.target.clone(),
                    metric: job.metric.clone(),
                    spec: &job.spec,
                })
                .collect();
            let started = entry
                .start(&plan.settings, jobs, &own)
                .map_err(|e| StartError { path: e.under(&format!("sources.{name}")), message: e.message })?;
            fresh.insert(*name, (plan.clone(), stop, started));
        }
        for (name, running) in std::mem::take(&mut self.sources) {
            let replaced = fresh.contains_key(name) || !plans.contains_key(name);
            if replaced {
                running.stop.cancel();
                if !fresh.contains_key(name) {
                    tracing::info!(source = name, "source stopped");
                }
            } else {
                self.sources.insert(name, running);
            }
        }
        for (name, (plan, stop, started)) in fresh {
            let tasks = started.tasks.into_iter().map(tokio::spawn).collect();
            tracing::info!(source = name, inputs = plan.jobs.len(), "source started");
            self.sources.insert(name, RunningSource { plan, stop, tasks, sink: started.sink });
        }
        Ok(())
    }

    /// The decision sinks of the running sources.
    pub fn sinks(&self) -> Vec<Arc<dyn DecisionSink>> {
        self.sources.values().filter_map(|s| s.sink.clone()).collect()
    }

    /// Stops every source; a fetch in flight is abandoned.
    pub fn stop(&mut self) {
        for (_, source) in std::mem::take(&mut self.sources) {
            source.stop.cancel();
            for task in source.tasks {
                task.abort();
            }
        }
    }
}
