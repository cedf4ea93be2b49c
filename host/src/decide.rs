//! The decision loop: one task per workload that evaluates it on its
//! interval or when triggered (a signal, a new leader), records the
//! decision and publishes applied ones to the sinks. One evaluation —
//! observe, add the hub's inputs, snapshot, call the policies (and the
//! shadow), combine, guardrails, actuate — is the `pipeline`.
//!
//! - Policies come through the [`Evaluator`] port and run on the blocking
//!   pool behind a semaphore, so many workloads evaluate concurrently but
//!   boundedly (`call`).
//! - Several policies combine by **max** of their desired counts (like HPA
//!   and KEDA with several metrics). Any fault keeps the current count;
//!   policies that all decline mean "no opinion".
//! - What is remembered between evaluations — each binding's policy
//!   `state` and health, recommendations and applied scale events by time,
//!   the last scale — is the workload's [`WorkloadState`] (`state`).
//! - Writes happen only while [`Leadership::may_write`]: a standby replica
//!   evaluates (policy state stays warm) and records a `standby` clamp.
//! - The set of workloads can change while the loop runs
//!   ([`Decider::reconfigure`]): new workloads start, removed ones stop,
//!   rebound ones keep what stays valid of their state.

mod call;
mod pacer;
mod persist;
mod pipeline;
mod record;
mod state;
#[cfg(test)]
mod tests;

pub use persist::Persist;
pub use record::{DecisionLog, DecisionRecord, PolicyVerdict, Timing};
pub use state::{History, RECOMMENDATION_WINDOW, SCALE_EVENT_WINDOW, Stored, WorkloadState};

use crate::clock::Clock;
use crate::cluster::{Cluster, ClusterError};
use crate::config::Workload as WorkloadSpec;
use crate::leadership::Leadership;
use crate::policy::Evaluator;
use crate::signals::{Handled, SignalHub};
use crate::sink::DecisionSink;
use crate::telemetry::Metrics;
use arc_swap::ArcSwap;
use parking_lot::{Mutex, RwLock};
use pipeline::{Evaluated, Pipeline, Settlement};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Settings of the loop.
#[derive(Clone)]
pub struct DeciderConfig {
    /// Policy calls running at once across all workloads (default: 2 × cores).
    pub max_concurrent_evaluations: usize,
    /// Decision records kept per workload (default 16: ~700 B each, so ~110 MB
    /// for 10,000 workloads).
    pub decision_log: usize,
    /// Consecutive faults of a version before a workload rolls back (default 3).
    pub fault_rollback_after: u32,
    /// Where decisions, clamps, faults and call latencies are counted.
    pub metrics: Arc<Metrics>,
    /// Whether this replica may write (default: always, a single replica
    /// with nothing to take over).
    pub leadership: Arc<Leadership>,
    /// Metrics and signals from the signal sources, added to each observation.
    pub inputs: Option<Arc<SignalHub>>,
    /// Keep each workload's decision state in the cluster (default: no,
    /// memory only).
    pub persist: Option<Persist>,
    /// Evaluations per second across all workloads, beyond which they wait
    /// their turn and signals queued meanwhile are decided together
    /// (default 1,000: a fleet of 10,000 on a 15 s interval needs 667).
    pub max_evaluations_per_second: u32,
}

impl Default for DeciderConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        DeciderConfig {
            max_concurrent_evaluations: cores * 2,
            decision_log: 16,
            fault_rollback_after: 3,
            metrics: Arc::new(Metrics::new()),
            leadership: Arc::new(Leadership::always()),
            inputs: None,
            persist: None,
            max_evaluations_per_second: 1_000,
        }
    }
}

struct WorkloadRuntime {
    spec: ArcSwap<WorkloadSpec>,
    /// Held for a whole evaluation: one evaluation per workload at a time.
    state: tokio::sync::Mutex<WorkloadState>,
    log: Mutex<DecisionLog>,
    trigger: Notify,
    /// Stops this workload's task (it was removed from the configuration).
    stop: CancellationToken,
    /// Spreads first evaluations over the interval.
    stagger_slot: usize,
}

/// The workloads, by name and by target path, in configuration order.
#[derive(Default)]
struct Fleet {
    order: Vec<Arc<WorkloadRuntime>>,
    by_name: HashMap<String, Arc<WorkloadRuntime>>,
    by_target: HashMap<String, Arc<WorkloadRuntime>>,
}

impl Fleet {
    fn new(workloads: Vec<Arc<WorkloadRuntime>>) -> Fleet {
        let mut fleet = Fleet::default();
        for workload in workloads {
            let spec = workload.spec.load();
            fleet.by_name.insert(spec.name.clone(), workload.clone());
            fleet.by_target.entry(spec.target.path()).or_insert_with(|| workload.clone());
            fleet.order.push(workload.clone());
        }
        fleet
    }
}

