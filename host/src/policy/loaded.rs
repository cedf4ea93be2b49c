//! A loaded, validated policy and its calls.

use super::bindings::{Contract, PolicyInstance, PolicyPre, Reads};
use super::driver::{Driver, wall_bound};
use super::sandbox::{HostState, LogLevel, ticks};
use super::{Declined, Error, PolicyInfo, RuntimeConfig};
use crate::snapshot::{Decision, Snapshot};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::{Engine, Store, Trap};

/// A ready-to-call instance and its store.
struct Warm {
    store: Store<HostState>,
    instance: PolicyInstance,
}

/// One line a policy logged (or printed) during a call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
}

/// The result of one `evaluate` call with what the policy logged on the way.
#[derive(Debug)]
pub struct Evaluation {
    pub outcome: Result<Decision, Error>,
    pub logs: Vec<LogLine>,
    /// Log lines beyond the per-call cap, counted but not kept.
    pub dropped_logs: usize,
    pub duration: Duration,
}

/// A compiled, type-checked policy whose metadata passed validation. Cheap
/// to clone; safe to call from many threads at once.
#[derive(Clone)]
pub struct LoadedPolicy {
    inner: Arc<Inner>,
}

struct Inner {
    info: PolicyInfo,
    /// `name@version` and the digest, shared with every decision record
    /// that names this version.
    id: Arc<str>,
    digest: Arc<str>,
    size_bytes: usize,
    pre: PolicyPre,
    /// What crosses the boundary beyond the common snapshot (from `reads`).
    reads: Reads,
    engine: Engine,
    driver: Arc<Driver>,
    config: Arc<RuntimeConfig>,
    idle: Mutex<Vec<Warm>>,
}

impl std::fmt::Debug for LoadedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPolicy").field("info", &self.inner.info).field("digest", &self.inner.digest).finish()
    }
}

impl LoadedPolicy {
    /// Instantiates the component, runs `metadata()` and hands the metadata
    /// back for validation together with a constructor for the policy; the
    /// instance used becomes the policy's first idle one.
    pub(super) fn prepare(
        pre: PolicyPre,
        engine: Engine,
        driver: Arc<Driver>,
        config: Arc<RuntimeConfig>,
        digest: String,
        size_bytes: usize,
    ) -> Result<(PolicyInfo, impl FnOnce(PolicyInfo) -> LoadedPolicy), Error> {
        let mut warm = instantiate(&pre, &engine, &driver, &config)?;
        warm.store.data_mut().begin_call(0);
        warm.store.set_epoch_deadline(ticks(config.load_deadline));
        let stuck = warm.store.data().stuck();
        let called = driver.run(wall_bound(config.load_deadline), &stuck, warm.instance.metadata(&mut warm.store));
        let info = match called {
            Ok(Ok(info)) => info,
            Ok(Err(error)) => return Err(classify(error, &warm.store, config.load_deadline)),
            Err(_) => return Err(timeout(config.load_deadline)),
        };
        let build = move |info: PolicyInfo| {
            let policy = LoadedPolicy {
                inner: Arc::new(Inner {
                    id: format!("{}@{}", info.name, info.version).into(),
                    reads: Reads::of(&info),
                    info,
                    digest: digest.into(),
                    size_bytes,
                    pre,
                    engine,
                    driver,
                    config,
                    idle: Mutex::new(Vec::new()),
                }),
            };
            policy.release(warm);
            policy
        };
        Ok((info, build))
    }

    pub fn info(&self) -> &PolicyInfo {
        &self.inner.info
    }

    /// The contract version the component targets.
    pub fn contract(&self) -> Contract {
        self.inner.pre.contract()
    }

    /// sha256 of the component bytes, lowercase hex.
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }

    pub fn size_bytes(&self) -> usize {
        self.inner.size_bytes
    }

    /// `name@version`.
    pub fn id(&self) -> String {
        self.inner.id.to_string()
    }

    /// [`Self::id`] and [`Self::digest`], shared rather than copied.
    pub fn shared_names(&self) -> (Arc<str>, Arc<str>) {
        (self.inner.id.clone(), self.inner.digest.clone())
    }

    fn acquire(&self) -> Result<Warm, Error> {
        if let Some(warm) = self.inner.idle.lock().pop() {
            return Ok(warm);
        }
        let inner = &self.inner;
        instantiate(&inner.pre, &inner.engine, &inner.driver, &inner.config)
    }

    fn release(&self, warm: Warm) {
        let config = &self.inner.config;
        if config.recycle_instances {
            let mut idle = self.inner.idle.lock();
            if idle.len() < config.max_idle_instances {
                idle.push(warm);
            }
        }
    }

    /// Drops every idle instance (e.g. before the policy is unloaded).
    pub fn drain_idle(&self) {
        self.inner.idle.lock().clear();
    }

    /// Runs `evaluate(snapshot)` within the deadline and memory cap. The
    /// call ends by the deadline's wall-clock bound whatever the policy does;
    /// a call that overstays is a `Timeout` and its instance is dropped.
    ///
    /// Blocking and CPU-bound: call it from a blocking thread
    /// (`tokio::task::spawn_blocking`) or outside any tokio runtime, never on
    /// an async worker (it blocks the thread until the call ends).
    pub fn evaluate(&self, snapshot: &Snapshot) -> Evaluation {
        let started = Instant::now();
        let mut warm = match self.acquire() {
            Ok(warm) => warm,
            Err(error) => {
                return Evaluation { outcome: Err(error), logs: vec![], dropped_logs: 0, duration: started.elapsed() };
            }
        };
        let config = &self.inner.config;
        warm.store.data_mut().begin_call(snapshot.now_ms);
        warm.store.set_epoch_deadline(ticks(config.deadline));
        let stuck = warm.store.data().stuck();
        let call = warm.instance.evaluate(&mut warm.store, snapshot, self.inner.reads);
        let called = self.inner.driver.run(wall_bound(config.deadline), &stuck, call);
        if let Err(overstay) = called {
            warm.store.data_mut().push_log(LogLevel::Warn, overstay.explain().to_string());
        }

        let state = warm.store.data_mut();
        let mut logs: Vec<LogLine> = state.logs.drain(..).map(|(level, message)| LogLine { level, message }).collect();
        let dropped_logs = state.dropped_logs;
        let output = state.output.take();
        if !output.is_empty() {
            logs.push(LogLine { level: LogLevel::Output, message: output });
        }

        let outcome = match called {
            Err(_) => Err(timeout(config.deadline)),
            Ok(Err(error)) => Err(classify(error, &warm.store, config.deadline)),
            Ok(Ok(Err(declined))) => check_declined(declined, config),
            Ok(Ok(Ok(decision))) => check_output(decision, config),
        };
        // A trapped or misbehaving instance is never reused.
        if outcome.as_ref().map_or_else(|e| !e.is_fault(), |_| true) {
            self.release(warm);
        }
        Evaluation { outcome, logs, dropped_logs, duration: started.elapsed() }
    }
}

