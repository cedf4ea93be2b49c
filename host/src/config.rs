//! The daemon's configuration file: which workloads to scale, with which
//! policies, within which limits. Parsed once at start-up from YAML (unknown
//! fields rejected), then validated into typed structs; every error names the
//! offending field by its path, e.g. `workloads[1].max_replicas`.
//!
//! Process settings (listen addresses, log format, kubeconfig) are flags,
//! not part of this file. The format is documented in `docs/CONFIG.md`.

use crate::guardrails::{Limits, Step};
use crate::signals::{forecast, kafka, nats, pod_metrics, prometheus, redis};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

/// A configuration error: where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct Error {
    /// Path of the offending field, e.g. `workloads[0].policies[1].policy`
    /// (`.` for the document itself).
    pub path: String,
    pub message: String,
}

fn error(path: impl Into<String>, message: impl Into<String>) -> Error {
    Error { path: path.into(), message: message.into() }
}

/// How a binding names a policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyRef {
    /// The newest valid version of `name`.
    Latest(String),
    /// Exactly `name@version`.
    Version(String, semver::Version),
    /// Exactly the component with this sha256 (lowercase hex).
    Digest(String, String),
}

impl PolicyRef {
    pub fn name(&self) -> &str {
        match self {
            PolicyRef::Latest(name) | PolicyRef::Version(name, _) | PolicyRef::Digest(name, _) => name,
        }
    }
}

impl std::fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyRef::Latest(name) => write!(f, "{name}"),
            PolicyRef::Version(name, version) => write!(f, "{name}@{version}"),
            PolicyRef::Digest(name, digest) => write!(f, "{name}@sha256:{digest}"),
        }
    }
}

impl std::str::FromStr for PolicyRef {
    type Err = String;

    /// `name`, `name@1.2.3` or `name@sha256:<64 hex>`.
    fn from_str(text: &str) -> Result<PolicyRef, String> {
        let (name, selector) = match text.split_once('@') {
            Some((name, selector)) => (name, Some(selector)),
            None => (text, None),
        };
        let valid_name = !name.is_empty()
            && name.len() <= 63
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid_name {
            return Err(format!("invalid policy name {name:?} (expected lowercase letters, digits and '-')"));
        }
        match selector {
            None => Ok(PolicyRef::Latest(name.into())),
            Some(selector) => match selector.strip_prefix("sha256:") {
                Some(digest) if digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    Ok(PolicyRef::Digest(name.into(), digest.to_ascii_lowercase()))
                }
                Some(_) => Err(format!("invalid digest in {text:?}: expected sha256: and 64 hex digits")),
                None => semver::Version::parse(selector)
                    .map(|version| PolicyRef::Version(name.into(), version))
                    .map_err(|e| format!("invalid version in {text:?}: {e}")),
            },
        }
    }
}

