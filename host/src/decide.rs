//! The decision loop: per workload, on its interval or when triggered,
//! observe the cluster, build the snapshot, call the bound policies (and the
//! shadow), combine, apply the guardrails, actuate, and record.
//!
//! - Policies run on the blocking pool behind a semaphore, so many workloads
//!   evaluate concurrently but boundedly.
//! - Several policies combine by **max** of their desired counts (like HPA
//!   and KEDA with several metrics). Any fault keeps the current count;
//!   policies that all decline mean "no opinion".
//! - Each binding's policy `state` is carried between evaluations, as are
//!   the recent recommendations and applied scale events the snapshot shows.
//! - A policy version that faults `fault_rollback_after` times in a row on a
//!   workload is set aside for that workload, which goes back to the last
//!   version that worked for it, until a newer version is loaded.
//!
//! The cluster is a trait ([`Cluster`]), implemented by the simulator
//! (`sim`) and the Kubernetes actuator (`k8s`). With leader election, a
//! replica that does not hold the lease evaluates (policy state stays warm)
//! but never writes: the guardrails record a `standby` clamp.

mod record;

use record::push_bounded;
pub use record::{DecisionLog, DecisionRecord, PolicyVerdict};

use crate::config::{Binding, Target, Workload as WorkloadSpec};
use crate::guardrails::{self, Proposal, Situation};
use crate::policy::{self, LoadedPolicy};
use crate::policy_store::PolicyStore;
use crate::signals::SignalHub;
use crate::snapshot::{
    Decision, Forecast, Metric, Pod, PodDeletionCost, Recommendation, ScaleEvent, Signal, Snapshot, Workload,
};
use crate::telemetry::Metrics;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

/// Milliseconds since the Unix epoch, injectable for tests (paused tokio time).
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;
}

/// The machine's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
    }
}

/// Tokio's clock (follows `tokio::time::pause`/`advance`), from a base time.
pub struct TokioClock {
    base_ms: u64,
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn starting_at(base_ms: u64) -> TokioClock {
        TokioClock { base_ms, start: tokio::time::Instant::now() }
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        self.base_ms + self.start.elapsed().as_millis() as u64
    }
}

/// Whether this replica may write: a deadline that the leader elector
/// extends on every renewal of its lease. Without an elector (one replica)
/// the loop is always allowed to write.
#[derive(Debug)]
pub struct Leadership {
    epoch: std::time::Instant,
    /// Nanoseconds after `epoch` until which this replica leads (0: never).
    valid_until_ns: std::sync::atomic::AtomicU64,
}

impl Default for Leadership {
    fn default() -> Self {
        Leadership { epoch: std::time::Instant::now(), valid_until_ns: Default::default() }
    }
}

impl Leadership {
    pub fn is_leader(&self) -> bool {
        let now = self.epoch.elapsed().as_nanos() as u64;
        now < self.valid_until_ns.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Leads until `deadline` (a renewal succeeded).
    pub fn lead_until(&self, deadline: std::time::Instant) {
        let ns = deadline.saturating_duration_since(self.epoch).as_nanos() as u64;
        self.valid_until_ns.store(ns, std::sync::atomic::Ordering::Release);
    }

    /// Stops leading now.
    pub fn revoke(&self) {
        self.valid_until_ns.store(0, std::sync::atomic::Ordering::Release);
    }
}

/// What the cluster shows about one target (the simulator also attaches
/// its simulated metrics); the signal hub's inputs are added to it.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    pub spec_replicas: u32,
    pub status_replicas: u32,
    pub ready_replicas: u32,
    pub pods: Vec<Pod>,
    pub metrics: Vec<Metric>,
    pub signals: Vec<Signal>,
    pub forecasts: Vec<Forecast>,
    /// Required inputs that are stale or missing (blocks scale-down).
    pub stale_inputs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("conflict writing {0}: the object changed")]
    Conflict(String),
    #[error("{0}")]
    Other(String),
}