/// A fresh instance in a fresh store, on the load-time budget.
fn instantiate(pre: &PolicyPre, engine: &Engine, driver: &Driver, config: &RuntimeConfig) -> Result<Warm, Error> {
    let state = HostState::new(config.memory_limit_bytes, config.max_log_lines, config.max_output_bytes);
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limits);
    store.set_epoch_deadline(ticks(config.load_deadline));
    let stuck = store.data().stuck();
    match driver.run(wall_bound(config.load_deadline), &stuck, pre.instantiate(&mut store)) {
        Ok(Ok(instance)) => Ok(Warm { store, instance }),
        Ok(Err(error)) => Err(classify(error, &store, config.load_deadline)),
        Err(_) => Err(timeout(config.load_deadline)),
    }
}

fn timeout(deadline: Duration) -> Error {
    Error::Timeout { deadline_ms: deadline.as_millis() as u64 }
}

/// Most deletion costs a decision may carry (one per pod).
pub const MAX_DELETION_COSTS: usize = 10_000;
/// Most metrics a decision may report.
pub const MAX_REPORTED_METRICS: usize = 100;
/// Longest pod name (a DNS subdomain) or reported metric name.
pub const MAX_NAME_BYTES: usize = 253;

/// Every string and list a policy returns is bounded, so a decision record
/// is too.
fn check_output(decision: Decision, config: &RuntimeConfig) -> Result<Decision, Error> {
    let over = |what: &str, size: usize, limit: usize| {
        Err(Error::InvalidOutput(format!("{what} is {size} bytes, the limit is {limit}")))
    };
    if decision.state.len() > config.max_state_bytes {
        return over("state", decision.state.len(), config.max_state_bytes);
    }
    if decision.reason.len() > config.max_reason_bytes {
        return over("reason", decision.reason.len(), config.max_reason_bytes);
    }
    if decision.deletion_costs.len() > MAX_DELETION_COSTS {
        return Err(Error::InvalidOutput(format!(
            "{} deletion costs, the limit is {MAX_DELETION_COSTS}",
            decision.deletion_costs.len()
        )));
    }
    if decision.metrics.len() > MAX_REPORTED_METRICS {
        return Err(Error::InvalidOutput(format!(
            "{} reported metrics, the limit is {MAX_REPORTED_METRICS}",
            decision.metrics.len()
        )));
    }
    if let Some(cost) = decision.deletion_costs.iter().find(|c| c.pod.len() > MAX_NAME_BYTES) {
        return over("a deletion cost's pod name", cost.pod.len(), MAX_NAME_BYTES);
    }
    if let Some(metric) = decision.metrics.iter().find(|m| m.name.len() > MAX_NAME_BYTES) {
        return over("a reported metric's name", metric.name.len(), MAX_NAME_BYTES);
    }
    if let Some(metric) = decision.metrics.iter().find(|m| !m.value.is_finite()) {
        return Err(Error::InvalidOutput(format!("reported metric {:?} is not a finite number", metric.name)));
    }
    Ok(decision)
}

/// A policy's reason for declining is bounded like a decision's reason.
fn check_declined(declined: Declined, config: &RuntimeConfig) -> Result<Decision, Error> {
    let message = match &declined {
        Declined::InvalidParams(m) | Declined::MissingInput(m) | Declined::Internal(m) => m,
    };
    if message.len() > config.max_reason_bytes {
        return Err(Error::InvalidOutput(format!(
            "the policy-error message is {} bytes, the limit is {}",
            message.len(),
            config.max_reason_bytes
        )));
    }
    Err(Error::Declined(declined))
}

/// Turns a wasmtime error from a call into the policy fault it stands for.
fn classify(error: wasmtime::Error, store: &Store<HostState>, deadline: Duration) -> Error {
    if store.data().limits.hit {
        return Error::MemoryLimit { limit_bytes: store.data().limits.limit };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => timeout(deadline),
        Some(trap) => Error::Trap(trap.to_string()),
        None => Error::Trap(format!("{error:#}")),
    }
}
