//! The daemon's configuration file: which workloads to scale, with which
//! policies, within which limits, reading which inputs. Parsed from YAML
//! (unknown fields rejected), then validated into typed structs; every
//! error names the offending field by its path, e.g.
//! `workloads[1].max_replicas`. Read at start-up and again whenever the
//! file changes (see `daemon::reload`).
//!
//! The settings of each signal source (`sources.<name>`) and each workload
//! metric's spec (`metrics[].<source>`) are parsed by the source itself,
//! through the registry in `signals`; this module knows none of their
//! fields. Process settings (listen addresses, log format, kubeconfig) are
//! flags, not part of this file. The format is documented in `docs/CONFIG.md`.

use crate::cluster::Target;
use crate::guardrails::{Limits, Step};
use crate::policy::PolicyRef;
use crate::signals::{Declared, MetricSpec, Sources};
use crate::snapshot::Compute;
use crate::vertical;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What kind of problem a configuration has (the `kind` label of
/// `scalegate_config_reloads_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file could not be read.
    Read,
    /// Not YAML of the expected shape (unknown field, wrong type).
    Syntax,
    /// Well-formed, but a value is not acceptable.
    Invalid,
}

/// A configuration error: where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct Error {
    pub kind: ErrorKind,
    /// Path of the offending field, e.g. `workloads[0].policies[1].policy`
    /// (`.` for the document itself).
    pub path: String,
    pub message: String,
}

impl Error {
    /// Bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self.kind {
            ErrorKind::Read => "read",
            ErrorKind::Syntax => "syntax",
            ErrorKind::Invalid => "invalid",
        }
    }
}

/// Which configuration runs, and what became of the last attempt to change
/// it (`GET /v1/config`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Status {
    /// The file followed (`None`: a configuration given at start-up only).
    pub file: Option<PathBuf>,
    /// Incremented by every configuration applied (1 at start-up).
    pub generation: u64,
    /// sha256 of the file applied, lowercase hex.
    pub digest: String,
    /// When it was applied (ms since the epoch).
    pub applied_at_ms: u64,
    /// The last change refused since then, if any.
    pub refused: Option<Refused>,
}

/// A configuration change that was refused; the running one stayed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Refused {
    /// `read`, `syntax`, `invalid`, `reference` or `source`.
    pub kind: String,
    /// The offending field, e.g. `workloads[2].max_replicas`.
    pub path: String,
    pub message: String,
    /// sha256 of the refused file.
    pub digest: String,
    pub at_ms: u64,
}

fn error(path: impl Into<String>, message: impl Into<String>) -> Error {
    Error { kind: ErrorKind::Invalid, path: path.into(), message: message.into() }
}

// ---- the file, as written -------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    policies: RawPolicies,
    /// Each source's block, parsed by the source (see `signals::REGISTRY`).
    #[serde(default)]
    sources: BTreeMap<String, serde_json::Value>,
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
    #[serde(default, with = "humantime_serde")]
    idle_before_zero: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    name: Option<String>,
    target: Target,
    policies: Vec<RawBinding>,
    /// `max | min | first` or `{prefer, unless_differs_from, by_more_than}`,
    /// read in `validate` so that a wrong one is named plainly.
    combine: Option<serde_yaml_ng::Value>,
    shadow: Option<RawBinding>,
    #[serde(default, with = "humantime_serde")]
    interval: Option<Duration>,
    min_replicas: Option<u32>,
    max_replicas: u32,
    #[serde(default)]
    guardrails: RawGuardrails,
    actuator: Option<Actuator>,
    activation_threshold: Option<u32>,
    #[serde(default)]
    metrics: Vec<RawMetric>,
    vertical: Option<RawVertical>,
}

/// `workloads[].vertical`, as written (see `vertical::Spec`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVertical {
    mode: Option<vertical::Mode>,
    resources: Option<Vec<String>>,
    #[serde(default)]
    min_allowed: RawCompute,
    #[serde(default)]
    max_allowed: RawCompute,
    max_step: Option<String>,
    #[serde(default, with = "humantime_serde")]
    cooldown: Option<Duration>,
    update_threshold: Option<f64>,
    #[serde(default, with = "humantime_serde")]
    update_after: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    deferred_timeout: Option<Duration>,
    controlled_values: Option<vertical::ControlledValues>,
    allow_restart: Option<bool>,
    event_threshold: Option<f64>,
    /// Accept in-place resizing of a resource a horizontal policy targets
    /// by utilisation (they fight: docs/VERTICAL.md).
    allow_with_horizontal_utilization: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompute {
    cpu: Option<serde_json::Value>,
    memory: Option<serde_json::Value>,
}

