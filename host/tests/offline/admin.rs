//! The admin API over loopback HTTP: every route, authentication, bad
//! input, and that nothing running is disturbed by a refused request.

use crate::support::*;
use scalegate::admin::{AdminState, serve};
use scalegate::clock::TokioClock;
use scalegate::config::Config;
use scalegate::decide::{Decider, DeciderConfig};
use scalegate::policy_store::{PolicyStore, StoreConfig};
use scalegate::sim::{SimCluster, SimWorkload};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "s3cret-token";

struct Api {
    addr: SocketAddr,
    decider: Arc<Decider<SimCluster<TokioClock>>>,
    cluster: Arc<SimCluster<TokioClock>>,
    _dir: tempfile::TempDir,
}

async fn start(token: Option<&str>, max_upload_bytes: usize) -> Api {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fixed.wasm"), policy_bytes("fixed.wasm")).unwrap();
    std::fs::write(dir.path().join("hpa.wasm"), policy_bytes("hpa.wasm")).unwrap();
    let path = dir.path().to_path_buf();
    let store =
        tokio::task::spawn_blocking(move || PolicyStore::open(Arc::new(runtime()), StoreConfig::new(path)).unwrap())
            .await
            .unwrap();
    let clock = Arc::new(TokioClock::starting_at(1_700_000_000_000));
    let cluster = Arc::new(SimCluster::new(clock.clone()));
    cluster.add("shop", SimWorkload::new("web", 2, 1, 20), Box::new(|_| 300.0));
    let config = Config::parse(
        "workloads:\n  - target: {namespace: shop, name: web}\n    max_replicas: 20\n    policies: [{policy: fixed, params: {replicas: 3}}]\n",
    )
    .unwrap();
    let metrics = store.metrics();
    let decider = Arc::new(Decider::new(
        cluster.clone(),
        clock,
        Arc::new(store.clone()),
        config.workloads,
        DeciderConfig { metrics: metrics.clone(), ..DeciderConfig::default() },
    ));
    let state = Arc::new(AdminState {
        store,
        workloads: decider.clone(),
        metrics,
        token: token.map(str::to_string),
        ready: Arc::new(AtomicBool::new(true)),
        log_level: Some(Arc::new(|filter: &str| {
            tracing_subscriber::EnvFilter::try_new(filter).map(|_| ()).map_err(|e| e.to_string())
        })),
        max_upload_bytes,
        inputs: None,
        clock: Arc::new(TokioClock::starting_at(1_700_000_000_000)),
        leadership: Arc::new(scalegate::leadership::Leadership::always()),
        pins: None,
        push_timeout: std::time::Duration::from_secs(10),
        config: None,
        calls: scalegate::policy::CallPool::new(4),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, state, tokio_util::sync::CancellationToken::new()));
    Api { addr, decider, cluster, _dir: dir }
}

