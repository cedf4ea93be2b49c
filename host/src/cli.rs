//! The `scalegate` command line: flags shared by every command, the command
//! enum, and dispatch. Each command lives in a file of its own under
//! `cli/`: `run` (the daemon against a cluster), `demo` (the daemon on a
//! simulated cluster), `eval`, `policy` (`inspect`), `simulate`, `bench`.
//!
//! Exit codes (`common`): 0 success; 1 the policy faulted or declined
//! (`eval`); 64 (`EX_USAGE`) bad usage, configuration or input file;
//! 65 (`EX_DATAERR`) the policy file is not a usable policy; 70
//! (`EX_SOFTWARE`) internal error.

pub mod bench;
pub mod cases;
pub mod common;
pub mod demo;
pub mod eval;
pub mod new;
pub mod policy;
pub mod replay;
pub mod run;
pub mod simulate;

pub use common::{EX_DATAERR, EX_POLICY, EX_SOFTWARE, EX_USAGE, Failure};

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};

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
    /// Log filter (tracing env-filter syntax, e.g. `info` or `scalegate=debug`) [default: `warn,scalegate=info` for `run`, where each notable decision is a line; `warn` otherwise].
    #[arg(long, global = true, env = "SCALEGATE_LOG")]
    pub log_level: Option<String>,
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
    Policy(policy::PolicyCommand),
    /// Evaluate a snapshot (JSON, see docs/SNAPSHOT.md) with a policy and print the decision as JSON.
    Eval(eval::EvalArgs),
    /// Check a policy against expected decisions: every case file in --cases (a snapshot and what to expect), through the real call path.
    Test(cases::TestArgs),
    /// Create a policy project (Rust, Python or JavaScript) that builds on its own: starter policy on the SDK, build script, cases, README.
    New(new::NewArgs),
    /// Run the built-in benchmarks and print the numbers.
    Bench(bench::BenchArgs),
    /// Run the daemon against a Kubernetes API server (in-cluster or a kubeconfig).
    Run(Box<run::RunArgs>),
    /// Run the daemon on an in-process simulated cluster with the bundled policies and the admin API.
    Demo(demo::DemoArgs),
    /// Run configurations as deployed over a load trace on a simulated cluster and clock (a day in seconds): a chart per workload and a summary per configuration.
    Simulate(simulate::SimulateArgs),
    /// Re-run evaluations the daemon captured (GET /v1/workloads/{ns}/{name}/snapshots) through another policy or version and print where the decisions differ (exit 1 when some do).
    Replay(replay::ReplayArgs),
    /// Compile a component under a CPU and memory budget (the host runs this as a child process).
    #[command(hide = true)]
    CompilePolicy(policy::CompileArgs),
}

impl Cli {
    /// The log filter: the flag, else `info` for the daemon, `warn` for the tools.
    pub fn log_filter(&self) -> String {
        match (&self.global.log_level, &self.command) {
            (Some(filter), _) => filter.clone(),
            (None, Command::Run(_)) => "warn,scalegate=info".into(),
            (None, _) => "warn".into(),
        }
    }
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
        Command::Run(args) => run::run(&args, cache_dir, log_level),
        Command::Policy(command) => policy::run(command, cache_dir),
        Command::Eval(args) => eval::run(&args, cache_dir),
        Command::Test(args) => cases::run(&args, cache_dir),
        Command::New(args) => new::run(&args),
        Command::Bench(args) => bench::run(&args, cache_dir),
        Command::Demo(args) => demo::run(&args, cache_dir, log_level),
        Command::Simulate(args) => simulate::run(&args, cache_dir),
        Command::Replay(args) => replay::run(&args, cache_dir),
        Command::CompilePolicy(args) => policy::compile(&args),
    }
}