/// The loop over all configured workloads.
pub struct Decider<C: Cluster> {
    pipeline: Pipeline<C>,
    pacer: pacer::Pacer,
    config: DeciderConfig,
    fleet: RwLock<Fleet>,
    sinks: ArcSwap<Vec<Arc<dyn DecisionSink>>>,
    tasks: TaskTracker,
    /// Set by [`Decider::run`]: the loop's shutdown.
    running: Mutex<Option<CancellationToken>>,
    decided: AtomicU64,
}

impl<C: Cluster> Decider<C> {
    pub fn new(
        cluster: Arc<C>,
        clock: Arc<dyn Clock>,
        evaluator: Arc<dyn Evaluator>,
        workloads: Vec<WorkloadSpec>,
        config: DeciderConfig,
    ) -> Self {
        let runtimes = workloads.into_iter().enumerate().map(|(i, spec)| runtime(spec, i, &config)).collect();
        let pipeline = Pipeline {
            cluster,
            clock,
            evaluator,
            evaluations: Arc::new(Semaphore::new(config.max_concurrent_evaluations.max(1))),
            metrics: config.metrics.clone(),
            leadership: config.leadership.clone(),
            inputs: config.inputs.clone(),
            rollback_after: config.fault_rollback_after,
        };
        Decider {
            pipeline,
            pacer: pacer::Pacer::new(config.max_evaluations_per_second),
            config,
            fleet: RwLock::new(Fleet::new(runtimes)),
            sinks: ArcSwap::from_pointee(Vec::new()),
            tasks: TaskTracker::new(),
            running: Mutex::new(None),
            decided: AtomicU64::new(0),
        }
    }

    /// Where applied decisions are published besides the cluster.
    pub fn set_sinks(&self, sinks: Vec<Arc<dyn DecisionSink>>) {
        self.sinks.store(Arc::new(sinks));
    }

    pub fn sinks(&self) -> Arc<Vec<Arc<dyn DecisionSink>>> {
        self.sinks.load_full()
    }

    pub fn workload_names(&self) -> Vec<String> {
        self.fleet.read().order.iter().map(|w| w.spec.load().name.clone()).collect()
    }

    /// By binding name or by target `namespace/name`.
    fn find(&self, name: &str) -> Option<Arc<WorkloadRuntime>> {
        let fleet = self.fleet.read();
        fleet.by_name.get(name).or_else(|| fleet.by_target.get(name)).cloned()
    }

    /// Asks for an immediate evaluation (a signal arrived).
    pub fn trigger(&self, name: &str) -> bool {
        self.find(name).map(|w| w.trigger.notify_one()).is_some()
    }

    /// Asks every workload for an immediate evaluation.
    pub fn trigger_all(&self) {
        for workload in &self.fleet.read().order {
            workload.trigger.notify_one();
        }
    }

    /// Recent decisions of a workload, newest first.
    pub fn decisions(&self, name: &str, limit: usize) -> Option<Vec<DecisionRecord>> {
        self.find(name).map(|w| w.log.lock().recent(limit))
    }

    /// Runs every workload's loop until `shutdown`; an evaluation in flight
    /// is finished before its task returns. [`Decider::stopped`] waits for them.
    pub fn run(self: &Arc<Self>, shutdown: CancellationToken) {
        *self.running.lock() = Some(shutdown);
        let workloads = self.fleet.read().order.clone();
        for workload in workloads {
            self.spawn(workload);
        }
    }

