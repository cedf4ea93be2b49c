//! `hpa`: the Kubernetes HorizontalPodAutoscaler algorithm as a scalegate
//! policy. The algorithm lives in `scalegate-hpa` (`plugins/hpa-core`); this
//! crate only converts the WIT snapshot into its input and its output into a
//! decision.
//!
//! `params` is the `spec` of an `autoscaling/v2` HPA (`metrics`, `behavior`,
//! optional `minReplicas`/`maxReplicas`) plus the controller flags
//! (`tolerance`, `downscaleStabilizationSeconds`, `cpuInitializationPeriodSeconds`,
//! `initialReadinessDelaySeconds`). See `plugins/hpa/README.md`.

use scalegate_hpa as hpa;
use scalegate_policy_sdk::Guest;
use scalegate_policy_sdk::types::{Decision, PodPhase, PolicyError, PolicyInfo, ReportedMetric, Snapshot};
use std::cell::RefCell;
use std::rc::Rc;

struct Hpa;

fn clamp_i32(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

fn ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// WIT snapshot → algorithm input, moving strings instead of copying them.
fn input(snapshot: Snapshot) -> hpa::Input {
    let w = snapshot.workload;
    let mut input = hpa::Input {
        now_ms: ms(snapshot.now_ms),
        current_replicas: clamp_i32(w.current_replicas),
        status_replicas: clamp_i32(w.status_replicas),
        min_replicas: clamp_i32(w.min_replicas),
        max_replicas: clamp_i32(w.max_replicas),
        pods: snapshot
            .pods
            .into_iter()
            .map(|p| hpa::Pod {
                name: p.name,
                phase: match p.phase {
                    PodPhase::Pending => hpa::Phase::Pending,
                    PodPhase::Running => hpa::Phase::Running,
                    PodPhase::Succeeded => hpa::Phase::Succeeded,
                    PodPhase::Failed => hpa::Phase::Failed,
                    PodPhase::Unknown => hpa::Phase::Unknown,
                },
                ready: p.ready,
                ready_transition_ms: p.ready_transition_ms.map(ms),
                start_ms: p.start_ms.map(ms),
                terminating: p.terminating,
                cpu_request: p.cpu_request,
                memory_request: p.memory_request,
                requests: Vec::new(),
            })
            .collect(),
        metrics: snapshot
            .metrics
            .into_iter()
            .map(|m| hpa::Metric {
                name: m.name,
                value: m.value,
                pods: m
                    .pods
                    .into_iter()
                    .map(|s| hpa::PodSample {
                        pod: s.pod as usize,
                        value: s.value,
                        timestamp_ms: ms(s.timestamp_ms),
                        window_ms: ms(s.window_ms),
                    })
                    .collect(),
            })
            .collect(),
        scale_events: snapshot
            .scale_events
            .into_iter()
            .map(|e| hpa::ScaleEvent {
                timestamp_ms: ms(e.timestamp_ms),
                from_replicas: clamp_i32(e.from_replicas),
                to_replicas: clamp_i32(e.to_replicas),
            })
            .collect(),
    };
    for request in snapshot.requests {
        if let Some(pod) = input.pods.get_mut(request.pod as usize) {
            pod.requests.push(hpa::Request {
                resource: request.resource,
                container: request.container,
                amount: request.amount,
            });
        }
    }
    input
}

thread_local! {
    /// The last params text and its parse. A binding sends the same params on
    /// every call, and a recycled instance keeps this cache; a fresh instance
    /// simply parses again, so results never depend on it.
    static PARSED: RefCell<Option<(String, Rc<hpa::HpaParams>)>> = const { RefCell::new(None) };
}

fn parse_params(text: &str) -> Result<Rc<hpa::HpaParams>, PolicyError> {
    PARSED.with(|cell| {
        if let Some((cached, params)) = &*cell.borrow()
            && cached == text
        {
            return Ok(params.clone());
        }
        let params = Rc::new(hpa::HpaParams::parse(text).map_err(PolicyError::InvalidParams)?);
        *cell.borrow_mut() = Some((text.to_string(), params.clone()));
        Ok(params)
    })
}

impl Guest for Hpa {
    fn metadata() -> PolicyInfo {
        PolicyInfo {
            name: "hpa".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "The Kubernetes HorizontalPodAutoscaler algorithm (autoscaling/v2 metrics and behavior)"
                .into(),
            params_schema: include_str!("../params.schema.json").into(),
            reads: vec!["metrics".into(), "pods".into(), "scale-events".into()],
        }
    }

    fn evaluate(snapshot: Snapshot) -> Result<Decision, PolicyError> {
        let params = parse_params(&snapshot.params)?;
        let state = hpa::State::decode(&snapshot.state).map_err(PolicyError::Internal)?;
        let output = hpa::evaluate(&params, &input(snapshot), state);
        let mut metrics: Vec<ReportedMetric> =
            output.proposals.iter().map(|p| ReportedMetric { name: p.name.clone(), value: p.current }).collect();
        if let Some(desired) = output.metric_desired {
            metrics.push(ReportedMetric { name: "hpa.metric-desired-replicas".into(), value: f64::from(desired) });
        }
        Ok(Decision {
            desired_replicas: output.desired_replicas.map(|d| d.max(0) as u32),
            reason: output.reason,
            state: output.state.encode(),
            deletion_costs: Vec::new(),
            metrics,
            resources: Vec::new(),
        })
    }
}

scalegate_policy_sdk::export_policy!(Hpa);
