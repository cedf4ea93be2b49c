//! The `scalegate` binary as a user runs it: output, errors and exit codes.

mod support;
use std::process::{Command, Output};
use support::*;

fn scalegate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scalegate"))
        .args(args)
        .env("SCALEGATE_CACHE_DIR", shared_cache())
        .current_dir(workspace())
        .output()
        .expect("run scalegate")
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", String::from_utf8_lossy(&output.stdout)))
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn eval_prints_the_decision() {
    let hpa = policy("hpa.wasm");
    let out =
        scalegate(&["eval", "--policy", hpa.to_str().unwrap(), "--snapshot", "examples/snapshots/hpa-scale-up.json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["decision"]["desired_replicas"], 5);
    assert_eq!(report["policy"]["name"], "hpa");
    assert!(report["policy"]["digest"].as_str().unwrap().starts_with("sha256:"));
}

#[test]
fn eval_reads_the_snapshot_from_stdin() {
    use std::io::Write;
    let tracking = policy("target_tracking.wasm");
    let mut child = Command::new(env!("CARGO_BIN_EXE_scalegate"))
        .args(["eval", "--policy", tracking.to_str().unwrap(), "--snapshot", "-"])
        .env("SCALEGATE_CACHE_DIR", shared_cache())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let snapshot = std::fs::read(workspace().join("examples/snapshots/target-tracking-scale-in.json")).unwrap();
    child.stdin.take().unwrap().write_all(&snapshot).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(json(&out)["decision"]["desired_replicas"], 3);
}

#[test]
fn eval_of_a_faulting_policy_reports_the_kind_and_exits_1() {
    let looping = policy("testdata/infinite_loop.wasm");
    let out = scalegate(&[
        "eval",
        "--policy",
        looping.to_str().unwrap(),
        "--snapshot",
        "examples/snapshots/hpa-scale-up.json",
        "--deadline-ms",
        "30",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["error"]["kind"], "timeout");
    assert!(stderr(&out).contains("infinite-loop@0.1.0 faulted"), "{}", stderr(&out));
}

#[test]
fn bad_snapshot_names_the_field_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"now_ms": 1, "workload": {"name": "x", "current_replicas": "three", "max_replicas": 3}}"#)
        .unwrap();
    let hpa = policy("hpa.wasm");
    let out = scalegate(&["eval", "--policy", hpa.to_str().unwrap(), "--snapshot", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    let message = stderr(&out);
    assert!(message.contains("invalid snapshot") && message.contains("\"three\""), "{message}");
}

#[test]
fn unusable_policy_file_exits_65() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"not a component at all").unwrap();
    let out = scalegate(&["policy", "inspect", garbage.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65));
    assert!(stderr(&out).contains("magic number"), "{}", stderr(&out));
    let wrong = policy("testdata/wrong_world.wasm");
    let out = scalegate(&["policy", "inspect", wrong.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(65));
    assert!(stderr(&out).contains("does not implement scalegate:policy/policy@0.1.0"), "{}", stderr(&out));
}

#[test]
fn missing_policy_file_exits_64() {
    let out = scalegate(&["policy", "inspect", "/nonexistent.wasm"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("/nonexistent.wasm"));
}

#[test]
fn inspect_shows_identity_and_schema() {
    let tracking = policy("target_tracking_js.wasm");
    let out = scalegate(&["policy", "inspect", tracking.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["name"], "target-tracking-js");
    assert_eq!(report["version"], "1.0.0");
    assert_eq!(report["world"], "scalegate:policy/policy@0.1.0");
    assert_eq!(report["exports"], serde_json::json!(["metadata", "evaluate"]));
    assert_eq!(report["params_schema"]["required"], serde_json::json!(["metric", "target"]));
}

#[test]
fn demo_replays_a_day_through_hpa() {
    let out = scalegate(&["demo", "--steps", "24"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("hpa"), "{text}");
    let scale_line = text.lines().last().unwrap();
    let events: u32 = scale_line.split_whitespace().next().unwrap().parse().unwrap();
    assert!(events >= 2, "the demo day should scale: {scale_line}");
}
