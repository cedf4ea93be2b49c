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
    let filter = EnvFilter::try_new(&cli.global.log_level).unwrap_or_else(|error| {
        eprintln!("warning: invalid --log-level {:?} ({error}); using \"warn\"", cli.global.log_level);
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