/// Reads workload state and writes scale decisions.
pub trait Cluster: Send + Sync + 'static {
    fn observe(&self, target: &Target) -> impl Future<Output = Result<Observation, ClusterError>> + Send;
    fn scale(
        &self,
        target: &Target,
        from: u32,
        to: u32,
        reason: &str,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;
    fn set_deletion_costs(
        &self,
        target: &Target,
        costs: &[PodDeletionCost],
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;
}

/// Receives every applied decision.
pub type AuditHook = Arc<dyn Fn(&DecisionRecord) + Send + Sync>;

/// Settings of the loop.
#[derive(Clone)]
pub struct DeciderConfig {
    /// Policy calls running at once across all workloads (default: 2 × cores).
    pub max_concurrent_evaluations: usize,
    /// Recommendations and scale events kept per workload (default 64).
    pub history: usize,
    /// Decision records kept per workload (default 16: ~700 B each, so ~110 MB
    /// for 10,000 workloads).
    pub decision_log: usize,
    /// Consecutive faults of a version before a workload rolls back (default 3).
    pub fault_rollback_after: u32,
    /// Where decisions, clamps, faults and call latencies are counted.
    pub metrics: Arc<Metrics>,
    /// Set when several replicas run: only the lease holder writes.
    pub leadership: Option<Arc<Leadership>>,
    /// Metrics and signals from the signal sources, merged into each observation.
    pub inputs: Option<Arc<SignalHub>>,
    /// Called with every applied decision (the Kafka audit producer).
    pub audit: Option<AuditHook>,
}

impl Default for DeciderConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        DeciderConfig {
            max_concurrent_evaluations: cores * 2,
            history: 64,
            decision_log: 16,
            fault_rollback_after: 3,
            metrics: Arc::new(Metrics::new()),
            leadership: None,
            inputs: None,
            audit: None,
        }
    }
}

/// The health of one binding on one workload.
#[derive(Default)]
struct BindingHealth {
    state: Vec<u8>,
    last_good: Option<LoadedPolicy>,
    consecutive_faults: u32,
    /// A version set aside after repeated faults.
    avoid_digest: Option<String>,
}

#[derive(Default)]
struct WorkloadState {
    bindings: Vec<BindingHealth>,
    shadow: BindingHealth,
    recommendations: VecDeque<Recommendation>,
    scale_events: VecDeque<ScaleEvent>,
    last_scale_ms: Option<u64>,
}

struct WorkloadRuntime {
    spec: WorkloadSpec,
    /// Held for a whole evaluation: one evaluation per workload at a time.
    state: tokio::sync::Mutex<WorkloadState>,
    log: parking_lot::Mutex<DecisionLog>,
    trigger: Notify,
}

/// The loop over all configured workloads.
pub struct Decider<C: Cluster, K: Clock> {
    cluster: Arc<C>,
    clock: Arc<K>,
    store: PolicyStore,
    workloads: Vec<Arc<WorkloadRuntime>>,
    evaluations: Arc<Semaphore>,
    config: DeciderConfig,
    decided: std::sync::atomic::AtomicU64,
}

/// A policy call's result as the loop sees it.
struct Called {
    verdict: PolicyVerdict,
    decision: Option<Decision>,
    fault: bool,
}

impl<C: Cluster, K: Clock> Decider<C, K> {
    pub fn new(
        cluster: Arc<C>,
        clock: Arc<K>,
        store: PolicyStore,
        workloads: Vec<WorkloadSpec>,
        config: DeciderConfig,
    ) -> Self {
        let workloads = workloads
            .into_iter()
            .map(|spec| {
                let state = WorkloadState {
                    bindings: spec.policies.iter().map(|_| BindingHealth::default()).collect(),
                    ..WorkloadState::default()
                };
                Arc::new(WorkloadRuntime {
                    spec,
                    state: tokio::sync::Mutex::new(state),
                    log: parking_lot::Mutex::new(DecisionLog::new(config.decision_log)),
                    trigger: Notify::new(),
                })
            })
            .collect();
        let evaluations = Arc::new(Semaphore::new(config.max_concurrent_evaluations.max(1)));
        Decider { cluster, clock, store, workloads, evaluations, config, decided: Default::default() }
    }

    pub fn workload_names(&self) -> Vec<String> {
        self.workloads.iter().map(|w| w.spec.name.clone()).collect()
    }

    /// By binding name or by target `namespace/name`.
    fn find(&self, name: &str) -> Option<&Arc<WorkloadRuntime>> {
        self.workloads.iter().find(|w| {
            w.spec.name == name
                || name.split_once('/').is_some_and(|(ns, n)| w.spec.target.namespace == ns && w.spec.target.name == n)
        })
    }

    /// Asks for an immediate evaluation (an event-type signal arrived).
    pub fn trigger(&self, name: &str) -> bool {
        self.find(name).map(|w| w.trigger.notify_one()).is_some()
    }

