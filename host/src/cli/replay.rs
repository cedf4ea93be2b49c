//! `scalegate replay --policy FILE --snapshots FILE`: re-runs evaluations
//! the daemon captured (`GET /v1/workloads/{ns}/{name}/snapshots`) through
//! another policy or version, in order, threading the policy's state from
//! one to the next as the daemon does, and prints where its decisions
//! differ from the captured ones. Exit 0 when none differ, 1 when some do
//! (as `diff`), 64 on unusable input.
//!
//! What is replayed is each binding call: the snapshot it was given (with
//! the history — recommendations, scale events — of what actually
//! happened), the binding's params (or `--params`), and for the first
//! evaluation the state it was given; after that, the state the replayed
//! policy returned.

use super::common::{EX_POLICY, Failure, runtime_config};
use crate::policy::Runtime;
use crate::snapshot::Snapshot;
use base64::Engine as _;
use clap::Args;
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The policy component to replay the captures through (.wasm).
    #[arg(long)]
    pub policy: PathBuf,
    /// The captures: the JSON `GET /v1/workloads/{ns}/{name}/snapshots` returns (or its `snapshots` array); `-` for stdin.
    #[arg(long)]
    pub snapshots: PathBuf,
    /// Which binding's calls to replay, by name (default: the first).
    #[arg(long)]
    pub binding: Option<String>,
    /// Params to give the policy instead of the binding's (JSON text).
    #[arg(long)]
    pub params: Option<String>,
    /// Print every evaluation, not only those that differ.
    #[arg(long)]
    pub all: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Captures {
    Served { snapshots: Vec<Capture> },
    List(Vec<Capture>),
}

#[derive(Deserialize)]
struct Capture {
    at_ms: u64,
    #[serde(default)]
    workload: String,
    snapshot: serde_json::Value,
    policies: Vec<Call>,
}

#[derive(Deserialize)]
struct Call {
    name: String,
    policy: String,
    params: serde_json::Value,
    #[serde(default)]
    state: String,
    desired: Option<u32>,
    #[serde(default)]
    reason: String,
}

/// One replayed evaluation beside the captured one.
#[derive(Debug, Clone, PartialEq)]
pub struct Compared {
    pub at_ms: u64,
    pub captured: Option<u32>,
    pub replayed: Option<u32>,
    pub captured_reason: String,
    pub replayed_reason: String,
}

impl Compared {
    pub fn differs(&self) -> bool {
        self.captured != self.replayed
    }
}

pub fn run(args: &ReplayArgs, cache_dir: Option<PathBuf>) -> Result<(), Failure> {
    let text = if args.snapshots.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(&args.snapshots)
    }
    .map_err(|e| Failure::usage(format!("cannot read {}: {e}", args.snapshots.display())))?;
    let mut captures = match serde_json::from_str::<Captures>(&text) {
        Ok(Captures::Served { snapshots } | Captures::List(snapshots)) => snapshots,
        Err(e) => {
            return Err(Failure::usage(format!(
                "{}: not captured snapshots (the JSON of GET /v1/workloads/{{ns}}/{{name}}/snapshots): {e}",
                args.snapshots.display()
            )));
        }
    };
    if captures.is_empty() {
        return Err(Failure::usage(format!("{}: no captured evaluations", args.snapshots.display())));
    }
    captures.sort_by_key(|c| c.at_ms);
    let params = match &args.params {
        Some(text) => Some(
            serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| Failure::usage(format!("--params is not JSON: {e}")))?,
        ),
        None => None,
    };
    let runtime = Runtime::new(runtime_config(cache_dir, 8))?;
    let (policy, _) = runtime.load_file(&args.policy).map_err(Failure::bad_policy)?;

    let first = &captures[0];
    let index = match &args.binding {
        Some(name) => first.policies.iter().position(|c| &c.name == name).ok_or_else(|| {
            let names: Vec<&str> = first.policies.iter().map(|c| c.name.as_str()).collect();
            Failure::usage(format!("no binding {name:?} in the captures (bindings: {})", names.join(", ")))
        })?,
        None => 0,
    };
    let Some(call) = first.policies.get(index) else {
        return Err(Failure::usage("the captures hold no policy calls".to_string()));
    };
    println!(
        "replaying {} evaluation(s) of {} (binding {}, captured with {}) through {}",
        captures.len(),
        if first.workload.is_empty() { "the workload" } else { &first.workload },
        call.name,
        call.policy,
        policy.id()
    );

    let mut state: Option<Vec<u8>> = None;
    let mut compared = Vec::with_capacity(captures.len());
    for capture in &captures {
        let call = capture
            .policies
            .get(index)
            .ok_or_else(|| Failure::usage(format!("the capture at {} has no binding #{index}", capture.at_ms)))?;
        let mut snapshot: Snapshot = serde_json::from_value(capture.snapshot.clone())
            .map_err(|e| Failure::usage(format!("the capture at {}: snapshot: {e}", capture.at_ms)))?;
        snapshot.params = params.clone().unwrap_or_else(|| call.params.clone());
        snapshot.state = match state.take() {
            Some(state) => state,
            None => base64::engine::general_purpose::STANDARD
                .decode(&call.state)
                .map_err(|e| Failure::usage(format!("the capture at {}: state is not base64: {e}", capture.at_ms)))?,
        };
        let (replayed, reason) = match policy.evaluate(&snapshot).outcome {
            Ok(decision) => {
                state = Some(decision.state.clone());
                (decision.desired_replicas, decision.reason)
            }
            Err(error) => {
                // a fault leaves the state as it was, as the daemon does
                state = Some(snapshot.state.clone());
                (None, format!("{}: {error}", error.metric_label()))
            }
        };
        compared.push(Compared {
            at_ms: capture.at_ms,
            captured: call.desired,
            replayed,
            captured_reason: call.reason.clone(),
            replayed_reason: reason,
        });
    }
    print!("{}", table(&compared, args.all));
    let differing = compared.iter().filter(|c| c.differs()).count();
    println!("{differing} of {} decision(s) differ", compared.len());
    if differing > 0 {
        return Err(Failure { code: EX_POLICY, message: format!("{differing} decision(s) differ") });
    }
    Ok(())
}

/// The comparison as a table: the differing rows (or all), each with
/// both counts and both reasons.
pub fn table(compared: &[Compared], all: bool) -> String {
    let count = |c: Option<u32>| c.map_or("-".to_string(), |c| c.to_string());
    let mut out =
        format!("{:<12}  {:>8}  {:>8}  reasons (captured | replayed)\n", "time (UTC)", "captured", "replayed");
    for c in compared.iter().filter(|c| all || c.differs()) {
        let secs = c.at_ms / 1000;
        out.push_str(&format!(
            "{:02}:{:02}:{:02}.{:03}  {:>8}  {:>8}  {}{} | {}\n",
            (secs / 3600) % 24,
            (secs / 60) % 60,
            secs % 60,
            c.at_ms % 1000,
            count(c.captured),
            count(c.replayed),
            if c.differs() { "≠ " } else { "" },
            crate::policy::clip(&c.captured_reason, 100),
            crate::policy::clip(&c.replayed_reason, 100),
        ));
    }
    out
}
