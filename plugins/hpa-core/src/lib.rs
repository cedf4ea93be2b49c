//! The Kubernetes HorizontalPodAutoscaler algorithm as a pure function.
//!
//! One source of truth for the `hpa` policy: the Wasm plugin
//! (`plugins/hpa`) converts the WIT snapshot into [`Input`] and calls
//! [`evaluate`]; the host's benchmark calls the same function natively.
//! Section numbers in comments refer to `docs/reference/hpa-algorithm.md`
//! (shared with the project as `../shared/docs/reference/hpa-algorithm.md`).
//!
//! What the controller keeps in memory per HPA is split two ways here:
//! the recommendation list travels in the policy's opaque `state`
//! ([`State`]), while scale events come from the host's record of scales it
//! actually applied ([`Input::scale_events`]).

mod calc;
mod normalize;
pub mod params;
pub mod quantity;

pub use calc::{MetricError, MetricProposal};
pub use normalize::Recommendation;
pub use params::HpaParams;

use calc::{Calculator, Tolerances};
use normalize::{BehaviorArgs, ChangeEvent};
use params::ScalingRules;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

/// A request other than the pod's CPU/memory totals (another resource, or
/// one container's request).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub resource: String,
    /// `None`: the pod's total request.
    pub container: Option<String>,
    /// Base units (cores, bytes).
    pub amount: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pod {
    pub name: String,
    pub phase: Phase,
    pub ready: Option<bool>,
    pub ready_transition_ms: Option<i64>,
    pub start_ms: Option<i64>,
    pub terminating: bool,
    /// Pod total CPU request, cores.
    pub cpu_request: Option<f64>,
    /// Pod total memory request, bytes.
    pub memory_request: Option<f64>,
    pub requests: Vec<Request>,
}

