//! The decision loop: one task per workload that evaluates it on its
//! interval or when triggered (a signal, a new leader), records the
//! decision and publishes applied ones to the sinks. One evaluation —
//! observe, add the hub's inputs, snapshot, call the policies (and the
//! shadow), combine, guardrails, actuate — is the `pipeline`.
//!
//! - Policies come through the [`Evaluator`] port and run on the blocking
//!   pool behind a semaphore, so many workloads evaluate concurrently but
//!   boundedly (`call`).
//! - Several policies' counts become one by the workload's `combine` rule
//!   (max by default, like HPA and KEDA with several metrics; min, first,
//!   or "prefer A unless B differs by more than N"), after each binding's
//!   `only` direction (`call::combine`). Any fault keeps the current count;
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
mod capture;
mod fleet;
mod gauges;
mod pacer;
mod persist;
mod pipeline;
mod record;
mod state;
#[cfg(test)]
mod tests;

pub use capture::{CAPTURE_BYTES, CAPTURED_SNAPSHOTS, CaptureLog, Captured, CapturedCall};
pub use gauges::Gauges;
pub use persist::Persist;
pub use record::{DECISION_RECORDS, DecisionLog, DecisionRecord, InputsDigest, PolicyVerdict, Timing};
pub use state::{History, RECOMMENDATION_WINDOW, SCALE_EVENT_WINDOW, Stored, WorkloadState};

use crate::clock::Clock;
use crate::cluster::Cluster;
use crate::config::{Actuator, Workload as WorkloadSpec};
use crate::leadership::Leadership;
use crate::policy::{CallPool, Evaluator};
use crate::signals::{Handled, SignalHub};
use crate::sink::{Answers, DecisionSink};
use crate::telemetry::Metrics;
use arc_swap::ArcSwap;
use fleet::{Fleet, WorkloadRuntime, runtime, stagger_fraction};
use parking_lot::{Mutex, RwLock};
use pipeline::{Evaluated, Pipeline, Settlement};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Settings of the loop.
#[derive(Clone)]
pub struct DeciderConfig {
    /// The bounded pool policy calls run in, shared with the admin API's
    /// on-demand evaluations (default: 2 × cores slots).
    pub calls: CallPool,
    /// Decision records kept per workload (default 16), within
    /// [`DECISION_RECORDS`] in all.
    pub decision_log: usize,
    /// Evaluations captured per workload with their exact snapshots
    /// (default 8; 0: none), within [`CAPTURED_SNAPSHOTS`] in all.
    pub capture: usize,
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
    /// Which decisions are logged at `info`, one line each (default: the notable ones).
    pub log_decisions: DecisionLines,
    /// Where the decisions of workloads whose actuator is `keda` are
    /// published for KEDA's External Scaler (default: none).
    pub answers: Option<Arc<Answers>>,
    /// Evaluations per second across all workloads, beyond which they wait
    /// their turn and signals queued meanwhile are decided together
    /// (default 1,000: a fleet of 10,000 on a 15 s interval needs 667).
    pub max_evaluations_per_second: u32,
}

impl Default for DeciderConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        DeciderConfig {
            calls: CallPool::new(cores * 2),
            decision_log: 16,
            capture: 8,
            fault_rollback_after: 3,
            metrics: Arc::new(Metrics::new()),
            leadership: Arc::new(Leadership::always()),
            inputs: None,
            persist: None,
            max_evaluations_per_second: 1_000,
            answers: None,
            log_decisions: DecisionLines::Notable,
        }
    }
}

