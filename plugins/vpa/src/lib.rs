//! `vpa`: the Kubernetes VPA recommender as a policy (contract 0.2.0). Each
//! evaluation feeds every container's usage sample (and any new OOM kill)
//! into VPA's model, kept in `decision.state`, and returns per-container
//! recommendations — target, lower and upper bound, uncapped target — in
//! `decision.resources`. It has no opinion on replicas.
//!
//! Params follow a VPA object's `spec.resourcePolicy`, so one can be pasted:
//! `containerPolicies[]` with `containerName` (`*` = default), `mode`
//! (`Auto`/`Off`), `minAllowed`, `maxAllowed` (quantities: `"250m"`,
//! `"512Mi"`, or numbers in cores/bytes) and `controlledResources`; and
//! `recommender` with VPA's flags (percentiles, margin, pod minimums, OOM
//! bump, half-life, memory aggregation interval).

use scalegate_hpa::quantity::parse_milli;
use scalegate_policy_sdk::prelude::*;
use scalegate_policy_sdk::state::MAX_STATE_BYTES;
use scalegate_vpa::{Allowed, Config, Model, Recommendation};
use std::collections::BTreeSet;

/// A VPA object's `spec.resourcePolicy` plus the recommender's flags.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Params {
    /// Per container (`containerName: "*"` is the default for the others).
    #[serde(default)]
    pub container_policies: Vec<ContainerPolicy>,
    /// The recommender's flags; VPA's defaults when absent.
    #[serde(default)]
    pub recommender: Recommender,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerPolicy {
    pub container_name: String,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub min_allowed: Resources,
    #[serde(default)]
    pub max_allowed: Resources,
    /// Resources to recommend for; both when absent.
    #[serde(default)]
    pub controlled_resources: Option<Vec<Resource>>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum Mode {
    #[default]
    Auto,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    Cpu,
    Memory,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    pub cpu: Option<Quantity>,
    pub memory: Option<Quantity>,
}

/// A Kubernetes quantity (`"250m"`, `"512Mi"`) or a number in cores / bytes.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Quantity {
    Number(#[schemars(range(min = 0))] f64),
    Text(String),
}

/// VPA's recommender flags (fractions within [0, 1], durations in seconds, at least 1).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Recommender {
    #[schemars(range(min = 0, max = 1))]
    target_percentile: Option<f64>,
    #[schemars(range(min = 0, max = 1))]
    lower_bound_percentile: Option<f64>,
    #[schemars(range(min = 0, max = 1))]
    upper_bound_percentile: Option<f64>,
    #[schemars(range(min = 0))]
    safety_margin_fraction: Option<f64>,
    #[schemars(range(min = 0))]
    pod_min_cpu_millicores: Option<f64>,
    #[schemars(range(min = 0))]
    pod_min_memory_mb: Option<f64>,
    #[schemars(range(min = 0))]
    oom_bump_up_ratio: Option<f64>,
    #[schemars(range(min = 0))]
    oom_min_bump_up_bytes: Option<f64>,
    #[schemars(range(min = 1))]
    half_life_seconds: Option<f64>,
    #[schemars(range(min = 1))]
    memory_aggregation_interval_seconds: Option<f64>,
    #[schemars(range(min = 1))]
    confidence_interval_seconds: Option<f64>,
}

impl Recommender {
    /// The model's configuration (the bounds were checked against the schema).
    fn config(&self) -> Config {
        let d = Config::default();
        let ms = |seconds: Option<f64>, default: i64| seconds.map_or(default, |s| (s * 1000.0) as i64);
        Config {
            target_percentile: self.target_percentile.unwrap_or(d.target_percentile),
            lower_bound_percentile: self.lower_bound_percentile.unwrap_or(d.lower_bound_percentile),
            upper_bound_percentile: self.upper_bound_percentile.unwrap_or(d.upper_bound_percentile),
            safety_margin_fraction: self.safety_margin_fraction.unwrap_or(d.safety_margin_fraction),
            pod_min_cpu_millicores: self.pod_min_cpu_millicores.unwrap_or(d.pod_min_cpu_millicores),
            pod_min_memory_mb: self.pod_min_memory_mb.unwrap_or(d.pod_min_memory_mb),
            oom_bump_up_ratio: self.oom_bump_up_ratio.unwrap_or(d.oom_bump_up_ratio),
            oom_min_bump_up_bytes: self.oom_min_bump_up_bytes.unwrap_or(d.oom_min_bump_up_bytes),
            half_life_ms: ms(self.half_life_seconds, d.half_life_ms),
            memory_aggregation_interval_ms: ms(
                self.memory_aggregation_interval_seconds,
                d.memory_aggregation_interval_ms,
            ),
            confidence_interval_ms: ms(self.confidence_interval_seconds, d.confidence_interval_ms),
            ..d
        }
    }
}

