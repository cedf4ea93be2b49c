//! The policy stage: loading WebAssembly components that implement
//! `scalegate:policy/policy` and calling them, sandboxed and on a budget.
//!
//! - [`Runtime`] owns the one wasmtime `Engine` (pooling allocator, epoch
//!   interruption driven by a ticker thread), the linker (deny-all WASI plus
//!   the `host` interface) and the on-disk cache of precompiled components.
//! - [`Runtime::load`] turns bytes into a [`LoadedPolicy`]: digest, compile
//!   (or load precompiled), type-check against the world, run `metadata()`
//!   and validate it.
//! - [`LoadedPolicy::evaluate`] runs one `evaluate(snapshot)` with a deadline
//!   and a memory cap. Every way a policy can misbehave ends as a typed
//!   [`Error`]; none of them can take the host down.
//!
//! Instances are recycled: after a successful call the instance goes back to
//! a small per-policy pool (a call on a warm instance costs about a
//! microsecond, a fresh one tens of microseconds, a Python or JS one
//! milliseconds). An instance that faulted is always discarded. Policies must
//! therefore keep what they remember in `decision.state`, not in globals:
//! globals may or may not survive between calls. `RuntimeConfig::recycle_instances`
//! turns recycling off for policies that need a pristine instance per call.

//!
//! [`PolicyRef`] is how a binding names a policy; [`Evaluator`] is the port
//! through which the decision loop gets the version to call (the policy
//! store implements it; loop tests use native stand-ins).

mod bindings;
mod cache;
mod compiler;
mod driver;
mod loaded;
mod pool;
mod reference;
mod runtime;
mod sandbox;

pub use bindings::Contract;
pub use compiler::{CompileBudget, compile_here};
pub use loaded::{Evaluation, LoadedPolicy, LogLine};
pub use pool::{Busy, CallPool};
pub use reference::{OciRef, PolicyRef};
pub use runtime::{LoadStats, Runtime};
pub use sandbox::LogLevel;

use crate::snapshot::Snapshot;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// One callable version of a policy.
pub trait Policy: Send + Sync + 'static {
    /// `name@version`.
    fn id(&self) -> Arc<str>;
    /// sha256 of the component, lowercase hex.
    fn digest(&self) -> Arc<str>;
    /// One call (blocking: run it on the blocking pool, see [`LoadedPolicy::evaluate`]).
    fn evaluate(&self, snapshot: &Snapshot) -> Evaluation;
}

/// Where the decision loop gets its policies.
pub trait Evaluator: Send + Sync + 'static {
    /// The version `reference` stands for now; `None` when nothing matches.
    fn resolve(&self, reference: &PolicyRef) -> Option<Arc<dyn Policy>>;
}

impl Policy for LoadedPolicy {
    fn id(&self) -> Arc<str> {
        self.shared_names().0
    }
    fn digest(&self) -> Arc<str> {
        self.shared_names().1
    }
    fn evaluate(&self, snapshot: &Snapshot) -> Evaluation {
        LoadedPolicy::evaluate(self, snapshot)
    }
}

/// `text` cut to at most `max` bytes (on a character boundary), with the
/// size it had when cut: for quoting what a policy returned in a message.
pub fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} bytes)", &text[..cut], text.len())
}

/// What a policy says about itself (`metadata()`), validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub params_schema: String,
    pub reads: Vec<String>,
}

/// Budgets and switches of the policy runtime.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where precompiled components are kept (`None`: compile every time).
    pub cache_dir: Option<PathBuf>,
    /// Wall-clock budget of one `evaluate` (default 100 ms).
    pub deadline: Duration,
    /// Budget of `metadata()` and of instantiation (default 2 s: Python and
    /// JS components run their initialisers here).
    pub load_deadline: Duration,
    /// Linear-memory cap per instance (default 256 MiB; Python needs ~40 MiB).
    pub memory_limit_bytes: usize,
    /// Largest `decision.state` accepted (default 64 KiB).
    pub max_state_bytes: usize,
    /// Largest `decision.reason` accepted (default 16 KiB).
    pub max_reason_bytes: usize,
    /// Most log lines kept per call; further lines are counted, not kept (default 100).
    pub max_log_lines: usize,
    /// Bytes of stdout/stderr kept per call (default 8 KiB).
    pub max_output_bytes: usize,
    /// Keep healthy instances for the next call (default true).
    pub recycle_instances: bool,
    /// Warm instances kept per policy (default 8).
    pub max_idle_instances: usize,
    /// Concurrent instances across all policies, the pooling allocator's size (default 1000).
    pub max_instances: u32,
    /// Size limit and compile budget of a component.
    pub compile: CompileBudget,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: None,
            deadline: Duration::from_millis(100),
            load_deadline: Duration::from_secs(2),
            memory_limit_bytes: 256 << 20,
            max_state_bytes: 64 << 10,
            max_reason_bytes: 16 << 10,
            max_log_lines: 100,
            max_output_bytes: 8 << 10,
            recycle_instances: true,
            max_idle_instances: 8,
            max_instances: 1000,
            compile: CompileBudget::default(),
        }
    }
}

/// The reasons a policy gives for not deciding (`policy-error` in WIT).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "message")]
pub enum Declined {
    InvalidParams(String),
    MissingInput(String),
    Internal(String),
}

impl std::fmt::Display for Declined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Declined::InvalidParams(m) => write!(f, "invalid params: {m}"),
            Declined::MissingInput(m) => write!(f, "missing input: {m}"),
            Declined::Internal(m) => write!(f, "internal: {m}"),
        }
    }
}

/// Everything that can go wrong loading or calling a policy.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("cannot read policy: {0}")]
    Io(String),
    #[error("not a valid WebAssembly component: {0}")]
    Compile(String),
    #[error("component does not implement a scalegate:policy world this host serves ({served}): {0}", served = Contract::served())]
    Incompatible(String),
    #[error("invalid metadata: {0}")]
    InvalidMetadata(String),
    #[error("policy exceeded its {deadline_ms} ms deadline")]
    Timeout { deadline_ms: u64 },
    #[error("policy exceeded its memory limit of {limit_bytes} bytes")]
    MemoryLimit { limit_bytes: usize },
    #[error("policy trapped: {0}")]
    Trap(String),
    #[error("invalid policy output: {0}")]
    InvalidOutput(String),
    #[error("policy declined to decide: {0}")]
    Declined(Declined),
    #[error("cannot instantiate policy: {0}")]
    Instantiate(String),
    #[error("over budget: {0}")]
    OverBudget(String),
}

impl Error {
    /// Bounded label for metrics and audit records.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Io(_) => "io",
            Error::Compile(_) => "compile",
            Error::Incompatible(_) => "incompatible",
            Error::InvalidMetadata(_) => "invalid_metadata",
            Error::Timeout { .. } => "timeout",
            Error::MemoryLimit { .. } => "memory_limit",
            Error::Trap(_) => "trap",
            Error::InvalidOutput(_) => "invalid_output",
            Error::Declined(_) => "declined",
            Error::Instantiate(_) => "instantiate",
            Error::OverBudget(_) => "over_budget",
        }
    }

    /// A fault is the policy misbehaving (counted toward rollback); a
    /// declined decision is the policy working as designed.
    pub fn is_fault(&self) -> bool {
        !matches!(self, Error::Declined(_))
    }
}