/// A metric: its name, freshness rules, and one source key whose value is
/// the source's spec (checked by the source).
#[derive(Debug, Deserialize)]
struct RawMetric {
    name: String,
    #[serde(default, with = "humantime_serde")]
    max_age: Option<Duration>,
    required: Option<bool>,
    #[serde(flatten)]
    source: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBinding {
    policy: String,
    #[serde(default = "empty_params")]
    params: serde_json::Value,
    name: Option<String>,
    only: Option<Only>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrefer {
    prefer: String,
    unless_differs_from: String,
    by_more_than: u32,
}

fn empty_params() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

// ---- validated ------------------------------------------------------------

/// Where decisions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Actuator {
    /// Write the `/scale` subresource.
    Kubernetes,
    /// Decide and record, never write.
    DryRun,
    /// Decide and record; serve the decision to KEDA through its External
    /// Scaler protocol (`keda.rs`), which scales the workload.
    Keda,
}

/// A policy bound to a workload with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub policy: PolicyRef,
    /// Shared: a fleet's specs are copied (running, reloaded) but not its params.
    pub params: Arc<serde_json::Value>,
    /// What `combine` rules and decision records call it (default: the policy's name).
    pub name: String,
    /// The direction its count is allowed to move the workload, if restricted.
    pub only: Option<Only>,
}

impl Binding {
    /// A binding with no name of its own and no restriction.
    pub fn new(policy: PolicyRef, params: serde_json::Value) -> Binding {
        Binding { name: policy.name().to_string(), policy, params: Arc::new(params), only: None }
    }
}

/// `policies[].only`: a binding whose count counts only in one direction
/// (a backup that may add capacity but never holds a scale-in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Only {
    /// Counts only when above the current replicas.
    ScaleUp,
    /// Counts only when below the current replicas.
    ScaleDown,
}

/// `workloads[].combine`: how the bindings' counts become one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Combine {
    /// The largest (like HPA and KEDA with several metrics).
    #[default]
    Max,
    /// The smallest.
    Min,
    /// The first binding, in the order listed, with an opinion.
    First,
    /// Binding `prefer`'s count unless it differs from binding `unless`'s
    /// by more than `by_more_than`, then `unless`'s (seed 003's hybrid:
    /// predictive unless the reactive count is far off). Bindings the rule
    /// does not name combine with its result by max. Indices into `policies`.
    Prefer { prefer: usize, unless: usize, by_more_than: u32 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Unique name of the binding (default `namespace/name`).
    pub name: String,
    pub target: Target,
    /// Evaluated together; their counts become one by `combine`.
    pub policies: Vec<Binding>,
    pub combine: Combine,
    /// Evaluated beside the active policies; recorded, never actuated.
    pub shadow: Option<Binding>,
    pub interval: Duration,
    pub limits: Limits,
    pub actuator: Actuator,
    /// Inputs from signal sources, by name.
    pub metrics: Vec<MetricSpec>,
    /// Vertical scaling of its containers, if configured.
    pub vertical: Option<vertical::Spec>,
}

impl Workload {
    /// The workload as the signal hub and the sources see it.
    pub fn declared(&self) -> Declared<'_> {
        (&self.name, &self.target, &self.metrics)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The policy store directory (a ConfigMap mount in a cluster).
    pub policy_dir: Option<PathBuf>,
    /// Connections to signal sources, shared by every workload.
    pub sources: Sources,
    /// Shared with the decision loop (and kept by a reload to compare):
    /// one copy of each spec, however many hold it.
    pub workloads: Vec<Arc<Workload>>,
}

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &std::path::Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error {
            kind: ErrorKind::Read,
            path: ".".into(),
            message: format!("cannot read {}: {e}", path.display()),
        })?;
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
            Error { kind: ErrorKind::Syntax, path, message }
        })?;
        raw.validate()
    }

    /// The `oci://` references bindings name, each once.
    pub fn oci_references(&self) -> Vec<crate::policy::OciRef> {
        let mut seen = std::collections::BTreeSet::new();
        self.workloads
            .iter()
            .flat_map(|w| w.policies.iter().chain(w.shadow.iter()))
            .filter_map(|b| match &b.policy {
                PolicyRef::Oci(text) if seen.insert(text.clone()) => crate::policy::OciRef::parse(text).ok(),
                _ => None,
            })
            .collect()
    }

    /// Every workload as the signal hub and the sources see it.
    pub fn declared(&self) -> impl Iterator<Item = Declared<'_>> + Clone {
        self.workloads.iter().map(|w| w.declared())
    }
}

