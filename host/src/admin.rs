//! The admin HTTP API (hyper, HTTP/1.1). JSON in and out; errors are
//! `{"error": "..."}` with a status that says what kind of problem it is.
//!
//! | method | path | auth | what |
//! |---|---|---|---|
//! | GET | `/healthz` | – | the process is up |
//! | GET | `/readyz` | – | 200 once the caches are filled and, when leading, the stored decision state is taken over; else 503 saying which |
//! | GET | `/metrics` | – | Prometheus text: decisions, clamps, faults, evaluation latency, reloads, leader, signal sources |
//! | GET | `/v1/config` | – | the configuration running (file, generation, sha256, when applied) and the last refused change (kind, field path, message) |
//! | GET | `/v1/policies` | – | every loaded version (name, version, digest, source, active), rejected files, and admissions running or waiting |
//! | POST | `/v1/policies` | bearer | pull a component from an OCI registry: `{"reference": "oci://REGISTRY/REPO:TAG"}` (or `@sha256:…`); verified, admitted like an upload, loaded (not written to the directory, not followed); 422 naming what failed |
//! | PUT | `/v1/policies/{name}` | bearer | upload a component (body: the `.wasm`, ≤ `max_upload_bytes`); admitted in the queue (compiled in a budgeted child, `metadata()`, smoke evaluation), written atomically to the store directory, loaded; 503 + `Retry-After` when the admission queue is full |
//! | POST | `/v1/policies/{name}/activate` | bearer, leader | pin a version: `{"version": "1.2.0"}` or `{"digest": "<sha256>"}`; `{}` unpins; stored for a successor (`stored`) |
//! | POST | `/v1/policies/{name}/rollback` | bearer, leader | pin the version below the active one; stored likewise |
//! | GET | `/v1/workloads` | – | workloads and their latest decision |
//! | GET | `/v1/workloads/{ns}/{name}/decisions?limit=N` | – | recent decisions, newest first (default 20; each workload keeps its last 16, fewer — at least 4 — in fleets above 6,250 workloads: 100,000 records in all) |
//! | GET | `/v1/workloads/{ns}/{name}/snapshots?limit=N` | – | the last N evaluations captured with their exact snapshots, oldest first (default 8): each `{at_ms, workload, snapshot, policies: [{name, policy, params, state, desired, reason, error}], replicas, applied}`, `snapshot` as `scalegate eval` reads it (the first binding's params and state); what `scalegate replay` re-runs. Each workload keeps its last `--capture` (8), within 20,000 in all and 1 MiB per workload |
//! | GET | `/v1/workloads/{ns}/{name}/inputs` | – | each declared metric: source, value, age, freshness, last error; queued signals |
//! | POST | `/v1/evaluate` | bearer | `{"policy": "hpa@0.1.0", "snapshot": {…}}` → the decision, nothing actuated; runs in the loop's call pool within the on-demand share (half the slots), 503 + `Retry-After` when too many wait |
//! | POST | `/v1/signals` | bearer, leader | push inputs: `{"workload": "ns/name", "metrics": [{"name", "value", "timestamp_ms"?, "pods"?}], "signals": [{"kind", "action"?, "target_replicas"?, "urgency"?, "reason"?, "attributes"?}]}`; metrics must be declared with `push: {}`; all or nothing. Metrics only: 202. Signals trigger an evaluation and the answer waits for it: 200 with `decision` (`replicas`, `applied`) once it is written, 503 + `Retry-After` when it was not acted on (send it again) |
//! | PUT | `/log-level` | bearer | body: a tracing filter such as `info,scalegate=debug` |
//!
//! Mutations, and `POST /v1/evaluate` (it spends the daemon's CPU on a
//! caller's input), need `Authorization: Bearer <token>`; without a
//! configured token they are refused (403), so a daemon never runs with an
//! open admin API by accident. Those marked "leader" change decisions and are taken
//! only by the replica that leads: a standby answers 503 with
//! `Retry-After: 1` and the leader's name (`deploy/` routes them to the
//! leader through the `scalegate-leader` Service).

