//! The `scalegate` command line: argument parsing and the small commands
//! (`policy inspect`, `eval`); `run`, `demo`, `simulate` and `bench` live in
//! their own modules.
//!
//! Exit codes: 0 success; 1 the policy faulted or declined (`eval`);
//! 64 bad usage or input file (snapshot JSON, flags); 65 the policy file is
//! not a usable policy; 70 internal error.

use crate::policy::{Error as PolicyError, LoadedPolicy, Runtime, RuntimeConfig};
use crate::snapshot::Snapshot;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "scalegate", version, about = "Kubernetes autoscaling gateway with sandboxed WebAssembly policies")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SCALEGATE_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Log filter (tracing env-filter syntax, e.g. `info` or `scalegate=debug`).
    #[arg(long, global = true, default_value = "warn", env = "SCALEGATE_LOG")]
    pub log_level: String,
    /// Directory for precompiled policies [default: $XDG_CACHE_HOME/scalegate or ~/.cache/scalegate].
    #[arg(long, global = true, env = "SCALEGATE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Do not read or write precompiled policies.
    #[arg(long, global = true)]
    pub no_cache: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with policy components.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Evaluate a snapshot (JSON, see docs/SNAPSHOT.md) with a policy and print the decision as JSON.
    Eval(EvalArgs),
    /// Run the built-in benchmarks and print the numbers.
    Bench(crate::bench::BenchArgs),
    /// Run the daemon against a Kubernetes API server (in-cluster or a kubeconfig).
    Run(crate::run::RunArgs),
    /// Run the daemon on an in-process simulated cluster with the bundled policies and the admin API.
    Demo(DemoArgs),
    /// Replay a synthetic day of load through the bundled policies and print each decision.
    Simulate(SimulateArgs),
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Load a policy and print its name, version, digest, world and exports as JSON.
    Inspect {
        /// Path to the component (.wasm).
        file: PathBuf,
    },
}

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

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory holding the bundled policies (built by `just plugins`).
    #[arg(long, default_value = "target/policies")]
    pub policies: PathBuf,
    /// Admin API listen address (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin_listen: std::net::SocketAddr,
    /// Stop after this long (e.g. `90s`); default: run until Ctrl-C or SIGTERM.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Length of the simulated day of load (the curve repeats).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "4m")]
    pub day: Duration,
    /// File holding the admin bearer token (or set SCALEGATE_ADMIN_TOKEN); without one, admin mutations are refused.
    #[arg(long)]
    pub admin_token_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Directory holding the bundled policies (built by `just plugins`).
    #[arg(long, default_value = "target/policies")]
    pub policies: PathBuf,
    /// Number of 15-second steps to simulate.
    #[arg(long, default_value_t = 48)]
    pub steps: u32,
}

/// A command failure with its exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure { code: 64, message: message.into() }
    }
    pub fn bad_policy(error: PolicyError) -> Failure {
        let code = if matches!(error, PolicyError::Io(_)) { 64 } else { 65 };
        Failure { code, message: error.to_string() }
    }
}

impl From<PolicyError> for Failure {
    fn from(error: PolicyError) -> Failure {
        Failure { code: 70, message: error.to_string() }
    }
}

/// The admin token from `--admin-token-file` or `SCALEGATE_ADMIN_TOKEN`.
pub fn admin_token(file: Option<&Path>) -> Result<Option<String>, Failure> {
    if let Some(file) = file {
        let token = std::fs::read_to_string(file)
            .map_err(|e| Failure::usage(format!("cannot read admin token file {}: {e}", file.display())))?;
        let token = token.trim().to_string();
        if token.len() < 16 {
            return Err(Failure::usage(format!("admin token in {} is shorter than 16 characters", file.display())));
        }
        return Ok(Some(token));
    }
    Ok(std::env::var("SCALEGATE_ADMIN_TOKEN").ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()))
}

/// The cache directory the flags ask for, if any.
pub fn cache_dir(global: &GlobalArgs) -> Option<PathBuf> {
    if global.no_cache {
        return None;
    }
    if let Some(dir) = &global.cache_dir {
        return Some(dir.clone());
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))?;
    Some(base.join("scalegate"))
}

/// Runs a command; `log_level` changes the log filter at runtime (the
/// admin API's `PUT /log-level`).
pub fn run(cli: Cli, log_level: Option<crate::admin::LogLevelSetter>) -> Result<(), Failure> {
    let cache_dir = cache_dir(&cli.global);
    match cli.command {
        Command::Run(args) => crate::run::run(&args, cache_dir, log_level),
        Command::Policy(PolicyCommand::Inspect { file }) => inspect(&file, cache_dir),
        Command::Eval(args) => eval(&args, cache_dir),
        Command::Bench(args) => {
            crate::bench::run(&args, cache_dir).map_err(|e| Failure { code: 70, message: format!("{e:#}") })
        }
        Command::Demo(args) => crate::demo::run(&args, cache_dir, log_level),
        Command::Simulate(args) => crate::simulate::run(&args.policies, args.steps, cache_dir),
    }
}

fn inspect(file: &Path, cache_dir: Option<PathBuf>) -> Result<(), Failure> {
    let runtime = Runtime::new(RuntimeConfig { cache_dir, max_instances: 8, ..RuntimeConfig::default() })?;
    let (policy, stats) = runtime.load_file(file).map_err(Failure::bad_policy)?;
    let report = serde_json::json!({
        "file": file,
        "name": policy.info().name,
        "version": policy.info().version,
        "description": policy.info().description,
        "digest": format!("sha256:{}", policy.digest()),
        "size_bytes": policy.size_bytes(),
        "world": "scalegate:policy/policy@0.1.0",
        "exports": ["metadata", "evaluate"],
        "reads": policy.info().reads,
        "params_schema": serde_json::from_str::<serde_json::Value>(&policy.info().params_schema).unwrap_or(serde_json::Value::Null),
        "load": stats,
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));
    Ok(())
}

pub fn read_snapshot(path: &Path) -> Result<Snapshot, Failure> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).map_err(|e| Failure::usage(format!("cannot read stdin: {e}")))?
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| Failure::usage(format!("cannot read snapshot {}: {e}", path.display())))?
    };
    serde_json::from_str(&text).map_err(|e| Failure::usage(format!("invalid snapshot {}: {e}", path.display())))
}

fn eval(args: &EvalArgs, cache_dir: Option<PathBuf>) -> Result<(), Failure> {
    let snapshot = read_snapshot(&args.snapshot)?;
    let config = RuntimeConfig {
        cache_dir,
        deadline: Duration::from_millis(args.deadline_ms),
        memory_limit_bytes: args.memory_limit_mib << 20,
        max_instances: 8,
        ..RuntimeConfig::default()
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
                code: 1,
                message: format!("{} {}: {error}", policy.id(), if error.is_fault() { "faulted" } else { "declined" }),
            })
        }
    };
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));
    result
}

/// Loads every `*.wasm` directly in `dir`, sorted by file name.
pub fn load_dir(runtime: &Runtime, dir: &Path) -> Result<Vec<LoadedPolicy>, Failure> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| {
            Failure::usage(format!("cannot read policy directory {}: {e} (run `just plugins` first)", dir.display()))
        })?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .collect();
    paths.sort();
    paths.iter().map(|p| runtime.load_file(p).map(|(policy, _)| policy).map_err(Failure::bad_policy)).collect()
}