impl RawConfig {
    fn validate(self) -> Result<Config, Error> {
        let sources = Sources::parse(self.sources).map_err(|e| error(e.under("sources"), e.message))?;
        let mut names = BTreeSet::new();
        let mut workloads = Vec::with_capacity(self.workloads.len());
        for (index, raw) in self.workloads.into_iter().enumerate() {
            let at = |field: &str| format!("workloads[{index}].{field}");
            let name = raw.name.clone().unwrap_or_else(|| raw.target.path());
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
                let policy: PolicyRef = raw.policy.parse().map_err(|m| error(format!("{path}.policy"), m))?;
                if raw.name.as_deref() == Some("") {
                    return Err(error(format!("{path}.name"), "must not be empty"));
                }
                let mut binding = Binding::new(policy, raw.params.clone());
                binding.name = raw.name.clone().unwrap_or(binding.name);
                binding.only = raw.only;
                Ok(binding)
            };
            let policies = raw
                .policies
                .iter()
                .enumerate()
                .map(|(i, b)| binding(b, at(&format!("policies[{i}]"))))
                .collect::<Result<Vec<_>, _>>()?;
            if raw.shadow.as_ref().is_some_and(|s| s.only.is_some()) {
                return Err(error(at("shadow.only"), "a shadow is never actuated; `only` applies to policies"));
            }
            let shadow = raw.shadow.as_ref().map(|b| binding(b, at("shadow"))).transpose()?;
            const COMBINE: &str = "expected max, min, first or {prefer, unless_differs_from, by_more_than}";
            let combine = match &raw.combine {
                None => Combine::Max,
                Some(serde_yaml_ng::Value::String(mode)) => match mode.as_str() {
                    "max" => Combine::Max,
                    "min" => Combine::Min,
                    "first" => Combine::First,
                    other => return Err(error(at("combine"), format!("unknown rule `{other}`, {COMBINE}"))),
                },
                Some(value @ serde_yaml_ng::Value::Mapping(_)) => {
                    let rule: RawPrefer = serde_yaml_ng::from_value(value.clone())
                        .map_err(|e| error(at("combine"), format!("{e}; {COMBINE}")))?;
                    let find = |name: &str, field: &str| -> Result<usize, Error> {
                        let found: Vec<usize> =
                            policies.iter().enumerate().filter(|(_, b)| b.name == name).map(|(i, _)| i).collect();
                        match found[..] {
                            [index] => Ok(index),
                            [] => Err(error(
                                at(&format!("combine.{field}")),
                                format!(
                                    "no policy binding is named {name:?} (bindings: {})",
                                    policies.iter().map(|b| b.name.as_str()).collect::<Vec<_>>().join(", ")
                                ),
                            )),
                            _ => Err(error(
                                at(&format!("combine.{field}")),
                                format!("{} bindings are named {name:?}; give them distinct `name`s", found.len()),
                            )),
                        }
                    };
                    let (prefer, unless) =
                        (find(&rule.prefer, "prefer")?, find(&rule.unless_differs_from, "unless_differs_from")?);
                    if prefer == unless {
                        return Err(error(
                            at("combine.unless_differs_from"),
                            "must name another binding than `prefer`",
                        ));
                    }
                    Combine::Prefer { prefer, unless, by_more_than: rule.by_more_than }
                }
                Some(_) => return Err(error(at("combine"), COMBINE)),
            };

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
                activation_threshold: raw.activation_threshold.unwrap_or(0),
                // KEDA applies its own cooldownPeriod to what it is served
                idle_before_zero: if actuator == Actuator::Keda {
                    Duration::ZERO
                } else {
                    raw.guardrails
                        .idle_before_zero
                        .or(self.defaults.guardrails.idle_before_zero)
                        .unwrap_or(Duration::from_secs(300))
                },
            };
            let metrics = metrics(&sources, raw.metrics, interval, &|field| at(field))?;
            let vertical = match &raw.vertical {
                Some(v) => Some(vertical_spec(v, &raw.policies, &format!("workloads[{index}]"))?),
                None => None,
            };
            workloads.push(Arc::new(Workload {
                name,
                target: raw.target,
                policies,
                combine,
                shadow,
                interval,
                limits,
                actuator,
                metrics,
                vertical,
            }));
        }
        Ok(Config { policy_dir: self.policies.directory, sources, workloads })
    }
}

