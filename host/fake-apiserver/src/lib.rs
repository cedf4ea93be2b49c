//! A strict fake of the Kubernetes API server, serving exactly the endpoints
//! scalegate uses, over loopback HTTP, for tests driving the real
//! `kube::Client`:
//!
//! | method      | path                                                         |
//! |-------------|--------------------------------------------------------------|
//! | GET, PUT    | `/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}/scale` |
//! | GET         | `/api/v1/namespaces/{ns}/pods` (list, and `?watch=true`)     |
//! | PATCH       | `/api/v1/namespaces/{ns}/pods/{name}` (merge patch)           |
//! | PATCH       | `/api/v1/namespaces/{ns}/pods/{name}/resize` (strategic merge) |
//! | POST        | `/apis/events.k8s.io/v1/namespaces/{ns}/events`               |
//! | GET         | `/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods` (list)    |
//! | POST        | `/apis/coordination.k8s.io/v1/namespaces/{ns}/leases`         |
//! | GET, PUT    | `/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}`  |
//! | GET (list), POST | `/apis/scalegate.dev/v1alpha1/namespaces/{ns}/scalegatestates` |
//! | GET, PUT    | `/apis/scalegate.dev/v1alpha1/namespaces/{ns}/scalegatestates/{name}` |
//!
//! Strict: any other path, method, query parameter or content type is
//! answered with an error *and* recorded as a violation, which tests assert
//! to be empty. Updates must carry the current `resourceVersion` (409
//! otherwise, like the real server for a stale version; the fake also
//! refuses a missing one, because scalegate must always send it). Watches
//! replay events newer than the requested version, then stream; they can
//! be dropped, and history can be forgotten (410 Gone), on demand.
//!
//! `GET /fake/stats` answers the requests received by kind (for a fake run
//! as its own process, `src/main.rs`).
//!
//! Faults are injected per request by method and path fragment: an HTTP
//! status, a delay, or "apply, then fail" (the write lands but the client
//! sees an error — the case that tempts a client to write twice).

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnboundedReceiverStream;

type Body = BoxBody<Bytes, Infallible>;

/// What to do to a matching request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status (a Kubernetes `Status` body), do nothing.
    Status(u16),
    /// Wait, then handle the request normally.
    Delay(Duration),
    /// Handle the request (the change lands), then answer with this status.
    ApplyThenStatus(u16),
}

#[derive(Debug)]
struct FaultRule {
    method: Method,
    path_contains: String,
    fault: Fault,
    remaining: usize,
}

/// One accepted write of a `/scale` subresource.
#[derive(Debug, Clone)]
pub struct ScaleWrite {
    pub namespace: String,
    pub name: String,
    pub from: u32,
    pub to: u32,
    /// The `fieldManager` query parameter (scalegate sends its identity).
    pub field_manager: Option<String>,
    pub at: Instant,
}

/// A scalable object, seen through its `/scale` subresource.
#[derive(Debug, Clone)]
struct Scalable {
    spec_replicas: u32,
    status_replicas: u32,
    selector: String,
    resource_version: u64,
}

#[derive(Default)]
struct State {
    resource_version: u64,
    /// Key: `{group}/{version}/{plural}/{ns}/{name}` (`core/v1/...` for the core group).
    scalables: BTreeMap<String, Scalable>,
    pods: BTreeMap<(String, String), Value>,
    /// (resourceVersion, namespace, type, object) for watch replay.
    pod_history: Vec<(u64, String, &'static str, Value)>,
    /// Watches from versions below this get 410 Gone.
    history_floor: u64,
    watchers: Vec<(String, mpsc::UnboundedSender<Bytes>)>,
    events: Vec<Value>,
    /// Leases and ScalegateStates by (plural, namespace, name).
    objects: BTreeMap<(String, String, String), Value>,
    /// The ScalegateState resource is not served (its CRD is not installed).
    no_state_resource: bool,
    /// `PodMetrics` by (namespace, pod), as metrics-server would serve them.
    pod_metrics: BTreeMap<(String, String), Value>,
    faults: Vec<FaultRule>,
    requests: Vec<String>,
    /// Keep every request line (tests read them); off for long benchmarks.
    forget_requests: bool,
    /// Requests by kind: `GET scale`, `LIST pods`, `PUT scalegatestates`, …
    counts: BTreeMap<String, u64>,
    violations: Vec<String>,
    scale_writes: Vec<ScaleWrite>,
    /// How the "kubelet" answers a resize.
    kubelet: Kubelet,
    /// Accepted resizes, in order: (namespace, pod, patch).
    resizes: Vec<(String, String, Value)>,
}

/// How the fake's kubelet carries out an accepted in-place resize.
#[derive(Debug, Clone, Default)]
pub enum Kubelet {
    /// At once: `status.containerStatuses[].resources` follow the spec.
    #[default]
    Resize,
    /// Pods whose total requests would exceed this node capacity (cores,
    /// bytes) get `PodResizePending` `Infeasible`; others resize at once.
    Capacity { cpu: f64, memory: f64 },
    /// `PodResizePending` `Deferred` (the node is full for now).
    Defer,
    /// `PodResizeInProgress` until [`FakeApiServer::finish_resizes`].
    Hold,
}

impl State {
    fn next_version(&mut self) -> u64 {
        self.resource_version += 1;
        self.resource_version
    }

