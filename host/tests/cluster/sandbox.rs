//! Hostile policies against the running daemon (`scalegate run` on the fake
//! API server): a version that waits on time faults and the workload rolls
//! back while the others keep deciding; compile bombs from the directory and
//! the admin API are refused within the budget while health, pins and
//! decisions go on and the daemon stays small; a flood of on-demand
//! evaluations of a spinning policy leaves the loop its slots; a policy
//! declining with 32 MiB messages costs a bounded amount; shutdown with
//! calls in flight is clean.

use crate::support::daemon::{Daemon, workdir};
use crate::support::rig::eventually;
use crate::support::*;
use fake_apiserver::FakeApiServer;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "hostile-test-token";

const CONFIG: &str = "policies: {directory: POLICIES}
workloads:
  - target: {namespace: shop, name: web}
    interval: 1s
    max_replicas: 20
    policies: [{policy: fixed, params: {replicas: 5}}]
  - target: {namespace: shop, name: api}
    interval: 1s
    max_replicas: 20
    policies: [{policy: hostile}]
  - target: {namespace: shop, name: chatty}
    interval: 1s
    max_replicas: 20
    policies: [{policy: hostile@0.1.0, params: {attack: decline-32mib}}]   # pinned: keeps declining after 0.2.0 arrives
";

async fn fake() -> FakeApiServer {
    let fake = FakeApiServer::start().await;
    for name in ["web", "api", "chatty"] {
        fake.add_deployment("shop", name, 2);
    }
    fake
}

fn setup(fake: &FakeApiServer) -> tempfile::TempDir {
    let policies = [("fixed.wasm", "fixed.wasm"), ("hostile.wasm", "testdata/hostile.wasm")];
    let dir = workdir(&fake.kubeconfig(), CONFIG, &policies);
    std::fs::write(dir.path().join("token"), TOKEN).unwrap();
    dir
}

fn start(dir: &std::path::Path, extra: &[&str]) -> Daemon {
    let token = dir.join("token");
    let mut args = vec!["--admin-token-file", token.to_str().unwrap(), "--decision-state", "memory"];
    args.extend_from_slice(extra);
    Daemon::start(dir, &args)
}

fn decisions(daemon: &Daemon, workload: &str, limit: usize) -> Vec<serde_json::Value> {
    let (status, body) =
        daemon.request("GET", &format!("/v1/workloads/shop/{workload}/decisions?limit={limit}"), None, b"");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["decisions"].as_array().unwrap().clone()
}

