//! Keeping each workload's decision state in the cluster (the cluster
//! port's `save_state`/`load_states`): written through after every applied
//! scale — scale events, the last scale time and policy state never lag a
//! write to `/scale` — and otherwise at most once per `every` when it
//! changed; read back when a replica takes over. Only a replica that may
//! write stores anything.

use super::fleet::WorkloadRuntime;
use super::state::{Stored, WorkloadState};
use crate::cluster::{Cluster, ClusterError, StoredState};
use crate::config::Workload as WorkloadSpec;
use crate::telemetry::Metrics;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

/// When workload states are stored.
#[derive(Debug, Clone, Copy)]
pub struct Persist {
    /// Longest time a changed state waits to be stored (a crash loses at
    /// most this much of policy state and recommendations; scale events are
    /// written through).
    pub every: Duration,
}

impl Persist {
    /// 30 s, or 10 ms per workload when that is longer: a small fleet loses
    /// little on a crash, a large one writes at most ~100 states a second
    /// on top of its applied scales (10,000 workloads: every 100 s).
    pub fn default_every(workloads: usize) -> Duration {
        Duration::from_secs(30).max(Duration::from_millis(10) * workloads as u32)
    }

    /// After an evaluation at `now_ms`: stores the state at once (`now`: a
    /// scale was applied), or when `every` has passed since the last store
    /// and it changed.
    pub async fn after<C: Cluster>(
        &self,
        cluster: &C,
        spec: &WorkloadSpec,
        state: &mut WorkloadState,
        now: bool,
        now_ms: u64,
        metrics: &Metrics,
    ) {
        let due = now || state.saved_ms.is_none_or(|at| now_ms >= at + self.every.as_millis() as u64);
        if !due {
            return;
        }
        let stored = state.to_stored(now_ms);
        let digest = content_digest(&stored);
        if state.saved_digest == Some(digest) {
            state.saved_ms = Some(now_ms);
            return;
        }
        match save(cluster, spec, &stored).await {
            Ok(()) => {
                state.saved_ms = Some(now_ms);
                state.saved_digest = Some(digest);
                Metrics::count(&metrics.state_writes, "written");
            }
            Err(error) => {
                // stays due: the next evaluation tries again
                Metrics::count(&metrics.state_writes, error.kind());
                tracing::warn!(workload = %spec.name, %error, "decision state not stored");
            }
        }
    }
}

/// Stores `stored` as the state of `spec`'s binding.
pub async fn save<C: Cluster>(cluster: &C, spec: &WorkloadSpec, stored: &Stored) -> Result<(), ClusterError> {
    let data =
        serde_json::to_value(stored).map_err(|e| ClusterError::Invalid(format!("state of {}: {e}", spec.name)))?;
    cluster.save_state(&StoredState { namespace: spec.target.namespace.clone(), key: spec.name.clone(), data }).await
}

/// The stored state of `spec`'s binding among `states`, if one is there
/// and readable.
pub fn find(spec: &WorkloadSpec, states: &[StoredState]) -> Option<Stored> {
    let found = states.iter().find(|s| s.key == spec.name && s.namespace == spec.target.namespace)?;
    match serde_json::from_value::<Stored>(found.data.clone()) {
        Ok(stored) if stored.version == 1 => Some(stored),
        Ok(stored) => {
            tracing::warn!(workload = %spec.name, version = stored.version, "stored decision state of an unknown format version ignored");
            None
        }
        Err(error) => {
            tracing::warn!(workload = %spec.name, %error, "unreadable stored decision state ignored");
            None
        }
    }
}

/// What a stored state says, without when it was written.
pub fn content_digest(stored: &Stored) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(&Stored { saved_at_ms: 0, ..stored.clone() }).unwrap_or_default().hash(&mut hasher);
    hasher.finish()
}

impl<C: Cluster> super::Decider<C> {
    /// Takes over the decision states stored in the cluster (a new term, or
    /// a start): each workload with a stored state continues from it.
    /// Returns how many were taken over.
    pub async fn load_states(&self) -> Result<usize, ClusterError> {
        let workloads = self.fleet.read().order.clone();
        self.restore(&workloads).await
    }

    /// Continues `workloads` from their stored states; returns how many had one.
    pub(super) async fn restore(&self, workloads: &[Arc<WorkloadRuntime>]) -> Result<usize, ClusterError> {
        let mut namespaces: Vec<String> = workloads.iter().map(|w| w.spec.load().target.namespace.clone()).collect();
        namespaces.sort();
        namespaces.dedup();
        let states = self.pipeline.cluster.load_states(&namespaces).await?;
        let mut taken = 0;
        for workload in workloads {
            let spec = workload.spec.load_full();
            if let Some(stored) = find(&spec, &states) {
                let mut state = workload.state.lock().await;
                state.follow(&spec);
                state.restore(&stored);
                taken += 1;
            }
        }
        Ok(taken)
    }

    /// Stores every workload's state now (a graceful stop), if this replica
    /// may write.
    pub async fn flush_states(&self) {
        if self.config.persist.is_none() || !self.config.leadership.may_write() {
            return;
        }
        let workloads = self.fleet.read().order.clone();
        for workload in workloads {
            let spec = workload.spec.load_full();
            let state = workload.state.lock().await;
            let stored = state.to_stored(self.pipeline.clock.now_ms());
            if state.saved_digest == Some(content_digest(&stored)) {
                continue;
            }
            if let Err(error) = save(self.pipeline.cluster.as_ref(), &spec, &stored).await {
                tracing::warn!(workload = %spec.name, %error, "decision state not stored on the way out");
            }
        }
    }
}