    fn pod_event(&mut self, namespace: &str, kind: &'static str, object: Value) {
        let version = object["metadata"]["resourceVersion"].as_str().and_then(|v| v.parse().ok()).unwrap_or(0);
        let line = watch_line(kind, &object);
        self.watchers.retain(|(ns, sender)| ns != namespace || sender.send(line.clone()).is_ok());
        self.pod_history.push((version, namespace.to_string(), kind, object));
    }
}

fn watch_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).expect("JSON");
    line.push(b'\n');
    Bytes::from(line)
}

/// The fake server; stops when dropped.
pub struct FakeApiServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
        self.state.lock().watchers.clear();
    }
}

impl FakeApiServer {
    /// Listens on a free loopback port.
    pub async fn start() -> FakeApiServer {
        FakeApiServer::serve(tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback"))
    }

    fn serve(listener: tokio::net::TcpListener) -> FakeApiServer {
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| handle(state.clone(), request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeApiServer { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig pointing at this server (plain HTTP, no credentials).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
             current-context: fake\n",
            self.url()
        )
    }

    /// Adds an object with a `/scale` subresource, e.g.
    /// `("apps/v1", "deployments", "shop", "web", 3, "app=web")`.
    pub fn add_scalable(
        &self,
        group_version: &str,
        plural: &str,
        namespace: &str,
        name: &str,
        replicas: u32,
        selector: &str,
    ) {
        let mut state = self.state.lock();
        let resource_version = state.next_version();
        state.scalables.insert(
            format!("{group_version}/{plural}/{namespace}/{name}"),
            Scalable {
                spec_replicas: replicas,
                status_replicas: replicas,
                selector: selector.into(),
                resource_version,
            },
        );
    }

    /// A Deployment `namespace/name` selecting `app={name}`.
    pub fn add_deployment(&self, namespace: &str, name: &str, replicas: u32) {
        self.add_scalable("apps/v1", "deployments", namespace, name, replicas, &format!("app={name}"));
    }

    fn find_scalable<T>(&self, namespace: &str, name: &str, f: impl FnOnce(&mut State, &str) -> T) -> Option<T> {
        let mut state = self.state.lock();
        let suffix = format!("/{namespace}/{name}");
        let key = state.scalables.keys().find(|k| k.ends_with(&suffix))?.clone();
        Some(f(&mut state, &key))
    }

    /// `spec.replicas` of the scalable `namespace/name`.
    pub fn replicas(&self, namespace: &str, name: &str) -> Option<u32> {
        self.find_scalable(namespace, name, |state, key| state.scalables[key].spec_replicas)
    }

    /// Another writer (a person, another controller) sets the replicas.
    pub fn set_replicas(&self, namespace: &str, name: &str, replicas: u32) {
        self.find_scalable(namespace, name, |state, key| {
            let version = state.next_version();
            let scalable = state.scalables.get_mut(key).expect("found");
            scalable.spec_replicas = replicas;
            scalable.status_replicas = replicas;
            scalable.resource_version = version;
        })
        .expect("no such scalable");
    }

    /// Writes accepted on `/scale`, in order.
    pub fn scale_writes(&self) -> Vec<ScaleWrite> {
        self.state.lock().scale_writes.clone()
    }

    /// Creates or replaces a pod (a watch event is sent).
    pub fn put_pod(&self, namespace: &str, mut pod: Value) {
        let mut state = self.state.lock();
        let name = pod["metadata"]["name"].as_str().expect("pod needs metadata.name").to_string();
        let version = state.next_version();
        pod["metadata"]["namespace"] = json!(namespace);
        pod["metadata"]["resourceVersion"] = json!(version.to_string());
        pod["metadata"]["uid"] = json!(format!("uid-{namespace}-{name}"));
        pod["apiVersion"] = json!("v1");
        pod["kind"] = json!("Pod");
        let kind = if state.pods.contains_key(&(namespace.to_string(), name.clone())) { "MODIFIED" } else { "ADDED" };
        state.pods.insert((namespace.into(), name), pod.clone());
        state.pod_event(namespace, kind, pod);
    }

    /// A running pod with the `app` label, ready or not, requesting `cpu`.
    pub fn put_running_pod(&self, namespace: &str, app: &str, name: &str, ready: bool, cpu: &str) {
        self.put_pod(
            namespace,
            json!({
                "metadata": {"name": name, "labels": {"app": app}},
                "spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": cpu}}}]},
                "status": {
                    "phase": "Running",
                    "startTime": "2026-01-01T00:00:00Z",
                    "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" },
                                    "lastTransitionTime": "2026-01-01T00:00:10Z"}]
                }
            }),
        );
    }

    pub fn delete_pod(&self, namespace: &str, name: &str) {
        let mut state = self.state.lock();
        if let Some(mut pod) = state.pods.remove(&(namespace.to_string(), name.to_string())) {
            let version = state.next_version();
            pod["metadata"]["resourceVersion"] = json!(version.to_string());
            state.pod_event(namespace, "DELETED", pod);
        }
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<Value> {
        self.state.lock().pods.get(&(namespace.to_string(), name.to_string())).cloned()
    }

    /// Events created, in order.
    pub fn events(&self) -> Vec<Value> {
        self.state.lock().events.clone()
    }

    pub fn lease(&self, namespace: &str, name: &str) -> Option<Value> {
        self.object("leases", namespace, name)
    }

    /// A stored object (`leases`, `scalegatestates`).
    pub fn object(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        self.state.lock().objects.get(&(plural.to_string(), namespace.to_string(), name.to_string())).cloned()
    }

    /// Every stored object of a kind in a namespace, by name.
    pub fn objects(&self, plural: &str, namespace: &str) -> Vec<Value> {
        self.state
            .lock()
            .objects
            .iter()
            .filter(|((p, n, _), _)| p == plural && n == namespace)
            .map(|(_, object)| object.clone())
            .collect()
    }

    /// Another writer changes a stored object (its `resourceVersion` moves
    /// on), so the next replacement based on the old version conflicts.
    pub fn touch_object(&self, plural: &str, namespace: &str, name: &str) {
        let mut state = self.state.lock();
        let version = state.next_version();
        let key = (plural.to_string(), namespace.to_string(), name.to_string());
        let object = state.objects.get_mut(&key).expect("no such object");
        object["metadata"]["resourceVersion"] = json!(version.to_string());
    }

    /// Serves the ScalegateState resource as if its CRD were not installed
    /// (every request to it is a 404).
    pub fn without_state_resource(&self) {
        self.state.lock().no_state_resource = true;
    }

    /// Sets a pod's usage as metrics-server reports it, stamped now with a
    /// 15 s window: (container, cpu, memory) quantities.
    pub fn put_pod_metrics(&self, namespace: &str, pod: &str, containers: &[(&str, &str, &str)]) {
        let containers: Vec<Value> = containers
            .iter()
            .map(|(name, cpu, memory)| json!({"name": name, "usage": {"cpu": cpu, "memory": memory}}))
            .collect();
        let object = json!({
            "kind": "PodMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
            "metadata": {"name": pod, "namespace": namespace, "creationTimestamp": jiff::Timestamp::now().to_string()},
            "timestamp": jiff::Timestamp::now().round(jiff::Unit::Second).expect("rounds").to_string(),
            "window": "15s",
            "containers": containers
        });
        self.state.lock().pod_metrics.insert((namespace.into(), pod.into()), object);
    }

    /// A running pod of `app` with one container `app` of these requests and
    /// limits (`[cpu, memory]` quantities, `None` unset), `resizePolicy`
    /// `RestartContainer` for the resources listed, its status reporting the
    /// same resources (nothing being resized).
    pub fn put_sized_pod(
        &self,
        namespace: &str,
        app: &str,
        name: &str,
        requests: [Option<&str>; 2],
        limits: [Option<&str>; 2],
        restart_on_resize: &[&str],
    ) {
        let list = |values: [Option<&str>; 2]| {
            let mut m = serde_json::Map::new();
            for (key, value) in ["cpu", "memory"].iter().zip(values) {
                if let Some(v) = value {
                    m.insert((*key).into(), json!(v));
                }
            }
            Value::Object(m)
        };
        let resources = json!({"requests": list(requests), "limits": list(limits)});
        let policy: Vec<Value> = ["cpu", "memory"]
            .iter()
            .map(|r| {
                let restart = if restart_on_resize.contains(r) { "RestartContainer" } else { "NotRequired" };
                json!({"resourceName": r, "restartPolicy": restart})
            })
            .collect();
        self.put_pod(
            namespace,
            json!({
                "metadata": {"name": name, "labels": {"app": app}},
                "spec": {"containers": [{"name": "app", "resources": resources, "resizePolicy": policy}]},
                "status": {
                    "phase": "Running",
                    "startTime": "2026-01-01T00:00:00Z",
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:10Z"}],
                    "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "resources": resources}]
                }
            }),
        );
    }

    /// How the kubelet answers the next resizes.
    pub fn set_kubelet(&self, kubelet: Kubelet) {
        self.state.lock().kubelet = kubelet;
    }

    /// Carries out every resize held in progress or pending (the kubelet
    /// finally got to them).
    pub fn finish_resizes(&self, namespace: &str) {
        let mut state = self.state.lock();
        let names: Vec<(String, String)> = state.pods.keys().filter(|(ns, _)| ns == namespace).cloned().collect();
        for key in names {
            let mut pod = state.pods[&key].clone();
            let conditions = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
            if !conditions.iter().any(|c| c["type"] == "PodResizePending" || c["type"] == "PodResizeInProgress") {
                continue;
            }
            let kept: Vec<Value> = conditions
                .into_iter()
                .filter(|c| c["type"] != "PodResizePending" && c["type"] != "PodResizeInProgress")
                .collect();
            pod["status"]["conditions"] = json!(kept);
            actuate(&mut pod);
            let version = state.next_version();
            pod["metadata"]["resourceVersion"] = json!(version.to_string());
            state.pods.insert(key.clone(), pod.clone());
            state.pod_event(&key.0, "MODIFIED", pod);
        }
    }

    /// Accepted resizes, in order: (namespace, pod, the patch).
    pub fn resizes(&self) -> Vec<(String, String, Value)> {
        self.state.lock().resizes.clone()
    }

    /// Ends every fault injected and not yet used up.
    pub fn clear_faults(&self) {
        self.state.lock().faults.clear();
    }

    /// The next `times` requests with `method` whose path contains
    /// `path_contains` get `fault`.
    pub fn inject(&self, method: Method, path_contains: &str, fault: Fault, times: usize) {
        self.state.lock().faults.push(FaultRule {
            method,
            path_contains: path_contains.into(),
            fault,
            remaining: times,
        });
    }

    /// Ends every open watch (as a load balancer or an API server restart
    /// would); returns how many were open.
    pub fn drop_watches(&self) -> usize {
        let mut state = self.state.lock();
        let open = state.watchers.iter().filter(|(_, s)| !s.is_closed()).count();
        state.watchers.clear();
        open
    }

    /// Watches open and still connected.
    pub fn open_watches(&self) -> usize {
        self.state.lock().watchers.iter().filter(|(_, s)| !s.is_closed()).count()
    }

    /// Forgets watch history: a watch resuming from an older version gets
    /// `410 Gone` and the client must list again.
    pub fn forget_history(&self) {
        let mut state = self.state.lock();
        // as if other objects changed and etcd compacted: every version a
        // client has seen is now too old to watch from
        state.history_floor = state.next_version();
        state.pod_history.clear();
    }

    /// `METHOD path?query` of every request received, in order.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().requests.clone()
    }

    /// Requests by kind (`GET scale`, `LIST pods`, …) since the start; also
    /// served at `GET /fake/stats` for a process that is not in the test.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.state.lock().counts.clone()
    }

    /// Stops keeping every request line (only the counts), for long runs.
    pub fn forget_requests(&self) {
        self.state.lock().forget_requests = true;
    }

    /// Listens on `addr` (e.g. a fixed port for a process of its own).
    pub async fn start_on(addr: SocketAddr) -> FakeApiServer {
        FakeApiServer::serve(tokio::net::TcpListener::bind(addr).await.expect("bind"))
    }

    /// Requests the fake did not understand or that broke the API's rules.
    pub fn violations(&self) -> Vec<String> {
        self.state.lock().violations.clone()
    }
}