/// A quantity in base units: `"250m"`, `"512Mi"`, or a number (cores, bytes).
fn quantity(value: &serde_json::Value, path: &str) -> Result<f64, Error> {
    let milli = match value {
        serde_json::Value::String(s) => scalegate_hpa::quantity::parse_milli(s).map_err(|e| error(path, e))?.0,
        serde_json::Value::Number(n) => (n.as_f64().unwrap_or(-1.0) * 1000.0).round() as i64,
        _ => return Err(error(path, "must be a quantity (\"250m\", \"512Mi\") or a number")),
    };
    if milli <= 0 {
        return Err(error(path, "must be more than 0"));
    }
    Ok(milli as f64 / 1000.0)
}

/// `workload` is the workload's path, e.g. `workloads[2]`.
fn vertical_spec(raw: &RawVertical, policies: &[RawBinding], workload: &str) -> Result<vertical::Spec, Error> {
    let at = |field: &str| format!("{workload}.vertical.{field}");
    let d = vertical::Spec::default();
    let compute = |c: &RawCompute, field: &str| -> Result<Compute, Error> {
        Ok(Compute {
            cpu: c.cpu.as_ref().map(|v| quantity(v, &at(&format!("{field}.cpu")))).transpose()?,
            memory: c.memory.as_ref().map(|v| quantity(v, &at(&format!("{field}.memory")))).transpose()?,
        })
    };
    let resources = raw.resources.clone().unwrap_or_else(|| vec!["cpu".into(), "memory".into()]);
    if let Some(bad) = resources.iter().find(|r| !matches!(r.as_str(), "cpu" | "memory")) {
        return Err(error(at("resources"), format!("{bad:?}: only cpu and memory are resized in place")));
    }
    let fraction = |v: Option<f64>, field: &str, default: f64| match v {
        Some(v) if !(v.is_finite() && v >= 0.0) => Err(error(at(field), format!("must be a number >= 0, got {v}"))),
        Some(v) => Ok(v),
        None => Ok(default),
    };
    let max_step = match &raw.max_step {
        None => None,
        Some(text) => {
            let number = text.strip_suffix('%').and_then(|n| n.trim().parse::<f64>().ok());
            match number {
                Some(p) if p > 0.0 && p <= 1000.0 => Some(p / 100.0),
                _ => return Err(error(at("max_step"), format!("{text:?}: a percentage such as \"50%\""))),
            }
        }
    };
    let spec = vertical::Spec {
        mode: raw.mode.unwrap_or(d.mode),
        cpu: resources.iter().any(|r| r == "cpu"),
        memory: resources.iter().any(|r| r == "memory"),
        min_allowed: compute(&raw.min_allowed, "min_allowed")?,
        max_allowed: compute(&raw.max_allowed, "max_allowed")?,
        max_step,
        cooldown: raw.cooldown.unwrap_or(d.cooldown),
        update_threshold: fraction(raw.update_threshold, "update_threshold", d.update_threshold)?,
        update_after: raw.update_after.unwrap_or(d.update_after),
        deferred_timeout: raw.deferred_timeout.unwrap_or(d.deferred_timeout),
        controlled_values: raw.controlled_values.unwrap_or(d.controlled_values),
        allow_restart: raw.allow_restart.unwrap_or(d.allow_restart),
        event_threshold: fraction(raw.event_threshold, "event_threshold", d.event_threshold)?,
    };
    for resource in ["cpu", "memory"] {
        let (min, max) = if resource == "cpu" {
            (spec.min_allowed.cpu, spec.max_allowed.cpu)
        } else {
            (spec.min_allowed.memory, spec.max_allowed.memory)
        };
        if let (Some(min), Some(max)) = (min, max)
            && min > max
        {
            return Err(error(at(&format!("max_allowed.{resource}")), "must be at least min_allowed"));
        }
    }
    // in-place resizing of a resource that a horizontal policy targets by utilisation fights it
    if spec.mode == vertical::Mode::InPlace && !raw.allow_with_horizontal_utilization.unwrap_or(false) {
        for (i, binding) in policies.iter().enumerate() {
            for (k, metric) in
                binding.params.get("metrics").and_then(|m| m.as_array()).into_iter().flatten().enumerate()
            {
                let source = match metric.get("type").and_then(|t| t.as_str()) {
                    Some("Resource") => metric.get("resource"),
                    Some("ContainerResource") => metric.get("containerResource"),
                    _ => None,
                };
                let Some(source) = source else { continue };
                let resource = source.get("name").and_then(|n| n.as_str()).unwrap_or_default();
                let utilization = source.pointer("/target/type").and_then(|t| t.as_str()) == Some("Utilization");
                let resized = (resource == "cpu" && spec.cpu) || (resource == "memory" && spec.memory);
                if utilization && resized {
                    return Err(error(
                        at("resources"),
                        format!(
                            "resizing {resource} in place fights {workload}.policies[{i}].params.metrics[{k}] ({} scales on {resource} utilization, which moves whenever the request does): leave {resource} out of vertical.resources, scale horizontally on another metric, or set vertical.allow_with_horizontal_utilization: true",
                            binding.policy
                        ),
                    ));
                }
            }
        }
    }
    Ok(spec)
}