// ---- the file, as written -------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    policies: RawPolicies,
    #[serde(default)]
    sources: Sources,
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    workloads: Vec<RawWorkload>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicies {
    directory: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    #[serde(default, with = "humantime_serde")]
    interval: Option<Duration>,
    #[serde(default)]
    guardrails: RawGuardrails,
    #[serde(default)]
    actuator: Option<Actuator>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuardrails {
    max_step_up: Option<Step>,
    max_step_down: Option<Step>,
    #[serde(default, with = "humantime_serde")]
    cooldown_up: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    cooldown_down: Option<Duration>,
    hold_on_stale: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    name: Option<String>,
    target: Target,
    policies: Vec<RawBinding>,
    shadow: Option<RawBinding>,
    #[serde(default, with = "humantime_serde")]
    interval: Option<Duration>,
    min_replicas: Option<u32>,
    max_replicas: u32,
    #[serde(default)]
    guardrails: RawGuardrails,
    actuator: Option<Actuator>,
    #[serde(default)]
    metrics: Vec<RawMetric>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetric {
    name: String,
    prometheus: Option<prometheus::Query>,
    nats: Option<nats::Consumer>,
    forecast: Option<forecast::Series>,
    redis: Option<redis::Heartbeat>,
    kafka_lag: Option<kafka::Lag>,
    pod_metrics: Option<pod_metrics::Usage>,
    push: Option<PushMetric>,
    #[serde(default, with = "humantime_serde")]
    max_age: Option<Duration>,
    required: Option<bool>,
}

/// `push: {}`: values arrive through `POST /v1/signals`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PushMetric {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBinding {
    policy: String,
    #[serde(default = "empty_params")]
    params: serde_json::Value,
}

fn empty_params() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

// ---- validated ------------------------------------------------------------

/// The scale target: any resource with a `/scale` subresource.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    #[serde(default = "default_api_version")]
    pub api_version: String,
    #[serde(default = "default_kind")]
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

fn default_api_version() -> String {
    "apps/v1".into()
}
fn default_kind() -> String {
    "Deployment".into()
}

/// Where decisions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Actuator {
    /// Write the `/scale` subresource.
    Kubernetes,
    /// Decide and record, never write.
    DryRun,
}

/// A policy bound to a workload with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub policy: PolicyRef,
    pub params: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Unique name of the binding (default `namespace/name`).
    pub name: String,
    pub target: Target,
    /// Evaluated together; the largest desired count wins (like HPA/KEDA with several metrics).
    pub policies: Vec<Binding>,
    /// Evaluated beside the active policies; recorded, never actuated.
    pub shadow: Option<Binding>,
    pub interval: Duration,
    pub limits: Limits,
    pub actuator: Actuator,
    /// Inputs from signal sources, by name.
    pub metrics: Vec<MetricSpec>,
}

/// Connections to signal sources, shared by every workload.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sources {
    pub prometheus: Option<prometheus::Source>,
    pub nats: Option<nats::Source>,
    pub forecast: Option<forecast::Source>,
    pub redis: Option<redis::Source>,
    pub kafka: Option<kafka::Source>,
    /// Optional: `pod_metrics` inputs read the cluster's own API.
    pub pod_metrics: Option<pod_metrics::Source>,
}

/// One named input of a workload.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSpec {
    pub name: String,
    pub source: MetricSource,
    /// Older values are left out of the snapshot (default: three polls of the source).
    pub max_age: Duration,
    /// A stale required input holds scale-down (default true).
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MetricSource {
    Prometheus(prometheus::Query),
    /// A JetStream consumer's backlog.
    Nats(nats::Consumer),
    /// The first point of a forecast, with the series beside it.
    Forecast(forecast::Series),
    /// One field of every live node's heartbeat hash.
    Redis(redis::Heartbeat),
    /// A consumer group's lag on a topic.
    KafkaLag(kafka::Lag),
    /// CPU or memory usage of the target's pods (`metrics.k8s.io`).
    PodMetrics(pod_metrics::Usage),
    /// `POST /v1/signals`.
    Push,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The policy store directory (a ConfigMap mount in a cluster).
    pub policy_dir: Option<PathBuf>,
    pub sources: Sources,
    pub workloads: Vec<Workload>,
}

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &std::path::Path) -> Result<Config, Error> {
        let text =
            std::fs::read_to_string(path).map_err(|e| error(".", format!("cannot read {}: {e}", path.display())))?;
        Config::parse(&text)
    }

    /// Parses and validates YAML text.
    pub fn parse(text: &str) -> Result<Config, Error> {
        let deserializer = serde_yaml_ng::Deserializer::from_str(text);
        let raw: RawConfig = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            let path = if path.is_empty() || path == "." { ".".to_string() } else { path };
            let inner = e.into_inner().to_string();
            // the YAML error repeats (part of) the path before its message
            let message = match inner.split_once(": ") {
                Some((head, rest)) if path.starts_with(head) => rest.to_string(),
                _ => inner,
            };
            error(path, message)
        })?;
        raw.validate()
    }
}

