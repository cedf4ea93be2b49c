//! Per-workload gauges, computed at each scrape from every workload's
//! latest decision and its inputs' freshness: nothing is kept per series,
//! and a removed workload's series are gone at the next scrape. Labels:
//! `namespace`, `name` (the target) and `binding` (the workload's name in
//! the configuration), plus `stage` or `metric` where named.

use super::Decider;
use crate::cluster::Cluster;
use crate::config::Actuator;
use crate::signals::SignalHub;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use std::sync::{Arc, Weak};

/// The collector; holds the loop weakly (a stopped loop exports nothing).
pub struct Gauges<C: Cluster> {
    decider: Weak<Decider<C>>,
    inputs: Option<Arc<SignalHub>>,
}

impl<C: Cluster> std::fmt::Debug for Gauges<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("workload gauges")
    }
}

impl<C: Cluster> Gauges<C> {
    pub fn new(decider: &Arc<Decider<C>>, inputs: Option<Arc<SignalHub>>) -> Gauges<C> {
        Gauges { decider: Arc::downgrade(decider), inputs }
    }
}

/// What one workload's series say.
struct Row {
    namespace: String,
    name: String,
    binding: String,
    decided: Option<Decided>,
    /// (metric, age in seconds if any value, fresh)
    inputs: Vec<(String, Option<f64>, bool)>,
}

struct Decided {
    policy: Option<u32>,
    guardrails: u32,
    current: u32,
    ready: u32,
    at_seconds: f64,
    shadow_diverged: bool,
    keda_active: Option<bool>,
    /// (container, resource, [target, lower, upper]) of a vertical workload.
    recommended: Vec<(String, &'static str, [f64; 3])>,
}

impl<C: Cluster> Gauges<C> {
    fn rows(&self) -> Vec<Row> {
        let Some(decider) = self.decider.upgrade() else { return vec![] };
        let now_ms = decider.pipeline.clock.now_ms();
        let workloads = decider.fleet.read().order.clone();
        workloads
            .iter()
            .map(|workload| {
                let spec = workload.spec.load();
                let decided = workload.log.lock().last().map(|record| Decided {
                    policy: record.policies.iter().filter_map(|p| p.desired).max(),
                    guardrails: record.guardrails.replicas,
                    current: record.current_replicas,
                    ready: record.ready_replicas,
                    at_seconds: record.at_ms as f64 / 1e3,
                    shadow_diverged: record.shadow_diverged,
                    keda_active: (spec.actuator == Actuator::Keda)
                        .then(|| record.served.is_some_and(|served| spec.limits.is_active(served))),
                    recommended: record
                        .vertical
                        .iter()
                        .flat_map(|v| v.recommended.iter())
                        .flat_map(|(container, r)| {
                            [("cpu", r.cpu), ("memory", r.memory)].into_iter().filter_map(move |(resource, b)| {
                                b.map(|b| (container.clone(), resource, [b.target, b.lower, b.upper]))
                            })
                        })
                        .collect(),
                });
                let inputs = self
                    .inputs
                    .as_ref()
                    .map(|hub| hub.freshness(&spec.name, now_ms))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(metric, age_ms, fresh)| (metric, age_ms.map(|a| a as f64 / 1e3), fresh))
                    .collect();
                Row {
                    namespace: spec.target.namespace.clone(),
                    name: spec.target.name.clone(),
                    binding: spec.name.clone(),
                    decided,
                    inputs,
                }
            })
            .collect()
    }
}

impl<C: Cluster> Collector for Gauges<C> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let rows = self.rows();
        let labels = |row: &Row| {
            [("namespace", row.namespace.clone()), ("name", row.name.clone()), ("binding", row.binding.clone())]
        };
        type Value = fn(&Decided) -> Option<f64>;
        let decided: [(&str, &str, Value); 6] = [
            ("workload_current_replicas", "Replicas the target had when last decided", |d| Some(f64::from(d.current))),
            ("workload_ready_replicas", "Ready replicas when last decided", |d| Some(f64::from(d.ready))),
            ("workload_last_decision_timestamp_seconds", "Unix time of the latest decision", |d| Some(d.at_seconds)),
            ("workload_shadow_diverged", "1 when the shadow policy would have decided otherwise", |d| {
                Some(f64::from(u8::from(d.shadow_diverged)))
            }),
            ("workload_keda_active", "Activity served to KEDA (workloads with actuator keda)", |d| {
                d.keda_active.map(|a| f64::from(u8::from(a)))
            }),
            (
                "workload_policy_desired_replicas",
                "What the policies wanted (the largest), before the guardrails",
                |d| d.policy.map(f64::from),
            ),
        ];
        {
            let mut family = encoder.encode_descriptor(
                "workload_desired_replicas",
                "Replicas decided, after the guardrails (what is written or served)",
                None,
                MetricType::Gauge,
            )?;
            for row in &rows {
                if let Some(d) = &row.decided {
                    family.encode_family(&labels(row))?.encode_gauge(&f64::from(d.guardrails))?;
                }
            }
        }
        for (name, help, value) in decided {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for row in &rows {
                if let Some(v) = row.decided.as_ref().and_then(value) {
                    family.encode_family(&labels(row))?.encode_gauge(&v)?;
                }
            }
        }
        for (name, help, stale) in [
            ("workload_input_age_seconds", "Age of each input's latest value", false),
            ("workload_input_stale", "1 while an input is older than its max_age or missing", true),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for row in &rows {
                for (metric, age, fresh) in &row.inputs {
                    let [a, b, c] = labels(row);
                    let set = [a, b, c, ("metric", metric.clone())];
                    let value = if stale { f64::from(u8::from(!fresh)) } else { age.unwrap_or(f64::NAN) };
                    if stale || age.is_some() {
                        family.encode_family(&set)?.encode_gauge(&value)?;
                    }
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "workload_container_recommendation",
            "Vertical recommendation per container and resource (cores, bytes), after the vertical guardrails",
            None,
            MetricType::Gauge,
        )?;
        for row in &rows {
            for (container, resource, values) in row.decided.iter().flat_map(|d| d.recommended.iter()) {
                for (bound, value) in ["target", "lower", "upper"].into_iter().zip(values) {
                    let [a, b, c] = labels(row);
                    let set = [
                        a,
                        b,
                        c,
                        ("container", container.clone()),
                        ("resource", resource.to_string()),
                        ("bound", bound.to_string()),
                    ];
                    family.encode_family(&set)?.encode_gauge(value)?;
                }
            }
        }
        Ok(())
    }
}
