//! The Kubernetes VPA recommender as a pure library: the model VPA keeps per
//! container (a decaying CPU usage histogram, a decaying histogram of daily
//! memory peaks, OOM bumps) and the estimators it derives requests from
//! (percentiles, safety margin, confidence from history length, pod
//! minimums), then VPA's min/max-allowed capping. Ported from
//! kubernetes/autoscaler `vertical-pod-autoscaler/pkg/recommender` (facts in
//! `docs/reference/vpa-recommender.md` of the shared docs).
//!
//! The whole model is `serde`: the `vpa` policy keeps it in `decision.state`
//! between evaluations. Amounts follow VPA: CPU in whole millicores and
//! memory in whole bytes, truncated at each step, capped at 1e14.

pub mod histogram;

use histogram::{DecayingHistogram, Options};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// VPA's `MaxResourceAmount`.
pub const MAX_AMOUNT: i64 = 100_000_000_000_000;
const DAY_MS: i64 = 86_400_000;

/// A float amount as VPA's `ResourceAmount`: truncated, in [0, 1e14].
pub fn amount(value: f64) -> i64 {
    if value > MAX_AMOUNT as f64 {
        MAX_AMOUNT
    } else if value < 0.0 || value.is_nan() {
        0
    } else {
        value as i64
    }
}

/// `ScaleResource`: amount × factor, as an amount.
pub fn scale(value: i64, factor: f64) -> i64 {
    amount(value as f64 * factor)
}

/// The recommender's settings (VPA's flags; defaults are VPA's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub half_life_ms: i64,
    pub memory_aggregation_interval_ms: i64,
    pub confidence_interval_ms: i64,
    pub cpu_sample_weight: f64,
    pub oom_bump_up_ratio: f64,
    pub oom_min_bump_up_bytes: f64,
    pub target_percentile: f64,
    pub lower_bound_percentile: f64,
    pub upper_bound_percentile: f64,
    pub safety_margin_fraction: f64,
    pub pod_min_cpu_millicores: f64,
    pub pod_min_memory_mb: f64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            half_life_ms: DAY_MS,
            memory_aggregation_interval_ms: DAY_MS,
            confidence_interval_ms: DAY_MS,
            cpu_sample_weight: 0.1,
            oom_bump_up_ratio: 1.2,
            oom_min_bump_up_bytes: 100.0 * 1024.0 * 1024.0,
            target_percentile: 0.9,
            lower_bound_percentile: 0.5,
            upper_bound_percentile: 0.95,
            safety_margin_fraction: 0.15,
            pod_min_cpu_millicores: 25.0,
            pod_min_memory_mb: 250.0,
        }
    }
}

/// Everything observed of one container name, merged over the pods
/// (`AggregateContainerState`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    #[serde(rename = "cpu")]
    pub cpu: DecayingHistogram,
    #[serde(rename = "mem")]
    pub memory: DecayingHistogram,
    #[serde(rename = "first", default, skip_serializing_if = "Option::is_none")]
    pub first_sample_ms: Option<i64>,
    #[serde(rename = "last", default, skip_serializing_if = "Option::is_none")]
    pub last_sample_ms: Option<i64>,
    #[serde(rename = "n", default)]
    pub samples: u64,
}

impl Default for Aggregate {
    fn default() -> Aggregate {
        Aggregate {
            cpu: DecayingHistogram::new(&Options::cpu()),
            memory: DecayingHistogram::new(&Options::memory()),
            first_sample_ms: None,
            last_sample_ms: None,
            samples: 0,
        }
    }
}

/// One pod's container: its memory aggregation window and the last sample
/// times, for deduplication (`ContainerState`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub last_cpu_ms: Option<i64>,
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub last_memory_ms: Option<i64>,
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub window_end_ms: Option<i64>,
    #[serde(rename = "p", default)]
    pub memory_peak: i64,
    #[serde(rename = "o", default)]
    pub oom_peak: i64,
    /// When the last OOM kill recorded for this container ended (so the
    /// same termination is not counted twice).
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    pub last_oom_ms: Option<i64>,
}

/// The recommender's model of one workload.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// By container name.
    #[serde(rename = "agg", default)]
    pub containers: BTreeMap<String, Aggregate>,
    /// By `pod/container`.
    #[serde(rename = "win", default)]
    pub windows: BTreeMap<String, Window>,
}