impl RawConfig {
    fn validate(self) -> Result<Config, Error> {
        let mut names = BTreeSet::new();
        let mut workloads = Vec::with_capacity(self.workloads.len());
        for (index, raw) in self.workloads.into_iter().enumerate() {
            let at = |field: &str| format!("workloads[{index}].{field}");
            let name = raw.name.clone().unwrap_or_else(|| format!("{}/{}", raw.target.namespace, raw.target.name));
            if !names.insert(name.clone()) {
                return Err(error(at("name"), format!("duplicate workload {name:?}")));
            }
            for (field, value) in [("target.namespace", &raw.target.namespace), ("target.name", &raw.target.name)] {
                if value.is_empty() {
                    return Err(error(at(field), "must not be empty"));
                }
            }
            if raw.policies.is_empty() {
                return Err(error(at("policies"), "at least one policy is required"));
            }
            let binding = |raw: &RawBinding, path: String| -> Result<Binding, Error> {
                let policy = raw.policy.parse().map_err(|m| error(format!("{path}.policy"), m))?;
                Ok(Binding { policy, params: raw.params.clone() })
            };
            let policies = raw
                .policies
                .iter()
                .enumerate()
                .map(|(i, b)| binding(b, at(&format!("policies[{i}]"))))
                .collect::<Result<Vec<_>, _>>()?;
            let shadow = raw.shadow.as_ref().map(|b| binding(b, at("shadow"))).transpose()?;

            let interval = raw.interval.or(self.defaults.interval).unwrap_or(DEFAULT_INTERVAL);
            if interval < Duration::from_secs(1) || interval > Duration::from_secs(3600) {
                return Err(error(
                    at("interval"),
                    format!("must be between 1s and 1h, got {}", humantime::format_duration(interval)),
                ));
            }
            let min_replicas = raw.min_replicas.unwrap_or(1);
            if raw.max_replicas == 0 {
                return Err(error(at("max_replicas"), "must be at least 1"));
            }
            if min_replicas > raw.max_replicas {
                return Err(error(
                    at("max_replicas"),
                    format!("must be at least min_replicas ({min_replicas}), got {}", raw.max_replicas),
                ));
            }
            let guard =
                |field: fn(&RawGuardrails) -> Option<Step>| field(&raw.guardrails).or(field(&self.defaults.guardrails));
            let duration = |field: fn(&RawGuardrails) -> Option<Duration>| {
                field(&raw.guardrails).or(field(&self.defaults.guardrails)).unwrap_or(Duration::ZERO)
            };
            let actuator = raw.actuator.or(self.defaults.actuator).unwrap_or(Actuator::Kubernetes);
            let limits = Limits {
                min_replicas,
                max_replicas: raw.max_replicas,
                max_step_up: guard(|g| g.max_step_up),
                max_step_down: guard(|g| g.max_step_down),
                cooldown_up: duration(|g| g.cooldown_up),
                cooldown_down: duration(|g| g.cooldown_down),
                hold_on_stale: raw.guardrails.hold_on_stale.or(self.defaults.guardrails.hold_on_stale).unwrap_or(true),
                dry_run: actuator == Actuator::DryRun,
            };
            let metrics = metrics(&self.sources, &raw.metrics, interval, &at)?;
            workloads.push(Workload {
                name,
                target: raw.target,
                policies,
                shadow,
                interval,
                limits,
                actuator,
                metrics,
            });
        }
        if let Some(prometheus) = &self.sources.prometheus {
            prometheus.validate().map_err(|(field, message)| error(format!("sources.prometheus.{field}"), message))?;
        }
        if let Some(nats) = &self.sources.nats {
            nats.validate().map_err(|(field, message)| error(format!("sources.nats.{field}"), message))?;
        }
        if let Some(kafka) = &self.sources.kafka {
            kafka.validate().map_err(|(field, message)| error(format!("sources.kafka.{field}"), message))?;
        }
        if let Some(redis) = &self.sources.redis {
            redis.validate().map_err(|(field, message)| error(format!("sources.redis.{field}"), message))?;
        }
        if let Some(forecast) = &self.sources.forecast {
            forecast.validate().map_err(|(field, message)| error(format!("sources.forecast.{field}"), message))?;
        }
        if let Some(pods) = &self.sources.pod_metrics {
            pods.validate().map_err(|(field, message)| error(format!("sources.pod_metrics.{field}"), message))?;
        }
        Ok(Config { policy_dir: self.policies.directory, sources: self.sources, workloads })
    }
}