/// A container's policy after the `*` default is applied.
struct Effective {
    mode: Mode,
    min: Allowed,
    max: Allowed,
    cpu: bool,
    memory: bool,
}

fn quantity(field: &str, value: &Option<Quantity>, milli_per_unit: i64) -> Result<Option<i64>, String> {
    let milli = match value {
        None => return Ok(None),
        Some(Quantity::Text(s)) => parse_milli(s).map_err(|e| format!("{field}: {e}"))?.0,
        Some(Quantity::Number(v)) => (v * 1000.0).ceil() as i64,
    };
    // cpu in millicores (milli-units of cores); memory in bytes (milli-units / 1000, rounded up)
    Ok(Some(if milli_per_unit == 1 { milli } else { (milli + milli_per_unit - 1) / milli_per_unit }))
}

impl Params {
    /// Quantity strings are checked after the schema (which says only "a string").
    fn check_quantities(&self) -> Result<(), String> {
        for (i, p) in self.container_policies.iter().enumerate() {
            let path = format!("params.containerPolicies[{i}]");
            for (name, r) in [("minAllowed", &p.min_allowed), ("maxAllowed", &p.max_allowed)] {
                quantity(&format!("{path}.{name}.cpu"), &r.cpu, 1)?;
                quantity(&format!("{path}.{name}.memory"), &r.memory, 1000)?;
            }
        }
        Ok(())
    }

    fn policy_for(&self, container: &str) -> Effective {
        let own = self.container_policies.iter().find(|p| p.container_name == container);
        let default = self.container_policies.iter().find(|p| p.container_name == "*");
        let policy = own.or(default);
        let allowed = |r: Option<&Resources>| Allowed {
            cpu_millicores: r.and_then(|r| quantity("", &r.cpu, 1).ok().flatten()),
            memory_bytes: r.and_then(|r| quantity("", &r.memory, 1000).ok().flatten()),
        };
        let controlled = policy.and_then(|p| p.controlled_resources.clone());
        let has = |r: Resource| controlled.as_ref().is_none_or(|c| c.contains(&r));
        Effective {
            mode: policy.map(|p| p.mode).unwrap_or_default(),
            min: allowed(policy.map(|p| &p.min_allowed)),
            max: allowed(policy.map(|p| &p.max_allowed)),
            cpu: has(Resource::Cpu),
            memory: has(Resource::Memory),
        }
    }
}

/// Feeds the snapshot into the model: every container's usage sample, and
/// each OOM kill not yet seen. Windows of pods that are gone are dropped.
pub fn observe(model: &mut Model, config: &Config, snapshot: &Snapshot) {
    for c in &snapshot.containers {
        let Some(pod) = snapshot.pods.get(c.pod as usize) else { continue };
        if let Some(usage) = c.usage {
            let at = usage.timestamp_ms as i64;
            model.add_cpu(config, &pod.name, &c.name, usage.cpu, at);
            model.add_memory(config, &pod.name, &c.name, usage.memory, at);
        }
        if let Some(t) = &c.last_termination
            && t.reason == "OOMKilled"
        {
            let at = t.finished_ms.unwrap_or(snapshot.now_ms) as i64;
            let key = format!("{}/{}", pod.name, c.name);
            let seen = model.windows.get(&key).and_then(|w| w.last_oom_ms).is_some_and(|last| at <= last);
            if !seen {
                let request = c.requests.memory.unwrap_or(0.0);
                model.record_oom(config, &pod.name, &c.name, at, request);
                model.windows.entry(key).or_default().last_oom_ms = Some(at);
            }
        }
    }
    let present: BTreeSet<&str> = snapshot.pods.iter().map(|p| p.name.as_str()).collect();
    model.retain_pods(|pod| present.contains(pod));
}