fn metrics(
    sources: &Sources,
    raw: Vec<RawMetric>,
    interval: Duration,
    at: &dyn Fn(&str) -> String,
) -> Result<Vec<MetricSpec>, Error> {
    let mut names = BTreeSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (index, metric) in raw.into_iter().enumerate() {
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
        let spec = sources
            .metric(&metric.name, metric.source, metric.max_age, metric.required, interval)
            .map_err(|e| error(e.under(&path("")), e.message))?;
        out.push(spec);
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
        assert_eq!(*checkout.policies[0].params, serde_json::json!({"replicas": 3}));
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
            ("sources: {graphite: {}}\n".to_string(), "sources.graphite", "unknown source `graphite`"),
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
        let workload = &config.workloads[0];
        let query = metrics[0].spec.get::<crate::signals::prometheus::Query>().expect("a Prometheus query");
        assert_eq!(query.render(&workload.name, &workload.target), "sum(rate(x{ns=\"a\"}[1m]))");
        assert_eq!((metrics[0].source, metrics[1].source), ("prometheus", "push"));
        for (yaml, path, needle) in [
            (
                format!("{base}      - {{name: rps, push: {{}}, prometheus: {{query: up}}}}\n"),
                "workloads[0].metrics[0]",
                "exactly one source",
            ),
            (format!("{base}      - {{name: rps}}\n"), "workloads[0].metrics[0]", "exactly one source"),
            (
                format!("{base}      - {{name: rps, graphite: {{}}}}\n"),
                "workloads[0].metrics[0].graphite",
                "unknown field `graphite`",
            ),
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
    fn combine_rules_name_their_bindings() {
        let two = "workloads:\n  - target: {namespace: a, name: b}\n    max_replicas: 9\n    policies:\n      - {policy: forecast, name: predictive}\n      - {policy: thresholds, name: reactive}\n      - {policy: hpa, only: scale-up}\n";
        let config = Config::parse(two).unwrap();
        let w = &config.workloads[0];
        assert_eq!(w.combine, Combine::Max);
        assert_eq!(w.policies.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(), ["predictive", "reactive", "hpa"]);
        assert_eq!(w.policies.iter().map(|b| b.only).collect::<Vec<_>>(), [None, None, Some(Only::ScaleUp)]);
        let config = Config::parse(&format!(
            "{two}    combine: {{prefer: predictive, unless_differs_from: reactive, by_more_than: 2}}\n"
        ))
        .unwrap();
        assert_eq!(config.workloads[0].combine, Combine::Prefer { prefer: 0, unless: 1, by_more_than: 2 });
        for (mode, rule) in [("min", Combine::Min), ("first", Combine::First), ("max", Combine::Max)] {
            assert_eq!(Config::parse(&format!("{two}    combine: {mode}\n")).unwrap().workloads[0].combine, rule);
        }
        for (extra, path, needle) in [
            ("    combine: median\n", "workloads[0].combine", "unknown rule `median`, expected max, min, first"),
            ("    combine: 3\n", "workloads[0].combine", "expected max, min, first"),
            (
                "    combine: {prefer: predictive, unless_differs_from: cpu, by_more_than: 2}\n",
                "workloads[0].combine.unless_differs_from",
                "no policy binding is named \"cpu\" (bindings: predictive, reactive, hpa)",
            ),
            (
                "    combine: {prefer: reactive, unless_differs_from: reactive, by_more_than: 2}\n",
                "workloads[0].combine.unless_differs_from",
                "another binding",
            ),
            ("    combine: {prefer: reactive, unless: hpa}\n", "workloads[0].combine", "unknown field `unless`"),
            (
                "    combine: {prefer: reactive, unless_differs_from: hpa, by_more_than: -1}\n",
                "workloads[0].combine",
                "invalid value",
            ),
            ("    shadow: {policy: hpa, only: scale-up}\n", "workloads[0].shadow.only", "never actuated"),
        ] {
            let err = error_of(&format!("{two}{extra}"));
            assert_eq!(err.path, path, "{extra}→ {err}");
            assert!(err.message.contains(needle), "{err} should contain {needle}");
        }
        let err = error_of(&two.replace("{policy: hpa, only: scale-up}", "{policy: hpa, only: sideways}"));
        assert_eq!(err.path, "workloads[0].policies[2].only", "{err}");
        let same = two.replace("name: reactive", "name: predictive");
        let err = error_of(&format!(
            "{same}    combine: {{prefer: predictive, unless_differs_from: hpa, by_more_than: 1}}\n"
        ));
        assert_eq!(
            (err.path.as_str(), err.message.contains("2 bindings are named")),
            ("workloads[0].combine.prefer", true)
        );
        let err = error_of(&two.replace("name: reactive", "name: \"\""));
        assert_eq!(err.path, "workloads[0].policies[1].name", "{err}");
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

    const VERTICAL: &str = r#"
workloads:
  - target: {namespace: shop, name: web}
    max_replicas: 10
    policies:
      - policy: vpa
      - policy: hpa
        params: {metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 60}}}]}
    vertical:
      mode: in-place
      RESOURCES
      min_allowed: {cpu: 100m, memory: 128Mi}
      max_allowed: {cpu: "2", memory: 4Gi}
      max_step: "50%"
      cooldown: 2m
