//! What `scalegate simulate` runs and measures: the deployed configuration
//! adapted to the simulation, the course of each workload, its summary.
//! The run itself — the real daemon assembly (`daemon::start`) against a
//! [`SimCluster`](super::SimCluster) whose load follows a
//! [`Trace`], on tokio's paused clock — is assembled by the command
//! (`cli::simulate::run_config`), as `run` and `demo` assemble theirs.
//!
//! The configuration is the one deployed, adapted to the simulation: its
//! signal `sources` are dropped; a declared metric the trace has values for
//! is fed from the trace (as a pushed metric, fresh for two steps unless it
//! sets `max_age`; a `pod.<metric>` column per
//! ready pod, spread by [`pod_weight`](super::pod_weight); a
//! `forecast.<metric>` column as a forecast series) and others are left out
//! (the simulated cluster reports `cpu` and `rps` per pod itself);
//! `actuator: keda` becomes `kubernetes` (KEDA would apply the count).

use super::trace::{Trace, fed_metric};
use crate::config::Config;
use std::path::PathBuf;
use std::time::Duration;

/// Where the simulated time starts (2027-01-01T00:00:00Z): charts read as a day.
pub const START_MS: u64 = 1_798_761_600_000;

/// How the simulated cluster behaves and is sampled.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The policy directory.
    pub policies: PathBuf,
    /// Sampling step (and how often trace metrics are pushed).
    pub step: Duration,
    /// Requests per second one pod serves at 100 % of its CPU request.
    pub rps_per_pod: f64,
    /// Time a new pod takes to become ready.
    pub startup: Duration,
    /// Utilization above which a pod counts as overloaded (the SLO).
    pub slo: f64,
    /// Simulated length (default: the trace's last row plus one step).
    pub duration: Option<Duration>,
    /// Threads the workloads are spread over (results do not depend on it).
    pub jobs: usize,
}

impl Setup {
    pub fn step_ms(&self) -> u64 {
        self.step.as_millis().max(1) as u64
    }

    /// The last sampled time, ms from the start.
    pub fn end_ms(&self, trace: &Trace) -> u64 {
        self.duration.map_or(trace.end_ms + self.step_ms(), |d| d.as_millis() as u64)
    }
}

/// One workload at one sampling step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub t_ms: u64,
    pub load: f64,
    pub replicas: u32,
    pub ready: u32,
}

/// A workload's course under one configuration.
#[derive(Debug, Clone)]
pub struct WorkloadRun {
    pub name: String,
    /// Its pods' capacity, requests per second each at full utilization.
    pub rps_per_pod: f64,
    pub samples: Vec<Sample>,
    /// (time ms from start, from, to)
    pub scales: Vec<(u64, u32, u32)>,
    /// Scale-ins: (time ms from start, the pods before, the pods removed).
    pub removals: Vec<(u64, Vec<String>, Vec<String>)>,
}

/// What one configuration did.
#[derive(Debug, Clone)]
pub struct Run {
    pub label: String,
    pub workloads: Vec<WorkloadRun>,
    /// Decisions made, all workloads together.
    pub decisions: u64,
}

/// A configuration adapted to the simulation.
#[derive(Debug, Clone)]
pub struct Adapted {
    pub config: Config,
    /// Workloads (by name) that declared pod memory (`pod_metrics: {resource:
    /// memory}`): the simulated cluster reports it for their pods (for the
    /// others it saves the work).
    pub memory: Vec<String>,
}

