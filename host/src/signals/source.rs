//! What a signal source is, to the rest of the daemon: a type implementing
//! [`Source`] — its settings under `sources.<NAME>`, the spec of a workload
//! metric read from it (`workloads[].metrics[].<METRIC>`), their
//! validation, and how it starts against the [`SignalHub`]. The registry in
//! `signals.rs` lists every source once; configuration, start-up and reload
//! go through it, so adding a source is one file plus one registry line.
//!
//! Settings and metric specs stay typed inside their source; everyone else
//! holds them as [`Configured`] values (the parsed value plus the JSON it
//! came from, which is what equality and reload compare).

use super::hub::SignalHub;
pub use super::input::{Configured, FieldError, MetricSpec, SourceError, from_value};
use crate::clock::Clock;
use crate::cluster::{ResourceMetrics, Target};
use crate::leadership::Leadership;
use crate::sink::DecisionSink;
use crate::telemetry::Metrics;
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A source's long-running task.
pub type SourceTask = BoxFuture<'static, ()>;

/// One input of one workload that a source reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Job<M> {
    /// The workload binding's name (the hub's key).
    pub workload: String,
    pub target: Target,
    /// The metric's name in the binding.
    pub metric: String,
    pub spec: M,
}

impl<M> Job<M> {
    /// The same job with another spec.
    pub fn with<N>(self, spec: N) -> Job<N> {
        Job { workload: self.workload, target: self.target, metric: self.metric, spec }
    }
}

/// What a source gets to start with.
#[derive(Clone)]
pub struct Context {
    pub hub: Arc<SignalHub>,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    /// The cluster's resource metrics API (`None` without a cluster).
    pub resource_metrics: Option<Arc<dyn ResourceMetrics>>,
    pub leadership: Arc<Leadership>,
    /// Stops the source's tasks.
    pub shutdown: CancellationToken,
}

/// A started source: its tasks (spawned by the daemon) and, for sources
/// that also publish decisions, a sink.
#[derive(Default)]
pub struct Started {
    pub tasks: Vec<SourceTask>,
    pub sink: Option<Arc<dyn DecisionSink>>,
}

/// A kind of signal source. See the module doc.
pub trait Source: 'static {
    /// Its key under `sources:`.
    const NAME: &'static str;
    /// Its key in a workload metric (`metrics[].<METRIC>`); `None` when it
    /// feeds no metrics (it may still deliver signals).
    const METRIC: Option<&'static str>;
    /// Bounded label: metrics, stale-input names, the hub's slots.
    const LABEL: &'static str;
    /// What people call it, in messages ("no {TITLE} configured").
    const TITLE: &'static str;
    type Settings: Send + Sync + 'static;
    type Metric: DeserializeOwned + Send + Sync + 'static;

    /// Parses and validates `sources.<NAME>`.
    fn settings(value: serde_json::Value) -> Result<Self::Settings, FieldError>;

    /// The settings when `sources.<NAME>` is absent; `None`: metrics of this
    /// source need the block.
    fn default_settings() -> Option<Self::Settings> {
        None
    }

    /// Checks one workload metric's spec.
    fn validate_metric(_metric: &Self::Metric) -> Result<(), FieldError> {
        Ok(())
    }

    /// How often the source refreshes a metric (a metric's default maximum
    /// age is three of these); `None`: as often as the workload evaluates.
    fn refresh(settings: &Self::Settings) -> Option<Duration>;

    /// Starts reading `jobs` (possibly none: a source may deliver signals
    /// only). An error names the setting that made start-up impossible.
    fn start(
        settings: &Self::Settings,
        jobs: Vec<Job<&Self::Metric>>,
        context: &Context,
    ) -> Result<Started, FieldError>;
}