fn status(code: u16, reason: &str, message: impl Into<String>) -> Response<Body> {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message.into(), "reason": reason, "code": code
    });
    respond(code, &body)
}

fn respond(code: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).expect("valid status"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(body).expect("JSON"))).boxed())
        .expect("valid response")
}

fn reason_of(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        410 => "Expired",
        422 => "Invalid",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        _ => "InternalError",
    }
}

/// A request the fake refuses and the test should fail on.
fn violation(state: &Mutex<State>, code: u16, message: String) -> Response<Body> {
    state.lock().violations.push(message.clone());
    status(code, reason_of(code), message)
}

struct Parsed {
    method: Method,
    segments: Vec<String>,
    query: HashMap<String, String>,
    content_type: String,
    body: Value,
}

async fn handle(state: Arc<Mutex<State>>, request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let line = format!("{method} {}", request.uri().path_and_query().map_or(path.as_str(), |p| p.as_str()));
    if method == Method::GET && path == "/fake/stats" {
        let counts = state.lock().counts.clone();
        return Ok(respond(200, &json!({ "requests": counts })));
    }
    let fault = {
        let mut state = state.lock();
        if !state.forget_requests {
            state.requests.push(line.clone());
        }
        let kind = request_kind(&method, &path, request.uri().query().unwrap_or(""));
        *state.counts.entry(kind).or_default() += 1;
        let rule =
            state.faults.iter_mut().find(|r| r.remaining > 0 && r.method == method && path.contains(&r.path_contains));
        rule.map(|rule| {
            rule.remaining -= 1;
            rule.fault.clone()
        })
    };
    match &fault {
        Some(Fault::Status(code)) => return Ok(status(*code, reason_of(*code), format!("injected fault on {line}"))),
        Some(Fault::Delay(delay)) => tokio::time::sleep(*delay).await,
        _ => {}
    }
    let query: HashMap<String, String> = request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k.to_string(), percent_decode(v))
        })
        .collect();
    let content_type = request.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let bytes = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => return Ok(violation(&state, 400, format!("{line}: unreadable body: {error}"))),
    };
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(body) => body,
            Err(error) => return Ok(violation(&state, 400, format!("{line}: body is not JSON: {error}"))),
        }
    };
    let segments = path.trim_matches('/').split('/').map(str::to_string).collect();
    let parsed = Parsed { method, segments, query, content_type, body };
    let response = route(&state, &line, parsed);
    Ok(match fault {
        Some(Fault::ApplyThenStatus(code)) => {
            status(code, reason_of(code), format!("injected fault after applying {line}"))
        }
        _ => response,
    })
}

