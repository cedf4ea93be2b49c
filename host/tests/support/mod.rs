//! Shared helpers for the host's integration tests: where the built policies
//! are, and runtimes with a test-wide precompiled cache.
#![allow(dead_code)]

use scalegate::policy::{Runtime, RuntimeConfig};
use scalegate::snapshot::Snapshot;
use std::path::{Path, PathBuf};

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// A built policy; fails the test (never skips it) when the fixtures are missing.
pub fn policy(relative: &str) -> PathBuf {
    let path = workspace().join("target/policies").join(relative);
    assert!(
        path.is_file(),
        "{} is missing: run `just plugins` (scripts/build-plugins.sh) before the tests",
        path.display()
    );
    path
}

pub fn policy_bytes(relative: &str) -> Vec<u8> {
    std::fs::read(policy(relative)).expect("read policy")
}

/// Precompiled artifacts shared by all test binaries (compiling the Python
/// and JS components takes ~20 s each; once per machine is enough).
pub fn shared_cache() -> PathBuf {
    workspace().join("target/policy-cache-tests")
}

/// The runtime the daemon runs: a shared cache, compilation in a budgeted
/// child process (the `scalegate` binary built for these tests).
pub fn config() -> RuntimeConfig {
    RuntimeConfig {
        cache_dir: Some(shared_cache()),
        max_instances: 64,
        compile: compile_budget(),
        ..RuntimeConfig::default()
    }
}

pub fn compile_budget() -> scalegate::policy::CompileBudget {
    scalegate::policy::CompileBudget {
        child: Some(PathBuf::from(env!("CARGO_BIN_EXE_scalegate"))),
        ..scalegate::policy::CompileBudget::default()
    }
}

pub fn runtime() -> Runtime {
    Runtime::new(config()).expect("runtime")
}

/// A policy store in a new directory holding `files` (name in the store →
/// built policy). Loading runs policies (the smoke evaluation): blocking work
/// that must not run on an async worker thread, so it gets a plain thread.
pub fn open_store(files: &[(&str, &str)]) -> (scalegate::policy_store::PolicyStore, tempfile::TempDir) {
    use scalegate::policy_store::{PolicyStore, StoreConfig};
    let dir = tempfile::tempdir().unwrap();
    for (name, built) in files {
        std::fs::write(dir.path().join(name), policy_bytes(built)).unwrap();
    }
    let path = dir.path().to_path_buf();
    let store =
        std::thread::spawn(move || PolicyStore::open(std::sync::Arc::new(runtime()), StoreConfig::new(path)).unwrap())
            .join()
            .unwrap();
    (store, dir)
}

pub fn example(name: &str) -> Snapshot {
    let path = workspace().join("examples/snapshots").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("read example")).expect("parse example")
}

/// Every file under `dir` (recursively) whose extension is one of `extensions`.
pub fn files_under(dir: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut found = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| extensions.iter().any(|x| e == *x)) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

pub mod daemon;
pub mod hostile;
pub mod registry;
pub mod rig;
pub mod servers;