/// Which decisions get a line in the log at `info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DecisionLines {
    /// Scaled, failed to scale, served a new count to KEDA, faulted, or clamped by a guardrail.
    Notable,
    /// Every evaluation.
    All,
    /// None (they stay at `debug`).
    Off,
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
        workloads: Vec<Arc<WorkloadSpec>>,
        config: DeciderConfig,
    ) -> Self {
        let runtimes = workloads.into_iter().enumerate().map(|(i, spec)| runtime(spec, i, &config)).collect();
        let fleet = RwLock::new(Fleet::new(runtimes, &config));
        let pipeline = Pipeline {
            cluster,
            clock,
            evaluator,
            calls: config.calls.clone(),
            metrics: config.metrics.clone(),
            leadership: config.leadership.clone(),
            inputs: config.inputs.clone(),
            answers: config.answers.clone(),
            rollback_after: config.fault_rollback_after,
            capture: config.capture > 0,
        };
        let decider = Decider {
            pipeline,
            pacer: pacer::Pacer::new(config.max_evaluations_per_second),
            config,
            fleet,
            sinks: ArcSwap::from_pointee(Vec::new()),
            tasks: TaskTracker::new(),
            running: Mutex::new(None),
            decided: AtomicU64::new(0),
        };
        decider.serve_answers();
        decider
    }

    /// Tells the answers board which workloads KEDA is served.
    fn serve_answers(&self) {
        if let Some(answers) = &self.config.answers {
            let fleet = self.fleet.read();
            answers.serve(
                fleet
                    .order
                    .iter()
                    .map(|w| w.spec.load_full())
                    .filter(|s| s.actuator == Actuator::Keda)
                    .map(|s| (s.name.clone(), s.interval)),
            );
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

    /// An input of `name` woke from zero: evaluates it now if it sits at
    /// zero replicas and may (`min_replicas: 0`), so activity brings it
    /// back without waiting for its interval; otherwise the interval will do.
    pub fn wake(&self, name: &str) -> bool {
        let Some(workload) = self.find(name) else { return false };
        // decided zero last time (or found it there)
        let at_zero = workload.log.lock().last().is_some_and(|r| r.guardrails.replicas == 0 || r.current_replicas == 0);
        if at_zero && workload.spec.load().limits.min_replicas == 0 {
            workload.trigger.notify_one();
            return true;
        }
        false
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

    /// The named workload's last `limit` captured evaluations, oldest first.
    pub fn snapshots(&self, name: &str, limit: usize) -> Option<Vec<Captured>> {
        self.find(name).map(|w| w.capture.lock().recent(limit))
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
            let stagger = interval.mul_f64(stagger_fraction(workload.stagger_slot));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(stagger) => {}
                _ = workload.trigger.notified() => {}
            }
            loop {
                decider.pacer.turn().await;
                // boxed: the evaluation's state lives only while it runs,
                // not in every idle workload's task
                Box::pin(decider.evaluate_workload(&workload)).await;
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

    /// One evaluation of the named workload, recorded and returned.
    pub async fn evaluate(&self, name: &str) -> Option<DecisionRecord> {
        let workload = self.find(name)?;
        Some(self.evaluate_workload(&workload).await)
    }

    async fn evaluate_workload(&self, workload: &WorkloadRuntime) -> DecisionRecord {
        let mut state = workload.state.lock().await;
        let spec = workload.spec.load_full();
        state.follow(&spec);
        let Evaluated { record, settlement, captured } = self.pipeline.evaluate(&spec, &mut state).await;
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
        match self.config.log_decisions {
            DecisionLines::All => tracing::info!("{}", record.line()),
            DecisionLines::Notable if record.notable() => tracing::info!("{}", record.line()),
            _ => tracing::debug!("{}", record.line()),
        }
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
        if let Some(captured) = captured {
            workload.capture.lock().push(captured);
        }
        workload.log.lock().push(record.clone());
        record
    }
}

/// The loop as the admin API sees it, without its type parameter.
pub trait WorkloadView: Send + Sync {
    fn workload_names(&self) -> Vec<String>;
    /// Evaluations completed since start, all workloads together.
    fn total_decisions(&self) -> u64;
    fn decisions(&self, name: &str, limit: usize) -> Option<Vec<DecisionRecord>>;
    fn snapshots(&self, name: &str, limit: usize) -> Option<Vec<Captured>>;
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
    fn snapshots(&self, name: &str, limit: usize) -> Option<Vec<Captured>> {
        Decider::snapshots(self, name, limit)
    }
    fn trigger(&self, name: &str) -> bool {
        Decider::trigger(self, name)
    }
}