/// `VERB resource` of a request, as RBAC and API server metrics name them
/// (`GET`/`LIST`/`WATCH`, `PUT`, `POST`, `PATCH`; `scale` for `/scale`).
fn request_kind(method: &Method, path: &str, query: &str) -> String {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let namespaced = segments.iter().position(|s| *s == "namespaces").map_or(&segments[..0], |i| &segments[i + 2..]);
    let resource = match namespaced {
        [_, _, "scale"] => "scale".to_string(),
        [resource, ..] => resource.to_string(),
        [] => path.to_string(),
    };
    let resource = if path.starts_with("/apis/metrics.k8s.io") { "podmetrics".to_string() } else { resource };
    let verb = match (method.as_str(), namespaced.len()) {
        ("GET", 1) if query.contains("watch=true") => "WATCH",
        ("GET", 1) => "LIST",
        (verb, _) => verb,
    };
    format!("{verb} {resource}")
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Refuses query parameters outside `allowed`.
fn check_query(state: &Mutex<State>, line: &str, parsed: &Parsed, allowed: &[&str]) -> Option<Response<Body>> {
    let unknown: Vec<&String> = parsed.query.keys().filter(|k| !allowed.contains(&k.as_str())).collect();
    (!unknown.is_empty()).then(|| violation(state, 400, format!("{line}: unsupported query parameters {unknown:?}")))
}

fn check_content_type(state: &Mutex<State>, line: &str, parsed: &Parsed, expected: &str) -> Option<Response<Body>> {
    (parsed.content_type != expected)
        .then(|| violation(state, 415, format!("{line}: content type {:?}, expected {expected}", parsed.content_type)))
}

fn route(state: &Arc<Mutex<State>>, line: &str, parsed: Parsed) -> Response<Body> {
    let s: Vec<&str> = parsed.segments.iter().map(String::as_str).collect();
    match (&parsed.method, s.as_slice()) {
        (m, ["apis", group, version, "namespaces", ns, plural, name, "scale"])
            if m == Method::GET || m == Method::PUT =>
        {
            let key = format!("{group}/{version}/{plural}/{ns}/{name}");
            scale(state, line, &parsed, &key, ns, name)
        }
        (&Method::GET, ["api", "v1", "namespaces", ns, "pods"]) => pods(state, line, &parsed, ns),
        (&Method::PATCH, ["api", "v1", "namespaces", ns, "pods", name]) => patch_pod(state, line, &parsed, ns, name),
        (&Method::PATCH, ["api", "v1", "namespaces", ns, "pods", name, "resize"]) => {
            resize_pod(state, line, &parsed, ns, name)
        }
        (&Method::POST, ["apis", "events.k8s.io", "v1", "namespaces", ns, "events"]) => {
            create_event(state, line, &parsed, ns)
        }
        (&Method::GET, ["apis", "metrics.k8s.io", "v1beta1", "namespaces", ns, "pods"]) => {
            pod_metrics(state, line, &parsed, ns)
        }
        (m, ["apis", "coordination.k8s.io", "v1", "namespaces", ns, "leases", rest @ ..]) => {
            object(state, line, &parsed, m, &LEASES, ns, rest.first().copied())
        }
        (m, ["apis", "scalegate.dev", "v1alpha1", "namespaces", ns, "scalegatestates", rest @ ..]) => {
            if state.lock().no_state_resource {
                return status(404, "NotFound", "the server could not find the requested resource");
            }
            object(state, line, &parsed, m, &STATES, ns, rest.first().copied())
        }
        _ => violation(state, 404, format!("{line}: not an endpoint scalegate uses")),
    }
}

fn scale(state: &Mutex<State>, line: &str, parsed: &Parsed, key: &str, ns: &str, name: &str) -> Response<Body> {
    let allowed: &[&str] = if parsed.method == Method::PUT { &["fieldManager"] } else { &[] };
    if let Some(refused) = check_query(state, line, parsed, allowed) {
        return refused;
    }
    let guard = state.lock();
    let Some(current) = guard.scalables.get(key).cloned() else {
        return status(404, "NotFound", format!("{key} not found"));
    };
    let render = |s: &Scalable| {
        json!({
            "kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {"name": name, "namespace": ns, "resourceVersion": s.resource_version.to_string()},
            "spec": {"replicas": s.spec_replicas},
            "status": {"replicas": s.status_replicas, "selector": s.selector}
        })
    };
    if parsed.method == Method::GET {
        return respond(200, &render(&current));
    }
    drop(guard);
    if let Some(refused) = check_content_type(state, line, parsed, "application/json") {
        return refused;
    }
    let body = &parsed.body;
    let mut problems = Vec::new();
    if body["apiVersion"] != "autoscaling/v1" || body["kind"] != "Scale" {
        problems.push("body must be an autoscaling/v1 Scale".to_string());
    }
    if body["metadata"]["name"] != name {
        problems.push(format!("metadata.name must be {name:?}"));
    }
    if !body["metadata"]["namespace"].is_null() && body["metadata"]["namespace"] != ns {
        problems.push(format!("metadata.namespace must be {ns:?}"));
    }
    let Some(version) = body["metadata"]["resourceVersion"].as_str() else {
        return violation(state, 422, format!("{line}: an update without metadata.resourceVersion would be blind"));
    };
    let replicas = body["spec"]["replicas"].as_u64().filter(|r| *r <= i32::MAX as u64);
    if replicas.is_none() {
        problems.push("spec.replicas must be a non-negative integer".into());
    }
    if !problems.is_empty() {
        return violation(state, 422, format!("{line}: {}", problems.join("; ")));
    }
    let mut guard = state.lock();
    if version != current.resource_version.to_string() {
        return status(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {key}: the object has been modified; please apply your changes to the latest version and try again"
            ),
        );
    }
    let to = replicas.expect("checked") as u32;
    let new_version = guard.next_version();
    let scalable = guard.scalables.get_mut(key).expect("present");
    let from = scalable.spec_replicas;
    scalable.spec_replicas = to;
    scalable.status_replicas = to;
    scalable.resource_version = new_version;
    let rendered = render(scalable);
    guard.scale_writes.push(ScaleWrite {
        namespace: ns.into(),
        name: name.into(),
        from,
        to,
        field_manager: parsed.query.get("fieldManager").cloned(),
        at: Instant::now(),
    });
    respond(200, &rendered)
}