    /// Asks every workload for an immediate evaluation.
    pub fn trigger_all(&self) {
        for workload in &self.workloads {
            workload.trigger.notify_one();
        }
    }

    /// Recent decisions of a workload, newest first.
    pub fn decisions(&self, name: &str, limit: usize) -> Option<Vec<DecisionRecord>> {
        self.find(name).map(|w| w.log.lock().recent(limit))
    }

    /// Runs every workload's loop until `shutdown`; an evaluation in flight
    /// is finished before its task returns.
    pub fn run(self: &Arc<Self>, shutdown: CancellationToken) -> tokio::task::JoinSet<()> {
        let mut tasks = tokio::task::JoinSet::new();
        for index in 0..self.workloads.len() {
            let decider = self.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                let workload = decider.workloads[index].clone();
                // spread first evaluations over the interval instead of all at
                // once; a trigger (a signal) does not wait for its turn
                let stagger = workload.spec.interval.mul_f64((index % 97) as f64 / 97.0);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(stagger) => {}
                    _ = workload.trigger.notified() => {}
                }
                loop {
                    decider.evaluate(index).await;
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(workload.spec.interval) => {}
                        _ = workload.trigger.notified() => {}
                    }
                }
            });
        }
        tasks
    }

    /// One evaluation of workload `index`, recorded and returned.
    pub async fn evaluate(&self, index: usize) -> DecisionRecord {
        let workload = self.workloads[index].clone();
        let mut state = workload.state.lock().await;
        let spec = &workload.spec;
        let now_ms = self.clock.now_ms();
        let record = match self.cluster.observe(&spec.target).await {
            Ok(mut observation) => {
                if let Some(hub) = &self.config.inputs {
                    let inputs = hub.collect(&spec.name, now_ms);
                    observation.metrics.extend(inputs.metrics);
                    observation.signals.extend(inputs.signals);
                    observation.forecasts.extend(inputs.forecasts);
                    observation.stale_inputs.extend(inputs.stale);
                }
                self.decide(spec, &mut state, observation, now_ms).await
            }
            Err(error) => {
                let outcome = guardrails::apply(
                    &spec.limits,
                    &Situation {
                        now_ms,
                        current_replicas: 0,
                        last_scale_ms: state.last_scale_ms,
                        stale_inputs: vec![],
                        standby: !self.leads(),
                    },
                    &Proposal::NoOpinion(format!("cannot observe the target: {error}")),
                );
                empty_record(spec, now_ms, outcome, Some(error.to_string()))
            }
        };
        self.count(&record);
        self.decided.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(workload = %spec.name, replicas = record.guardrails.replicas, applied = record.applied, "decision");
        if record.applied
            && let Some(audit) = &self.config.audit
        {
            audit(&record);
        }
        workload.log.lock().push(record.clone());
        record
    }

    fn leads(&self) -> bool {
        self.config.leadership.as_ref().is_none_or(|l| l.is_leader())
    }

    fn count(&self, record: &DecisionRecord) {
        let metrics = &self.config.metrics;
        let outcome = if record.applied {
            "scaled"
        } else if record.apply_error.is_some() {
            "failed_write"
        } else if record.guardrails.clamps.iter().any(|c| matches!(c, guardrails::Clamp::DryRun { .. })) {
            "dry_run"
        } else if record.guardrails.clamps.iter().any(|c| matches!(c, guardrails::Clamp::Standby { .. })) {
            "standby"
        } else {
            "unchanged"
        };
        Metrics::count(&metrics.decisions, outcome);
        for clamp in &record.guardrails.clamps {
            Metrics::count(&metrics.clamps, clamp.metric_label());
        }
        for verdict in record.policies.iter().chain(&record.shadow) {
            metrics.evaluation_seconds.observe(verdict.duration_us as f64 / 1e6);
        }
    }

    async fn decide(
        &self,
        spec: &WorkloadSpec,
        state: &mut WorkloadState,
        observation: Observation,
        now_ms: u64,
    ) -> DecisionRecord {
        let current = observation.spec_replicas;
        let base = Snapshot {
            now_ms,
            workload: Workload {
                kind: spec.target.kind.clone(),
                namespace: spec.target.namespace.clone(),
                name: spec.target.name.clone(),
                current_replicas: current,
                status_replicas: Some(observation.status_replicas),
                ready_replicas: Some(observation.ready_replicas),
                min_replicas: spec.limits.min_replicas,
                max_replicas: spec.limits.max_replicas,
            },
            pods: observation.pods,
            metrics: observation.metrics,
            signals: observation.signals,
            forecasts: observation.forecasts,
            recommendations: state.recommendations.iter().copied().collect(),
            scale_events: state.scale_events.iter().copied().collect(),
            params: serde_json::Value::Null,
            state: Vec::new(),
        };
        let inputs_digest = hex::encode(Sha256::digest(serde_json::to_vec(&base).unwrap_or_default()));
        let inputs = summarize(&base);
        let base = Arc::new(base);

        let mut called = Vec::with_capacity(spec.policies.len());
        for (binding, health) in spec.policies.iter().zip(state.bindings.iter_mut()) {
            called.push(self.call(binding, health, &base).await);
        }
        let shadow = match &spec.shadow {
            Some(binding) => Some(self.call(binding, &mut state.shadow, &base).await),
            None => None,
        };

        let proposal = combine(&called);
        if let Proposal::Desired(desired) = proposal {
            push_bounded(
                &mut state.recommendations,
                Recommendation { timestamp_ms: now_ms, replicas: desired },
                self.config.history,
            );
        }
        let situation = Situation {
            now_ms,
            current_replicas: current,
            last_scale_ms: state.last_scale_ms,
            stale_inputs: observation.stale_inputs,
            standby: !self.leads(),
        };
        let mut outcome = guardrails::apply(&spec.limits, &situation, &proposal);
        if outcome.actuate && !self.leads() {
            // the lease was lost while the policies ran
            outcome.actuate = false;
            outcome.clamps.push(guardrails::Clamp::Standby { would_scale_to: outcome.replicas });
        }

        let (mut applied, mut apply_error) = (false, None);
        if outcome.actuate {
            let to = outcome.replicas;
            let costs: Vec<PodDeletionCost> = if to < current {
                called
                    .iter()
                    .filter_map(|c| c.decision.as_ref())
                    .flat_map(|d| d.deletion_costs.iter().cloned())
                    .collect()
            } else {
                Vec::new()
            };
            let reason = called
                .iter()
                .map(|c| format!("{}: {}", c.verdict.policy, c.verdict.reason))
                .collect::<Vec<_>>()
                .join("; ");
            let mut result = Ok(());
            if !costs.is_empty() {
                result = self.cluster.set_deletion_costs(&spec.target, &costs).await;
            }
            if result.is_ok() {
                result = self.cluster.scale(&spec.target, current, to, &reason).await;
            }
            match result {
                Ok(()) => {
                    applied = true;
                    state.last_scale_ms = Some(now_ms);
                    let event = ScaleEvent { timestamp_ms: now_ms, from_replicas: current, to_replicas: to };
                    push_bounded(&mut state.scale_events, event, self.config.history);
                }
                Err(error) => apply_error = Some(error.to_string()),
            }
        }
        let shadow_diverged = shadow.as_ref().is_some_and(|s| match proposal {
            Proposal::Desired(desired) => s.verdict.desired != Some(desired),
            _ => s.verdict.desired.is_some(),
        });
        DecisionRecord {
            at_ms: now_ms,
            workload: spec.name.clone(),
            inputs_digest,
            inputs,
            current_replicas: current,
            policies: called.into_iter().map(|c| c.verdict).collect(),
            shadow: shadow.map(|s| s.verdict),
            shadow_diverged,
            guardrails: outcome,
            applied,
            apply_error,
        }
    }

    /// Resolves and calls one binding's policy on the blocking pool, with
    /// the per-workload rollback rule, and updates the binding's health.
    async fn call(&self, binding: &Binding, health: &mut BindingHealth, base: &Arc<Snapshot>) -> Called {
        let catalog = self.store.catalog();
        let Some(latest) = catalog.resolve(&binding.policy) else {
            let verdict = PolicyVerdict {
                policy: binding.policy.to_string(),
                digest: String::new(),
                desired: None,
                reason: format!("policy {} is not loaded", binding.policy),
                error: Some("not_loaded".into()),
                duration_us: 0,
                rolled_back: false,
            };
            return Called { verdict, decision: None, fault: true };
        };
        let mut rolled_back = false;
        let policy = match (&health.avoid_digest, &health.last_good) {
            (Some(avoid), Some(good)) if avoid == latest.digest() => {
                rolled_back = true;
                good.clone()
            }
            _ => {
                health.avoid_digest = None;
                latest
            }
        };
        let mut snapshot = (**base).clone();
        snapshot.params = binding.params.clone();
        snapshot.state = health.state.clone();
        let permit = self.evaluations.clone().acquire_owned().await.expect("semaphore never closed");
        let callee = policy.clone();
        let evaluation = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            callee.evaluate(&snapshot)
        })
        .await;
        let (outcome, duration_us) = match evaluation {
            Ok(evaluation) => (evaluation.outcome, evaluation.duration.as_micros() as u64),
            Err(error) => (Err(policy::Error::Trap(format!("evaluation task failed: {error}"))), 0),
        };
        let fault = outcome.as_ref().err().is_some_and(policy::Error::is_fault);
        if let Err(error) = &outcome
            && fault
        {
            Metrics::count(&self.config.metrics.policy_faults, error.metric_label());
        }
        if fault {
            health.consecutive_faults += 1;
            let has_alternative = health.last_good.as_ref().is_some_and(|g| g.digest() != policy.digest());
            if health.consecutive_faults >= self.config.fault_rollback_after && has_alternative && !rolled_back {
                tracing::warn!(policy = %policy.id(), faults = health.consecutive_faults, "repeated faults: rolling this workload back to its last good version");
                health.avoid_digest = Some(policy.digest().to_string());
            }
        } else {
            health.consecutive_faults = 0;
            health.last_good = Some(policy.clone());
        }
        let verdict = |desired, reason: String, error: Option<String>| PolicyVerdict {
            policy: policy.id(),
            digest: policy.digest().to_string(),
            desired,
            reason,
            error,
            duration_us,
            rolled_back,
        };
        match outcome {
            Ok(decision) => {
                health.state = decision.state.clone();
                Called {
                    verdict: verdict(decision.desired_replicas, decision.reason.clone(), None),
                    decision: Some(decision),
                    fault: false,
                }
            }
            Err(error) => Called {
                verdict: verdict(None, error.to_string(), Some(error.metric_label().into())),
                decision: None,
                fault,
            },
        }
    }
}

