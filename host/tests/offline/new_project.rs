//! `scalegate new` for each language, as a user outside this repository
//! would use it: create the project in a temporary directory, build it with
//! its own build script, `scalegate test` its cases, `scalegate eval` a
//! snapshot. (The toolchain is what `scripts/bootstrap.sh` installs; the
//! JavaScript build is pointed at that componentize-js instead of an
//! `npm install` per test run.)

use crate::support::workspace;
use std::path::Path;
use std::process::{Command, Output};

fn scalegate(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scalegate")).current_dir(dir).args(args).output().unwrap()
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// new → build → test → eval, in a directory outside the repository.
fn round_trip(lang: &str, build_env: &[(&str, String)]) -> tempfile::TempDir {
    let temp = tempfile::tempdir().unwrap();
    assert!(!temp.path().starts_with(workspace()), "the project must live outside the repository");
    let name = format!("busy-{lang}");
    let created = scalegate(temp.path(), &["new", &name, "--lang", lang, "--dir", "."]);
    assert!(created.status.success(), "{}", text(&created));
    let project = temp.path().join(&name);

    let mut build = Command::new("./build.sh");
    build.current_dir(&project);
    for (key, value) in build_env {
        build.env(key, value);
    }
    let built = build.output().unwrap();
    assert!(built.status.success(), "{lang} build failed: {}", text(&built));
    let wasm = format!("{name}.wasm");
    assert!(project.join(&wasm).is_file(), "{lang}: no {wasm}");

    let tested = scalegate(&project, &["test", &wasm, "--cases", "cases"]);
    assert!(tested.status.success(), "{lang}: {}", text(&tested));
    assert!(text(&tested).contains("2 cases: 2 passed, 0 failed"), "{}", text(&tested));

    std::fs::write(
        project.join("snapshot.json"),
        r#"{"now_ms": 1700000000000, "workload": {"name": "web", "current_replicas": 2, "max_replicas": 20},
            "metrics": [{"name": "queue", "value": 950, "timestamp_ms": 1700000000000}],
            "params": {"metric": "queue", "target": 100}}"#,
    )
    .unwrap();
    let evaluated = scalegate(&project, &["eval", "--policy", &wasm, "--snapshot", "snapshot.json"]);
    assert!(evaluated.status.success(), "{lang}: {}", text(&evaluated));
    let out: serde_json::Value = serde_json::from_slice(&evaluated.stdout).unwrap();
    assert_eq!(out["policy"]["name"], name.as_str());
    assert_eq!(out["decision"]["desired_replicas"], 10, "{lang}: {out}");
    assert_eq!(out["decision"]["metrics"][0]["value"], 9.5);

    // bad params are refused by the SDK with the field named
    std::fs::write(
        project.join("bad.json"),
        r#"{"now_ms": 1, "workload": {"name": "web", "current_replicas": 2, "max_replicas": 20},
            "params": {"metric": "queue", "target": 0}}"#,
    )
    .unwrap();
    let refused = scalegate(&project, &["eval", "--policy", &wasm, "--snapshot", "bad.json"]);
    assert!(!refused.status.success());
    assert!(text(&refused).contains("params.target: must be > 0, got 0"), "{lang}: {}", text(&refused));
    temp
}

#[test]
fn a_new_rust_policy_builds_tests_and_decides_outside_the_repository() {
    // a target directory of the workspace's, so dependencies compile once across runs
    let target = workspace().join("target/new-projects");
    let temp = round_trip("rust", &[("CARGO_TARGET_DIR", target.display().to_string())]);
    // and its native tests run through the SDK's harness
    let tested = Command::new("cargo")
        .args(["test", "--quiet"])
        .current_dir(temp.path().join("busy-rust"))
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    assert!(tested.status.success(), "{}", text(&tested));
    assert!(text(&tested).contains("1 passed"), "{}", text(&tested));
}

#[test]
fn a_new_python_policy_builds_tests_and_decides_outside_the_repository() {
    round_trip("python", &[]);
}

#[test]
fn a_new_javascript_policy_builds_tests_and_decides_outside_the_repository() {
    let componentize = workspace().join("plugins/js/node_modules/.bin/componentize-js");
    assert!(componentize.is_file(), "componentize-js is missing: run scripts/bootstrap.sh");
    round_trip("js", &[("COMPONENTIZE_JS", componentize.display().to_string())]);
}

#[test]
fn new_refuses_a_bad_name_and_an_existing_project() {
    let temp = tempfile::tempdir().unwrap();
    let bad = scalegate(temp.path(), &["new", "My_Policy", "--lang", "rust"]);
    assert_eq!(bad.status.code(), Some(64));
    assert!(text(&bad).contains("lowercase letters"), "{}", text(&bad));
    assert!(scalegate(temp.path(), &["new", "p", "--lang", "js"]).status.success());
    let again = scalegate(temp.path(), &["new", "p", "--lang", "python"]);
    assert_eq!(again.status.code(), Some(64));
    assert!(text(&again).contains("already exists"), "{}", text(&again));
}
