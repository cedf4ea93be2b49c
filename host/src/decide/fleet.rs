//! The set of workloads the loop runs: each one's runtime (spec, state,
//! log, trigger), found by binding name or target, and how the set follows
//! a new configuration.

use super::{CaptureLog, Decider, DeciderConfig, DecisionLog, WorkloadState};
use crate::cluster::Cluster;
use crate::config::Workload as WorkloadSpec;
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub(super) struct WorkloadRuntime {
    pub(super) spec: ArcSwap<WorkloadSpec>,
    /// Held for a whole evaluation: one evaluation per workload at a time.
    pub(super) state: tokio::sync::Mutex<WorkloadState>,
    pub(super) log: Mutex<DecisionLog>,
    /// Recent evaluations with their exact snapshots.
    pub(super) capture: Mutex<CaptureLog>,
    pub(super) trigger: Notify,
    /// Stops this workload's task (it was removed from the configuration).
    pub(super) stop: CancellationToken,
    /// Spreads first evaluations over the interval.
    pub(super) stagger_slot: usize,
}

/// The workloads, by name and by target path, in configuration order.
#[derive(Default)]
pub(super) struct Fleet {
    pub(super) order: Vec<Arc<WorkloadRuntime>>,
    pub(super) by_name: HashMap<String, Arc<WorkloadRuntime>>,
    pub(super) by_target: HashMap<String, Arc<WorkloadRuntime>>,
}

impl Fleet {
    /// The fleet of `workloads`, each keeping at most the configured
    /// decision records and captures, fewer in a fleet too large for that.
    pub(super) fn new(workloads: Vec<Arc<WorkloadRuntime>>, config: &DeciderConfig) -> Fleet {
        let mut fleet = Fleet::default();
        let records = DecisionLog::capacity_for(config.decision_log, workloads.len());
        let captures = CaptureLog::capacity_for(config.capture, workloads.len());
        for workload in workloads {
            workload.log.lock().set_capacity(records);
            workload.capture.lock().set_capacity(captures);
            let spec = workload.spec.load();
            fleet.by_name.insert(spec.name.clone(), workload.clone());
            fleet.by_target.entry(spec.target.path()).or_insert_with(|| workload.clone());
            fleet.order.push(workload.clone());
        }
        fleet
    }
}

impl<C: Cluster> Decider<C> {
    /// Follows a new configuration: workloads not there before start
    /// (from their stored state, if there is one; evaluated at once),
    /// workloads gone stop, workloads whose target changed start afresh, and
    /// the others take their new spec, keeping the state of every binding
    /// whose policy stays. Returns (added, changed, removed) counts.
    pub async fn reconfigure(self: &Arc<Self>, specs: Vec<Arc<WorkloadSpec>>) -> (usize, usize, usize) {
        // new runtimes, with their stored state, before anything changes
        let mut fresh: HashMap<String, Arc<WorkloadRuntime>> = HashMap::new();
        {
            let fleet = self.fleet.read();
            for (slot, spec) in specs.iter().enumerate() {
                let kept = fleet.by_name.get(&spec.name).is_some_and(|w| w.spec.load().target == spec.target);
                if !kept {
                    fresh.insert(spec.name.clone(), runtime(spec.clone(), slot, &self.config));
                }
            }
        }
        if self.config.persist.is_some() && !fresh.is_empty() {
            let added: Vec<Arc<WorkloadRuntime>> = fresh.values().cloned().collect();
            if let Err(error) = self.restore(&added).await {
                tracing::warn!(%error, "stored decision state of added workloads not read; they start afresh");
            }
        }
        let (mut changed, mut removed) = (0, 0);
        let mut fleet = self.fleet.write();
        let mut old = std::mem::take(&mut fleet.by_name);
        let mut next = Vec::with_capacity(specs.len());
        let mut started = Vec::new();
        for spec in specs {
            match (fresh.remove(&spec.name), old.remove(&spec.name)) {
                (None, Some(workload)) => {
                    // the bindings' state follows at the next evaluation; an
                    // equal spec is swapped too, so the configuration and the
                    // loop keep sharing one copy
                    let differs = **workload.spec.load() != *spec;
                    workload.spec.store(spec);
                    if differs {
                        workload.trigger.notify_one();
                        changed += 1;
                    }
                    next.push(workload);
                }
                (Some(workload), replaced) => {
                    if let Some(gone) = replaced {
                        gone.stop.cancel();
                    }
                    workload.trigger.notify_one();
                    started.push(workload.clone());
                    next.push(workload);
                }
                (None, None) => unreachable!("every spec is either kept or fresh"),
            }
        }
        for (name, gone) in old {
            tracing::info!(workload = %name, "workload removed from the configuration");
            gone.stop.cancel();
            removed += 1;
        }
        *fleet = Fleet::new(next, &self.config);
        drop(fleet);
        self.serve_answers();
        let added = started.len();
        for workload in started {
            tracing::info!(workload = %workload.spec.load().name, "workload added");
            self.spawn(workload);
        }
        (added, changed, removed)
    }
}

/// Where in its interval workload `slot` first evaluates, in [0, 1): the
/// golden-ratio sequence, even for any number of workloads without knowing
/// it (10,000 workloads never start in bursts of more than a few).
pub(super) fn stagger_fraction(slot: usize) -> f64 {
    if std::env::var_os("SG_NOSTAGGER").is_some() {
        return 0.0;
    }
    (slot as f64 * 0.618_033_988_749_895).fract()
}

pub(super) fn runtime(spec: Arc<WorkloadSpec>, stagger_slot: usize, config: &DeciderConfig) -> Arc<WorkloadRuntime> {
    let state = WorkloadState::for_spec(&spec);
    Arc::new(WorkloadRuntime {
        spec: ArcSwap::new(spec),
        state: tokio::sync::Mutex::new(state),
        log: Mutex::new(DecisionLog::new(config.decision_log)),
        capture: Mutex::new(CaptureLog::new(config.capture)),
        trigger: Notify::new(),
        stop: CancellationToken::new(),
        stagger_slot,
    })
}