fn key(pod: &str, container: &str) -> String {
    format!("{pod}/{container}")
}

impl Model {
    /// A CPU usage sample (cores) measured at `at_ms`; older or repeated
    /// samples of the same pod's container are ignored. True if taken.
    pub fn add_cpu(&mut self, config: &Config, pod: &str, container: &str, cores: f64, at_ms: i64) -> bool {
        let window = self.windows.entry(key(pod, container)).or_default();
        if cores < 0.0 || window.last_cpu_ms.is_some_and(|last| at_ms <= last) {
            return false;
        }
        window.last_cpu_ms = Some(at_ms);
        let aggregate = self.containers.entry(container.to_string()).or_default();
        // the sample as VPA holds it: whole millicores
        let cores = amount(cores * 1000.0) as f64 / 1000.0;
        aggregate.cpu.add(&Options::cpu(), cores, config.cpu_sample_weight, at_ms, config.half_life_ms);
        aggregate.last_sample_ms = Some(aggregate.last_sample_ms.map_or(at_ms, |l| l.max(at_ms)));
        aggregate.first_sample_ms = Some(aggregate.first_sample_ms.map_or(at_ms, |f| f.min(at_ms)));
        aggregate.samples += 1;
        true
    }

    /// A memory usage sample (bytes) measured at `at_ms`: it becomes the
    /// container's peak of the current aggregation interval if larger.
    pub fn add_memory(&mut self, config: &Config, pod: &str, container: &str, bytes: f64, at_ms: i64) -> bool {
        self.memory_sample(config, pod, container, amount(bytes), at_ms, false)
    }

    /// An OOM kill at `at_ms` of a container requesting `request_bytes`: a
    /// memory sample of max(used + 100 MiB, used × 1.2), used = max(request,
    /// this interval's peak). Ignored when older than the last memory
    /// sample minus one interval. True if recorded.
    pub fn record_oom(&mut self, config: &Config, pod: &str, container: &str, at_ms: i64, request_bytes: f64) -> bool {
        let window = self.windows.entry(key(pod, container)).or_default();
        if window.last_memory_ms.is_some_and(|last| at_ms < last - config.memory_aggregation_interval_ms) {
            return false;
        }
        let used = amount(request_bytes).max(window.memory_peak);
        let needed = (used + amount(config.oom_min_bump_up_bytes)).max(scale(used, config.oom_bump_up_ratio));
        self.memory_sample(config, pod, container, needed, at_ms, true)
    }

    fn memory_sample(
        &mut self,
        config: &Config,
        pod: &str,
        container: &str,
        usage: i64,
        at_ms: i64,
        oom: bool,
    ) -> bool {
        let window = self.windows.entry(key(pod, container)).or_default();
        if usage < 0 || (!oom && window.last_memory_ms.is_some_and(|last| at_ms < last)) {
            return false;
        }
        window.last_memory_ms = Some(at_ms);
        let end = *window.window_end_ms.get_or_insert(at_ms);
        let aggregate = self.containers.entry(container.to_string()).or_default();
        let options = Options::memory();
        let mut add_peak = false;
        if at_ms < end {
            let old = window.memory_peak.max(window.oom_peak);
            if old != 0 && usage > old {
                aggregate.memory.subtract(&options, old as f64, 1.0, end, config.half_life_ms);
                add_peak = true;
            }
        } else {
            let interval = config.memory_aggregation_interval_ms;
            let shift = (at_ms - end) / interval * interval + interval;
            window.window_end_ms = Some(end + shift);
            window.memory_peak = 0;
            window.oom_peak = 0;
            add_peak = true;
        }
        if add_peak {
            let end = window.window_end_ms.unwrap_or(at_ms);
            aggregate.memory.add(&options, usage as f64, 1.0, end, config.half_life_ms);
            if oom {
                window.oom_peak = usage;
            } else {
                window.memory_peak = usage;
            }
        }
        true
    }

    /// Drops the windows of pods no longer present (their samples stay in
    /// the aggregates, decaying), keeping `keep(pod)`.
    pub fn retain_pods(&mut self, keep: impl Fn(&str) -> bool) {
        self.windows.retain(|k, _| keep(k.rsplit_once('/').map_or(k.as_str(), |(pod, _)| pod)));
    }

