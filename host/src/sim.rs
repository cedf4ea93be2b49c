//! A simulated cluster: workloads whose pods take time to become ready, a
//! load that follows a compressed daily curve with spikes, and a
//! [`SimCluster`] that serves them through the [`Cluster`] port. It
//! produces what a real cluster would — an [`Observation`] — so policies and
//! the daemon can be watched (and benchmarked) without one.

pub mod chart;
pub mod engine;
pub mod trace;

use crate::clock::Clock;
use crate::cluster::{Cluster, ClusterError, StoredState, Target};
use crate::snapshot::{
    Metric, Observation, Past, Pod, PodDeletionCost, PodPhase, PodSample, ScaleEvent, Snapshot, Subject,
};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

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
    /// Memory request per pod, bytes; usage is 35 % of it idle, 50 % at
    /// full CPU, reported only when set.
    pub memory_request: Option<f64>,
    /// Time a new pod needs before it is Ready.
    pub startup_ms: u64,
    /// Metrics fed from elsewhere (a simulation's trace): the cluster does
    /// not report its own `cpu` or `rps` under such a name.
    pub replaced_metrics: Vec<String>,
    /// (name, start time, deletion cost)
    pods: Vec<(String, u64, Option<i32>)>,
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
            memory_request: None,
            startup_ms: 20_000,
            replaced_metrics: Vec::new(),
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
    ///
    /// Returns the names of the pods removed.
    pub fn set_replicas(&mut self, replicas: u32, now_ms: u64, record: bool) -> Vec<String> {
        let from = self.replicas();
        let mut removed = vec![];
        while self.replicas() < replicas {
            self.pods.push((format!("{}-{}", self.name, self.next_pod), now_ms, None));
            self.next_pod += 1;
        }
        if self.replicas() > replicas {
            // like the ReplicaSet controller: lowest deletion cost first, then newest
            let mut order: Vec<usize> = (0..self.pods.len()).collect();
            order.sort_by_key(|&i| {
                (self.pods[i].2.unwrap_or(0), std::cmp::Reverse(self.pods[i].1), std::cmp::Reverse(i))
            });
            let remove: std::collections::HashSet<usize> =
                order.into_iter().take(self.pods.len() - replicas as usize).collect();
            let mut index = 0;
            self.pods.retain(|pod| {
                index += 1;
                let keep = !remove.contains(&(index - 1));
                if !keep {
                    removed.push(pod.0.clone());
                }
                keep
            });
        }
        if record && from != replicas {
            self.scale_events.push(ScaleEvent { timestamp_ms: now_ms, from_replicas: from, to_replicas: replicas });
        }
        removed
    }

    /// Annotates pods with deletion costs (unknown names are ignored).
    pub fn set_deletion_costs(&mut self, costs: &[PodDeletionCost]) {
        for cost in costs {
            if let Some(pod) = self.pods.iter_mut().find(|p| p.0 == cost.pod) {
                pod.2 = Some(cost.cost);
            }
        }
    }

    pub fn pod_names(&self) -> Vec<String> {
        self.pods.iter().map(|p| p.0.clone()).collect()
    }

    /// The pods ready at `now_ms`, oldest first.
    pub fn ready_pods(&self, now_ms: u64) -> Vec<String> {
        self.pods.iter().filter(|p| self.is_ready(p.1, now_ms)).map(|p| p.0.clone()).collect()
    }

    fn is_ready(&self, started_ms: u64, now_ms: u64) -> bool {
        started_ms == 0 || now_ms >= started_ms + self.startup_ms
    }

    /// What a real cluster would show for `load_rps` at `now_ms`: ready
    /// pods share the load, CPU follows load, memory a little (`cpu`,
    /// `rps` and, with a memory request, `memory` per pod).
    pub fn observe(&self, now_ms: u64, load_rps: f64) -> Observation {
        let ready: Vec<&(String, u64, Option<i32>)> =
            self.pods.iter().filter(|(_, s, _)| self.is_ready(*s, now_ms)).collect();
        let per_pod_rps = load_rps / ready.len().max(1) as f64;
        let per_pod_cpu = per_pod_rps / self.rps_per_pod * self.cpu_request;
        let pods = self
            .pods
            .iter()
            .map(|(name, started, cost)| {
                let ready = self.is_ready(*started, now_ms);
                Pod {
                    name: name.clone(),
                    phase: PodPhase::Running,
                    ready: Some(ready),
                    ready_transition_ms: Some(if ready { started + self.startup_ms } else { *started }),
                    start_ms: Some(*started),
                    terminating: false,
                    deletion_cost: *cost,
                    cpu_request: Some(self.cpu_request),
                    memory_request: self.memory_request,
                    requests: vec![],
                    containers: vec![],
                    resize: None,
                }
            })
            .collect();
        let cpu_samples = ready
            .iter()
            .map(|(name, _, _)| PodSample {
                pod: name.clone(),
                value: per_pod_cpu,
                timestamp_ms: now_ms.saturating_sub(5_000),
                window_ms: 15_000,
            })
            .collect::<Vec<_>>();
        let memory = self.memory_request.map(|request| {
            let per_pod = request * (0.35 + 0.15 * (per_pod_cpu / self.cpu_request).min(1.0));
            Metric {
                name: "memory".into(),
                source: "pod-metrics".into(),
                value: per_pod * ready.len() as f64,
                timestamp_ms: now_ms.saturating_sub(5_000),
                pods: ready
                    .iter()
                    .map(|(name, _, _)| PodSample {
                        pod: name.clone(),
                        value: per_pod,
                        timestamp_ms: now_ms.saturating_sub(5_000),
                        window_ms: 15_000,
                    })
                    .collect(),
            }
        });
        let rps_samples = ready
            .iter()
            .map(|(name, _, _)| PodSample { pod: name.clone(), value: per_pod_rps, timestamp_ms: now_ms, window_ms: 0 })
            .collect::<Vec<_>>();
        let mut metrics = vec![
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
        ];
        metrics.extend(memory);
        metrics.retain(|m| !self.replaced_metrics.contains(&m.name));
        Observation {
            spec_replicas: self.replicas(),
            status_replicas: self.replicas(),
            ready_replicas: ready.len() as u32,
            pods,
            metrics,
            ..Observation::default()
        }
    }

    /// The snapshot of [`SimWorkload::observe`] (namespace `demo`), with
    /// the workload's applied scale events and `params`.
    pub fn snapshot(&self, now_ms: u64, load_rps: f64, params: serde_json::Value) -> Snapshot {
        let subject = Subject {
            kind: "Deployment",
            namespace: "demo",
            name: &self.name,
            min_replicas: self.min_replicas,
            max_replicas: self.max_replicas,
        };
        let past = Past { recommendations: vec![], scale_events: self.scale_events.clone() };
        let mut snapshot = crate::snapshot::assemble(now_ms, subject, self.observe(now_ms, load_rps), past);
        snapshot.params = params;
        snapshot
    }
}

