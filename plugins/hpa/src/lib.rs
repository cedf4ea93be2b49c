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
use scalegate_policy_sdk::prelude::*;

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

impl Policy for Hpa {
    type Params = hpa::HpaParams;
    const INFO: Info = Info::new(
        "hpa",
        env!("CARGO_PKG_VERSION"),
        "The Kubernetes HorizontalPodAutoscaler algorithm (autoscaling/v2 metrics and behavior)",
    )
    .reads(&["metrics", "pods", "scale-events"]);

    fn decide(snapshot: Snapshot, params: &hpa::HpaParams) -> Result<Decision, PolicyError> {
        let state = hpa::State::decode(&snapshot.state).map_err(PolicyError::Internal)?;
        let output = hpa::evaluate(params, &input(snapshot), state);
        let mut decision = match output.desired_replicas {
            Some(desired) => Decision::replicas(desired.max(0) as u32, output.reason),
            None => Decision::no_opinion(output.reason),
        };
        for p in &output.proposals {
            decision = decision.with_metric(p.name.clone(), p.current);
        }
        if let Some(desired) = output.metric_desired {
            decision = decision.with_metric("hpa.metric-desired-replicas", f64::from(desired));
        }
        decision.state = output.state.encode();
        Ok(decision)
    }

    /// The API server's defaults (`[Resource cpu, Utilization 80]` without
    /// metrics) and its cross-field rules (`minReplicas <= maxReplicas`,
    /// positive targets) after the schema.
    fn prepare(params: hpa::HpaParams) -> Result<hpa::HpaParams, PolicyError> {
        params.complete().map_err(PolicyError::InvalidParams)
    }
}

scalegate_policy_sdk::export_policy!(Hpa);

#[cfg(test)]
mod tests {
    use super::*;
    use scalegate_policy_sdk::testing;

    const SCALE_UP: &str = "../../examples/snapshots/hpa-scale-up.json";

    #[test]
    fn ninety_percent_against_sixty_needs_five_natively() {
        let decision = testing::evaluate_file::<Hpa>(SCALE_UP).unwrap();
        assert_eq!(decision.desired_replicas, Some(5), "{}", decision.reason);
        assert!(decision.metrics.iter().any(|m| m.name == "hpa.metric-desired-replicas" && m.value == 5.0));
    }

    #[test]
    fn the_schema_refuses_a_window_past_an_hour() {
        let mut snapshot = testing::snapshot_file(SCALE_UP);
        snapshot.params["behavior"]["scaleDown"]["stabilizationWindowSeconds"] = serde_json::json!(3601);
        let Err(PolicyError::InvalidParams(message)) = testing::evaluate::<Hpa>(&snapshot) else {
            panic!("a window of 3601 s must be refused")
        };
        assert!(message.contains("stabilizationWindowSeconds: must be <= 3600"), "{message}");
    }
}
