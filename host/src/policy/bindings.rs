//! Generated bindings of `wit/policy.wit` and the conversions between them
//! and the host's own types. Nothing outside this module sees a generated
//! type.

use super::sandbox::{HostState, LogLevel};
use super::{Declined, PolicyInfo};
use crate::snapshot as domain;

mod generated {
    wasmtime::component::bindgen!({
        world: "policy",
        path: "../wit",
        // calls run on a fiber so the host can bound them in wall-clock time
        exports: { default: async },
    });
}

use generated::scalegate::policy::host;
use generated::scalegate::policy::types as wit;

pub use generated::Policy as PolicyBindings;
pub use generated::PolicyPre as PolicyBindingsPre;

/// Adds the `host` and `types` interfaces to the linker.
pub fn add_to_linker(linker: &mut wasmtime::component::Linker<HostState>) -> wasmtime::Result<()> {
    PolicyBindings::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(linker, |state| state)
}

impl host::Host for HostState {
    fn log(&mut self, level: host::LogLevel, message: String) {
        let level = match level {
            host::LogLevel::Trace => LogLevel::Trace,
            host::LogLevel::Debug => LogLevel::Debug,
            host::LogLevel::Info => LogLevel::Info,
            host::LogLevel::Warn => LogLevel::Warn,
            host::LogLevel::Error => LogLevel::Error,
        };
        self.push_log(level, message);
    }
}

impl wit::Host for HostState {}

pub fn snapshot_to_wit(s: &domain::Snapshot) -> wit::Snapshot {
    wit::Snapshot {
        now_ms: s.now_ms,
        workload: wit::Workload {
            kind: s.workload.kind.clone(),
            namespace: s.workload.namespace.clone(),
            name: s.workload.name.clone(),
            current_replicas: s.workload.current_replicas,
            status_replicas: s.workload.status_replicas(),
            ready_replicas: s.workload.ready_replicas(),
            min_replicas: s.workload.min_replicas,
            max_replicas: s.workload.max_replicas,
        },
        pods: s.pods.iter().map(pod_to_wit).collect(),
        requests: s
            .pods
            .iter()
            .enumerate()
            .flat_map(|(index, p)| {
                p.requests.iter().map(move |r| wit::ResourceRequest {
                    pod: index as u32,
                    resource: r.resource.clone(),
                    container: r.container.clone(),
                    amount: r.amount,
                })
            })
            .collect(),
        metrics: {
            let mut index = PodIndex::new(&s.pods);
            s.metrics
                .iter()
                .map(|m| wit::Metric {
                    name: m.name.clone(),
                    source: m.source.clone(),
                    value: m.value,
                    timestamp_ms: m.timestamp_ms,
                    pods: m
                        .pods
                        .iter()
                        .enumerate()
                        .filter_map(|(position, p)| {
                            Some(wit::PodSample {
                                pod: index.find(position, &p.pod)?,
                                value: p.value,
                                timestamp_ms: p.timestamp_ms,
                                window_ms: p.window_ms,
                            })
                        })
                        .collect(),
                })
                .collect()
        },

        signals: s
            .signals
            .iter()
            .map(|g| wit::Signal {
                kind: g.kind.clone(),
                source: g.source.clone(),
                timestamp_ms: g.timestamp_ms,
                action: g.action.map(|a| match a {
                    domain::ScaleAction::ScaleOut => wit::ScaleAction::ScaleOut,
                    domain::ScaleAction::ScaleIn => wit::ScaleAction::ScaleIn,
                    domain::ScaleAction::Hold => wit::ScaleAction::Hold,
                }),
                target_replicas: g.target_replicas,
                urgency: g.urgency,
                reason: g.reason.clone(),
                attributes: g.attributes.clone(),
            })
            .collect(),
        forecasts: s
            .forecasts
            .iter()
            .map(|f| wit::Forecast {
                name: f.name.clone(),
                generated_ms: f.generated_ms,
                start_ms: f.start_ms,
                step_seconds: f.step_seconds,
                values: f.values.clone(),
            })
            .collect(),
        recommendations: s
            .recommendations
            .iter()
            .map(|r| wit::Recommendation { timestamp_ms: r.timestamp_ms, replicas: r.replicas })
            .collect(),
        scale_events: s
            .scale_events
            .iter()
            .map(|e| wit::ScaleEvent {
                timestamp_ms: e.timestamp_ms,
                from_replicas: e.from_replicas,
                to_replicas: e.to_replicas,
            })
            .collect(),
        params: s.params.to_string(),
        state: s.state.clone(),
    }
}

/// Resolves sample pod names to indexes into the pod list. Samples usually
/// come in pod order, so the position is tried first; a name map is built
/// only when that guess misses.
struct PodIndex<'a> {
    pods: &'a [domain::Pod],
    by_name: Option<std::collections::HashMap<&'a str, u32>>,
}

impl<'a> PodIndex<'a> {
    fn new(pods: &'a [domain::Pod]) -> Self {
        PodIndex { pods, by_name: None }
    }

    fn find(&mut self, position: usize, name: &str) -> Option<u32> {
        if self.pods.get(position).is_some_and(|p| p.name == name) {
            return u32::try_from(position).ok();
        }
        let pods = self.pods;
        let by_name = self
            .by_name
            .get_or_insert_with(|| pods.iter().enumerate().map(|(i, p)| (p.name.as_str(), i as u32)).collect());
        by_name.get(name).copied()
    }
}

fn pod_to_wit(p: &domain::Pod) -> wit::Pod {
    wit::Pod {
        name: p.name.clone(),
        phase: match p.phase {
            domain::PodPhase::Pending => wit::PodPhase::Pending,
            domain::PodPhase::Running => wit::PodPhase::Running,
            domain::PodPhase::Succeeded => wit::PodPhase::Succeeded,
            domain::PodPhase::Failed => wit::PodPhase::Failed,
            domain::PodPhase::Unknown => wit::PodPhase::Unknown,
        },
        ready: p.ready,
        ready_transition_ms: p.ready_transition_ms,
        start_ms: p.start_ms,
        terminating: p.terminating,
        deletion_cost: p.deletion_cost,
        cpu_request: p.cpu_request,
        memory_request: p.memory_request,
    }
}

pub fn decision_from_wit(d: wit::Decision) -> domain::Decision {
    domain::Decision {
        desired_replicas: d.desired_replicas,
        reason: d.reason,
        state: d.state,
        deletion_costs: d
            .deletion_costs
            .into_iter()
            .map(|c| domain::PodDeletionCost { pod: c.pod, cost: c.cost })
            .collect(),
        metrics: d.metrics.into_iter().map(|m| domain::ReportedMetric { name: m.name, value: m.value }).collect(),
    }
}

pub fn declined_from_wit(e: wit::PolicyError) -> Declined {
    match e {
        wit::PolicyError::InvalidParams(m) => Declined::InvalidParams(m),
        wit::PolicyError::MissingInput(m) => Declined::MissingInput(m),
        wit::PolicyError::Internal(m) => Declined::Internal(m),
    }
}

pub fn info_from_wit(i: wit::PolicyInfo) -> PolicyInfo {
    PolicyInfo {
        name: i.name,
        version: i.version,
        description: i.description,
        params_schema: i.params_schema,
        reads: i.reads,
    }
}