/// A load curve: requests per second at `t_ms` after the simulation start.
pub type LoadCurve = Box<dyn Fn(u64) -> f64 + Send + Sync>;

/// A scale the simulated cluster received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleCall {
    pub target: String,
    pub from: u32,
    pub to: u32,
    pub at_ms: u64,
    pub reason: String,
    /// The pods before the call, and those it removed.
    pub pods: Vec<String>,
    pub removed: Vec<String>,
}

/// How busy a simulated pod is against its workload's average, in
/// [0.7, 1.3): fixed per pod name, so pods differ (connections stay where
/// they landed) and a policy that ranks pods has something to rank.
pub fn pod_weight(pod: &str) -> f64 {
    // FNV-1a: stable across runs and platforms
    let hash = pod.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    0.7 + 0.6 * ((hash >> 11) as f64 / (1u64 << 53) as f64)
}

struct SimEntry {
    workload: SimWorkload,
    load: LoadCurve,
}

/// Simulated workloads behind the [`Cluster`] trait: observing one returns
/// its pods and metrics under its load curve; scaling starts or removes pods
/// (lowest deletion cost first).
pub struct SimCluster<K: Clock> {
    clock: Arc<K>,
    start_ms: u64,
    entries: Mutex<HashMap<String, SimEntry>>,
    scale_calls: Mutex<Vec<ScaleCall>>,
    /// Scale calls to refuse with a conflict (fault injection).
    failing_scales: AtomicU32,
    /// Stored decision states by (namespace, key).
    states: Mutex<HashMap<(String, String), serde_json::Value>>,
}

fn key(target: &Target) -> String {
    target.path()
}

fn not_found(target: &Target) -> ClusterError {
    ClusterError::NotFound(format!("{} not found", key(target)))
}

impl<K: Clock> SimCluster<K> {
    pub fn new(clock: Arc<K>) -> SimCluster<K> {
        let start_ms = clock.now_ms();
        SimCluster {
            clock,
            start_ms,
            entries: Mutex::new(HashMap::new()),
            scale_calls: Mutex::new(Vec::new()),
            failing_scales: AtomicU32::new(0),
            states: Mutex::new(HashMap::new()),
        }
    }

    /// Adds a workload for `namespace/name` whose load follows `load`.
    pub fn add(&self, namespace: &str, workload: SimWorkload, load: LoadCurve) {
        self.entries.lock().insert(format!("{namespace}/{}", workload.name), SimEntry { workload, load });
    }

    pub fn replicas(&self, namespace: &str, name: &str) -> Option<u32> {
        self.entries.lock().get(&format!("{namespace}/{name}")).map(|e| e.workload.replicas())
    }

    /// (replicas, ready pods) of `namespace/name` now.
    pub fn counts(&self, namespace: &str, name: &str) -> Option<(u32, u32)> {
        let now_ms = self.clock.now_ms();
        self.entries.lock().get(&format!("{namespace}/{name}")).map(|e| {
            let ready = e.workload.pods.iter().filter(|(_, started, _)| e.workload.is_ready(*started, now_ms)).count();
            (e.workload.replicas(), ready as u32)
        })
    }