use crate::clock::Clock;
use crate::decide::WorkloadView;
use crate::leadership::Leadership;
use crate::policy::{CallPool, Policy, PolicyRef};
use crate::policy_store::{InstallError, PolicyStore, StoreError};
use crate::signals::{Handled, InputError, Receipt, SignalHub};
use crate::snapshot::Snapshot;
use crate::snapshot::{Metric, Signal};
use crate::telemetry::Metrics;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Changes the log filter at runtime.
pub type LogLevelSetter = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Stores the policy pins (policy name → digest) where a successor finds them.
pub type PinSaver = Arc<
    dyn Fn(std::collections::BTreeMap<String, String>) -> futures::future::BoxFuture<'static, Result<(), String>>
        + Send
        + Sync,
>;

/// What the API serves from.
pub struct AdminState {
    pub store: PolicyStore,
    pub workloads: Arc<dyn WorkloadView>,
    pub metrics: Arc<Metrics>,
    /// Bearer token for mutations; `None` refuses them.
    pub token: Option<String>,
    pub ready: Arc<AtomicBool>,
    pub log_level: Option<LogLevelSetter>,
    /// Largest accepted policy upload (default 64 MiB; the daemon sets the
    /// runtime's component size limit).
    pub max_upload_bytes: usize,
    /// The policy call pool, shared with the decision loop (`POST /v1/evaluate`).
    pub calls: CallPool,
    /// Where `POST /v1/signals` delivers (absent: the route answers 501).
    pub inputs: Option<Arc<SignalHub>>,
    /// The loop's clock, to timestamp pushed inputs.
    pub clock: Arc<dyn Clock>,
    /// Whether this replica leads: mutations that change decisions (pins,
    /// pushed inputs) are taken only by the leader.
    pub leadership: Arc<Leadership>,
    /// Where pins are stored after `activate`/`rollback` (`None`: memory only).
    pub pins: Option<PinSaver>,
    /// How long a push of signals waits for the decision they trigger
    /// before it is answered 503 (default 10 s).
    pub push_timeout: std::time::Duration,
    /// The configuration running and the last refused change.
    pub config: Option<Arc<parking_lot::Mutex<crate::config::Status>>>,
}

type Reply = Response<Full<Bytes>>;

/// `limit=N` of a query string (at most 1,000), or `default`.
fn limit(query: &str, default: usize) -> usize {
    query.split('&').find_map(|kv| kv.strip_prefix("limit=")).and_then(|v| v.parse().ok()).unwrap_or(default).min(1000)
}

fn json(status: StatusCode, value: &serde_json::Value) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    response
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Reply {
    json(status, &serde_json::json!({ "error": message.to_string() }))
}

fn text(status: StatusCode, body: String, content_type: &'static str) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    response
}

/// A refused request: status and message, turned into a JSON reply at the edge.
struct Rejection(StatusCode, String);

impl Rejection {
    fn reply(self) -> Reply {
        error(self.0, self.1)
    }
}