fn metrics(
    sources: &Sources,
    raw: &[RawMetric],
    interval: Duration,
    at: &dyn Fn(&str) -> String,
) -> Result<Vec<MetricSpec>, Error> {
    let mut names = BTreeSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (index, metric) in raw.iter().enumerate() {
        let path = |field: &str| at(&format!("metrics[{index}]{field}"));
        let valid_name = !metric.name.is_empty()
            && metric.name.len() <= 128
            && metric.name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
        if !valid_name {
            return Err(error(
                path(".name"),
                format!("invalid metric name {:?} (letters, digits, - _ . /)", metric.name),
            ));
        }
        if !names.insert(metric.name.clone()) {
            return Err(error(path(".name"), format!("duplicate metric {:?}", metric.name)));
        }
        let given = [
            metric.prometheus.is_some(),
            metric.nats.is_some(),
            metric.forecast.is_some(),
            metric.redis.is_some(),
            metric.kafka_lag.is_some(),
            metric.pod_metrics.is_some(),
            metric.push.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(error(
                path(""),
                "give exactly one source: prometheus, nats, forecast, redis, kafka_lag, pod_metrics or push",
            ));
        }
        let (source, poll) = if let Some(query) = &metric.prometheus {
            let Some(prometheus) = &sources.prometheus else {
                return Err(error(path(".prometheus"), "no Prometheus configured (add sources.prometheus)"));
            };
            query.validate().map_err(|(field, message)| error(path(&format!(".prometheus.{field}")), message))?;
            (MetricSource::Prometheus(query.clone()), prometheus.interval)
        } else if let Some(consumer) = &metric.nats {
            let Some(nats) = &sources.nats else {
                return Err(error(path(".nats"), "no NATS configured (add sources.nats)"));
            };
            consumer.validate().map_err(|(field, message)| error(path(&format!(".nats.{field}")), message))?;
            (MetricSource::Nats(consumer.clone()), nats.interval)
        } else if let Some(series) = &metric.forecast {
            let Some(forecast) = &sources.forecast else {
                return Err(error(path(".forecast"), "no forecaster configured (add sources.forecast)"));
            };
            (MetricSource::Forecast(series.clone()), forecast.interval)
        } else if let Some(heartbeat) = &metric.redis {
            let Some(redis) = &sources.redis else {
                return Err(error(path(".redis"), "no Redis configured (add sources.redis)"));
            };
            heartbeat.validate().map_err(|(field, message)| error(path(&format!(".redis.{field}")), message))?;
            (MetricSource::Redis(heartbeat.clone()), redis.interval)
        } else if let Some(lag) = &metric.kafka_lag {
            let Some(kafka) = &sources.kafka else {
                return Err(error(path(".kafka_lag"), "no Kafka configured (add sources.kafka)"));
            };
            lag.validate().map_err(|(field, message)| error(path(&format!(".kafka_lag.{field}")), message))?;
            (MetricSource::KafkaLag(lag.clone()), kafka.lag_interval)
        } else if let Some(usage) = &metric.pod_metrics {
            usage.validate().map_err(|(field, message)| error(path(&format!(".pod_metrics.{field}")), message))?;
            (MetricSource::PodMetrics(usage.clone()), sources.pod_metrics.clone().unwrap_or_default().interval)
        } else {
            (MetricSource::Push, interval)
        };
        let max_age = metric.max_age.unwrap_or(crate::signals::default_max_age(poll));
        if max_age < Duration::from_secs(1) {
            return Err(error(path(".max_age"), "must be at least 1s"));
        }
        out.push(MetricSpec { name: metric.name.clone(), source, max_age, required: metric.required.unwrap_or(true) });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
policies:
  directory: /etc/scalegate/policies
defaults:
  interval: 30s
  guardrails:
    max_step_down: "10%"
    cooldown_down: 5m
workloads:
  - target: {kind: StatefulSet, namespace: rtc, name: socket}
    min_replicas: 2
    max_replicas: 50
    policies:
      - policy: hpa@0.1.0
        params: {metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 70}}}]}
      - policy: target-tracking
        params: {metric: connections, target: 600}
    shadow: {policy: "hpa@sha256:45ff69307701a79a725d1dd006e7884d449edded90f684ea87efd4d85045a83a"}
    guardrails: {max_step_up: 5, cooldown_down: 2m}
  - name: checkout
    target: {namespace: shop, name: checkout}
    max_replicas: 10
    interval: 5s
    actuator: dry-run
    policies: [{policy: fixed, params: {replicas: 3}}]
