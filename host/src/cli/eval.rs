//! `scalegate eval --policy FILE --snapshot FILE`: one evaluation, offline,
//! printed as JSON (the decision, or the fault or refusal with its kind,
//! and what the policy logged). Exit 1 when the policy did not decide.

use super::common::{EX_POLICY, Failure, read_snapshot, runtime_config};
use crate::policy::{Runtime, RuntimeConfig};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Path to the policy component (.wasm).
    #[arg(long)]
    pub policy: PathBuf,
    /// Path to the snapshot JSON (`-` for stdin).
    #[arg(long)]
    pub snapshot: PathBuf,
    /// Deadline of the evaluation in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub deadline_ms: u64,
    /// Memory cap of the policy instance in MiB.
    #[arg(long, default_value_t = 256)]
    pub memory_limit_mib: usize,
}

pub fn run(args: &EvalArgs, cache_dir: Option<PathBuf>) -> Result<(), Failure> {
    let snapshot = read_snapshot(&args.snapshot)?;
    let config = RuntimeConfig {
        deadline: Duration::from_millis(args.deadline_ms),
        memory_limit_bytes: args.memory_limit_mib << 20,
        ..runtime_config(cache_dir, 8)
    };
    let runtime = Runtime::new(config)?;
    let (policy, _) = runtime.load_file(&args.policy).map_err(Failure::bad_policy)?;
    let evaluation = policy.evaluate(&snapshot);
    let mut report = serde_json::json!({
        "policy": { "name": policy.info().name, "version": policy.info().version, "digest": format!("sha256:{}", policy.digest()) },
        "logs": evaluation.logs,
        "dropped_logs": evaluation.dropped_logs,
        "duration_us": evaluation.duration.as_micros() as u64,
    });
    let result = match &evaluation.outcome {
        Ok(decision) => {
            report["decision"] = serde_json::to_value(decision).expect("json");
            Ok(())
        }
        Err(error) => {
            report["error"] = serde_json::json!({ "kind": error.metric_label(), "message": error.to_string() });
            Err(Failure {
                code: EX_POLICY,
                message: format!("{} {}: {error}", policy.id(), if error.is_fault() { "faulted" } else { "declined" }),
            })
        }
    };
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));
    result
}