/// A [`Source`] with its types erased, as the registry holds it.
pub trait Registered: Send + Sync {
    fn name(&self) -> &'static str;
    fn metric_key(&self) -> Option<&'static str>;
    fn label(&self) -> &'static str;
    fn title(&self) -> &'static str;
    fn settings(&self, raw: serde_json::Value) -> Result<Configured, FieldError>;
    fn default_settings(&self) -> Option<Configured>;
    fn metric(&self, raw: serde_json::Value) -> Result<Configured, FieldError>;
    fn refresh(&self, settings: &Configured) -> Option<Duration>;
    fn start(
        &self,
        settings: &Configured,
        jobs: Vec<Job<&Configured>>,
        context: &Context,
    ) -> Result<Started, FieldError>;
}

/// The registry entry of source `S`.
pub struct Entry<S>(std::marker::PhantomData<fn() -> S>);

impl<S> Entry<S> {
    pub const fn new() -> Entry<S> {
        Entry(std::marker::PhantomData)
    }
}

impl<S> Default for Entry<S> {
    fn default() -> Self {
        Entry::new()
    }
}

fn typed<'a, T: 'static>(configured: &'a Configured, what: &str) -> &'a T {
    configured.get::<T>().unwrap_or_else(|| panic!("{what} of another source"))
}

impl<S: Source> Registered for Entry<S> {
    fn name(&self) -> &'static str {
        S::NAME
    }
    fn metric_key(&self) -> Option<&'static str> {
        S::METRIC
    }
    fn label(&self) -> &'static str {
        S::LABEL
    }
    fn title(&self) -> &'static str {
        S::TITLE
    }
    fn settings(&self, raw: serde_json::Value) -> Result<Configured, FieldError> {
        let parsed = S::settings(raw.clone())?;
        Ok(Configured::new(raw, parsed))
    }
    fn default_settings(&self) -> Option<Configured> {
        S::default_settings().map(|parsed| Configured::new(serde_json::Value::Null, parsed))
    }
    fn metric(&self, raw: serde_json::Value) -> Result<Configured, FieldError> {
        let parsed: S::Metric = from_value(raw.clone())?;
        S::validate_metric(&parsed)?;
        Ok(Configured::new(raw, parsed))
    }
    fn refresh(&self, settings: &Configured) -> Option<Duration> {
        S::refresh(typed::<S::Settings>(settings, "settings"))
    }
    fn start(
        &self,
        settings: &Configured,
        jobs: Vec<Job<&Configured>>,
        context: &Context,
    ) -> Result<Started, FieldError> {
        let jobs = jobs
            .into_iter()
            .map(|job| Job {
                workload: job.workload,
                target: job.target,
                metric: job.metric,
                spec: typed::<S::Metric>(job.spec, "metric"),
            })
            .collect();
        S::start(typed::<S::Settings>(settings, "settings"), jobs, context)
    }
}

/// `{url, interval, timeout}`: where a polling source reads and how often,
/// shared by every source that polls one endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub url: String,
    /// Time between two reads.
    pub interval: Duration,
    /// Deadline of one read.
    pub timeout: Duration,
}

/// A source's defaults for its [`Endpoint`] and the URL schemes it speaks.
pub struct EndpointDefaults {
    /// The key the URL is given under (`url`, or `monitor_url` for NATS).
    pub url_key: &'static str,
    /// Accepted URL schemes; empty: the source checks the URL itself.
    pub schemes: &'static [&'static str],
    pub interval: Duration,
    pub timeout: Duration,
}