impl Pod {
    /// The request for `resource` (pod total when `container` is `None`).
    pub fn request(&self, resource: &str, container: Option<&str>) -> Option<f64> {
        let total = match (resource, container) {
            ("cpu", None) => self.cpu_request,
            ("memory", None) => self.memory_request,
            _ => None,
        };
        total.or_else(|| {
            self.requests
                .iter()
                .find(|r| r.resource == resource && r.container.as_deref() == container)
                .map(|r| r.amount)
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PodSample {
    /// Index of the pod in [`Input::pods`].
    pub pod: usize,
    /// Base units.
    pub value: f64,
    pub timestamp_ms: i64,
    pub window_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    /// Object value, or the sum for external metrics. Base units.
    pub value: f64,
    pub pods: Vec<PodSample>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleEvent {
    pub timestamp_ms: i64,
    pub from_replicas: i32,
    pub to_replicas: i32,
}

/// Everything the algorithm reads for one reconcile.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub now_ms: i64,
    /// `scale.spec.replicas`.
    pub current_replicas: i32,
    /// `scale.status.replicas`.
    pub status_replicas: i32,
    /// Bounds of the workload binding; `minReplicas`/`maxReplicas` in the
    /// params take precedence.
    pub min_replicas: i32,
    pub max_replicas: i32,
    pub pods: Vec<Pod>,
    pub metrics: Vec<Metric>,
    pub scale_events: Vec<ScaleEvent>,
}

/// The recommendation history carried between evaluations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub recommendations: Vec<Recommendation>,
}

impl State {
    /// `None` for an empty byte string (the first evaluation).
    pub fn decode(bytes: &[u8]) -> Result<Option<State>, String> {
        if bytes.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(bytes).map(Some).map_err(|e| format!("unreadable hpa state: {e}"))
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("state serializes")
    }
}

/// The result of one reconcile.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// `None`: do not scale (scaling disabled, or metrics failed).
    pub desired_replicas: Option<i32>,
    /// Why, in the HPA's condition vocabulary.
    pub reason: String,
    /// The proposal before normalization (the "metric desired" replicas).
    pub metric_desired: Option<i32>,
    pub proposals: Vec<MetricProposal>,
    pub errors: Vec<MetricError>,
    pub state: State,
}

/// One HPA reconcile (§1).
pub fn evaluate(params: &HpaParams, input: &Input, state: Option<State>) -> Output {
    let current = input.current_replicas;
    let min = params.min_replicas.unwrap_or(input.min_replicas);
    let max = params.max_replicas.unwrap_or(input.max_replicas);
    // §1 step 2: the first reconcile records the current count.
    let mut state = state.unwrap_or_else(|| State {
        recommendations: vec![Recommendation { replicas: current, timestamp_ms: input.now_ms }],
    });
    let output = |desired: Option<i32>, reason: String, metric_desired, proposals, errors, state| Output {
        desired_replicas: desired,
        reason,
        metric_desired,
        proposals,
        errors,
        state,
    };

    if current == 0 && min != 0 {
        return output(
            None,
            "ScalingDisabled: scaling is disabled since the replica count of the target is zero".into(),
            None,
            vec![],
            vec![],
            state,
        );
    }
    if current > max {
        return output(
            Some(max),
            format!("TooManyReplicas: current replicas {current} above maxReplicas {max}"),
            None,
            vec![],
            vec![],
            state,
        );
    }
    if current < min {
        return output(
            Some(min),
            format!("TooFewReplicas: current replicas {current} below minReplicas {min}"),
            None,
            vec![],
            vec![],
            state,
        );
    }

    let behavior = params.behavior.as_ref();
    let scale_up = ScalingRules::scale_up(behavior.and_then(|b| b.scale_up.as_ref()));
    let scale_down =
        ScalingRules::scale_down(behavior.and_then(|b| b.scale_down.as_ref()), params.downscale_stabilization_seconds);
    let tolerances = Tolerances {
        up: scale_up.tolerance.unwrap_or(params.tolerance),
        down: scale_down.tolerance.unwrap_or(params.tolerance),
    };
    let calculator = Calculator {
        input,
        tolerances,
        cpu_initialization_ms: params.cpu_initialization_period_seconds * 1000,
        initial_readiness_delay_ms: params.initial_readiness_delay_seconds * 1000,
    };
    let (result, proposals, errors) = calculator.compute(&params.metrics);
    let metric_desired = match result {
        Ok(replicas) => replicas.max(0),
        Err(error) => {
            let reason = format!("{}: {}", error.reason, error.message);
            return output(None, reason, None, proposals, errors, state);
        }
    };

    let normalized = match behavior {
        None => normalize::without_behavior(
            &mut state.recommendations,
            input.now_ms,
            params.downscale_stabilization_seconds * 1000,
            current,
            metric_desired,
            min,
            max,
        ),
        Some(_) => {
            let (up_events, down_events) = change_events(&input.scale_events);
            normalize::with_behavior(
                &mut state.recommendations,
                &BehaviorArgs {
                    now_ms: input.now_ms,
                    current,
                    desired: metric_desired,
                    min,
                    max,
                    scale_up: &scale_up,
                    scale_down: &scale_down,
                    up_events: &up_events,
                    down_events: &down_events,
                },
            )
        }
    };
    let summary: Vec<String> = proposals
        .iter()
        .map(|p| format!("{} {} {} → {}", p.name, p.measure, trim_float(p.current), p.replicas))
        .collect();
    let reason = format!(
        "{} (metrics: {}; proposed {metric_desired}, stabilized {}); {}",
        normalized.scaling_limited,
        summary.join(", "),
        normalized.stabilized,
        normalized.able_to_scale,
    );
    output(Some(normalized.desired), reason, Some(metric_desired), proposals, errors, state)
}

fn change_events(events: &[ScaleEvent]) -> (Vec<ChangeEvent>, Vec<ChangeEvent>) {
    let mut up = Vec::new();
    let mut down = Vec::new();
    for e in events {
        if e.to_replicas > e.from_replicas {
            up.push(ChangeEvent { change: e.to_replicas - e.from_replicas, timestamp_ms: e.timestamp_ms });
        } else if e.to_replicas < e.from_replicas {
            down.push(ChangeEvent { change: e.from_replicas - e.to_replicas, timestamp_ms: e.timestamp_ms });
        }
    }
    (up, down)
}

fn trim_float(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}
