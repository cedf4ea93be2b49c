//! Reaction time from a `ScaleSignal` produced to Kafka to the `/scale`
//! update received by the (fake) API server, through `scalegate run` (its
//! own process, decision state kept in the cluster as by default):
//! rdkafka consumer → signal hub → triggered evaluation → `directive` policy
//! in the sandbox → guardrails → `PUT …/scale`. For each directive
//! consumer `fetch_wait` (librdkafka's `fetch.wait.max.ms`): 1,000 signals,
//! one at a time, alternating the target between two counts; where the time
//! went (from each decision's `timing`: waiting in the hub, reading the
//! target, the policy, the write; the rest is the broker: produce and
//! fetch); and what an idle consumer costs — daemon and broker CPU, and
//! fetch requests per second counted by a proxy in front of the broker.
//!
//! Needs tansu (scripts/install-test-tools.sh) and the built policies
//! (`just plugins`). Run: `cargo bench --bench signal_latency` (or
//! `just bench-signals`); `-- --fetch-wait 0,10` picks the settings (default 0, 1, 10 and 100 ms).

#[path = "../tests/support/mod.rs"]
mod support;

use fake_apiserver::FakeApiServer;
use scalegate::cli::bench::usage::cpu_seconds;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::daemon::Daemon;
use support::servers::{Tansu, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SIGNALS: usize = 1_000;
const IDLE: Duration = Duration::from_secs(10);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let waits: Vec<u64> = args
        .iter()
        .position(|a| a == "--fetch-wait")
        .and_then(|i| args.get(i + 1))
        .map(|list| list.split(',').map(|ms| ms.trim().parse().expect("--fetch-wait takes ms, e.g. 1,10")).collect())
        .unwrap_or_else(|| vec![0, 1, 10, 100]);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut rows = Vec::new();
    for wait in waits {
        rows.push(runtime.block_on(run(wait)));
    }
    println!(
        "\n# ScaleSignal produced to Kafka → /scale received by the API server ({SIGNALS} signals, loopback, tansu)"
    );
    println!("| fetch_wait | p50 ms | p90 ms | p99 ms | max ms | idle daemon CPU | idle broker CPU | idle fetches/s |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        println!("{}", row.summary);
    }
    println!(
        "| KEDA Kafka trigger, by construction (30 s polling + 15 s HPA sync) | up to 45,000 | | | 45,000 | | | |"
    );
    println!("\n# where the time went, per signal (ms)");
    println!("| fetch_wait | share | p50 | p90 | p99 |");
    println!("|---:|---|---:|---:|---:|");
    for row in &rows {
        for line in &row.shares {
            println!("{line}");
        }
    }
}

struct Row {
    summary: String,
    shares: Vec<String>,
}

/// Kafka requests from clients to the broker by API key (1 = Fetch).
type Requests = Arc<BTreeMap<i16, AtomicU64>>;

/// A proxy in front of the broker that counts the requests clients send.
async fn counting_proxy(port: u16, upstream: u16) -> Requests {
    let counts: Requests = Arc::new((0..100).map(|key| (key, AtomicU64::new(0))).collect());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let shared = counts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else { continue };
            let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else { continue };
            // no Nagle: a proxy must not delay small frames (40 ms with delayed ACKs)
            let _ = (client.set_nodelay(true), server.set_nodelay(true));
            let counts = shared.clone();
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
            });
            tokio::spawn(async move {
                // frames: i32 length, then i16 api key, i16 version, …
                loop {
                    let mut length = [0u8; 4];
                    if client_read.read_exact(&mut length).await.is_err() {
                        return;
                    }
                    let size = i32::from_be_bytes(length).max(0) as usize;
                    let mut frame = vec![0u8; 4 + size];
                    frame[..4].copy_from_slice(&length);
                    if client_read.read_exact(&mut frame[4..]).await.is_err() {
                        return;
                    }
                    if size >= 2
                        && let Some(count) = counts.get(&i16::from_be_bytes([frame[4], frame[5]]))
                    {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    // one write per frame
                    if server_write.write_all(&frame).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    counts
}

fn percentile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() as f64 - 1.0) * q).round() as usize]
}

