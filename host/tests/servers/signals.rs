//! Signal sources end to end, against real servers started here: source →
//! snapshot → policy → guardrails → `/scale` written to the fake API server.
//! A source that stops leaves its inputs stale (no scale-down on stale
//! data) and recovers when the server returns, without restarting scalegate.

use crate::support::rig::{Rig, eventually};
use crate::support::servers::{Blackhole, HttpStub, NatsServer, Prometheus, RedisServer, ScrapeTarget, free_port};
use fake_apiserver::FakeApiServer;
use std::time::{Duration, Instant};

const TOKEN: &str = "signals-test-token-0123456789";

/// The daemon with target-tracking and fixed, against a fake API server
/// holding `shop/web` at 2 replicas with two ready pods.
async fn web_rig(yaml: &str) -> Rig {
    let fake = FakeApiServer::start().await;
    fake.add_deployment("shop", "web", 2);
    fake.put_running_pod("shop", "web", "web-0", true, "250m");
    fake.put_running_pod("shop", "web", "web-1", true, "250m");
    let policies = [("tt.wasm", "target_tracking.wasm"), ("fixed.wasm", "fixed.wasm")];
    Rig::start(fake, ("shop", "web"), &policies, yaml, Some(TOKEN)).await
}

/// `shop/web` tracking `rps` (100 per replica) from the Prometheus source
/// `source` (the `sources.prometheus` mapping, YAML flow style) and `query`.
fn prometheus_config(source: &str, query: &str) -> String {
    format!(
        r#"
sources:
  prometheus: {source}
workloads:
  - target: {{namespace: shop, name: web}}
    interval: 1s
    min_replicas: 1
    max_replicas: 20
    policies: [{{policy: target-tracking, params: {{metric: rps, target: 100}}}}]
    metrics:
      - {{name: rps, max_age: 2s, prometheus: {{query: '{query}'}}}}
"#
    )
}

