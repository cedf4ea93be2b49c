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
use scalegate_policy_sdk::types::{
    Decision, PodPhase, PolicyError, PolicyInfo, ReportedMetric, Snapshot,
};

struct Hpa;

fn clamp_i32(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

fn ms(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// WIT snapshot → algorithm input.
fn input(snapshot: &Snapshot) -> hpa::Input {
    let w = &snapshot.workload;
    hpa::Input {
        now_ms: ms(snapshot.now_ms),
        current_replicas: clamp_i32(w.current_replicas),
        status_replicas: clamp_i32(w.status_replicas),
        min_replicas: clamp_i32(w.min_replicas),
        max_replicas: clamp_i32(w.max_replicas),
        pods: snapshot
            .pods
            .iter()
            .map(|p| hpa::Pod {
                name: p.name.clone(),
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
                requests: p
                    .requests
                    .iter()
                    .map(|r| hpa::Request {
                        resource: r.resource.clone(),
                        container: r.container.clone(),
                        amount: r.amount,
                    })
                    .collect(),
            })
            .collect(),
        metrics: snapshot
            .metrics
            .iter()
            .map(|m| hpa::Metric {
                name: m.name.clone(),
                value: m.value,
                pods: m
                    .pods
                    .iter()
                    .map(|s| hpa::PodSample {
                        pod: s.pod.clone(),
                        value: s.value,
                        timestamp_ms: ms(s.timestamp_ms),
                        window_ms: ms(s.window_ms),
                    })
                    .collect(),
            })
            .collect(),
        scale_events: snapshot
            .scale_events
            .iter()
            .map(|e| hpa::ScaleEvent {
                timestamp_ms: ms(e.timestamp_ms),
                from_replicas: clamp_i32(e.from_replicas),
                to_replicas: clamp_i32(e.to_replicas),
            })
            .collect(),
    }
}

impl Guest for Hpa {
    fn metadata() -> PolicyInfo {
        PolicyInfo {
            name: "hpa".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "The Kubernetes HorizontalPodAutoscaler algorithm (autoscaling/v2 metrics and behavior)".into(),
            params_schema: include_str!("../params.schema.json").into(),
            reads: vec!["metrics".into(), "pods".into(), "scale-events".into()],
        }
    }

    fn evaluate(snapshot: Snapshot) -> Result<Decision, PolicyError> {
        let params = hpa::HpaParams::parse(&snapshot.params).map_err(PolicyError::InvalidParams)?;
        let state = hpa::State::decode(&snapshot.state).map_err(PolicyError::Internal)?;
        let output = hpa::evaluate(&params, &input(&snapshot), state);
        let mut metrics: Vec<ReportedMetric> = output
            .proposals
            .iter()
            .map(|p| ReportedMetric {
                name: p.name.clone(),
                value: p.current,
            })
            .collect();
        if let Some(desired) = output.metric_desired {
            metrics.push(ReportedMetric {
                name: "hpa.metric-desired-replicas".into(),
                value: f64::from(desired),
            });
        }
        Ok(Decision {
            desired_replicas: output.desired_replicas.map(|d| d.max(0) as u32),
            reason: output.reason,
            state: output.state.encode(),
            deletion_costs: Vec::new(),
            metrics,
        })
    }
}

scalegate_policy_sdk::export_policy!(Hpa);
