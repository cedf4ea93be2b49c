//! The `scalegate` binary: parse flags, start logging, run the command, map
//! failures to exit codes. Everything else lives in the library.

use clap::Parser;
use scalegate::cli::{Cli, LogFormat};
use std::process::ExitCode;
use std::sync::Arc;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, reload};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `simulate` runs a single-threaded daemon per core, each allocating all
    // the time: two of them sharing an arena wait on its lock (2–2.5× slower
    // in a third of the runs, docs/BENCHMARKS.md), so it gets one per thread
    let simulating = matches!(cli.command, scalegate::cli::Command::Simulate(_));
    limit_malloc_arenas(if simulating { 256 } else { 2 });
    let wanted = cli.log_filter();
    let filter = EnvFilter::try_new(&wanted).unwrap_or_else(|error| {
        eprintln!("warning: invalid --log-level {wanted:?} ({error}); using \"warn\"");
        EnvFilter::new("warn")
    });
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    // colours only for a person at a terminal, not in `kubectl logs`
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let format = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    match cli.global.log_format {
        LogFormat::Text => registry.with(format).init(),
        LogFormat::Json => registry.with(format.json()).init(),
    }
    let set_level: scalegate::admin::LogLevelSetter = Arc::new(move |directives: &str| {
        let filter = EnvFilter::try_new(directives).map_err(|e| format!("invalid log filter {directives:?}: {e}"))?;
        handle.reload(filter).map_err(|e| e.to_string())
    });
    match scalegate::cli::run(cli, Some(set_level)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// glibc gives every thread that meets contention an allocator arena of its
/// own, up to eight per core, and memory freed in one arena is not reused by
/// another: the tokio workers and the blocking pool's policy threads leave
/// freed memory spread over many. Two arenas kept a 10,000-workload fleet
/// 49 MiB smaller at the same CPU; a flood of Kafka directives is ingested
/// ~35 % slower with two than with four (docs/BENCHMARKS.md). So
/// `MALLOC_ARENA_MAX` in the environment still decides when it is set.
/// Past the limit a new thread shares an arena chosen round-robin — for
/// `simulate`, whose shard threads are all busy, the limit is set past the
/// thread count instead.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas(max: i32) {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: `mallopt` only tunes the allocator; it is called before
        // any other thread exists (parsing the command line starts none).
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, max);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas(_max: i32) {}
