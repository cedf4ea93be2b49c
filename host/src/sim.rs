//! A simulated workload: pods that take time to become ready and a load
//! that follows a compressed daily curve with spikes. It produces the
//! snapshots a real cluster would, so policies can be watched (and
//! benchmarked) without one.

use crate::snapshot::{Metric, Pod, PodPhase, PodSample, ScaleEvent, Snapshot, Workload};

/// Synthetic demand in requests per second at `t_ms` after the start: a day
/// compressed into `day_ms`, with a sharp spike at 60 % of the day.
pub fn daily_load(t_ms: u64, day_ms: u64) -> f64 {
    let phase = (t_ms % day_ms) as f64 / day_ms as f64;
    let diurnal = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * phase).cos(); // 0 at midnight, 1 at noon
    let spike = if (0.60..0.64).contains(&phase) { 1.5 } else { 0.0 };
    100.0 + 900.0 * diurnal + 600.0 * spike
}

/// One simulated Deployment.
#[derive(Debug, Clone)]
pub struct SimWorkload {
    pub name: String,
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// Requests per second one pod serves at 100 % of its CPU request.
    pub rps_per_pod: f64,
    /// CPU request per pod, cores.
    pub cpu_request: f64,
    /// Time a new pod needs before it is Ready.
    pub startup_ms: u64,
    pods: Vec<(String, u64)>,
    next_pod: u64,
    pub scale_events: Vec<ScaleEvent>,
}

impl SimWorkload {
    pub fn new(name: &str, replicas: u32, min_replicas: u32, max_replicas: u32) -> SimWorkload {
        let mut workload = SimWorkload {
            name: name.to_string(),
            min_replicas,
            max_replicas,
            rps_per_pod: 100.0,
            cpu_request: 0.5,
            startup_ms: 20_000,
            pods: Vec::new(),
            next_pod: 0,
            scale_events: Vec::new(),
        };
        workload.set_replicas(replicas, 0, false);
        workload
    }

    pub fn replicas(&self) -> u32 {
        self.pods.len() as u32
    }

    /// Scales to `replicas` at `now_ms`; new pods start now, removed pods are
    /// the newest ones (or, with deletion costs, the caller's choice later).
    pub fn set_replicas(&mut self, replicas: u32, now_ms: u64, record: bool) {
        let from = self.replicas();
        while self.replicas() < replicas {
            self.pods.push((format!("{}-{}", self.name, self.next_pod), now_ms));
            self.next_pod += 1;
        }
        self.pods.truncate(replicas as usize);
        if record && from != replicas {
            self.scale_events.push(ScaleEvent { timestamp_ms: now_ms, from_replicas: from, to_replicas: replicas });
        }
    }

    fn is_ready(&self, started_ms: u64, now_ms: u64) -> bool {
        started_ms == 0 || now_ms >= started_ms + self.startup_ms
    }

    /// The snapshot a real cluster would give for `load_rps` at `now_ms`:
    /// ready pods share the load, CPU follows load.
    pub fn snapshot(&self, now_ms: u64, load_rps: f64, params: serde_json::Value) -> Snapshot {
        let ready: Vec<&(String, u64)> = self.pods.iter().filter(|(_, s)| self.is_ready(*s, now_ms)).collect();
        let per_pod_rps = load_rps / ready.len().max(1) as f64;
        let per_pod_cpu = per_pod_rps / self.rps_per_pod * self.cpu_request;
        let pods = self
            .pods
            .iter()
            .map(|(name, started)| {
                let ready = self.is_ready(*started, now_ms);
                Pod {
                    name: name.clone(),
                    phase: PodPhase::Running,
                    ready: Some(ready),
                    ready_transition_ms: Some(if ready { started + self.startup_ms } else { *started }),
                    start_ms: Some(*started),
                    terminating: false,
                    deletion_cost: None,
                    cpu_request: Some(self.cpu_request),
                    memory_request: None,
                    requests: vec![],
                }
            })
            .collect();
        let cpu_samples = ready
            .iter()
            .map(|(name, _)| PodSample {
                pod: name.clone(),
                value: per_pod_cpu,
                timestamp_ms: now_ms.saturating_sub(5_000),
                window_ms: 15_000,
            })
            .collect::<Vec<_>>();
        let rps_samples = ready
            .iter()
            .map(|(name, _)| PodSample { pod: name.clone(), value: per_pod_rps, timestamp_ms: now_ms, window_ms: 0 })
            .collect::<Vec<_>>();
        Snapshot {
            now_ms,
            workload: Workload {
                kind: "Deployment".into(),
                namespace: "demo".into(),
                name: self.name.clone(),
                current_replicas: self.replicas(),
                status_replicas: Some(self.replicas()),
                ready_replicas: Some(ready.len() as u32),
                min_replicas: self.min_replicas,
                max_replicas: self.max_replicas,
            },
            pods,
            metrics: vec![
                Metric {
                    name: "cpu".into(),
                    source: "pod-metrics".into(),
                    value: per_pod_cpu * ready.len() as f64,
                    timestamp_ms: now_ms.saturating_sub(5_000),
                    pods: cpu_samples,
                },
                Metric {
                    name: "rps".into(),
                    source: "sim".into(),
                    value: load_rps,
                    timestamp_ms: now_ms,
                    pods: rps_samples,
                },
            ],
            signals: vec![],
            forecasts: vec![],
            recommendations: vec![],
            scale_events: self.scale_events.clone(),
            params,
            state: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_curve_has_a_night_a_noon_and_a_spike() {
        let day = 1_000_000;
        assert!((daily_load(0, day) - 100.0).abs() < 1e-9);
        assert!((daily_load(day / 2, day) - 1000.0).abs() < 1e-9);
        assert!(daily_load(day * 61 / 100, day) > 1400.0);
    }

    #[test]
    fn new_pods_are_unready_until_started() {
        let mut w = SimWorkload::new("web", 2, 1, 10);
        w.set_replicas(3, 100_000, true);
        let s = w.snapshot(110_000, 300.0, serde_json::json!({}));
        assert_eq!(s.workload.ready_replicas, Some(2));
        assert_eq!(s.pods[2].ready, Some(false));
        assert_eq!(s.metrics[0].pods.len(), 2, "only ready pods report samples");
        assert_eq!(w.scale_events.len(), 1);
        let later = w.snapshot(130_000, 300.0, serde_json::json!({}));
        assert_eq!(later.workload.ready_replicas, Some(3));
    }
}