/// Constant-time comparison, so the token cannot be guessed byte by byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves until `shutdown`; connections in progress finish their request.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, shutdown: CancellationToken) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "admin accept failed");
                    continue;
                }
            },
        };
        let state = state.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(route(&state, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    while connections.join_next().await.is_some() {}
}

async fn route(state: &AdminState, request: Request<Incoming>) -> Reply {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let reads = method == Method::GET;
    if !reads && let Err(rejection) = authorize(state, &request) {
        return rejection.reply();
    }
    match (&method, segments.as_slice()) {
        (&Method::GET, ["healthz"]) => text(StatusCode::OK, "ok\n".into(), "text/plain"),
        (&Method::GET, ["readyz"]) => {
            let leadership = &state.leadership;
            if !state.ready.load(Ordering::Relaxed) {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready: caches not filled yet\n".into(), "text/plain")
            } else if leadership.is_leader() && !leadership.may_write() {
                let why = "not ready: leading, but the stored decision state is not taken over yet\n";
                text(StatusCode::SERVICE_UNAVAILABLE, why.into(), "text/plain")
            } else {
                text(StatusCode::OK, "ready\n".into(), "text/plain")
            }
        }
        (&Method::GET, ["metrics"]) => {
            text(StatusCode::OK, state.metrics.render(), "application/openmetrics-text; version=1.0.0; charset=utf-8")
        }
        (&Method::GET, ["v1", "config"]) => match &state.config {
            Some(status) => json(StatusCode::OK, &serde_json::to_value(&*status.lock()).unwrap_or_default()),
            None => error(StatusCode::NOT_FOUND, "this process follows no configuration file"),
        },
        (&Method::GET, ["v1", "policies"]) => {
            let catalog = state.store.catalog();
            json(
                StatusCode::OK,
                &serde_json::json!({
                    "generation": catalog.generation,
                    "policies": catalog.status(),
                    "problems": catalog.problems,
                    "oci": catalog.oci.values().collect::<Vec<_>>(),
                    "admissions": state.store.admissions(),
                }),
            )
        }
        (&Method::PUT, ["v1", "policies", name]) => upload(state, name, request).await,
        (&Method::POST, ["v1", "policies"]) => pull(state, request).await,
        (&Method::POST, ["v1", "policies", _, "activate" | "rollback"] | ["v1", "signals"])
            if !state.leadership.is_leader() =>
        {
            standby(state)
        }
        (&Method::POST, ["v1", "policies", name, "activate"]) => activate(state, name, request).await,
        (&Method::POST, ["v1", "policies", name, "rollback"]) => match state.store.rollback(name) {
            Ok(policy) => pinned(state, &policy).await,
            Err(e @ StoreError::NotFound(_)) => error(StatusCode::NOT_FOUND, e),
            Err(e) => error(StatusCode::CONFLICT, e),
        },
        (&Method::GET, ["v1", "workloads"]) => {
            let list: Vec<serde_json::Value> = state
                .workloads
                .workload_names()
                .into_iter()
                .map(|name| {
                    let last = state.workloads.decisions(&name, 1).and_then(|mut d| d.pop());
                    serde_json::json!({ "name": name, "last_decision": last })
                })
                .collect();
            json(StatusCode::OK, &serde_json::json!({ "workloads": list }))
        }
        (&Method::GET, ["v1", "workloads", namespace, name, "decisions"]) => {
            match state.workloads.decisions(&format!("{namespace}/{name}"), limit(&query, 20)) {
                Some(records) => json(StatusCode::OK, &serde_json::json!({ "decisions": records })),
                None => error(StatusCode::NOT_FOUND, format!("no workload {namespace}/{name}")),
            }
        }
        (&Method::GET, ["v1", "workloads", namespace, name, "snapshots"]) => {
            let limit = limit(&query, 8);
            let workload = format!("{namespace}/{name}");
            match state.workloads.snapshots(&workload, limit) {
                Some(captured) => {
                    let list: Vec<serde_json::Value> = captured.iter().map(|c| c.to_json(&workload)).collect();
                    json(StatusCode::OK, &serde_json::json!({ "snapshots": list }))
                }
                None => error(StatusCode::NOT_FOUND, format!("no workload {workload}")),
            }
        }
        (&Method::POST, ["v1", "evaluate"]) => evaluate(state, request).await,
        (&Method::POST, ["v1", "signals"]) => push(state, request).await,
        (&Method::GET, ["v1", "workloads", namespace, name, "inputs"]) => {
            let workload = format!("{namespace}/{name}");
            let status = state.inputs.as_ref().and_then(|hub| hub.status(&workload, state.clock.now_ms()));
            match status {
                Some(status) => json(StatusCode::OK, &status),
                None => error(StatusCode::NOT_FOUND, format!("no workload {workload}")),
            }
        }
        (&Method::PUT, ["log-level"]) => {
            let body = match read_body(request, 4096).await {
                Ok(body) => body,
                Err(rejection) => return rejection.reply(),
            };
            let filter = String::from_utf8_lossy(&body).trim().to_string();
            match &state.log_level {
                Some(set) => match set(&filter) {
                    Ok(()) => json(StatusCode::OK, &serde_json::json!({ "log_level": filter })),
                    Err(message) => error(StatusCode::BAD_REQUEST, format!("invalid log filter {filter:?}: {message}")),
                },
                None => error(StatusCode::NOT_IMPLEMENTED, "log level cannot be changed in this process"),
            }
        }
        (_, ["healthz" | "readyz" | "metrics" | "log-level"]) | (_, ["v1", ..]) => {
            error(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed on {path}"))
        }
        _ => error(StatusCode::NOT_FOUND, format!("no route for {path}")),
    }
}

fn authorize(state: &AdminState, request: &Request<Incoming>) -> Result<(), Rejection> {
    let Some(expected) = &state.token else {
        return Err(Rejection(
            StatusCode::FORBIDDEN,
            "admin mutations are disabled: start scalegate with an admin token (--admin-token-file or SCALEGATE_ADMIN_TOKEN)".into(),
        ));
    };
    let presented = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if same(presented.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(Rejection(StatusCode::UNAUTHORIZED, "missing or invalid bearer token".into()))
    }
}

async fn read_body(request: Request<Incoming>, limit: usize) -> Result<Bytes, Rejection> {
    match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(Rejection(StatusCode::PAYLOAD_TOO_LARGE, format!("request body is larger than {limit} bytes")))
        }
        Err(err) => Err(Rejection(StatusCode::BAD_REQUEST, format!("cannot read the request body: {err}"))),
    }
}

