//! The `scalegate` binary as a user runs it: output, errors and exit codes.

use crate::support::*;
use std::process::{Command, Output};

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
    assert!(
        stderr(&out).contains("does not implement a scalegate:policy world this host serves (0.1.0, 0.2.0)"),
        "{}",
        stderr(&out)
    );
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
    assert_eq!(report["world"], "scalegate:policy/policy@0.2.0");
    assert_eq!(report["contract"], "0.2.0");
    assert_eq!(report["exports"], serde_json::json!(["metadata", "evaluate"]));
    assert_eq!(report["params_schema"]["required"], serde_json::json!(["metric", "target"]));
}

type Lines = std::io::Lines<std::io::BufReader<std::process::ChildStdout>>;

/// `scalegate demo` on a free port with `extra` flags: the process, its
/// stdout lines after the admin address, and that address.
fn demo(extra: &[&str]) -> (std::process::Child, Lines, String) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_scalegate"))
        .args(["demo", "--admin-listen", "127.0.0.1:0"])
        .args(extra)
        .env("SCALEGATE_CACHE_DIR", shared_cache())
        .current_dir(workspace())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("demo printed its admin address").unwrap();
        if let Some(rest) = line.strip_prefix("admin API: http://") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    (child, lines, addr)
}

#[test]
fn demo_runs_the_daemon_serves_the_admin_api_and_stops_on_sigterm() {
    use std::io::{Read, Write};
    let (mut child, mut lines, addr) = demo(&["--duration", "60s"]);
    // wait for a decision line of each workload
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 2 {
        let line = lines.next().expect("decision lines").unwrap();
        for workload in ["shop/web", "rtc/socket"] {
            if line.contains(workload) {
                seen.insert(workload);
            }
        }
    }
    let get = |path: &str| {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    assert!(get("/readyz").starts_with("HTTP/1.1 200"));
    let decisions = get("/v1/workloads/rtc/socket/decisions?limit=1");
    assert!(decisions.contains("target-tracking@1.0.0"), "{decisions}");
    let refused = {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            stream,
            "POST /v1/policies/hpa/rollback HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    assert!(refused.starts_with("HTTP/1.1 403"), "no token configured: {refused}");

    let started = std::time::Instant::now();
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "shutdown took {:?}", started.elapsed());
    assert_eq!(rest.last().map(String::as_str), Some("stopped"), "{rest:?}");
}

/// Every bundled policy passes the cases it ships (the three target-tracking
/// twins share theirs), through `scalegate test`.
#[test]
fn bundled_policies_pass_their_cases() {
    for (file, cases) in [
        ("fixed.wasm", "plugins/fixed/cases"),
        ("hpa.wasm", "plugins/hpa/cases"),
        ("target_tracking.wasm", "plugins/target-tracking/cases"),
        ("target_tracking_py.wasm", "plugins/target-tracking/cases"),
        ("target_tracking_js.wasm", "plugins/target-tracking/cases"),
        ("directive.wasm", "plugins/directive/cases"),
        ("forecast.wasm", "plugins/forecast/cases"),
        ("thresholds.wasm", "plugins/thresholds/cases"),
        ("vpa.wasm", "plugins/vpa/cases"),
        ("queue.wasm", "plugins/queue/cases"),
        ("kpa.wasm", "plugins/kpa/cases"),
        ("urgency.wasm", "plugins/urgency/cases"),
    ] {
        let out = scalegate(&["test", policy(file).to_str().unwrap(), "--cases", cases]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{file}:\n{stdout}{}", stderr(&out));
        assert!(stdout.contains(" 0 failed") && !stdout.contains("FAIL"), "{file}:\n{stdout}");
    }
}

#[test]
fn a_failing_case_exits_1_and_says_what_differed() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = workspace().join("examples/snapshots/target-tracking-scale-in.json");
    let case = |expect: &str| format!("snapshot: {}\nexpect:\n{expect}", snapshot.display());
    std::fs::write(dir.path().join("a-right.yaml"), case("  replicas: 3\n")).unwrap();
    std::fs::write(
        dir.path().join("b-wrong.yaml"),
        case("  replicas: 9\n  reason_contains: nonsense\n  deletion_costs: [{pod: socket-0, cost: 1}]\n  metrics: {replicas-needed: 7}\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("c-expects-an-error.yaml"), case("  error: invalid_params\n")).unwrap();
    std::fs::write(dir.path().join("d-unreadable.yaml"), "snapshot: nowhere.json\nexpect: {replicas: 1}\n").unwrap();
    std::fs::write(dir.path().join("e-unknown-field.yaml"), case("  replica: 3\n")).unwrap();
    let out =
        scalegate(&["test", policy("target_tracking.wasm").to_str().unwrap(), "--cases", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "a-right",
        "replicas: expected replicas 9, got replicas 3",
        "reason: expected it to contain \"nonsense\"",
        "deletion_costs: expected [(\"socket-0\", 1)]",
        "metric replicas-needed: expected 7, got 2.55",
        "error: expected invalid_params, got a decision",
        "snapshot",
        "unknown field `replica`",
        "5 cases: 1 passed, 4 failed",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    assert!(stderr(&out).contains("4 of 5 cases failed"), "{}", stderr(&out));
    // no case files: a usage error
    let empty = tempfile::tempdir().unwrap();
    let out = scalegate(&["test", policy("fixed.wasm").to_str().unwrap(), "--cases", empty.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
}

/// Captures from the running demo, replayed: through the same policy and
/// params every captured decision comes back; through changed params
/// (those of the demo's shadow) exactly the evaluations where the live
/// shadow disagreed are listed.
#[test]
fn a_capture_from_the_demo_replays_and_shows_exactly_the_differing_decisions() {
    use std::io::{Read, Write};
    let (mut child, mut lines, addr) = demo(&["--duration", "90s", "--day", "20s"]);
    // eight decisions of rtc/socket (one every 2 s)
    let mut socket_lines = 0;
    while socket_lines < 8 {
        if lines.next().expect("decision lines").unwrap().contains("rtc/socket") {
            socket_lines += 1;
        }
    }
    let get = |path: &str| -> serde_json::Value {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {response}");
        serde_json::from_str(body).unwrap()
    };
    let captured = get("/v1/workloads/rtc/socket/snapshots?limit=8");
    let decisions = get("/v1/workloads/rtc/socket/decisions?limit=16");
    let _ = child.kill();
    let _ = child.wait();

    let snapshots = captured["snapshots"].as_array().unwrap();
    assert_eq!(snapshots.len(), 8, "{captured}");
    let times: Vec<u64> = snapshots.iter().map(|s| s["at_ms"].as_u64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "oldest first: {times:?}");
    let first = &snapshots[0];
    assert_eq!(first["policies"][0]["name"], "target-tracking");
    assert_eq!(first["snapshot"]["params"], serde_json::json!({"metric": "rps", "target": 80}));
    assert_eq!(first["snapshot"]["workload"]["name"], "socket");
    // each capture is an evaluation the log has, with the same count
    let records = decisions["decisions"].as_array().unwrap();
    let record_at = |at: u64| records.iter().find(|r| r["at_ms"].as_u64() == Some(at)).expect("a record per capture");
    for snapshot in snapshots {
        let record = record_at(snapshot["at_ms"].as_u64().unwrap());
        assert_eq!(snapshot["policies"][0]["desired"], record["policies"][0]["desired"]);
        assert_eq!(snapshot["replicas"], record["guardrails"]["replicas"]);
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("socket.json");
    std::fs::write(&file, captured.to_string()).unwrap();
    let tracking = policy("target_tracking.wasm");
    let replay = |extra: &[&str]| {
        let mut args = vec!["replay", "--policy", tracking.to_str().unwrap(), "--snapshots", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        scalegate(&args)
    };

    // the same policy and params: every decision comes back
    let same = replay(&[]);
    let text = String::from_utf8_lossy(&same.stdout);
    assert!(same.status.success(), "{text}{}", stderr(&same));
    assert!(text.contains("0 of 8 decision(s) differ"), "{text}");

    // the shadow's params: the evaluations where the live shadow differed, no others
    let expected: Vec<String> = snapshots
        .iter()
        .map(|s| record_at(s["at_ms"].as_u64().unwrap()))
        .filter(|r| r["shadow"]["desired"] != r["policies"][0]["desired"])
        .map(|r| {
            let at = r["at_ms"].as_u64().unwrap();
            let secs = at / 1000;
            format!("{:02}:{:02}:{:02}.{:03}", (secs / 3600) % 24, (secs / 60) % 60, secs % 60, at % 1000)
        })
        .collect();
    let changed = replay(&["--params", r#"{"metric": "rps", "target": 60}"#]);
    let text = String::from_utf8_lossy(&changed.stdout);
    let listed: Vec<String> = text
        .lines()
        .filter(|l| l.as_bytes().first().is_some_and(u8::is_ascii_digit) && l.contains(" | "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert_eq!(listed, expected, "{text}");
    assert!(text.contains(&format!("{} of 8 decision(s) differ", expected.len())), "{text}");
    assert_eq!(changed.status.code(), Some(if expected.is_empty() { 0 } else { 1 }), "{text}");

    // a binding that is not there, and input that is not a capture, are named
    let missing = replay(&["--binding", "nope"]);
    assert_eq!(missing.status.code(), Some(64));
    assert!(stderr(&missing).contains("no binding \"nope\" in the captures (bindings: target-tracking)"));
    std::fs::write(&file, r#"{"decisions": []}"#).unwrap();
    let wrong = replay(&[]);
    assert_eq!(wrong.status.code(), Some(64));
    assert!(stderr(&wrong).contains("not captured snapshots"), "{}", stderr(&wrong));
}