/// When the workload's newest decision was made.
fn last_decided(daemon: &Daemon, workload: &str) -> u64 {
    decisions(daemon, workload, 1).first().and_then(|d| d["at_ms"].as_u64()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_waits_on_time_faults_and_its_workload_rolls_back() {
    let fake = fake().await;
    let dir = setup(&fake);
    let daemon = start(dir.path(), &[]);
    eventually("web scaled", Duration::from_secs(10), || fake.replicas("shop", "web") == Some(5)).await;
    // the scale is one grep-able line at info
    eventually("the decision line", Duration::from_secs(5), || {
        let log = daemon.stderr.lock().unwrap();
        log.lines().any(|l| l.contains("shop/web") && l.contains(" 2 → 5 ") && l.contains("fixed@0.1.0 wants 5"))
    })
    .await;
    eventually("api decided by 0.1.0", Duration::from_secs(10), || {
        decisions(&daemon, "api", 1).first().is_some_and(|d| d["policies"][0]["policy"] == "hostile@0.1.0")
    })
    .await;

    // 0.2.0 passes the smoke evaluation, then sleeps in every evaluation
    std::fs::write(dir.path().join("policies/hostile-2.wasm"), policy_bytes("testdata/hostile_v2_sleeps.wasm"))
        .unwrap();
    let web_before = last_decided(&daemon, "web");
    eventually("api rolled back to 0.1.0", Duration::from_secs(15), || {
        decisions(&daemon, "api", 1)
            .first()
            .is_some_and(|d| d["policies"][0]["rolled_back"] == true && d["policies"][0]["policy"] == "hostile@0.1.0")
    })
    .await;
    let history = decisions(&daemon, "api", 16);
    let faults: Vec<&serde_json::Value> =
        history.iter().filter(|d| d["policies"][0]["policy"] == "hostile@0.2.0").collect();
    assert!(faults.len() >= 3, "three faults before the rollback: {history:#?}");
    for fault in faults {
        assert_eq!(fault["policies"][0]["error"], "timeout", "{fault}");
        assert!(fault["policies"][0]["duration_us"].as_u64().unwrap() < 200_000, "{fault}");
    }
    assert!(last_decided(&daemon, "web") > web_before, "web kept deciding meanwhile");
    let metrics = daemon.get("/metrics");
    assert!(metrics.contains("scalegate_policy_faults_total{kind=\"timeout\"}"), "{metrics}");
    // the chatty policy's 32 MiB declines are refused, and the records stay small
    let (status, body) = daemon.request("GET", "/v1/workloads/shop/chatty/decisions?limit=1000", None, b"");
    assert_eq!(status, 200);
    assert!(body.contains("the policy-error message is 33554432 bytes, the limit is 16384"), "{body}");
    assert!(body.len() < 64 << 10, "the whole log of chatty is {} bytes", body.len());
    let rss = daemon.rss_mib();
    assert!(rss < 200.0, "after seconds of 32 MiB declines the daemon holds {rss:.0} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compile_bombs_are_refused_within_the_budget_and_block_nothing() {
    let fake = fake().await;
    let dir = setup(&fake);
    let daemon = Arc::new(start(dir.path(), &["--compile-timeout", "4s"]));
    eventually("web scaled", Duration::from_secs(10), || fake.replicas("shop", "web") == Some(5)).await;

    std::fs::write(dir.path().join("policies/bomb.wasm"), hostile::compile_bomb(10_000, 2_000)).unwrap();
    let started = Instant::now();
    let uploads = std::thread::spawn({
        let daemon = daemon.clone();
        move || {
            let bomb = daemon.request("PUT", "/v1/policies/bomb", Some(TOKEN), &hostile::compile_bomb(10_001, 2_000));
            let memories = hostile::with_side_memories(&policy_bytes("testdata/hostile.wasm"), 3, 200);
            let fat = daemon.request("PUT", "/v1/policies/hostile", Some(TOKEN), &memories);
            (bomb, fat)
        }
    });
    let (mut slowest, mut peak_rss, mut web_decisions) = (Duration::ZERO, daemon.rss_mib(), Vec::new());
    let rss_before = peak_rss;
    while !uploads.is_finished() {
        let asked = Instant::now();
        assert_eq!(daemon.request("GET", "/healthz", None, b"").0, 200);
        let (status, body) =
            daemon.request("POST", "/v1/policies/fixed/activate", Some(TOKEN), br#"{"version": "0.1.0"}"#);
        assert_eq!(status, 200, "{body}");
        slowest = slowest.max(asked.elapsed());
        peak_rss = peak_rss.max(daemon.rss_mib());
        web_decisions.push(last_decided(&daemon, "web"));
        assert!(started.elapsed() < Duration::from_secs(30), "the uploads were not answered");
        std::thread::sleep(Duration::from_millis(200));
    }
    let ((bomb_status, bomb), (fat_status, fat)) = uploads.join().unwrap();
    assert_eq!(bomb_status, 422, "{bomb}");
    assert!(bomb.contains("compile timeout") || bomb.contains("address space"), "{bomb}");
    assert_eq!(fat_status, 422, "{fat}");
    assert!(fat.contains("memory limit"), "{fat}");
    assert!(slowest < Duration::from_millis(500), "health and activate answered within {slowest:?}");
    eprintln!(
        "daemon RSS {rss_before:.0} MiB before, {peak_rss:.0} MiB at most while bombs compiled; slowest answer {slowest:?}"
    );
    // a bomb compiled in the daemon's own address space takes ~1.1 GB
    // (docs/BENCHMARKS.md); the daemon's peak here is 60–210 MiB depending
    // on the compile cache and the machine's load
    assert!(peak_rss < 400.0, "the daemon stayed at {peak_rss:.0} MiB while bombs compiled");
    web_decisions.dedup();
    assert!(web_decisions.len() >= 4, "web kept deciding: {web_decisions:?}");
    eventually("the directory's bomb reported", Duration::from_secs(15), || {
        daemon.get("/v1/policies").contains("\"kind\":\"over_budget\"")
    })
    .await;
}

/// `calls` concurrent `POST /v1/evaluate`, each on a thread of its own.
fn flood(admin: &str, body: &Arc<String>, calls: usize) -> Vec<std::thread::JoinHandle<(u16, String)>> {
    (0..calls)
        .map(|_| {
            let (client, body) = (Daemon::client(admin), body.clone());
            std::thread::spawn(move || client.request("POST", "/v1/evaluate", Some(TOKEN), body.as_bytes()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_evaluations_leaves_the_loop_its_slots_and_shutdown_is_clean() {
    let fake = fake().await;
    let dir = setup(&fake);
    let mut daemon = start(dir.path(), &[]);
    eventually("web scaled", Duration::from_secs(10), || fake.replicas("shop", "web") == Some(5)).await;
    let snapshot = std::fs::read_to_string(workspace().join("examples/snapshots/hpa-scale-up.json")).unwrap();
    let mut snapshot: serde_json::Value = serde_json::from_str(&snapshot).unwrap();
    snapshot["params"] = serde_json::json!({"attack": "spin"});
    let body = Arc::new(serde_json::json!({"policy": "hostile", "snapshot": snapshot}).to_string());
    let admin = daemon.admin.clone();

    // waves of 200 concurrent calls for three seconds, while web is watched
    let started = Instant::now();
    let waves = std::thread::spawn({
        let (admin, body) = (admin.clone(), body.clone());
        move || {
            let mut answers: Vec<(u16, String)> = Vec::new();
            while started.elapsed() < Duration::from_secs(3) {
                answers.extend(flood(&admin, &body, 200).into_iter().map(|t| t.join().unwrap()));
            }
            answers
        }
    });
    let mut web = Vec::new();
    while !waves.is_finished() {
        web.push(last_decided(&daemon, "web"));
        std::thread::sleep(Duration::from_millis(200));
    }
    let answers = waves.join().unwrap();
    let timed_out = answers.iter().filter(|(s, b)| *s == 200 && b.contains("\"kind\":\"timeout\"")).count();
    let busy = answers.iter().filter(|(s, _)| *s == 503).count();
    assert_eq!(timed_out + busy, answers.len(), "{:?}", answers.iter().find(|(s, _)| *s != 200 && *s != 503));
    eprintln!(
        "{} calls: {timed_out} ran into their deadline, {busy} refused as busy, in {:?}",
        answers.len(),
        started.elapsed()
    );
    assert!(timed_out >= 10 && busy >= answers.len() / 2, "{timed_out} ran, {busy} refused as busy");
    // the loop kept its slots: web decided every second, and never failed to instantiate
    web.dedup();
    assert!(web.len() >= 3, "web's decisions during the flood: {web:?}");
    let recent = decisions(&daemon, "web", 16);
    assert!(recent.iter().all(|d| d["policies"][0]["error"].is_null()), "{recent:#?}");

    // SIGTERM with evaluations in flight: a clean exit
    let in_flight = flood(&admin, &body, 8);
    std::thread::sleep(Duration::from_millis(50));
    daemon.signal("-TERM");
    let status = daemon.wait(Duration::from_secs(15));
    for call in in_flight {
        let _ = call.join();
    }
    let log = daemon.stderr.lock().unwrap().clone();
    assert!(status.success(), "{status:?}: {log}");
    assert!(!log.contains("panicked"), "{log}");
}