/// The deployed configuration adapted to the simulation (see the module doc).
pub fn adapt(text: &str, trace: &Trace, setup: &Setup) -> Result<Adapted, String> {
    let mut memory = vec![];
    use serde_yaml_ng::Value;
    let mut doc: Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    let Some(root) = doc.as_mapping_mut() else { return Err("not a YAML mapping".into()) };
    root.remove("sources");
    root.remove("policies");
    let keda_off = |m: &mut serde_yaml_ng::Mapping| {
        if m.get("actuator").and_then(Value::as_str) == Some("keda") {
            m.insert("actuator".into(), "kubernetes".into());
        }
    };
    if let Some(defaults) = root.get_mut("defaults").and_then(Value::as_mapping_mut) {
        keda_off(defaults);
    }
    if let Some(workloads) = root.get_mut("workloads").and_then(Value::as_sequence_mut) {
        for workload in workloads.iter_mut().filter_map(Value::as_mapping_mut) {
            keda_off(workload);
            let target = workload.get("target");
            let path = format!(
                "{}/{}",
                target.and_then(|t| t.get("namespace")).and_then(Value::as_str).unwrap_or(""),
                target.and_then(|t| t.get("name")).and_then(Value::as_str).unwrap_or("")
            );
            let name = workload.get("name").and_then(Value::as_str).map(str::to_string).unwrap_or(path.clone());
            let fed: Vec<String> = trace
                .workloads
                .get(&name)
                .or_else(|| trace.workloads.get(&path))
                .map(|s| s.metrics.keys().filter_map(|k| fed_metric(k)).map(str::to_string).collect())
                .unwrap_or_default();
            if let Some(metrics) = workload.get_mut("metrics").and_then(Value::as_sequence_mut) {
                let pod_memory = |m: &Value| {
                    m.get("pod_metrics").and_then(|p| p.get("resource")).and_then(Value::as_str) == Some("memory")
                };
                if metrics.iter().any(pod_memory) {
                    memory.push(name.clone());
                }
                metrics.retain(|m| m.get("name").and_then(Value::as_str).is_some_and(|n| fed.iter().any(|f| f == n)));
                for metric in metrics.iter_mut().filter_map(Value::as_mapping_mut) {
                    let keep: Vec<(Value, Value)> = metric
                        .iter()
                        .filter(|(k, _)| matches!(k.as_str(), Some("name" | "required" | "max_age")))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    metric.clear();
                    metric.extend(keep);
                    metric.insert("push".into(), Value::Mapping(Default::default()));
                    // pushed once a step: fresh until the next push has surely come
                    if !metric.contains_key("max_age") {
                        metric.insert("max_age".into(), format!("{}ms", 2 * setup.step_ms()).into());
                    }
                }
            }
        }
    }
    let text = serde_yaml_ng::to_string(&doc).map_err(|e| e.to_string())?;
    let config = Config::parse(&text).map_err(|e| e.to_string())?;
    Ok(Adapted { config, memory })
}

impl Run {
    pub fn workload(&self, name: &str) -> Option<&WorkloadRun> {
        self.workloads.iter().find(|w| w.name == name)
    }
}

/// The figures of one workload's course.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    /// Σ (pods needed at the SLO − ready pods)⁺ × minutes.
    pub under_pod_minutes: f64,
    /// Σ (replicas − pods needed)⁺ × hours.
    pub over_replica_hours: f64,
    pub scale_actions: usize,
    pub largest_step: u32,
    /// Minutes the ready pods ran above the SLO utilization.
    pub minutes_over_slo: f64,
}

impl WorkloadRun {
    pub fn summary(&self, setup: &Setup) -> Summary {
        let step_min = setup.step.as_secs_f64() / 60.0;
        let per_pod = self.rps_per_pod * setup.slo;
        let mut summary = Summary {
            scale_actions: self.scales.len(),
            largest_step: self.scales.iter().map(|(_, from, to)| from.abs_diff(*to)).max().unwrap_or(0),
            ..Summary::default()
        };
        for sample in &self.samples {
            let needed = (sample.load / per_pod).ceil();
            summary.under_pod_minutes += (needed - f64::from(sample.ready)).max(0.0) * step_min;
            summary.over_replica_hours += (f64::from(sample.replicas) - needed).max(0.0) * step_min / 60.0;
            if sample.load > f64::from(sample.ready) * per_pod {
                summary.minutes_over_slo += step_min;
            }
        }
        summary
    }
}