async fn run(fetch_wait_ms: u64) -> Row {
    let (broker_port, proxy_port) = (free_port(), free_port());
    let broker = Tansu::start_advertising(broker_port, proxy_port, false);
    let requests = counting_proxy(proxy_port, broker_port).await;
    broker.create_topic("rtc.control.scale", 1);
    let brokers = format!("127.0.0.1:{proxy_port}");
    let fake = FakeApiServer::start().await;
    fake.add_scalable("apps/v1", "statefulsets", "rtc", "socket", 3, "app=socket");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::copy(support::policy("directive.wasm"), dir.path().join("policies/directive.wasm")).unwrap();
    std::fs::write(dir.path().join("kubeconfig"), fake.kubeconfig()).unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        format!(
            r#"policies: {{directory: {}}}
sources:
  kafka: {{brokers: "{brokers}", group_id: bench, fetch_wait: {fetch_wait_ms}ms, directives: [{{topic: rtc.control.scale}}]}}
workloads:
  - target: {{kind: StatefulSet, namespace: rtc, name: socket}}
    interval: 1h
    min_replicas: 1
    max_replicas: 100
    policies: [{{policy: directive}}]
"#,
            dir.path().join("policies").display()
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start(dir.path(), &[]);
    let pid = daemon.child.id();
    let producer = broker.producer();
    let send = |replicas: u32| {
        let payload = format!(r#"{{"target": "socket", "targetReplicas": {replicas}, "urgency": 3}}"#);
        let producer = producer.clone();
        async move { support::servers::send(&producer, "rtc.control.scale", &payload).await }
    };

    // wait until the consumer reads new messages
    let joined = Instant::now();
    let mut target = 10;
    loop {
        send(target).await;
        let asked = Instant::now();
        while fake.replicas("rtc", "socket") != Some(target) && asked.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if fake.replicas("rtc", "socket") == Some(target) {
            break;
        }
        assert!(joined.elapsed() < Duration::from_secs(120), "the directive consumer never started reading");
        target += 1;
    }

    let (mut total, mut produce, mut broker_share, mut wait, mut observe, mut policy, mut write) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for i in 0..SIGNALS {
        let replicas = if i % 2 == 0 { 4 } else { 5 };
        let before = fake.scale_writes().len();
        let started = Instant::now();
        send(replicas).await;
        let acked = started.elapsed();
        while fake.scale_writes().len() == before {
            assert!(started.elapsed() < Duration::from_secs(10), "signal {i} was not applied");
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
        let landed = fake.scale_writes().last().unwrap().at.duration_since(started);
        // the decision's own account of its time
        let record = loop {
            let response = daemon.get("/v1/workloads/rtc/socket/decisions?limit=1");
            let body: serde_json::Value = serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
            let record = body["decisions"][0].clone();
            if record["applied"] == true && record["guardrails"]["replicas"] == replicas {
                break record;
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        let us = |name: &str| record["timing"][name].as_f64().unwrap() / 1e3;
        let inside = us("signal_wait_us") + us("observe_us") + us("policies_us") + us("write_us");
        let ms = landed.as_secs_f64() * 1e3;
        total.push(ms);
        produce.push(acked.as_secs_f64() * 1e3);
        broker_share.push((ms - inside).max(0.0));
        wait.push(us("signal_wait_us"));
        observe.push(us("observe_us"));
        policy.push(us("policies_us"));
        write.push(us("write_us"));
    }

    // idle: no traffic
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fetches = |requests: &Requests| requests[&1].load(Ordering::Relaxed);
    let (daemon_cpu, broker_cpu, fetched) = (cpu_seconds(pid), cpu_seconds(broker.pid()), fetches(&requests));
    tokio::time::sleep(IDLE).await;
    let seconds = IDLE.as_secs_f64();
    let idle_daemon = (cpu_seconds(pid) - daemon_cpu) / seconds * 100.0;
    let idle_broker = (cpu_seconds(broker.pid()) - broker_cpu) / seconds * 100.0;
    let idle_fetches = (fetches(&requests) - fetched) as f64 / seconds;

    let row = |values: &mut Vec<f64>| {
        (percentile(values, 0.5), percentile(values, 0.9), percentile(values, 0.99), percentile(values, 1.0))
    };
    let (p50, p90, p99, max) = row(&mut total);
    let summary = format!(
        "| {fetch_wait_ms} ms | {p50:.1} | {p90:.1} | {p99:.1} | {max:.1} | {idle_daemon:.1} % | {idle_broker:.1} % | {idle_fetches:.0} |"
    );
    println!("{summary}");
    let mut shares = Vec::new();
    for (name, values) in [
        ("produce (send → broker ack)", &mut produce),
        ("broker: produce + fetch (rest of the total)", &mut broker_share),
        ("waiting in the hub", &mut wait),
        ("reading the target (GET /scale)", &mut observe),
        ("the policy (directive, sandboxed)", &mut policy),
        ("the write (PUT /scale)", &mut write),
    ] {
        let (p50, p90, p99, _) = row(values);
        shares.push(format!("| {fetch_wait_ms} ms | {name} | {p50:.2} | {p90:.2} | {p99:.2} |"));
    }
    daemon.signal("-TERM");
    daemon.wait(Duration::from_secs(15));
    drop(broker);
    Row { summary, shares }
}