"#;

    #[test]
    fn vertical_in_place_on_a_resource_a_horizontal_utilization_target_uses_is_refused() {
        let err = Config::parse(&VERTICAL.replace("RESOURCES", "")).unwrap_err();
        assert_eq!(err.path, "workloads[0].vertical.resources", "{err}");
        assert!(
            err.message.contains("resizing cpu in place fights workloads[0].policies[1].params.metrics[0]"),
            "{err}"
        );
        assert!(err.message.contains("allow_with_horizontal_utilization"), "{err}");
        // memory only: no fight
        let config = Config::parse(&VERTICAL.replace("RESOURCES", "resources: [memory]")).unwrap();
        let v = config.workloads[0].vertical.as_ref().unwrap();
        assert!(!v.cpu && v.memory);
        assert_eq!(v.min_allowed, Compute { cpu: Some(0.1), memory: Some(128.0 * 1024.0 * 1024.0) });
        assert_eq!(v.max_allowed.cpu, Some(2.0));
        assert_eq!(v.max_step, Some(0.5));
        assert_eq!(v.cooldown, Duration::from_secs(120));
        // explicitly allowed
        let allowed = VERTICAL.replace("RESOURCES", "allow_with_horizontal_utilization: true");
        assert!(Config::parse(&allowed).is_ok());
        // mode off only publishes: no fight either
        assert!(Config::parse(&VERTICAL.replace("RESOURCES", "").replace("in-place", "off")).is_ok());
    }

    #[test]
    fn vertical_values_are_checked_with_their_path() {
        let bad = VERTICAL.replace("RESOURCES", "resources: [memory]").replace("cpu: \"2\"", "cpu: lots");
        let err = Config::parse(&bad).unwrap_err();
        assert_eq!(err.path, "workloads[0].vertical.max_allowed.cpu", "{err}");
        let bad = VERTICAL.replace("RESOURCES", "resources: [gpu]");
        assert_eq!(Config::parse(&bad).unwrap_err().path, "workloads[0].vertical.resources");
        let bad = VERTICAL.replace("RESOURCES", "resources: [memory]").replace("\"50%\"", "half");
        assert_eq!(Config::parse(&bad).unwrap_err().path, "workloads[0].vertical.max_step");
        let bad = VERTICAL.replace("RESOURCES", "resources: [memory]").replace("memory: 4Gi", "memory: 64Mi");
        assert_eq!(Config::parse(&bad).unwrap_err().path, "workloads[0].vertical.max_allowed.memory");
        let bad = VERTICAL.replace("RESOURCES", "resize: always");
        assert_eq!(Config::parse(&bad).unwrap_err().path, "workloads[0].vertical.resize");
    }
}
