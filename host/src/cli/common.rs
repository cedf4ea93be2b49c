//! What the commands share: failures and their exit codes, the admin
//! token, reading snapshots and policy directories.

use crate::policy::{CompileBudget, Error as PolicyError, LoadedPolicy, Runtime, RuntimeConfig};
use crate::snapshot::Snapshot;
use std::path::{Path, PathBuf};

/// The policy faulted or declined (`eval`).
pub const EX_POLICY: u8 = 1;
/// Bad usage, configuration or input file (sysexits `EX_USAGE`).
pub const EX_USAGE: u8 = 64;
/// The policy file is not a usable policy (sysexits `EX_DATAERR`).
pub const EX_DATAERR: u8 = 65;
/// An output file could not be created (sysexits `EX_CANTCREAT`).
pub const EX_CANTCREAT: u8 = 73;
/// Internal error (sysexits `EX_SOFTWARE`).
pub const EX_SOFTWARE: u8 = 70;

/// A command failure with its exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure { code: EX_USAGE, message: message.into() }
    }

    pub fn cannot_create(message: impl Into<String>) -> Failure {
        Failure { code: EX_CANTCREAT, message: message.into() }
    }

    pub fn internal(message: impl Into<String>) -> Failure {
        Failure { code: EX_SOFTWARE, message: message.into() }
    }

    /// A policy file that cannot be used: unreadable (64) or not a policy (65).
    pub fn bad_policy(error: PolicyError) -> Failure {
        let code = if matches!(error, PolicyError::Io(_)) { EX_USAGE } else { EX_DATAERR };
        Failure { code, message: error.to_string() }
    }
}

impl From<PolicyError> for Failure {
    fn from(error: PolicyError) -> Failure {
        Failure::internal(error.to_string())
    }
}

/// A multi-threaded tokio runtime for a command.
/// The policy runtime's settings for a command: defaults, precompiled
/// components in `cache_dir`, compilation in a budgeted child process.
pub fn runtime_config(cache_dir: Option<PathBuf>, max_instances: u32) -> RuntimeConfig {
    RuntimeConfig { cache_dir, max_instances, compile: CompileBudget::in_child_process(), ..RuntimeConfig::default() }
}

pub fn tokio_runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::internal(format!("cannot start the async runtime: {e}")))
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

pub fn read_snapshot(path: &Path) -> Result<Snapshot, Failure> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).map_err(|e| Failure::usage(format!("cannot read stdin: {e}")))?
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| Failure::usage(format!("cannot read snapshot {}: {e}", path.display())))?
    };
    serde_json::from_str(&text).map_err(|e| Failure::usage(format!("invalid snapshot {}: {e}", path.display())))
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