    /// Resolves once every workload task has ended (after the shutdown).
    pub async fn stopped(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    fn spawn(self: &Arc<Self>, workload: Arc<WorkloadRuntime>) {
        let Some(shutdown) = self.running.lock().clone() else { return };
        let decider = self.clone();
        self.tasks.spawn(async move {
            let stop = workload.stop.clone();
            // spread first evaluations over the interval instead of all at
            // once; a trigger (a signal) does not wait for its turn
            let interval = workload.spec.load().interval;
            let stagger = interval.mul_f64((workload.stagger_slot % 97) as f64 / 97.0);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(stagger) => {}
                _ = workload.trigger.notified() => {}
            }
            loop {
                decider.pacer.turn().await;
                decider.evaluate_workload(&workload).await;
                let interval = workload.spec.load().interval;
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(interval) => {}
                    _ = workload.trigger.notified() => {}
                }
            }
        });
    }

    /// Follows a new configuration: workloads not there before start
    /// (from their stored state, if there is one; evaluated at once),
    /// workloads gone stop, workloads whose target changed start afresh, and
    /// the others take their new spec, keeping the state of every binding
    /// whose policy stays. Returns (added, changed, removed) counts.
    pub async fn reconfigure(self: &Arc<Self>, specs: Vec<WorkloadSpec>) -> (usize, usize, usize) {
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
                    // the bindings' state follows at the next evaluation
                    if **workload.spec.load() != spec {
                        workload.spec.store(Arc::new(spec));
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
        *fleet = Fleet::new(next);
        drop(fleet);
        let added = started.len();
        for workload in started {
            tracing::info!(workload = %workload.spec.load().name, "workload added");
            self.spawn(workload);
        }
        (added, changed, removed)
    }

    /// Settles the signals of an evaluation once its decision (and the
    /// state that records it) is written.
    fn settle(&self, workload: &str, record: &DecisionRecord, settlement: Settlement) {
        match settlement {
            Settlement::Handled(deliveries) => {
                let handled = Handled::Decided {
                    replicas: record.guardrails.replicas,
                    applied: record.applied,
                    at_ms: record.at_ms,
                };
                for receipt in deliveries.into_iter().filter_map(|d| d.receipt) {
                    receipt.settle(&handled);
                }
            }
            Settlement::Retry(deliveries) => {
                if let Some(hub) = &self.config.inputs {
                    hub.requeue(workload, deliveries);
                }
            }
            // unsettled: the leader reads them again (Kafka) or the client retries (push)
            Settlement::Abandon(deliveries) => drop(deliveries),
        }
    }

    /// Takes over the decision states stored in the cluster (a new term, or
    /// a start): each workload with a stored state continues from it.
    /// Returns how many were taken over.
    pub async fn load_states(&self) -> Result<usize, ClusterError> {
        let workloads = self.fleet.read().order.clone();
        self.restore(&workloads).await
    }

    /// Continues `workloads` from their stored states; returns how many had one.
    async fn restore(&self, workloads: &[Arc<WorkloadRuntime>]) -> Result<usize, ClusterError> {
        let mut namespaces: Vec<String> = workloads.iter().map(|w| w.spec.load().target.namespace.clone()).collect();
        namespaces.sort();
        namespaces.dedup();
        let states = self.pipeline.cluster.load_states(&namespaces).await?;
        let mut taken = 0;
        for workload in workloads {
            let spec = workload.spec.load_full();
            if let Some(stored) = persist::find(&spec, &states) {
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
            if state.saved_digest == Some(persist::content_digest(&stored)) {
                continue;
            }
            if let Err(error) = persist::save(self.pipeline.cluster.as_ref(), &spec, &stored).await {
                tracing::warn!(workload = %spec.name, %error, "decision state not stored on the way out");
            }
        }
    }

    /// One evaluation of the named workload, recorded and returned.
    pub async fn evaluate(&self, name: &str) -> Option<DecisionRecord> {
        let workload = self.find(name)?;
        Some(self.evaluate_workload(&workload).await)
    }

    async fn evaluate_workload(&self, workload: &WorkloadRuntime) -> DecisionRecord {
        let mut state = workload.state.lock().await;
        let spec = workload.spec.load_full();
        state.follow(&spec);
        let Evaluated { record, settlement } = self.pipeline.evaluate(&spec, &mut state).await;
        if let Some(persist) = &self.config.persist
            && self.config.leadership.may_write()
        {
            // an applied scale is stored at once, with the directives it acted
            // on; a directive that changed nothing is harmless to act on again
            let (cluster, now_ms) = (self.pipeline.cluster.as_ref(), self.pipeline.clock.now_ms());
            persist.after(cluster, &spec, &mut state, record.applied, now_ms, &self.config.metrics).await;
        }
        drop(state);
        self.settle(&spec.name, &record, settlement);
        record.count(&self.config.metrics);
        self.decided.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(workload = %spec.name, replicas = record.guardrails.replicas, applied = record.applied, "decision");
        if record.applied {
            let sinks = self.sinks.load();
            if !sinks.is_empty()
                && let Ok(json) = serde_json::to_vec(&record)
            {
                for sink in sinks.iter() {
                    sink.publish(&record.workload, &json);
                }
            }
        }
        workload.log.lock().push(record.clone());
        record
    }
}

fn runtime(spec: WorkloadSpec, stagger_slot: usize, config: &DeciderConfig) -> Arc<WorkloadRuntime> {
    let state = WorkloadState::for_spec(&spec);
    Arc::new(WorkloadRuntime {
        spec: ArcSwap::from_pointee(spec),
        state: tokio::sync::Mutex::new(state),
        log: Mutex::new(DecisionLog::new(config.decision_log)),
        trigger: Notify::new(),
        stop: CancellationToken::new(),
        stagger_slot,
    })
}

/// The loop as the admin API sees it, without its type parameter.
pub trait WorkloadView: Send + Sync {
    fn workload_names(&self) -> Vec<String>;
    /// Evaluations completed since start, all workloads together.
    fn total_decisions(&self) -> u64;
    fn decisions(&self, name: &str, limit: usize) -> Option<Vec<DecisionRecord>>;
    fn trigger(&self, name: &str) -> bool;
}

impl<C: Cluster> WorkloadView for Decider<C> {
    fn workload_names(&self) -> Vec<String> {
        Decider::workload_names(self)
    }
    fn total_decisions(&self) -> u64 {
        self.decided.load(Ordering::Relaxed)
    }
    fn decisions(&self, name: &str, limit: usize) -> Option<Vec<DecisionRecord>> {
        Decider::decisions(self, name, limit)
    }
    fn trigger(&self, name: &str) -> bool {
        Decider::trigger(self, name)
    }
}