async fn upload(state: &AdminState, name: &str, request: Request<Incoming>) -> Reply {
    let body = match read_body(request, state.max_upload_bytes).await {
        Ok(body) => body,
        Err(rejection) => return rejection.reply(),
    };
    if !body.starts_with(b"\0asm") {
        return error(StatusCode::BAD_REQUEST, "the body is not a WebAssembly component (no \\0asm magic number)");
    }
    let (store, name) = (state.store.clone(), name.to_string());
    match tokio::task::spawn_blocking(move || store.install(&name, &body)).await {
        Ok(Ok(status)) => json(StatusCode::CREATED, &serde_json::to_value(status).unwrap_or_default()),
        Ok(Err(e @ InstallError::Invalid(_))) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
        Ok(Err(e @ InstallError::Conflict(_))) => error(StatusCode::CONFLICT, e),
        Ok(Err(e @ InstallError::Storage(_))) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Ok(Err(InstallError::Busy(message))) => retry_later(&message),
        Err(join) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("upload task failed: {join}")),
    }
}

/// `POST /v1/policies` `{"reference": "oci://…"}`: pulls, verifies and
/// admits the component the reference names.
async fn pull(state: &AdminState, request: Request<Incoming>) -> Reply {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        reference: String,
    }
    let body = match read_body(request, 4096).await {
        Ok(body) => body,
        Err(rejection) => return rejection.reply(),
    };
    let parsed: Body = match serde_json::from_slice(&body) {
        Ok(parsed) => parsed,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid body (expected {{\"reference\": \"oci://…\"}}): {e}"),
            );
        }
    };
    let oci = match crate::policy::OciRef::parse(&parsed.reference) {
        Ok(oci) => oci,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match state.store.install_oci(&oci).await {
        Ok(status) => json(StatusCode::CREATED, &serde_json::to_value(status).unwrap_or_default()),
        Err(e @ InstallError::Invalid(_)) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
        Err(e @ InstallError::Conflict(_)) => error(StatusCode::CONFLICT, e),
        Err(e @ InstallError::Storage(_)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(InstallError::Busy(message)) => retry_later(&message),
    }
}

async fn activate(state: &AdminState, name: &str, request: Request<Incoming>) -> Reply {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        version: Option<String>,
        digest: Option<String>,
    }
    let body = match read_body(request, 4096).await {
        Ok(body) => body,
        Err(rejection) => return rejection.reply(),
    };
    let parsed: Body = match serde_json::from_slice(if body.is_empty() { b"{}" } else { &body }) {
        Ok(parsed) => parsed,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid body: {e}")),
    };
    let text = match (parsed.version, parsed.digest) {
        (Some(_), Some(_)) => return error(StatusCode::BAD_REQUEST, "give a version or a digest, not both"),
        (Some(version), None) => format!("{name}@{version}"),
        (None, Some(digest)) => format!("{name}@sha256:{digest}"),
        (None, None) => name.to_string(),
    };
    let reference: PolicyRef = match text.parse() {
        Ok(reference) => reference,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match state.store.activate(&reference) {
        Ok(policy) => pinned(state, &policy).await,
        Err(e) => error(StatusCode::NOT_FOUND, e),
    }
}

/// The answer to a pin change, once the pins are stored for a successor.
async fn pinned(state: &AdminState, policy: &crate::policy::LoadedPolicy) -> Reply {
    let mut reply = serde_json::json!({ "active": policy.id(), "digest": policy.digest() });
    if let Some(save) = &state.pins {
        match save(state.store.pins()).await {
            Ok(()) => reply["stored"] = true.into(),
            Err(message) => {
                tracing::warn!(%message, "policy pins not stored; a successor will not know them");
                reply["stored"] = false.into();
                reply["warning"] = format!("applied here, but not stored for a successor: {message}").into();
            }
        }
    }
    json(StatusCode::OK, &reply)
}

/// A mutation that only the leader takes, sent to a standby.
fn standby(state: &AdminState) -> Reply {
    let leader = state.leadership.holder().map(|holder| format!(" ({holder})")).unwrap_or_default();
    retry_later(&format!("this replica is a standby; send it to the leader{leader}, e.g. through the leader Service"))
}

async fn evaluate(state: &AdminState, request: Request<Incoming>) -> Reply {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        policy: String,
        snapshot: Snapshot,
    }
    let body = match read_body(request, 4 << 20).await {
        Ok(body) => body,
        Err(rejection) => return rejection.reply(),
    };
    let parsed: Body = match serde_json::from_slice(&body) {
        Ok(parsed) => parsed,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid body: {e}")),
    };
    let reference: PolicyRef = match parsed.policy.parse() {
        Ok(reference) => reference,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let Some(policy) = state.store.catalog().resolve(&reference) else {
        return error(StatusCode::NOT_FOUND, format!("no policy matches {reference}"));
    };
    let callee: Arc<dyn Policy> = Arc::new(policy.clone());
    let evaluation = match state.calls.evaluate_on_demand(callee, parsed.snapshot).await {
        Ok(Some(evaluation)) => evaluation,
        Ok(None) => return error(StatusCode::INTERNAL_SERVER_ERROR, "the evaluation's thread panicked"),
        Err(busy) => return retry_later(&busy.to_string()),
    };
    let mut reply = serde_json::json!({
        "policy": { "name": policy.info().name, "version": policy.info().version, "digest": policy.digest() },
        "logs": evaluation.logs,
        "duration_us": evaluation.duration.as_micros() as u64,
    });
    match evaluation.outcome {
        Ok(decision) => reply["decision"] = serde_json::to_value(decision).unwrap_or_default(),
        Err(e) => reply["error"] = serde_json::json!({ "kind": e.metric_label(), "message": e.to_string() }),
    }
    json(StatusCode::OK, &reply)
}

async fn push(state: &AdminState, request: Request<Incoming>) -> Reply {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct PushedMetric {
        name: String,
        value: f64,
        timestamp_ms: Option<u64>,
        #[serde(default)]
        pods: Vec<crate::snapshot::PodSample>,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct PushedSignal {
        kind: String,
        timestamp_ms: Option<u64>,
        action: Option<crate::snapshot::ScaleAction>,
        target_replicas: Option<u32>,
        urgency: Option<u8>,
        #[serde(default)]
        reason: String,
        #[serde(default)]
        attributes: std::collections::BTreeMap<String, String>,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        workload: String,
        #[serde(default)]
        metrics: Vec<PushedMetric>,
        #[serde(default)]
        signals: Vec<PushedSignal>,
    }
    let Some(hub) = &state.inputs else {
        return error(StatusCode::NOT_IMPLEMENTED, "this process takes no pushed inputs");
    };
    let body = match read_body(request, 1 << 20).await {
        Ok(body) => body,
        Err(rejection) => return rejection.reply(),
    };
    let parsed: Body = match serde_json::from_slice(&body) {
        Ok(parsed) => parsed,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid body: {e}")),
    };
    if let Some(index) = parsed.signals.iter().position(|s| s.urgency.is_some_and(|u| u > 3)) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, format!("signals[{index}].urgency must be 0 to 3"));
    }
    let now = state.clock.now_ms();
    let metrics = parsed
        .metrics
        .into_iter()
        .map(|m| Metric {
            name: m.name,
            source: "push".into(),
            value: m.value,
            timestamp_ms: m.timestamp_ms.unwrap_or(now),
            pods: m.pods,
        })
        .collect();
    let signals: Vec<Signal> = parsed
        .signals
        .into_iter()
        .map(|s| Signal {
            kind: s.kind,
            source: "push".into(),
            timestamp_ms: s.timestamp_ms.unwrap_or(now),
            action: s.action,
            target_replicas: s.target_replicas,
            urgency: s.urgency,
            reason: s.reason,
            attributes: s.attributes.into_iter().collect(),
        })
        .collect();
    let (receipt, decided) = if signals.is_empty() {
        (None, None)
    } else {
        let (sender, decided) = tokio::sync::oneshot::channel::<Handled>();
        let receipt = Receipt::new(None, move |handled| {
            let _ = sender.send(handled.clone());
        });
        (Some(receipt), Some(decided))
    };
    let (metrics, signals) = match hub.push(&parsed.workload, metrics, signals, receipt, now) {
        Ok(counts) => counts,
        Err(e @ InputError::UnknownWorkload(_)) => return error(StatusCode::NOT_FOUND, e),
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, e),
    };
    let mut reply = serde_json::json!({ "metrics": metrics, "signals": signals });
    // metrics are levels: the next push refreshes them (accepted, 202);
    // signals are events: answered once acted on, so none is lost
    let Some(decided) = decided else { return json(StatusCode::ACCEPTED, &reply) };
    match tokio::time::timeout(state.push_timeout, decided).await {
        Ok(Ok(Handled::Decided { replicas, applied, at_ms })) => {
            reply["decision"] = serde_json::json!({ "replicas": replicas, "applied": applied, "at_ms": at_ms });
            json(StatusCode::OK, &reply)
        }
        Ok(Ok(Handled::Superseded)) => {
            reply["superseded"] = true.into();
            json(StatusCode::OK, &reply)
        }
        // dropped unsettled: this replica stopped leading before acting on it
        Ok(Err(_)) => retry_later("not acted on: this replica stopped leading; send it again (to the leader)"),
        Err(_) => retry_later(&format!(
            "not acted on within {:?} (is writing the workload failing? see its decisions); send it again",
            state.push_timeout
        )),
    }
}

/// 503 with `Retry-After: 1`.
fn retry_later(message: &str) -> Reply {
    let mut reply = error(StatusCode::SERVICE_UNAVAILABLE, message);
    reply.headers_mut().insert(hyper::header::RETRY_AFTER, hyper::header::HeaderValue::from_static("1"));
    reply
}