impl Endpoint {
    /// Splits a settings block into its endpoint (`url_key`, `interval`,
    /// `timeout`) and the source's own settings `T` (unknown fields refused
    /// by `T`), validating the endpoint.
    pub fn split<T: DeserializeOwned>(
        raw: serde_json::Value,
        defaults: &EndpointDefaults,
    ) -> Result<(Endpoint, T), FieldError> {
        let serde_json::Value::Object(mut map) = raw else {
            return Err(FieldError::new("", "expected a mapping"));
        };
        let url = match map.remove(defaults.url_key) {
            Some(serde_json::Value::String(url)) => url,
            Some(other) => return Err(FieldError::new(defaults.url_key, format!("expected a string, got {other}"))),
            None => return Err(FieldError::new("", format!("missing field `{}`", defaults.url_key))),
        };
        let duration = |key: &str, default: Duration, map: &mut serde_json::Map<String, serde_json::Value>| match map
            .remove(key)
        {
            None => Ok(default),
            Some(serde_json::Value::String(text)) => humantime::parse_duration(&text)
                .map_err(|e| FieldError::new(key, format!("{text:?} is not a duration like 5s: {e}"))),
            Some(other) => Err(FieldError::new(key, format!("expected a duration like \"5s\", got {other}"))),
        };
        let interval = duration("interval", defaults.interval, &mut map)?;
        let timeout = duration("timeout", defaults.timeout, &mut map)?;
        let rest: T = from_value(serde_json::Value::Object(map))?;
        let schemes = defaults.schemes;
        if !schemes.is_empty() && !schemes.iter().any(|scheme| url.starts_with(&format!("{scheme}://"))) {
            let expected = match schemes {
                ["http", "https"] => "an http(s) URL".to_string(),
                _ => format!("a {} URL", schemes.iter().map(|s| format!("{s}://")).collect::<Vec<_>>().join(" or ")),
            };
            return Err(FieldError::new(defaults.url_key, format!("{url:?} is not {expected}")));
        }
        check_interval(interval)?;
        if timeout.is_zero() {
            return Err(FieldError::new("timeout", "must be more than 0"));
        }
        Ok((Endpoint { url, interval, timeout }, rest))
    }
}

/// A settings block with nothing besides its [`Endpoint`].
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nothing {}

/// A source's poll interval: at least 100 ms.
pub fn check_interval(interval: Duration) -> Result<(), FieldError> {
    if interval < Duration::from_millis(100) {
        return Err(FieldError::new("interval", "must be at least 100ms"));
    }
    Ok(())
}

/// Default maximum age of a metric: three refreshes of its source, and at
/// least the 1 s any `max_age` must be.
pub fn default_max_age(refresh: Duration) -> Duration {
    (refresh * 3).max(Duration::from_secs(1))
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Rest {
        #[serde(default)]
        token_file: Option<String>,
    }

    const HTTP: EndpointDefaults = EndpointDefaults {
        url_key: "url",
        schemes: &["http", "https"],
        interval: Duration::from_secs(15),
        timeout: Duration::from_secs(5),
    };

    #[test]
    fn an_endpoint_is_split_from_the_rest_with_defaults() {
        let (endpoint, rest): (Endpoint, Rest) =
            Endpoint::split(json!({"url": "http://prom:9090", "timeout": "2s", "token_file": "/t"}), &HTTP).unwrap();
        assert_eq!(
            endpoint,
            Endpoint {
                url: "http://prom:9090".into(),
                interval: Duration::from_secs(15),
                timeout: Duration::from_secs(2)
            }
        );
        assert_eq!(rest.token_file.as_deref(), Some("/t"));
    }

    #[test]
    fn endpoint_errors_name_the_field() {
        for (raw, field, needle) in [
            (json!({"url": "prom:9090"}), "url", "not an http(s) URL"),
            (json!({"url": "http://p", "interval": "10ms"}), "interval", "at least 100ms"),
            (json!({"url": "http://p", "interval": "soon"}), "interval", "not a duration"),
            (json!({"url": "http://p", "timeout": "0s"}), "timeout", "more than 0"),
            (json!({"url": "http://p", "tokn_file": "/t"}), "tokn_file", "unknown field `tokn_file`"),
            (json!({"interval": "1s"}), "", "missing field `url`"),
        ] {
            let error = Endpoint::split::<Rest>(raw.clone(), &HTTP).unwrap_err();
            assert_eq!(error.field, field, "{raw} → {error}");
            assert!(error.message.contains(needle), "{raw} → {error}");
        }
    }
}