    pub fn pod_names(&self, namespace: &str, name: &str) -> Vec<String> {
        self.entries.lock().get(&format!("{namespace}/{name}")).map(|e| e.workload.pod_names()).unwrap_or_default()
    }

    /// The pods of `namespace/name` ready now, oldest first.
    pub fn ready_pods(&self, namespace: &str, name: &str) -> Vec<String> {
        let now_ms = self.clock.now_ms();
        self.entries
            .lock()
            .get(&format!("{namespace}/{name}"))
            .map(|e| e.workload.ready_pods(now_ms))
            .unwrap_or_default()
    }

    pub fn scale_calls(&self) -> Vec<ScaleCall> {
        self.scale_calls.lock().clone()
    }

    /// A stored decision state, if any.
    pub fn stored_state(&self, namespace: &str, key: &str) -> Option<serde_json::Value> {
        self.states.lock().get(&(namespace.to_string(), key.to_string())).cloned()
    }

    /// Makes the next `count` scale calls fail with a conflict.
    pub fn fail_next_scales(&self, count: u32) {
        self.failing_scales.store(count, Ordering::Relaxed);
    }
}

impl<K: Clock> Cluster for SimCluster<K> {
    async fn observe(&self, target: &Target) -> Result<Observation, ClusterError> {
        let now_ms = self.clock.now_ms();
        let entries = self.entries.lock();
        let entry = entries.get(&key(target)).ok_or_else(|| not_found(target))?;
        let load = (entry.load)(now_ms.saturating_sub(self.start_ms));
        Ok(entry.workload.observe(now_ms, load))
    }

    async fn scale(&self, target: &Target, from: u32, to: u32, reason: &str) -> Result<(), ClusterError> {
        if self.failing_scales.load(Ordering::Relaxed) > 0 {
            self.failing_scales.fetch_sub(1, Ordering::Relaxed);
            return Err(ClusterError::Conflict(format!("conflict writing {}: injected", key(target))));
        }
        let now_ms = self.clock.now_ms();
        let mut entries = self.entries.lock();
        let entry = entries.get_mut(&key(target)).ok_or_else(|| not_found(target))?;
        if entry.workload.replicas() != from {
            // the optimistic-concurrency check a resourceVersion gives on /scale
            return Err(ClusterError::Conflict(format!("conflict writing {}: the object changed", key(target))));
        }
        let pods = entry.workload.pod_names();
        let removed = entry.workload.set_replicas(to, now_ms, true);
        self.scale_calls.lock().push(ScaleCall {
            target: key(target),
            from,
            to,
            at_ms: now_ms,
            reason: reason.to_string(),
            pods,
            removed,
        });
        Ok(())
    }

    /// Pods of the simulation have no containers: nothing to resize.
    async fn resize(
        &self,
        target: &Target,
        pod: &str,
        _containers: &[crate::cluster::ContainerResize],
        _reason: &str,
    ) -> Result<(), ClusterError> {
        Err(ClusterError::NotFound(format!(
            "pod {}/{pod}: the simulated cluster has no containers to resize",
            target.namespace
        )))
    }

    async fn set_deletion_costs(&self, target: &Target, costs: &[PodDeletionCost]) -> Result<(), ClusterError> {
        let mut entries = self.entries.lock();
        let entry = entries.get_mut(&key(target)).ok_or_else(|| not_found(target))?;
        entry.workload.set_deletion_costs(costs);
        Ok(())
    }

    async fn load_states(&self, namespaces: &[String]) -> Result<Vec<StoredState>, ClusterError> {
        let states = self.states.lock();
        Ok(states
            .iter()
            .filter(|((namespace, _), _)| namespaces.contains(namespace))
            .map(|((namespace, key), data)| StoredState {
                namespace: namespace.clone(),
                key: key.clone(),
                data: data.clone(),
            })
            .collect())
    }

    async fn save_state(&self, state: &StoredState) -> Result<(), ClusterError> {
        self.states.lock().insert((state.namespace.clone(), state.key.clone()), state.data.clone());
        Ok(())
    }

    async fn wait_synced(&self, _namespaces: &[String]) {}
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
    fn scale_in_removes_the_lowest_deletion_cost_first_then_the_newest() {
        let mut w = SimWorkload::new("web", 4, 1, 10);
        w.set_deletion_costs(&[
            PodDeletionCost { pod: "web-0".into(), cost: 10 },
            PodDeletionCost { pod: "web-1".into(), cost: -5 },
            PodDeletionCost { pod: "web-2".into(), cost: 10 },
        ]);
        w.set_replicas(2, 1000, true);
        assert_eq!(w.pod_names(), vec!["web-0", "web-2"], "web-1 (cost -5) then web-3 (cost 0) go");
        w.set_replicas(1, 2000, true);
        assert_eq!(w.pod_names(), vec!["web-0"], "equal costs: the newest (web-2) goes");
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