    /// History length in days (`getConfidence`): the lesser of the span
    /// between the first and last CPU samples and the sample count at one a
    /// minute.
    pub fn confidence(config: &Config, aggregate: &Aggregate) -> f64 {
        let span = match (aggregate.first_sample_ms, aggregate.last_sample_ms) {
            (Some(first), Some(last)) => (last - first) as f64 / config.confidence_interval_ms as f64,
            _ => 0.0,
        };
        let minutes = config.confidence_interval_ms as f64 / 60_000.0;
        span.min(aggregate.samples as f64 / minutes)
    }

    /// The raw estimates (before capping) for the containers named, with the
    /// pod minimums split equally between them.
    pub fn estimate(&self, config: &Config, containers: &[&str]) -> BTreeMap<String, Estimate> {
        let mut out = BTreeMap::new();
        if containers.is_empty() {
            return out;
        }
        let fraction = 1.0 / containers.len() as f64;
        let min_cpu = scale(amount(config.pod_min_cpu_millicores * 0.001 * 1000.0), fraction);
        let min_memory = scale(amount(config.pod_min_memory_mb * 1024.0 * 1024.0), fraction);
        let empty = Aggregate::default();
        for name in containers {
            let aggregate = self.containers.get(*name).unwrap_or(&empty);
            let confidence = Model::confidence(config, aggregate);
            let margin = |base: i64| base + scale(base, config.safety_margin_fraction);
            let cpu = |p: f64| margin(amount(aggregate.cpu.percentile(&Options::cpu(), p) * 1000.0));
            let memory = |p: f64| margin(amount(aggregate.memory.percentile(&Options::memory(), p)));
            let upper = (1.0 + 1.0 / confidence).powf(1.0);
            let lower = (1.0 + 0.001 / confidence).powf(-2.0);
            out.insert(
                name.to_string(),
                Estimate {
                    target: Amounts {
                        cpu_millicores: cpu(config.target_percentile).max(min_cpu),
                        memory_bytes: memory(config.target_percentile).max(min_memory),
                    },
                    lower_bound: Amounts {
                        cpu_millicores: scale(cpu(config.lower_bound_percentile), lower).max(min_cpu),
                        memory_bytes: scale(memory(config.lower_bound_percentile), lower).max(min_memory),
                    },
                    upper_bound: Amounts {
                        cpu_millicores: scale(cpu(config.upper_bound_percentile), upper).max(min_cpu),
                        memory_bytes: scale(memory(config.upper_bound_percentile), upper).max(min_memory),
                    },
                    confidence_days: confidence,
                },
            );
        }
        out
    }
}

/// CPU and memory amounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amounts {
    pub cpu_millicores: i64,
    pub memory_bytes: i64,
}

/// What the estimators say for one container, before capping.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub target: Amounts,
    pub lower_bound: Amounts,
    pub upper_bound: Amounts,
    pub confidence_days: f64,
}

/// Bounds on a recommendation (VPA's `minAllowed`/`maxAllowed`); `None`
/// where unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Allowed {
    pub cpu_millicores: Option<i64>,
    pub memory_bytes: Option<i64>,
}

/// A capped recommendation, as VPA's status carries it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    pub target: Amounts,
    pub lower_bound: Amounts,
    pub upper_bound: Amounts,
    pub uncapped_target: Amounts,
}

impl Estimate {
    /// VPA's status capping: each value raised to `min`, then cut to `max`
    /// (max wins); zero bounds are ignored; `uncapped_target` keeps the target.
    pub fn capped(&self, min: &Allowed, max: &Allowed) -> Recommendation {
        let cap = |value: i64, min: Option<i64>, max: Option<i64>| {
            let raised = match min {
                Some(m) if m > 0 && value < m => m,
                _ => value,
            };
            match max {
                Some(m) if m > 0 && raised > m => m,
                _ => raised,
            }
        };
        let both = |a: Amounts| Amounts {
            cpu_millicores: cap(a.cpu_millicores, min.cpu_millicores, max.cpu_millicores),
            memory_bytes: cap(a.memory_bytes, min.memory_bytes, max.memory_bytes),
        };
        Recommendation {
            target: both(self.target),
            lower_bound: both(self.lower_bound),
            upper_bound: both(self.upper_bound),
            uncapped_target: self.target,
        }
    }
}