/// The loop as the admin API sees it, without its type parameters.
pub trait WorkloadView: Send + Sync {
    fn workload_names(&self) -> Vec<String>;
    /// Evaluations completed since start, all workloads together.
    fn total_decisions(&self) -> u64;
    fn decisions(&self, name: &str, limit: usize) -> Option<Vec<DecisionRecord>>;
    fn trigger(&self, name: &str) -> bool;
}

impl<C: Cluster, K: Clock> WorkloadView for Decider<C, K> {
    fn workload_names(&self) -> Vec<String> {
        Decider::workload_names(self)
    }
    fn total_decisions(&self) -> u64 {
        self.decided.load(std::sync::atomic::Ordering::Relaxed)
    }
    fn decisions(&self, name: &str, limit: usize) -> Option<Vec<DecisionRecord>> {
        Decider::decisions(self, name, limit)
    }
    fn trigger(&self, name: &str) -> bool {
        Decider::trigger(self, name)
    }
}

/// Max of the desired counts; any fault keeps the current count.
fn combine(called: &[Called]) -> Proposal {
    if let Some(faulty) = called.iter().find(|c| c.fault) {
        return Proposal::Fault(format!("{}: {}", faulty.verdict.policy, faulty.verdict.reason));
    }
    match called.iter().filter_map(|c| c.verdict.desired).max() {
        Some(desired) => Proposal::Desired(desired),
        None => Proposal::NoOpinion(called.iter().map(|c| c.verdict.reason.as_str()).collect::<Vec<_>>().join("; ")),
    }
}

fn summarize(snapshot: &Snapshot) -> String {
    let w = &snapshot.workload;
    let mut text =
        format!("replicas {} ({} ready), {} pods", w.current_replicas, w.ready_replicas(), snapshot.pods.len());
    for metric in snapshot.metrics.iter().take(8) {
        text.push_str(&format!(", {}={:.3}", metric.name, metric.value));
    }
    if !snapshot.signals.is_empty() {
        text.push_str(&format!(", {} signals", snapshot.signals.len()));
    }
    text
}

fn empty_record(
    spec: &WorkloadSpec,
    now_ms: u64,
    outcome: guardrails::Outcome,
    error: Option<String>,
) -> DecisionRecord {
    DecisionRecord {
        at_ms: now_ms,
        workload: spec.name.clone(),
        inputs_digest: String::new(),
        inputs: String::new(),
        current_replicas: 0,
        policies: vec![],
        shadow: None,
        shadow_diverged: false,
        guardrails: outcome,
        applied: false,
        apply_error: error,
    }
}