"#;

    #[test]
    fn example_config_validates_with_defaults_applied() {
        let config = Config::parse(EXAMPLE).unwrap();
        assert_eq!(config.policy_dir, Some(PathBuf::from("/etc/scalegate/policies")));
        let socket = &config.workloads[0];
        assert_eq!(socket.name, "rtc/socket");
        assert_eq!(socket.target.kind, "StatefulSet");
        assert_eq!(socket.target.api_version, "apps/v1");
        assert_eq!(socket.interval, Duration::from_secs(30));
        assert_eq!(socket.policies[0].policy, PolicyRef::Version("hpa".into(), semver::Version::new(0, 1, 0)));
        assert_eq!(socket.policies[1].policy, PolicyRef::Latest("target-tracking".into()));
        assert!(matches!(&socket.shadow, Some(Binding { policy: PolicyRef::Digest(name, _), .. }) if name == "hpa"));
        assert_eq!(socket.limits.max_step_up, Some(Step::Pods(5)));
        assert_eq!(socket.limits.max_step_down, Some(Step::Percent(10)), "from defaults");
        assert_eq!(socket.limits.cooldown_down, Duration::from_secs(120), "workload overrides defaults");
        assert!(socket.limits.hold_on_stale);
        assert_eq!(socket.actuator, Actuator::Kubernetes);
        let checkout = &config.workloads[1];
        assert_eq!(checkout.name, "checkout");
        assert_eq!(checkout.limits.min_replicas, 1);
        assert_eq!(checkout.interval, Duration::from_secs(5));
        assert!(checkout.limits.dry_run);
        assert_eq!(checkout.policies[0].params, serde_json::json!({"replicas": 3}));
    }

    fn error_of(yaml: &str) -> Error {
        Config::parse(yaml).unwrap_err()
    }

    #[test]
    fn errors_name_the_field() {
        let base =
            "workloads:\n  - target: {namespace: a, name: b}\n    max_replicas: 5\n    policies: [{policy: hpa}]\n";
        for (yaml, path, needle) in [
            (format!("{base}    replicas: 3\n"), "workloads[0].replicas", "unknown field `replicas`"),
            (base.replace("max_replicas: 5", "max_replicas: five"), "workloads[0].max_replicas", "invalid type"),
            (
                base.replace("max_replicas: 5", "max_replicas: 5\n    min_replicas: 6"),
                "workloads[0].max_replicas",
                "at least min_replicas (6)",
            ),
            (
                base.replace("{policy: hpa}", "{policy: \"HPA!\"}"),
                "workloads[0].policies[0].policy",
                "invalid policy name",
            ),
            (
                base.replace("{policy: hpa}", "{policy: \"hpa@one\"}"),
                "workloads[0].policies[0].policy",
                "invalid version",
            ),
            (
                base.replace("{policy: hpa}", "{policy: \"hpa@sha256:abc\"}"),
                "workloads[0].policies[0].policy",
                "64 hex digits",
            ),
            (base.replace("[{policy: hpa}]", "[]"), "workloads[0].policies", "at least one policy"),
            (format!("{base}    interval: 100ms\n"), "workloads[0].interval", "between 1s and 1h"),
            (format!("{base}    interval: soon\n"), "workloads[0].interval", "soon"),
            (
                format!("{base}    guardrails: {{max_step_up: \"0%\"}}\n"),
                "workloads[0].guardrails.max_step_up",
                "at least 1",
            ),
            (format!("{base}    actuator: teleport\n"), "workloads[0].actuator", "unknown variant `teleport`"),
            (format!("{base}{}", base.replace("workloads:\n", "")), "workloads[1].name", "duplicate workload \"a/b\""),
            ("workloads: {}\n".to_string(), "workloads", "invalid type"),
            ("polices: {}\n".to_string(), "polices", "unknown field `polices`"),
        ] {
            let err = error_of(&yaml);
            assert_eq!(err.path, path, "{yaml}\n→ {err}");
            assert!(err.message.contains(needle), "{err} should contain {needle}");
        }
    }

    #[test]
    fn metric_inputs_validate_with_named_errors() {
        let base = "sources:\n  prometheus: {url: \"http://prom:9090\", interval: 10s}\nworkloads:\n  - target: {namespace: a, name: b}\n    max_replicas: 5\n    policies: [{policy: hpa}]\n    metrics:\n";
        let config = Config::parse(&format!(
            "{base}      - {{name: rps, prometheus: {{query: 'sum(rate(x{{ns=\"{{{{namespace}}}}\"}}[1m]))'}}}}\n      - {{name: queue, push: {{}}, required: false}}\n"
        ))
        .unwrap();
        let metrics = &config.workloads[0].metrics;
        assert_eq!(metrics[0].max_age, Duration::from_secs(30), "3 × the Prometheus interval");
        assert!(metrics[0].required);
        assert_eq!(metrics[1].max_age, Duration::from_secs(45), "3 × the workload interval");
        assert!(!metrics[1].required);
        match &metrics[0].source {
            MetricSource::Prometheus(query) => {
                assert_eq!(query.render(&config.workloads[0]), "sum(rate(x{ns=\"a\"}[1m]))")
            }
            other => panic!("{other:?}"),
        }
        for (yaml, path, needle) in [
            (
                format!("{base}      - {{name: rps, push: {{}}, prometheus: {{query: up}}}}\n"),
                "workloads[0].metrics[0]",
                "exactly one source",
            ),
            (format!("{base}      - {{name: rps}}\n"), "workloads[0].metrics[0]", "exactly one source"),
            (
                format!("{base}      - {{name: rps, push: {{}}}}\n      - {{name: rps, push: {{}}}}\n"),
                "workloads[0].metrics[1].name",
                "duplicate metric",
            ),
            (
                format!("{base}      - {{name: rps, prometheus: {{query: 'up{{{{job}}}}'}}}}\n"),
                "workloads[0].metrics[0].prometheus.query",
                "unknown placeholder {{job}}",
            ),
            (
                format!("{base}      - {{name: rps, prometheus: {{query: up, on_nan: ignore}}}}\n"),
                "workloads[0].metrics[0].prometheus.on_nan",
                "unknown variant `ignore`",
            ),
            (
                format!("{base}      - {{name: rps, push: {{}}, max_age: 10ms}}\n"),
                "workloads[0].metrics[0].max_age",
                "at least 1s",
            ),
            (
                base.replace("http://prom:9090", "prom:9090") + "      - {name: rps, push: {}}\n",
                "sources.prometheus.url",
                "not an http(s) URL",
            ),
            (
                base.replace("sources:\n  prometheus: {url: \"http://prom:9090\", interval: 10s}\n", "")
                    + "      - {name: rps, prometheus: {query: up}}\n",
                "workloads[0].metrics[0].prometheus",
                "no Prometheus configured",
            ),
        ] {
            let err = error_of(&yaml);
            assert_eq!(err.path, path, "{yaml}\n→ {err}");
            assert!(err.message.contains(needle), "{err} should contain {needle}");
        }
    }

    #[test]
    fn every_source_names_its_bad_settings_at_start_up() {
        let workload = |metric: &str| {
            format!(
                "workloads:\n  - target: {{namespace: a, name: b}}\n    max_replicas: 5\n    policies: [{{policy: hpa}}]\n    metrics:\n      - {{name: m, {metric}}}\n"
            )
        };
        for (yaml, path, needle) in [
            (
                format!("sources:\n  kafka: {{brokers: \"\"}}\n{}", workload("push: {}")),
                "sources.kafka.brokers",
                "must not be empty",
            ),
            (
                format!(
                    "sources:\n  kafka: {{brokers: k:9092, directives: [{{topic: \"\"}}]}}\n{}",
                    workload("push: {}")
                ),
                "sources.kafka.directives",
                "needs a topic",
            ),
            (workload("kafka_lag: {topic: t, group: g}"), "workloads[0].metrics[0].kafka_lag", "no Kafka configured"),
            (
                format!("sources:\n  kafka: {{brokers: k:9092}}\n{}", workload("kafka_lag: {topic: t, group: \"\"}")),
                "workloads[0].metrics[0].kafka_lag.group",
                "must not be empty",
            ),
            (
                format!("sources:\n  nats: {{monitor_url: nats:8222}}\n{}", workload("push: {}")),
                "sources.nats.monitor_url",
                "not an http(s) URL",
            ),
            (workload("nats: {stream: s, consumer: c}"), "workloads[0].metrics[0].nats", "no NATS configured"),
            (
                format!("sources:\n  redis: {{url: \"mysql://db\"}}\n{}", workload("push: {}")),
                "sources.redis.url",
                "did not parse",
            ),
            (
                format!("sources:\n  redis: {{url: \"redis://r\"}}\n{}", workload("redis: {pattern: hb, field: cpu}")),
                "workloads[0].metrics[0].redis.pattern",
                "exactly one *",
            ),
            (
                format!("sources:\n  forecast: {{url: \"http://f\", interval: 10ms}}\n{}", workload("push: {}")),
                "sources.forecast.interval",
                "at least 100ms",
            ),
            (workload("forecast: {}"), "workloads[0].metrics[0].forecast", "no forecaster configured"),
            (
                workload("pod_metrics: {resource: gpu}"),
                "workloads[0].metrics[0].pod_metrics.resource",
                "reports cpu and memory",
            ),
        ] {
            let err = error_of(&yaml);
            assert_eq!(err.path, path, "{yaml}\n→ {err}");
            assert!(err.message.contains(needle), "{err} should contain {needle:?}");
        }
    }

    #[test]
    fn messages_do_not_repeat_the_path() {
        let err = error_of(
            "workloads:\n  - target: {namespace: a, name: b}\n    max_replicas: 5\n    policies: [{policy: hpa}]\n    replicas: 3\n",
        );
        assert!(
            err.to_string().starts_with("workloads[0].replicas: unknown field `replicas`, expected one of"),
            "{err}"
        );
        assert!(err.to_string().contains("line 5 column 5"), "{err}");
    }

    #[test]
    fn policy_refs_round_trip() {
        for text in [
            "hpa",
            "hpa@1.2.3",
            "target-tracking@0.1.0-rc.1",
            "x@sha256:45ff69307701a79a725d1dd006e7884d449edded90f684ea87efd4d85045a83a",
        ] {
            let parsed: PolicyRef = text.parse().unwrap();
            assert_eq!(parsed.to_string(), text);
        }
    }
}