fn pod_metrics(state: &Mutex<State>, line: &str, parsed: &Parsed, ns: &str) -> Response<Body> {
    if let Some(refused) = check_query(state, line, parsed, &[]) {
        return refused;
    }
    let guard = state.lock();
    // as metrics-server serves them: scraped moments ago
    let now = jiff::Timestamp::now().round(jiff::Unit::Second).expect("rounds").to_string();
    let items: Vec<Value> = guard
        .pod_metrics
        .iter()
        .filter(|((n, _), _)| n == ns)
        .map(|(_, metrics)| {
            let mut metrics = metrics.clone();
            metrics["timestamp"] = json!(now);
            metrics
        })
        .collect();
    respond(
        200,
        &json!({"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {}, "items": items}),
    )
}

fn pods(state: &Arc<Mutex<State>>, line: &str, parsed: &Parsed, ns: &str) -> Response<Body> {
    let allowed = [
        "limit",
        "continue",
        "resourceVersion",
        "resourceVersionMatch",
        "watch",
        "timeoutSeconds",
        "allowWatchBookmarks",
        "labelSelector",
        "fieldSelector",
    ];
    if let Some(refused) = check_query(state, line, parsed, &allowed) {
        return refused;
    }
    for selector in ["labelSelector", "fieldSelector"] {
        if parsed.query.get(selector).is_some_and(|v| !v.is_empty()) {
            return violation(state, 400, format!("{line}: the fake does not implement {selector}"));
        }
    }
    let watch = parsed.query.get("watch").is_some_and(|w| w == "true" || w == "1");
    let mut guard = state.lock();
    if !watch {
        if parsed.query.contains_key("continue") {
            drop(guard);
            return violation(state, 400, format!("{line}: continue token never issued"));
        }
        let items: Vec<Value> =
            guard.pods.iter().filter(|((namespace, _), _)| namespace == ns).map(|(_, pod)| pod.clone()).collect();
        return respond(
            200,
            &json!({
                "kind": "PodList", "apiVersion": "v1",
                "metadata": {"resourceVersion": guard.resource_version.to_string()},
                "items": items
            }),
        );
    }
    let from: u64 = match parsed.query.get("resourceVersion").map(|v| v.parse()) {
        Some(Ok(version)) => version,
        _ => {
            drop(guard);
            return violation(state, 400, format!("{line}: a watch must resume from the resourceVersion of a list"));
        }
    };
    let (sender, receiver) = mpsc::unbounded_channel();
    if from < guard.history_floor {
        let gone = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                          "message": format!("too old resource version: {from}"), "reason": "Expired", "code": 410});
        let _ = sender.send(watch_line("ERROR", &gone));
        drop(sender);
    } else {
        for (version, namespace, kind, object) in &guard.pod_history {
            if *version > from && namespace == ns {
                let _ = sender.send(watch_line(kind, object));
            }
        }
        guard.watchers.push((ns.to_string(), sender));
    }
    let stream = UnboundedReceiverStream::new(receiver).map(|line| Ok::<_, Infallible>(Frame::data(line)));
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .expect("valid response")
}

fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(object), Some(changes)) => {
            for (key, value) in changes {
                if value.is_null() {
                    object.remove(key);
                } else {
                    merge(object.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

fn patch_pod(state: &Mutex<State>, line: &str, parsed: &Parsed, ns: &str, name: &str) -> Response<Body> {
    if let Some(refused) = check_query(state, line, parsed, &["fieldManager"]) {
        return refused;
    }
    if let Some(refused) = check_content_type(state, line, parsed, "application/merge-patch+json") {
        return refused;
    }
    // deletion-cost annotations, and the leader label on scalegate's own pod
    let touched: Vec<&String> = parsed.body.as_object().map(|o| o.keys().collect()).unwrap_or_default();
    let metadata = parsed.body["metadata"].as_object();
    let fields_ok = metadata.is_some_and(|m| m.keys().all(|k| k == "annotations" || k == "labels"));
    let labels_ok = parsed.body["metadata"]["labels"]
        .as_object()
        .is_none_or(|labels| labels.keys().all(|k| k == "scalegate.dev/leader"));
    if touched != ["metadata"] || !fields_ok || !labels_ok {
        return violation(
            state,
            422,
            format!("{line}: scalegate may only patch pod annotations and its leader label, got {}", parsed.body),
        );
    }
    let mut guard = state.lock();
    let Some(mut pod) = guard.pods.get(&(ns.to_string(), name.to_string())).cloned() else {
        return status(404, "NotFound", format!("pods \"{name}\" not found"));
    };
    merge(&mut pod, &parsed.body);
    let version = guard.next_version();
    pod["metadata"]["resourceVersion"] = json!(version.to_string());
    guard.pods.insert((ns.into(), name.into()), pod.clone());
    guard.pod_event(ns, "MODIFIED", pod.clone());
    respond(200, &pod)
}

/// The QoS class of a pod spec's containers (Kubernetes' rules).
fn qos(containers: &[Value]) -> &'static str {
    let get = |c: &Value, kind: &str, r: &str| c["resources"][kind][r].as_str().and_then(parse_quantity);
    let any = containers
        .iter()
        .any(|c| ["requests", "limits"].iter().any(|k| c["resources"][k].as_object().is_some_and(|m| !m.is_empty())));
    if !any {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let limit = get(c, "limits", r);
            limit.is_some() && get(c, "requests", r).or(limit) == limit
        })
    });
    if guaranteed { "Guaranteed" } else { "Burstable" }
}

/// `250m`, `1`, `512Mi`, `1G` in base units (enough for the tests' values).
pub fn parse_quantity(text: &str) -> Option<f64> {
    let (number, scale) =
        [("m", 1e-3), ("Ki", 1024.0), ("Mi", 1048576.0), ("Gi", 1073741824.0), ("k", 1e3), ("M", 1e6), ("G", 1e9)]
            .iter()
            .find_map(|(suffix, scale)| text.strip_suffix(suffix).map(|n| (n, *scale)))
            .unwrap_or((text, 1.0));
    number.parse::<f64>().ok().map(|n| n * scale)
}

