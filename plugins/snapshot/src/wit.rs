//! Conversions between this JSON model and the Rust types generated from the
//! WIT contract, written once for every generator: the host's
//! (`wasmtime::component::bindgen!`) and a guest's (`wit_bindgen::generate!`)
//! name records and fields alike, so the same macro bodies expand against
//! either. Expand them in a module where `domain` names this crate, `wit`
//! the generated `types` interface and, for [`wit_resource_conversions!`],
//! `res` the generated `resources` interface.

/// Resolves sample pod names to indexes into the pod list. Samples usually
/// come in pod order, so the position is tried first; a name map is built
/// only when that guess misses.
pub struct PodIndex<'a> {
    pods: &'a [crate::Pod],
    by_name: Option<std::collections::HashMap<&'a str, u32>>,
}

impl<'a> PodIndex<'a> {
    pub fn new(pods: &'a [crate::Pod]) -> Self {
        PodIndex { pods, by_name: None }
    }

    /// The index of the pod named `name`, the sample at `position` of its list.
    pub fn find(&mut self, position: usize, name: &str) -> Option<u32> {
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

/// A `wit::Snapshot` from `&domain::Snapshot`: the fields every contract
/// version has, then the version's own (`containers: …` for 0.2.0).
#[macro_export]
macro_rules! snapshot_to_wit {
    ($s:ident; $($own:ident: $value:expr),*) => {
        wit::Snapshot {
            now_ms: $s.now_ms,
            workload: workload(&$s.workload),
            pods: $s.pods.iter().map(pod).collect(),
            requests: requests(&$s.pods),
            metrics: metrics($s),
            signals: $s.signals.iter().map(signal).collect(),
            forecasts: $s.forecasts.iter().map(forecast).collect(),
            recommendations: $s.recommendations.iter().map(recommendation).collect(),
            scale_events: $s.scale_events.iter().map(scale_event).collect(),
            params: $s.params.to_string(),
            state: $s.state.clone(),
            $($own: $value),*
        }
    };
}

/// A `domain::Decision` from a `wit::Decision`: the fields every version
/// has, then the version's own (`resources: …` for 0.2.0).
#[macro_export]
macro_rules! decision_from_wit {
    ($d:ident; $($own:ident: $value:expr),*) => {
        domain::Decision {
            desired_replicas: $d.desired_replicas,
            reason: $d.reason,
            state: $d.state,
            deletion_costs: $d.deletion_costs.into_iter().map(|c| domain::PodDeletionCost { pod: c.pod, cost: c.cost }).collect(),
            metrics: $d.metrics.into_iter().map(|m| domain::ReportedMetric { name: m.name, value: m.value }).collect(),
            $($own: $value),*
        }
    };
}

/// The functions [`snapshot_to_wit!`] calls: one per record every version shares.
#[macro_export]
macro_rules! wit_conversions {
    () => {
        fn workload(w: &domain::Workload) -> wit::Workload {
            wit::Workload {
                kind: w.kind.clone(),
                namespace: w.namespace.clone(),
                name: w.name.clone(),
                current_replicas: w.current_replicas,
                status_replicas: w.status_replicas(),
                ready_replicas: w.ready_replicas(),
                min_replicas: w.min_replicas,
                max_replicas: w.max_replicas,
            }
        }

        fn pod(p: &domain::Pod) -> wit::Pod {
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

        fn requests(pods: &[domain::Pod]) -> Vec<wit::ResourceRequest> {
            pods.iter()
                .enumerate()
                .flat_map(|(index, p)| {
                    p.requests.iter().map(move |r| wit::ResourceRequest {
                        pod: index as u32,
                        resource: r.resource.clone(),
                        container: r.container.clone(),
                        amount: r.amount,
                    })
                })
                .collect()
        }

        fn metrics(s: &domain::Snapshot) -> Vec<wit::Metric> {
            let mut index = $crate::wit::PodIndex::new(&s.pods);
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
        }

        fn signal(g: &domain::Signal) -> wit::Signal {
            wit::Signal {
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
            }
        }

        fn forecast(f: &domain::Forecast) -> wit::Forecast {
            wit::Forecast {
                name: f.name.clone(),
                generated_ms: f.generated_ms,
                start_ms: f.start_ms,
                step_seconds: f.step_seconds,
                values: f.values.clone(),
            }
        }

        fn recommendation(r: &domain::Recommendation) -> wit::Recommendation {
            wit::Recommendation { timestamp_ms: r.timestamp_ms, replicas: r.replicas }
        }

        fn scale_event(e: &domain::ScaleEvent) -> wit::ScaleEvent {
            wit::ScaleEvent { timestamp_ms: e.timestamp_ms, from_replicas: e.from_replicas, to_replicas: e.to_replicas }
        }
    };
}

/// Contract 0.2.0's `resources` records: `containers(pods)` for the
/// snapshot, `recommendations(list)` for the decision.
#[macro_export]
macro_rules! wit_resource_conversions {
    () => {
        fn containers(pods: &[domain::Pod]) -> Vec<res::Container> {
            let compute = |c: &domain::Compute| res::Compute { cpu: c.cpu, memory: c.memory };
            pods.iter()
                .enumerate()
                .flat_map(|(index, p)| {
                    p.containers.iter().map(move |c| res::Container {
                        pod: index as u32,
                        name: c.name.clone(),
                        requests: compute(&c.requests),
                        limits: compute(&c.limits),
                        restart_count: c.restart_count,
                        last_termination: c.last_termination.as_ref().map(|t| res::Termination {
                            reason: t.reason.clone(),
                            exit_code: t.exit_code,
                            finished_ms: t.finished_ms,
                        }),
                        usage: c.usage.as_ref().map(|u| res::Usage {
                            cpu: u.cpu,
                            memory: u.memory,
                            timestamp_ms: u.timestamp_ms,
                            window_ms: u.window_ms,
                        }),
                    })
                })
                .collect()
        }

        fn recommendations(list: Vec<res::ContainerRecommendation>) -> Vec<domain::ContainerRecommendation> {
            list.into_iter()
                .map(|c| domain::ContainerRecommendation {
                    container: c.container,
                    resources: c
                        .resources
                        .into_iter()
                        .map(|r| domain::ResourceRecommendation {
                            resource: r.resource,
                            target: r.target,
                            lower_bound: r.lower_bound,
                            upper_bound: r.upper_bound,
                            uncapped_target: r.uncapped_target,
                        })
                        .collect(),
                })
                .collect()
        }
    };
}