/// One HTTP/1.1 request; returns the status and the body as text.
async fn call(api: &Api, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(api.addr).await.unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: scalegate\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // the server may answer (413) before reading a large body
    let _ = stream.write_all(body).await;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_metrics_and_listings() {
    let api = start(Some(TOKEN), 64 << 20).await;
    assert_eq!(call(&api, "GET", "/healthz", None, b"").await, (200, "ok\n".into()));
    assert_eq!(call(&api, "GET", "/readyz", None, b"").await.0, 200);
    let (status, body) = call(&api, "GET", "/v1/policies", None, b"").await;
    assert_eq!(status, 200);
    let names: Vec<String> =
        json(&body)["policies"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, vec!["fixed", "hpa"]);

    api.decider.evaluate("shop/web").await.unwrap();
    let (status, body) = call(&api, "GET", "/v1/workloads/shop/web/decisions?limit=5", None, b"").await;
    assert_eq!(status, 200, "{body}");
    let decisions = json(&body)["decisions"].as_array().unwrap().clone();
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0]["policies"][0]["desired"], 3);
    assert_eq!(decisions[0]["applied"], true);
    let (_, body) = call(&api, "GET", "/v1/workloads", None, b"").await;
    assert_eq!(json(&body)["workloads"][0]["name"], "shop/web");
    assert_eq!(call(&api, "GET", "/v1/workloads/shop/nothing/decisions", None, b"").await.0, 404);

    let (status, body) = call(&api, "GET", "/metrics", None, b"").await;
    assert_eq!(status, 200);
    assert!(body.contains("scalegate_decisions_total{kind=\"scaled\"} 1"), "{body}");
    assert!(body.contains("scalegate_policy_evaluation_seconds_count 1"), "{body}");

    assert_eq!(call(&api, "GET", "/nowhere", None, b"").await.0, 404);
    assert_eq!(call(&api, "DELETE", "/v1/policies", Some(TOKEN), b"").await.0, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutations_need_the_token() {
    let api = start(Some(TOKEN), 64 << 20).await;
    let v2 = policy_bytes("testdata/fixed_v2.wasm");
    let (status, body) = call(&api, "PUT", "/v1/policies/fixed", None, &v2).await;
    assert_eq!((status, json(&body)["error"].as_str().unwrap()), (401, "missing or invalid bearer token"));
    assert_eq!(call(&api, "PUT", "/v1/policies/fixed", Some("wrong"), &v2).await.0, 401);
    assert_eq!(call(&api, "POST", "/v1/policies/fixed/rollback", None, b"").await.0, 401);
    assert_eq!(call(&api, "PUT", "/log-level", None, b"debug").await.0, 401);
    // nothing changed
    let (_, body) = call(&api, "GET", "/v1/policies", None, b"").await;
    assert_eq!(json(&body)["policies"].as_array().unwrap().len(), 2);

    let closed = start(None, 64 << 20).await;
    let (status, body) = call(&closed, "PUT", "/v1/policies/fixed", Some(TOKEN), &v2).await;
    assert_eq!(status, 403);
    assert!(body.contains("admin mutations are disabled"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_activate_and_rollback() {
    let api = start(Some(TOKEN), 1 << 20).await;
    // bad uploads, each refused with its reason; the running policy is untouched
    let (status, body) = call(&api, "PUT", "/v1/policies/fixed", Some(TOKEN), b"plain text").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not a WebAssembly component"));
    let mut huge = b"\0asm\x0d\0\x01\0".to_vec();
    huge.resize(2 << 20, 0);
    let (status, body) = call(&api, "PUT", "/v1/policies/fixed", Some(TOKEN), &huge).await;
    assert_eq!(status, 413, "{body}");
    let (status, body) =
        call(&api, "PUT", "/v1/policies/fixed", Some(TOKEN), &policy_bytes("target_tracking.wasm")).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("names it \\\"target-tracking\\\""), "{body}");
    let (status, body) =
        call(&api, "PUT", "/v1/policies/loop", Some(TOKEN), &policy_bytes("testdata/infinite_loop.wasm")).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("deadline"), "{body}");

    // a good one
    let (status, body) =
        call(&api, "PUT", "/v1/policies/fixed", Some(TOKEN), &policy_bytes("testdata/fixed_v2.wasm")).await;
    assert_eq!(status, 201, "{body}");
    let created = json(&body);
    assert_eq!((created["version"].as_str(), created["active"].as_bool()), (Some("0.2.0"), Some(true)));
    assert!(api._dir.path().join("fixed-0.2.0.wasm").is_file(), "persisted into the store directory");

    let (status, body) = call(&api, "POST", "/v1/policies/fixed/rollback", Some(TOKEN), b"").await;
    assert_eq!((status, json(&body)["active"].as_str()), (200, Some("fixed@0.1.0")));
    let (status, body) = call(&api, "POST", "/v1/policies/fixed/rollback", Some(TOKEN), b"").await;
    assert_eq!(status, 409, "{body}");
    let (status, body) =
        call(&api, "POST", "/v1/policies/fixed/activate", Some(TOKEN), br#"{"version": "0.2.0"}"#).await;
    assert_eq!((status, json(&body)["active"].as_str()), (200, Some("fixed@0.2.0")));
    assert_eq!(call(&api, "POST", "/v1/policies/fixed/activate", Some(TOKEN), br#"{"version": "7.0.0"}"#).await.0, 404);
    assert_eq!(call(&api, "POST", "/v1/policies/fixed/activate", Some(TOKEN), br#"{"tag": "x"}"#).await.0, 400);
    // the workload keeps working throughout
    assert!(api.decider.evaluate("shop/web").await.unwrap().policies[0].error.is_none());
    let (_, metrics) = call(&api, "GET", "/metrics", None, b"").await;
    // fixed and hpa at start, fixed 0.2.0 uploaded; the wrong name and the
    // loop refused by the store (not-Wasm and oversized never reach it)
    assert!(metrics.contains("scalegate_policy_reloads_total{kind=\"loaded\"} 3"), "{metrics}");
    assert!(metrics.contains("scalegate_policy_reloads_total{kind=\"rejected\"} 2"), "{metrics}");
    assert_eq!(api.cluster.replicas("shop", "web"), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluate_and_log_level() {
    let api = start(Some(TOKEN), 64 << 20).await;
    let snapshot = std::fs::read_to_string(workspace().join("examples/snapshots/hpa-scale-up.json")).unwrap();
    let body = format!(r#"{{"policy": "hpa", "snapshot": {snapshot}}}"#);
    let (status, reply) = call(&api, "POST", "/v1/evaluate", None, body.as_bytes()).await;
    assert_eq!(status, 401, "evaluating spends the daemon's CPU: it takes the token: {reply}");
    let (status, reply) = call(&api, "POST", "/v1/evaluate", Some(TOKEN), body.as_bytes()).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(json(&reply)["decision"]["desired_replicas"], 5);
    assert!(api.cluster.scale_calls().is_empty(), "evaluate never actuates");
    let (status, reply) =
        call(&api, "POST", "/v1/evaluate", Some(TOKEN), br#"{"policy": "nothing", "snapshot": {}}"#).await;
    assert_eq!(status, 400, "the snapshot is checked first: {reply}");
    let missing = format!(r#"{{"policy": "nothing", "snapshot": {snapshot}}}"#);
    assert_eq!(call(&api, "POST", "/v1/evaluate", Some(TOKEN), missing.as_bytes()).await.0, 404);

    assert_eq!(call(&api, "PUT", "/log-level", Some(TOKEN), b"info,scalegate=debug").await.0, 200);
    let (status, reply) = call(&api, "PUT", "/log-level", Some(TOKEN), b"[[[").await;
    assert_eq!(status, 400, "{reply}");
}