/// `PATCH pods/{name}/resize`, checked like `ValidatePodResize`: only the
/// CPU and memory requests and limits of existing (non-init) containers,
/// nothing removed, the QoS class unchanged; then the fake kubelet acts.
fn resize_pod(state: &Mutex<State>, line: &str, parsed: &Parsed, ns: &str, name: &str) -> Response<Body> {
    if let Some(refused) = check_query(state, line, parsed, &["fieldManager"]) {
        return refused;
    }
    if let Some(refused) = check_content_type(state, line, parsed, "application/strategic-merge-patch+json") {
        return refused;
    }
    let body = &parsed.body;
    let only_containers = body.as_object().is_some_and(|o| o.keys().all(|k| k == "spec"))
        && body["spec"].as_object().is_some_and(|o| o.keys().all(|k| k == "containers"));
    let Some(patches) = body["spec"]["containers"].as_array().filter(|_| only_containers) else {
        return violation(
            state,
            422,
            format!("{line}: a resize may only change spec.containers[].resources, got {body}"),
        );
    };
    let mut guard = state.lock();
    let Some(mut pod) = guard.pods.get(&(ns.to_string(), name.to_string())).cloned() else {
        return status(404, "NotFound", format!("pods \"{name}\" not found"));
    };
    let before = qos(pod["spec"]["containers"].as_array().map(Vec::as_slice).unwrap_or_default());
    for patch in patches {
        let fields_ok = patch.as_object().is_some_and(|o| o.keys().all(|k| k == "name" || k == "resources"));
        let resources_ok = patch["resources"].as_object().is_some_and(|r| {
            r.iter().all(|(kind, list)| {
                (kind == "requests" || kind == "limits")
                    && list.as_object().is_some_and(|l| {
                        l.iter().all(|(res, v)| {
                            (res == "cpu" || res == "memory") && v.as_str().and_then(parse_quantity).is_some()
                        })
                    })
            })
        });
        if !fields_ok || !resources_ok {
            drop(guard);
            return violation(
                state,
                422,
                format!("{line}: only cpu and memory requests and limits may be resized, got {patch}"),
            );
        }
        let containers = pod["spec"]["containers"].as_array_mut().expect("containers");
        let Some(container) = containers.iter_mut().find(|c| c["name"] == patch["name"]) else {
            drop(guard);
            return violation(state, 422, format!("{line}: no container {} in pod {name}", patch["name"]));
        };
        merge(&mut container["resources"], &patch["resources"]);
    }
    let containers = pod["spec"]["containers"].as_array().cloned().unwrap_or_default();
    let after = qos(&containers);
    if before != after {
        drop(guard);
        return status(
            422,
            "Invalid",
            format!("Pod \"{name}\" is invalid: spec: Invalid value: Pod QoS is immutable ({before} → {after})"),
        );
    }
    let total = |r: &str| {
        containers.iter().filter_map(|c| c["resources"]["requests"][r].as_str().and_then(parse_quantity)).sum::<f64>()
    };
    let (kind, reason, message) = match guard.kubelet.clone() {
        Kubelet::Resize => (None, "", String::new()),
        Kubelet::Capacity { cpu, memory } if total("cpu") <= cpu && total("memory") <= memory => {
            (None, "", String::new())
        }
        Kubelet::Capacity { cpu, memory } => (
            Some("PodResizePending"),
            "Infeasible",
            format!(
                "Node didn't have enough capacity: requested cpu {} of {cpu}, memory {} of {memory}",
                total("cpu"),
                total("memory")
            ),
        ),
        Kubelet::Defer => (Some("PodResizePending"), "Deferred", "Node didn't have enough resource now".to_string()),
        Kubelet::Hold => (Some("PodResizeInProgress"), "", String::new()),
    };
    let mut conditions: Vec<Value> = pod["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c["type"] != "PodResizePending" && c["type"] != "PodResizeInProgress")
        .collect();
    match kind {
        Some(kind) => conditions.push(json!({"type": kind, "status": "True", "reason": reason, "message": message,
                                             "lastTransitionTime": jiff::Timestamp::now().round(jiff::Unit::Second).expect("rounds").to_string()})),
        None => actuate(&mut pod),
    }
    pod["status"]["conditions"] = json!(conditions);
    let version = guard.next_version();
    pod["metadata"]["resourceVersion"] = json!(version.to_string());
    guard.pods.insert((ns.into(), name.into()), pod.clone());
    guard.pod_event(ns, "MODIFIED", pod.clone());
    guard.resizes.push((ns.into(), name.into(), body.clone()));
    respond(200, &pod)
}

/// The kubelet's part: each container's status resources become its spec's.
fn actuate(pod: &mut Value) {
    let specs = pod["spec"]["containers"].as_array().cloned().unwrap_or_default();
    let statuses: Vec<Value> = specs
        .iter()
        .map(|c| {
            let mut status = pod["status"]["containerStatuses"]
                .as_array()
                .and_then(|s| s.iter().find(|s| s["name"] == c["name"]).cloned())
                .unwrap_or_else(|| json!({"name": c["name"], "ready": true, "restartCount": 0}));
            status["resources"] = c["resources"].clone();
            status["allocatedResources"] = c["resources"]["requests"].clone();
            status
        })
        .collect();
    pod["status"]["containerStatuses"] = json!(statuses);
}

fn create_event(state: &Mutex<State>, line: &str, parsed: &Parsed, ns: &str) -> Response<Body> {
    if let Some(refused) = check_query(state, line, parsed, &["fieldManager"]) {
        return refused;
    }
    if let Some(refused) = check_content_type(state, line, parsed, "application/json") {
        return refused;
    }
    let event = &parsed.body;
    let mut problems = Vec::new();
    if event["apiVersion"] != "events.k8s.io/v1" || event["kind"] != "Event" {
        problems.push("must be an events.k8s.io/v1 Event".to_string());
    }
    for field in ["eventTime", "reportingController", "reportingInstance", "action", "reason"] {
        if event[field].as_str().is_none_or(str::is_empty) {
            problems.push(format!("{field} is required"));
        }
    }
    if event["metadata"]["name"].as_str().is_none_or(str::is_empty) {
        problems.push("metadata.name is required".into());
    }
    if event["regarding"]["name"].as_str().is_none_or(str::is_empty) {
        problems.push("regarding is required".into());
    }
    if !matches!(event["type"].as_str(), Some("Normal" | "Warning")) {
        problems.push("type must be Normal or Warning".into());
    }
    if event["note"].as_str().is_some_and(|n| n.len() > 1024) {
        problems.push("note must be at most 1 kB".into());
    }
    if !event["metadata"]["namespace"].is_null() && event["metadata"]["namespace"] != ns {
        problems.push("metadata.namespace does not match the path".into());
    }
    if !problems.is_empty() {
        return violation(state, 422, format!("{line}: {}", problems.join("; ")));
    }
    let mut guard = state.lock();
    let mut stored = event.clone();
    let version = guard.next_version();
    stored["metadata"]["resourceVersion"] = json!(version.to_string());
    guard.events.push(stored.clone());
    respond(201, &stored)
}

/// A kind of plain object the fake stores: get, create, replace, and
/// (when `listable`) list by an equality label selector.
struct Kind {
    api_version: &'static str,
    kind: &'static str,
    plural: &'static str,
    listable: bool,
}

const LEASES: Kind = Kind { api_version: "coordination.k8s.io/v1", kind: "Lease", plural: "leases", listable: false };
const STATES: Kind =
    Kind { api_version: "scalegate.dev/v1alpha1", kind: "ScalegateState", plural: "scalegatestates", listable: true };

fn object(
    state: &Mutex<State>,
    line: &str,
    parsed: &Parsed,
    method: &Method,
    kind: &Kind,
    ns: &str,
    name: Option<&str>,
) -> Response<Body> {
    let allowed: &[&str] = match (method, name) {
        (&Method::GET, Some(_)) => &[],
        (&Method::GET, None) => &["labelSelector"],
        _ => &["fieldManager"],
    };
    if let Some(refused) = check_query(state, line, parsed, allowed) {
        return refused;
    }
    if *method != Method::GET
        && let Some(refused) = check_content_type(state, line, parsed, "application/json")
    {
        return refused;
    }
    let body = &parsed.body;
    let plural = kind.plural;
    let key = |name: &str| (plural.to_string(), ns.to_string(), name.to_string());
    let not_found = |name: &str| status(404, "NotFound", format!("{plural} \"{name}\" not found"));
    match (method, name) {
        (&Method::GET, Some(name)) => match state.lock().objects.get(&key(name)) {
            Some(object) => respond(200, object),
            None => not_found(name),
        },
        (&Method::GET, None) if kind.listable => {
            let wanted = match parsed.query.get("labelSelector").map(|s| s.split_once('=')) {
                Some(Some((label, value))) if !label.contains(['!', ',']) => {
                    Some((label.to_string(), value.to_string()))
                }
                Some(_) => return violation(state, 400, format!("{line}: the fake serves equality selectors only")),
                None => None,
            };
            let guard = state.lock();
            let items: Vec<&Value> = guard
                .objects
                .iter()
                .filter(|((p, n, _), _)| p == plural && n == ns)
                .map(|(_, object)| object)
                .filter(|object| {
                    wanted.as_ref().is_none_or(|(label, value)| object["metadata"]["labels"][label] == value.as_str())
                })
                .collect();
            respond(
                200,
                &json!({"kind": format!("{}List", kind.kind), "apiVersion": kind.api_version,
                        "metadata": {"resourceVersion": guard.resource_version.to_string()}, "items": items}),
            )
        }
        (&Method::POST, None) => {
            let Some(name) = body["metadata"]["name"].as_str().map(str::to_string) else {
                return violation(state, 422, format!("{line}: metadata.name is required"));
            };
            if body["apiVersion"] != kind.api_version || body["kind"] != kind.kind {
                return violation(state, 422, format!("{line}: must be a {} {}", kind.api_version, kind.kind));
            }
            let mut guard = state.lock();
            if guard.objects.contains_key(&key(&name)) {
                return status(409, "AlreadyExists", format!("{plural} \"{name}\" already exists"));
            }
            let mut object = body.clone();
            let version = guard.next_version();
            object["metadata"]["resourceVersion"] = json!(version.to_string());
            object["metadata"]["namespace"] = json!(ns);
            guard.objects.insert(key(&name), object.clone());
            respond(201, &object)
        }
        (&Method::PUT, Some(name)) => {
            if body["metadata"]["name"] != name {
                return violation(state, 422, format!("{line}: metadata.name must be {name:?}"));
            }
            if body["apiVersion"] != kind.api_version || body["kind"] != kind.kind {
                return violation(state, 422, format!("{line}: must be a {} {}", kind.api_version, kind.kind));
            }
            let Some(version) = body["metadata"]["resourceVersion"].as_str().map(str::to_string) else {
                return violation(state, 422, format!("{line}: an update without resourceVersion would be blind"));
            };
            let mut guard = state.lock();
            let Some(current) = guard.objects.get(&key(name)) else {
                return not_found(name);
            };
            if current["metadata"]["resourceVersion"] != version.as_str() {
                return status(
                    409,
                    "Conflict",
                    format!("Operation cannot be fulfilled on {plural} \"{name}\": the object has been modified"),
                );
            }
            let mut object = body.clone();
            let new_version = guard.next_version();
            object["metadata"]["resourceVersion"] = json!(new_version.to_string());
            object["metadata"]["namespace"] = json!(ns);
            guard.objects.insert(key(name), object.clone());
            respond(200, &object)
        }
        _ => violation(state, 405, format!("{line}: not a {plural} operation scalegate uses")),
    }
}
