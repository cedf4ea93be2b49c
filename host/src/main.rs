//! The `scalegate` binary: parse flags, start logging, run the command, map
//! failures to exit codes. Everything else lives in the library.

use clap::Parser;
use scalegate::cli::{Cli, LogFormat};
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_new(&cli.global.log_level).unwrap_or_else(|error| {
        eprintln!("warning: invalid --log-level {:?} ({error}); using \"warn\"", cli.global.log_level);
        EnvFilter::new("warn")
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.global.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    match scalegate::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