fn to_wit(container: &str, r: &Recommendation, effective: &Effective) -> ContainerRecommendation {
    let mut resources = vec![];
    if effective.cpu {
        let cores = |m: i64| m as f64 / 1000.0;
        resources.push(ResourceRecommendation {
            resource: "cpu".into(),
            target: cores(r.target.cpu_millicores),
            lower_bound: cores(r.lower_bound.cpu_millicores),
            upper_bound: cores(r.upper_bound.cpu_millicores),
            uncapped_target: cores(r.uncapped_target.cpu_millicores),
        });
    }
    if effective.memory {
        resources.push(ResourceRecommendation {
            resource: "memory".into(),
            target: r.target.memory_bytes as f64,
            lower_bound: r.lower_bound.memory_bytes as f64,
            upper_bound: r.upper_bound.memory_bytes as f64,
            uncapped_target: r.uncapped_target.memory_bytes as f64,
        });
    }
    ContainerRecommendation { container: container.to_string(), resources }
}

fn mebibytes(bytes: i64) -> String {
    format!("{}Mi", bytes >> 20)
}

pub struct Vpa;

impl Policy for Vpa {
    type Params = Params;
    const INFO: Info = Info::new(
        "vpa",
        env!("CARGO_PKG_VERSION"),
        "Kubernetes VPA recommender: per-container CPU/memory requests from decaying usage histograms (target, bounds)",
    )
    .reads(&["pods", "containers"]);

    fn prepare(params: Params) -> Result<Params, PolicyError> {
        params.check_quantities().map_err(PolicyError::InvalidParams)?;
        Ok(params)
    }

    fn decide(snapshot: Snapshot, params: &Params) -> Result<Decision, PolicyError> {
        let config = params.recommender.config();
        let mut model: Model = snapshot.state().unwrap_or_default();
        observe(&mut model, &config, &snapshot);

        // containers seen now (by name, in pod order), except those in mode Off
        let mut names: Vec<&str> = vec![];
        for c in &snapshot.containers {
            if !names.contains(&c.name.as_str()) && params.policy_for(&c.name).mode == Mode::Auto {
                names.push(&c.name);
            }
        }
        let estimates = model.estimate(&config, &names);
        let mut resources = vec![];
        let mut reasons = vec![];
        for name in &names {
            let effective = params.policy_for(name);
            let estimate = estimates[*name];
            let r = estimate.capped(&effective.min, &effective.max);
            reasons.push(format!(
                "{name}: cpu {}m [{}m, {}m], memory {} [{}, {}]",
                r.target.cpu_millicores,
                r.lower_bound.cpu_millicores,
                r.upper_bound.cpu_millicores,
                mebibytes(r.target.memory_bytes),
                mebibytes(r.lower_bound.memory_bytes),
                mebibytes(r.upper_bound.memory_bytes),
            ));
            resources.push(to_wit(name, &r, &effective));
        }
        let history =
            names.first().and_then(|n| model.containers.get(*n)).map_or(0.0, |a| Model::confidence(&config, a));

        let mut state = serde_json::to_vec(&model).map_err(|e| PolicyError::Internal(e.to_string()))?;
        if state.len() > MAX_STATE_BYTES {
            // keep the aggregates; forget per-pod windows, the least recently sampled first
            let mut windows: Vec<(String, i64)> =
                model.windows.iter().map(|(k, w)| (k.clone(), w.last_cpu_ms.unwrap_or(0))).collect();
            windows.sort_by_key(|(_, at)| *at);
            for (key, _) in windows {
                model.windows.remove(&key);
                state = serde_json::to_vec(&model).map_err(|e| PolicyError::Internal(e.to_string()))?;
                if state.len() <= MAX_STATE_BYTES {
                    break;
                }
            }
            scalegate_policy_sdk::log::warn("state over 64 KiB: per-pod windows dropped");
        }
        let reason = if reasons.is_empty() {
            "no containers to recommend for (no usage yet, or all in mode Off)".to_string()
        } else {
            format!("{} ({history:.1} days of history)", reasons.join("; "))
        };
        let mut decision = Decision::no_opinion(reason).with_resources(resources);
        decision.state = state;
        Ok(decision)
    }
}

scalegate_policy_sdk::export_policy!(Vpa);
