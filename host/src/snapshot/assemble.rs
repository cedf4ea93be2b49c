//! Snapshot assembly, in one place: what the cluster shows about a target
//! ([`Observation`], with the signal hub's inputs added) plus the binding's
//! history becomes the [`Snapshot`] every bound policy sees. The daemon's
//! loop, the simulator, the benchmark and the policy store's smoke test all
//! build their snapshots here.

use super::{Forecast, Metric, Pod, Recommendation, ScaleEvent, Signal, Snapshot, Workload};

/// What the cluster shows about one target; the signal hub's inputs are
/// added to it before it becomes a snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    /// `/scale` `spec.replicas`.
    pub spec_replicas: u32,
    /// `/scale` `status.replicas`.
    pub status_replicas: u32,
    /// Running, Ready, not terminating pods of the target.
    pub ready_replicas: u32,
    pub pods: Vec<Pod>,
    pub metrics: Vec<Metric>,
    pub signals: Vec<Signal>,
    pub forecasts: Vec<Forecast>,
    /// Required inputs that are stale or missing (blocks scale-down; not
    /// part of the snapshot).
    pub stale_inputs: Vec<String>,
}

/// Who a snapshot is about, and the bounds configured for it.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub min_replicas: u32,
    pub max_replicas: u32,
}

/// What the host remembers of a binding's past decisions, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Past {
    pub recommendations: Vec<Recommendation>,
    pub scale_events: Vec<ScaleEvent>,
}

/// The snapshot of `subject` at `now_ms`, without params and state (each
/// binding adds its own). `observation.stale_inputs` is not part of it.
pub fn assemble(now_ms: u64, subject: Subject<'_>, observation: Observation, past: Past) -> Snapshot {
    Snapshot {
        now_ms,
        workload: Workload {
            kind: subject.kind.to_string(),
            namespace: subject.namespace.to_string(),
            name: subject.name.to_string(),
            current_replicas: observation.spec_replicas,
            status_replicas: Some(observation.status_replicas),
            ready_replicas: Some(observation.ready_replicas),
            min_replicas: subject.min_replicas,
            max_replicas: subject.max_replicas,
        },
        pods: observation.pods,
        metrics: observation.metrics,
        signals: observation.signals,
        forecasts: observation.forecasts,
        recommendations: past.recommendations,
        scale_events: past.scale_events,
        params: serde_json::Value::Null,
        state: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_observation_and_the_past_become_the_snapshot() {
        let observation = Observation {
            spec_replicas: 3,
            status_replicas: 4,
            ready_replicas: 2,
            pods: vec![Pod::running("web-0", 1, 2, 0.5, 1e9)],
            stale_inputs: vec!["prometheus:rps".into()],
            ..Observation::default()
        };
        let events = [ScaleEvent { timestamp_ms: 5, from_replicas: 2, to_replicas: 3 }];
        let subject =
            Subject { kind: "StatefulSet", namespace: "rtc", name: "socket", min_replicas: 1, max_replicas: 9 };
        let past = Past { recommendations: vec![], scale_events: events.to_vec() };
        let snapshot = assemble(10, subject, observation, past);
        assert_eq!(snapshot.workload.kind, "StatefulSet");
        assert_eq!(
            (
                snapshot.workload.current_replicas,
                snapshot.workload.status_replicas(),
                snapshot.workload.ready_replicas()
            ),
            (3, 4, 2)
        );
        assert_eq!((snapshot.workload.min_replicas, snapshot.workload.max_replicas), (1, 9));
        assert_eq!(snapshot.pods.len(), 1);
        assert_eq!(snapshot.scale_events, events);
        assert_eq!(snapshot.params, serde_json::Value::Null);
    }
}