/// The test target's series, templated with the workload.
const APP_RPS: &str = r#"sum(app_rps{namespace="{{namespace}}", app="{{name}}"})"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_drives_scaling_goes_stale_when_stopped_and_recovers() {
    let target = ScrapeTarget::start("shop", "web", 800.0).await;
    let port = free_port();
    let prometheus = Prometheus::start(port, target.addr);
    let source = format!(r#"{{url: "{}", interval: 300ms, timeout: 1s}}"#, prometheus.url());
    let rig = web_rig(&prometheus_config(&source, APP_RPS)).await;

    // 800 rps at 100 per replica → 8
    eventually("scale to 8", Duration::from_secs(20), || rig.replicas() == Some(8)).await;
    let inputs = rig.get("/v1/workloads/shop/web/inputs").await;
    assert_eq!(inputs["metrics"]["rps"]["value"], 800.0);
    assert_eq!(inputs["metrics"]["rps"]["fresh"], true);
    let decisions = rig.get("/v1/workloads/shop/web/decisions?limit=50").await;
    let applied = decisions["decisions"].as_array().unwrap().iter().find(|d| d["applied"] == true).unwrap().clone();
    assert!(applied["inputs"].as_str().unwrap().contains("rps=800.000"), "{applied}");

    // Prometheus goes away; the load drops. Nothing may scale down on what is left.
    prometheus.stop();
    target.set(100.0);
    rig.wait_stale("rps").await;
    assert_eq!(rig.replicas(), Some(8), "scaled down on stale data");
    let decisions = rig.get("/v1/workloads/shop/web/decisions?limit=1").await;
    assert_eq!(decisions["decisions"][0]["applied"], false);
    assert!(rig.metrics().await.contains("scalegate_source_errors_total{source=\"prometheus\",kind=\"connect\"}"));

    // back, on the same address: scalegate picks it up by itself
    let prometheus = Prometheus::start(port, target.addr);
    eventually("scale down to 1 after recovery", Duration::from_secs(20), || rig.replicas() == Some(1)).await;
    let inputs = rig.get("/v1/workloads/shop/web/inputs").await;
    assert_eq!(inputs["metrics"]["rps"]["fresh"], true);
    assert!(inputs["metrics"]["rps"]["error"].is_null());
    let writes = rig.writes();
    assert_eq!(writes, [(2, 8), (8, 1)], "no write while the input was stale");
    drop(prometheus);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_signals_trigger_an_immediate_evaluation_and_bad_pushes_change_nothing() {
    let yaml = r#"
workloads:
  - target: {namespace: shop, name: web}
    interval: 1h
    min_replicas: 1
    max_replicas: 20
    policies: [{policy: target-tracking, params: {metric: queue, target: 10}}]
    metrics:
      - {name: queue, push: {}, max_age: 10m}
"#;
    let rig = web_rig(yaml).await;
    let client = reqwest::Client::new();
    let push = |body: serde_json::Value, token: Option<&str>| {
        let mut request = client.post(format!("{}/v1/signals", rig.admin())).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    // the first evaluation (staggered start) has no queue value: no opinion
    eventually("a first decision", Duration::from_secs(5), || {
        rig.running().decider.decisions("shop/web", 1).is_some_and(|d| !d.is_empty())
    })
    .await;

    // refused: no token, unknown workload, undeclared metric, NaN, urgency 9
    let value = serde_json::json!({"workload": "shop/web", "metrics": [{"name": "queue", "value": 95.0}]});
    assert_eq!(push(value.clone(), None).await.unwrap().status(), 401);
    for (body, status, needle) in [
        (serde_json::json!({"workload": "shop/nope", "metrics": []}), 404, "no workload"),
        (
            serde_json::json!({"workload": "shop/web", "metrics": [{"name": "queue", "value": 1.0}, {"name": "cpu", "value": 1.0}]}),
            422,
            "declares no metric \\\"cpu\\\"",
        ),
        (serde_json::json!({"workload": "shop/web", "metric": []}), 400, "unknown field `metric`"),
        (serde_json::json!({"workload": "shop/web", "signals": [{"kind": "scale", "urgency": 9}]}), 422, "urgency"),
    ] {
        let response = push(body.clone(), Some(TOKEN)).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{body}");
        let text = response.text().await.unwrap();
        assert!(text.contains(needle), "{text} should contain {needle}");
    }
    let inputs = rig.get("/v1/workloads/shop/web/inputs").await;
    assert!(inputs["metrics"]["queue"]["value"].is_null(), "nothing from the refused pushes was kept: {inputs}");
    assert_eq!(rig.replicas(), Some(2));

    // a value alone waits for the next tick (an hour away) …
    let response = push(value, Some(TOKEN)).await.unwrap();
    assert_eq!(response.status(), 202);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rig.replicas(), Some(2));
    // … a signal evaluates now: 95 / 10 → 10 replicas, answered once written
    let started = Instant::now();
    let signal = serde_json::json!({"workload": "shop/web", "signals": [{"kind": "scale", "action": "scale_out", "urgency": 3, "reason": "traffic spike"}]});
    let response = push(signal, Some(TOKEN)).await.unwrap();
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        answer["decision"],
        serde_json::json!({"replicas": 10, "applied": true, "at_ms": answer["decision"]["at_ms"]})
    );
    assert_eq!(rig.replicas(), Some(10), "written before the answer");
    println!("signal → /scale written and answered in {:?}", started.elapsed());
    let decisions = rig.get("/v1/workloads/shop/web/decisions?limit=1").await;
    assert!(decisions["decisions"][0]["inputs"].as_str().unwrap().contains("1 signals"), "{decisions}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_sources_hold_only_their_own_inputs() {
    // Prometheus and a Kafka broker that accept connections and never
    // answer, with deadlines far beyond their poll intervals; the pushed
    // queue length must still scale the workload up at once
    let (prometheus, kafka) = (Blackhole::start().await, Blackhole::start().await);
    let yaml = format!(
        r#"
sources:
  prometheus: {{url: "http://127.0.0.1:{}", interval: 300ms, timeout: 30s}}
  kafka: {{brokers: "127.0.0.1:{}", lag_interval: 300ms, timeout: 5s}}
workloads:
  - target: {{namespace: shop, name: web}}
    interval: 1h
    min_replicas: 1
    max_replicas: 20
    policies: [{{policy: target-tracking, params: {{metric: queue, target: 10}}}}]
    metrics:
      - {{name: queue, push: {{}}, max_age: 10m}}
      - {{name: rps, max_age: 2s, prometheus: {{query: "sum(rate(http_requests_total[1m]))"}}}}
      - {{name: lag, max_age: 2s, kafka_lag: {{topic: orders, group: workers}}}}
"#,
        prometheus.port, kafka.port
    );
    let rig = web_rig(&yaml).await;
    let client = reqwest::Client::new();
    let push = |queue: f64| {
        let body = serde_json::json!({"workload": "shop/web", "metrics": [{"name": "queue", "value": queue}],
                                      "signals": [{"kind": "queue-changed"}]});
        client.post(format!("{}/v1/signals", rig.admin())).bearer_auth(TOKEN).json(&body).send()
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    assert_eq!(push(95.0).await.unwrap().status(), 200, "answered once the decision is written");
    assert_eq!(rig.replicas(), Some(10));
    println!("scaled up {:?} after the push, with two sources hung", started.elapsed());
    let inputs = rig.get("/v1/workloads/shop/web/inputs").await;
    assert_eq!(inputs["metrics"]["queue"]["fresh"], true, "{inputs}");
    for hung in ["rps", "lag"] {
        assert_eq!(inputs["metrics"][hung]["fresh"], false, "{inputs}");
    }
    // the hung inputs are required: a lower queue scales nothing down
    let held: serde_json::Value = push(5.0).await.unwrap().json().await.unwrap();
    assert_eq!(held["decision"]["applied"], false, "{held}");
    assert_eq!(held["decision"]["replicas"], 10, "{held}");
    assert_eq!(rig.writes(), [(2, 10)]);
    let decisions = rig.get("/v1/workloads/shop/web/decisions?limit=1").await;
    assert_eq!(decisions["decisions"][0]["applied"], false, "{decisions}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_backlog_drives_scaling_goes_stale_when_stopped_and_recovers() {
    use async_nats::jetstream;
    let store = tempfile::tempdir().unwrap();
    let (port, monitor) = (free_port(), free_port());
    let server = NatsServer::start(port, monitor, store.path());
    let url = server.monitor_url();
    let (js, _) = jobs_stream(port).await;
    for _ in 0..45 {
        js.publish("jobs.render", "job".into()).await.unwrap().await.unwrap();
    }
    let yaml = format!(
        r#"
sources:
  nats: {{monitor_url: "{url}", interval: 300ms}}
workloads:
  - target: {{namespace: shop, name: web}}
    interval: 1s
    min_replicas: 1
    max_replicas: 20
    policies: [{{policy: target-tracking, params: {{metric: backlog, target: 10}}}}]
    metrics:
      - {{name: backlog, max_age: 2s, nats: {{stream: JOBS, consumer: workers}}}}
"#
    );
    let rig = web_rig(&yaml).await;
    // 45 pending at 10 per replica → 5
    eventually("scale to 5", Duration::from_secs(15), || rig.replicas() == Some(5)).await;
    assert_eq!(rig.get("/v1/workloads/shop/web/inputs").await["metrics"]["backlog"]["value"], 45.0);

    server.stop();
    rig.wait_stale("backlog").await;
    assert_eq!(rig.replicas(), Some(5), "nothing changes on stale data");

    // back with its stored stream; workers drain 35 jobs → backlog 10 → 1 replica
    let server = NatsServer::start(port, monitor, store.path());
    let client = async_nats::connect(format!("127.0.0.1:{port}")).await.unwrap();
    let js = jetstream::new(client.clone());
    // JetStream recovers its stored streams after the server accepts
    // connections: ask until the consumer is back
    let start = Instant::now();
    let consumer: jetstream::consumer::PullConsumer = loop {
        match js.get_stream("JOBS").await {
            Ok(stream) => match stream.get_consumer("workers").await {
                Ok(consumer) => break consumer,
                Err(e) => assert!(start.elapsed() < Duration::from_secs(15), "consumer not recovered: {e}"),
            },
            Err(e) => assert!(start.elapsed() < Duration::from_secs(15), "stream not recovered: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    work_off(&consumer, 35).await;
    eventually("scale to 1 after recovery", Duration::from_secs(15), || rig.replicas() == Some(1)).await;
    // up to 5, nothing while stale, then down to 1 — in one step, or in more
    // when an evaluation saw the backlog half drained (the acks come in batches)
    let writes = rig.writes();
    assert_eq!(writes[0], (2, 5), "{writes:?}");
    assert_eq!(writes.last().map(|w| w.1), Some(1), "{writes:?}");
    assert!(writes[1..].iter().all(|(from, to)| to < from), "only scale-downs after recovery: {writes:?}");
    assert!(writes.windows(2).all(|w| w[0].1 == w[1].0), "each write starts where the last ended: {writes:?}");
    drop(server);
    rig.stop().await;
}

/// The stream `JOBS` (subjects `jobs.>`, stored in files) and its durable
/// pull consumer `workers` on the NATS server at `port`.
async fn jobs_stream(port: u16) -> (async_nats::jetstream::Context, async_nats::jetstream::consumer::PullConsumer) {
    use async_nats::jetstream;
    let js = jetstream::new(async_nats::connect(format!("127.0.0.1:{port}")).await.unwrap());
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: "JOBS".into(),
            subjects: vec!["jobs.>".into()],
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("workers".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    (js, consumer)
}

/// Fetches and acknowledges `jobs` messages, as workers would (a fetch may
/// end before its batch is full: fetch until all are acked, within 30 s).
async fn work_off(consumer: &async_nats::jetstream::consumer::PullConsumer, jobs: usize) {
    use futures::StreamExt;
    let start = Instant::now();
    let mut acked = 0;
    while acked < jobs {
        let mut batch = consumer.fetch().max_messages(jobs - acked).messages().await.unwrap();
        while let Some(message) = batch.next().await {
            message.unwrap().double_ack().await.unwrap();
            acked += 1;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "only {acked} of {jobs} jobs fetched");
    }
}

fn forecast(generated: k8s_openapi::jiff::Timestamp, replicas: &[u32]) -> String {
    serde_json::json!({"workload": "web-api", "metric": "rps", "generatedAt": generated.to_string(),
                       "stepSeconds": 60, "desiredReplicas": replicas})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forecasts_drive_scaling_and_stale_or_malformed_ones_change_nothing() {
    use k8s_openapi::jiff::{SignedDuration, Timestamp};
    let forecaster = HttpStub::start(&forecast(Timestamp::now(), &[6, 8, 9])).await;
    let yaml = format!(
        r#"
sources:
  forecast: {{url: "{}", interval: 300ms}}
workloads:
  - target: {{namespace: shop, name: web}}
    interval: 1s
    min_replicas: 1
    max_replicas: 20
    policies: [{{policy: target-tracking, params: {{metric: lead, target: 1}}}}]
    metrics:
      - {{name: lead, max_age: 5s, forecast: {{workload: web-api}}}}
"#,
        forecaster.url()
    );
    let rig = web_rig(&yaml).await;
    eventually("scale to the forecast", Duration::from_secs(15), || rig.replicas() == Some(6)).await;
    assert!(
        forecaster.requests().iter().any(|r| r.split(' ').next() == Some("/forecast/current?workload=web-api")),
        "{:?}",
        forecaster.requests()
    );
    let decisions = rig.get("/v1/workloads/shop/web/decisions?limit=1").await;
    assert!(decisions["decisions"][0]["inputs"].as_str().unwrap().contains("lead=6.000"), "{decisions}");

    // not JSON: counted and skipped; then an old forecast, served fresh: stale all the same
    forecaster.set("<html>502 Bad Gateway</html>");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(rig.metrics().await.contains("scalegate_source_errors_total{source=\"forecast\",kind=\"parse\"}"));
    forecaster.set(&forecast(Timestamp::now() - SignedDuration::from_mins(10), &[2]));
    rig.wait_stale("lead").await;
    assert_eq!(rig.replicas(), Some(6), "no scale-down on an old forecast");

    forecaster.set(&forecast(Timestamp::now(), &[3, 3]));
    eventually("scale to the new forecast", Duration::from_secs(10), || rig.replicas() == Some(3)).await;
    let writes = rig.writes();
    assert_eq!(writes, [(2, 6), (6, 3)]);
    rig.stop().await;
}

async fn beat(url: &str, node: &str, connections: u32, age: Duration) {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap() - age;
    let fields = [("connections", connections.to_string()), ("cpu", "0.5".into()), ("ts", ts.as_millis().to_string())];
    let _: () =
        redis::AsyncCommands::hset_multiple(&mut connection, format!("heartbeat:web:{node}"), &fields).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_heartbeats_drive_scaling_drop_dead_nodes_and_survive_a_restart() {
    let port = free_port();
    let server = RedisServer::start(port);
    let url = server.url();
    beat(&url, "web-0", 900, Duration::ZERO).await;
    beat(&url, "web-1", 900, Duration::ZERO).await;
    beat(&url, "web-9", 5000, Duration::from_secs(60)).await; // stopped beating a minute ago
    let yaml = format!(
        r#"
sources:
  redis: {{url: "{url}", interval: 300ms}}
workloads:
  - target: {{namespace: shop, name: web}}
    interval: 1s
    min_replicas: 1
    max_replicas: 20
    policies: [{{policy: target-tracking, params: {{metric: connections, target: 400}}}}]
    metrics:
      - name: connections
        max_age: 2s
        redis: {{pattern: "heartbeat:{{{{name}}}}:*", field: connections, ttl: 10s}}
"#
    );
    let rig = web_rig(&yaml).await;
    // 1800 live connections at 400 per replica → 5 (the dead node's 5000 do not count)
    eventually("scale to 5", Duration::from_secs(15), || rig.replicas() == Some(5)).await;
    assert_eq!(rig.get("/v1/workloads/shop/web/inputs").await["metrics"]["connections"]["value"], 1800.0);

    server.stop();
    rig.wait_stale("connections").await;
    assert_eq!(rig.replicas(), Some(5), "nothing changes on stale data");
    assert!(rig.metrics().await.contains("scalegate_source_errors_total{source=\"redis\",kind=\"connect\"}"));

    // a fresh Redis (data lost); nodes beat again with fewer connections → 2
    let server = RedisServer::start(port);
    beat(&url, "web-0", 500, Duration::ZERO).await;
    beat(&url, "web-1", 300, Duration::ZERO).await;
    eventually("scale to 2 after recovery", Duration::from_secs(15), || rig.replicas() == Some(2)).await;
    let writes = rig.writes();
    assert_eq!(writes, [(2, 5), (5, 2)]);
    drop(server);
    rig.stop().await;
}

/// `api` pods request 500m; usage is (app, proxy) millicores.
fn api_usage(fake: &FakeApiServer, pod: &str, app: u32, proxy: u32) {
    fake.put_pod_metrics("shop", pod, &[("app", &format!("{app}m"), "200Mi"), ("proxy", &format!("{proxy}m"), "20Mi")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_metrics_feed_the_hpa_policy_and_an_unavailable_metrics_api_holds_scale_down() {
    use fake_apiserver::Fault;
    let fake = FakeApiServer::start().await;
    fake.add_deployment("shop", "api", 4);
    for i in 0..4 {
        let pod = format!("api-{i}");
        fake.put_running_pod("shop", "api", &pod, true, "500m");
        api_usage(&fake, &pod, 40, 10); // 50m of 500m: 10 %
    }
    // another workload's busy pod in the same namespace must not count
    fake.put_running_pod("shop", "batch", "batch-0", true, "500m");
    fake.put_pod_metrics("shop", "batch-0", &[("app", "5", "1Gi")]);
    // metrics-server down from the start (the API server answers 503 for its APIService)
    fake.inject(hyper::Method::GET, "/apis/metrics.k8s.io/", Fault::Status(503), usize::MAX);
    let yaml = r#"
sources:
  pod_metrics: {interval: 500ms}
workloads:
  - target: {namespace: shop, name: api}
    interval: 1s
    min_replicas: 1
    max_replicas: 10
    policies:
      - policy: hpa
        params:
          metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}}]
          downscaleStabilizationSeconds: 0
    metrics:
      - {name: cpu, pod_metrics: {resource: cpu}}
"#;
    let rig = Rig::start(fake, ("shop", "api"), &[("hpa.wasm", "hpa.wasm")], yaml, None).await;
    let started = Instant::now();
    let inputs = loop {
        let inputs = rig.get("/v1/workloads/shop/api/inputs").await;
        if inputs["metrics"]["cpu"]["error"].is_string() {
            break inputs;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no failure reported: {inputs}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(inputs["metrics"]["cpu"]["error"].as_str().unwrap().contains("HTTP 503"), "{inputs}");
    rig.wait_stale("cpu").await;
    assert!(rig.metrics().await.contains(r#"scalegate_source_errors_total{source="pod-metrics",kind="http"}"#));
    assert_eq!(rig.writes(), [], "10 % of the request would scale down, but the input is stale");

    // metrics-server back: 4 × 50m of 500m at a 50 % target → ceil(4 × 10/50) = 1
    rig.fake.clear_faults();
    eventually("scale to 1", Duration::from_secs(10), || rig.replicas() == Some(1)).await;
    let inputs = rig.get("/v1/workloads/shop/api/inputs").await;
    assert!((inputs["metrics"]["cpu"]["value"].as_f64().unwrap() - 0.2).abs() < 1e-9, "{inputs}");

    // the ReplicaSet removes three pods; the last one gets busy: 900m of 500m → 180 % → 4
    for i in 1..4 {
        rig.fake.delete_pod("shop", &format!("api-{i}"));
    }
    api_usage(&rig.fake, "api-0", 800, 100);
    eventually("scale to 4", Duration::from_secs(10), || rig.replicas() == Some(4)).await;
    assert_eq!(rig.writes(), [(4, 1), (1, 4)]);
    let decisions = rig.get("/v1/workloads/shop/api/decisions?limit=1").await;
    assert!(decisions["decisions"][0]["inputs"].as_str().unwrap().contains("cpu=0.900"), "{decisions}");
    let listed = rig.fake.requests().iter().filter(|r| r.contains("metrics.k8s.io")).count();
    assert!(listed >= 4, "one list per poll: {listed}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_over_tls_with_basic_auth_and_a_rotated_password() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let (ca, cert, key) = crate::support::servers::certificates();
    std::fs::write(path("ca.pem"), &ca).unwrap();
    std::fs::write(path("server.pem"), &cert).unwrap();
    std::fs::write(path("server.key"), &key).unwrap();
    let hash = bcrypt::hash("correct horse", 5).unwrap();
    std::fs::write(
        path("web.yml"),
        format!(
            "tls_server_config: {{cert_file: {}, key_file: {}}}\nbasic_auth_users: {{scalegate: '{hash}'}}\n",
            path("server.pem").display(),
            path("server.key").display()
        ),
    )
    .unwrap();
    std::fs::write(path("password"), "wrong horse\n").unwrap();
    let target = ScrapeTarget::start("shop", "web", 600.0).await;
    let port = free_port();
    let _prometheus = Prometheus::start_secured(port, target.addr, &path("web.yml"));
    let source = format!(
        "{{url: \"https://127.0.0.1:{port}\", interval: 300ms, ca_file: {}, basic_auth: {{username: scalegate, password_file: {}}}}}",
        path("ca.pem").display(),
        path("password").display()
    );
    let yaml = prometheus_config(&source, APP_RPS);
    let rig = web_rig(&yaml).await;

    // the wrong password: refused by Prometheus, counted, nothing changes
    let started = Instant::now();
    let inputs = loop {
        let inputs = rig.get("/v1/workloads/shop/web/inputs").await;
        if inputs["metrics"]["rps"]["error"].as_str().is_some_and(|e| e.contains("401")) {
            break inputs;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no 401 reported: {inputs}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(inputs["metrics"]["rps"]["fresh"], false);
    assert!(rig.metrics().await.contains(r#"scalegate_source_errors_total{source="prometheus",kind="http"}"#));
    assert_eq!(rig.writes(), []);

    // the secret is rotated: read at the next poll, no restart; 600 rps → 6
    std::fs::write(path("password"), "correct horse\n").unwrap();
    eventually("scale to 6", Duration::from_secs(20), || rig.replicas() == Some(6)).await;
    assert_eq!(rig.writes(), [(2, 6)]);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_requests_carry_the_current_bearer_token_and_the_configured_headers() {
    // a Prometheus-compatible endpoint behind a token-checking proxy, as
    // Thanos, Mimir or kube-rbac-proxy put it: the stub records what arrives
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let answer = format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[{now},"300"]}}]}}}}"#
    );
    let stub = HttpStub::start(&answer).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "first-token\n").unwrap();
    let source = format!(
        "{{url: \"{}\", interval: 200ms, bearer_token_file: {}, headers: {{X-Scope-OrgID: team-shop}}}}",
        stub.url(),
        token.display()
    );
    let yaml = prometheus_config(&source, r#"sum(rate(http_requests_total{namespace="{{namespace}}"}[1m]))"#);
    let rig = web_rig(&yaml).await;
    eventually("scale to 3", Duration::from_secs(10), || rig.replicas() == Some(3)).await;
    let seen = stub.requests();
    let first = &seen[0];
    assert!(
        first.starts_with("/api/v1/query?query=sum%28rate%28http_requests_total%7Bnamespace%3D%22shop%22"),
        "{first}"
    );
    assert!(first.contains("authorization=Bearer first-token") && first.contains("x-scope-orgid=team-shop"), "{first}");
    std::fs::write(&token, "second-token\n").unwrap();
    eventually("the rotated token in use", Duration::from_secs(5), || {
        stub.requests().iter().any(|r| r.contains("authorization=Bearer second-token"))
    })
    .await;
    rig.stop().await;
}

/// Scale to zero and back on a NATS JetStream backlog (seed 004's backend
/// under KEDA's rules, with scalegate writing `/scale`): idle for the idle
/// period → 0; the first job → up at once, without waiting for the 5 s
/// interval; drained → held at 1 until the idle period has passed since the
/// last activity, then 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_backlog_scales_to_zero_and_back_with_the_idle_period_from_the_last_activity() {
    let store = tempfile::tempdir().unwrap();
    let (port, monitor) = (free_port(), free_port());
    let server = NatsServer::start(port, monitor, store.path());
    let url = server.monitor_url();
    let (js, consumer) = jobs_stream(port).await;
    let yaml = format!(
        r#"
sources:
  nats: {{monitor_url: "{url}", interval: 200ms}}
workloads:
  - target: {{namespace: shop, name: web}}
    interval: 5s
    min_replicas: 0
    max_replicas: 20
    guardrails: {{idle_before_zero: 8s}}
    policies: [{{policy: target-tracking, params: {{metric: backlog, target: 10}}}}]
    metrics:
      - {{name: backlog, max_age: 2s, nats: {{stream: JOBS, consumer: workers}}}}
"#
    );
    let fake = FakeApiServer::start().await;
    fake.add_deployment("shop", "web", 1);
    let started = Instant::now();
    let rig = Rig::start(fake, ("shop", "web"), &[("tt.wasm", "target_tracking.wasm")], &yaml, Some(TOKEN)).await;

    // idle from the start: zero once the idle period has passed (at an evaluation)
    eventually("to zero", Duration::from_secs(20), || rig.replicas() == Some(0)).await;
    assert!(
        started.elapsed() >= Duration::from_secs(8),
        "to zero after {:?}, before the idle period",
        started.elapsed()
    );

    // the first jobs: 25 pending at 10 per replica → 3, at once (the input woke up)
    for _ in 0..25 {
        js.publish("jobs.render", "job".into()).await.unwrap().await.unwrap();
    }
    let published = Instant::now();
    eventually("from zero", Duration::from_secs(5), || rig.replicas() == Some(3)).await;
    let woke = published.elapsed();
    assert!(woke < Duration::from_millis(1500), "from zero after {woke:?}: the 5 s interval was waited for");
    let active_at = Instant::now();

    // drained: not active any more; held at 1, then 0 once idle for the period
    work_off(&consumer, 25).await;
    // the next evaluation (5 s) finds it idle for less than 8 s: held at 1; the one after: 0
    eventually("held at one", Duration::from_secs(10), || rig.replicas() == Some(1)).await;
    eventually("to zero again", Duration::from_secs(15), || rig.replicas() == Some(0)).await;
    let idle = active_at.elapsed();
    assert!(idle >= Duration::from_millis(7500), "to zero {idle:?} after the last activity, before the idle period");
    let decisions = rig.get("/v1/workloads/shop/web/decisions?limit=16").await;
    assert!(decisions.to_string().contains("\"kind\":\"idle\""), "the hold at one is recorded: {decisions}");
    let writes = rig.writes();
    assert_eq!(writes.first(), Some(&(1, 0)), "{writes:?}");
    assert_eq!(writes.last(), Some(&(1, 0)), "{writes:?}");
    assert!(writes.contains(&(0, 3)), "{writes:?}");
    drop(server);
    rig.stop().await;
}
