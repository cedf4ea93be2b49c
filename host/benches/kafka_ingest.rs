//! Sustained ingest: how many Kafka `ScaleSignal` messages per second
//! `scalegate run` takes into its workloads' snapshots, and what that costs
//! in memory and CPU. A backlog of 1.5 million directives spread over
//! 10,000 workloads (`-- --workloads N`) is produced to tansu first; the
//! daemon (its own process, against the fake API server, `directive`
//! policy) then consumes it from the earliest offset as fast as it can while every workload keeps evaluating and
//! scaling. Sampled every 250 ms from outside: the daemon's
//! `scalegate_signals_total` and its RSS (`/proc`). At the end every
//! workload must stand at the count of the last directive sent to it, so
//! the messages did reach the snapshots.
//!
//! Needs tansu (scripts/install-test-tools.sh) and the built policies
//! (`just plugins`). Run: `cargo bench -p scalegate --bench kafka_ingest`.

#[path = "../tests/support/mod.rs"]
mod support;

use fake_apiserver::FakeApiServer;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use scalegate::cli::bench::usage::{cpu_seconds, rss_mib};
use std::io::{BufRead, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::servers::{Tansu, free_port};

/// Workloads the directives are spread over (`-- --workloads N`, default 10,000).
static WORKLOADS: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--workloads")
        .and_then(|i| args.get(i + 1))
        .map(|n| n.parse().expect("--workloads takes a number"))
        .unwrap_or(10_000)
});
const MESSAGES: usize = 1_500_000;
const TOPIC: &str = "rtc.control.scale";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    runtime.block_on(run());
}

/// The replica count the `i`-th message asks of its workload.
fn replicas(i: usize) -> usize {
    2 + (i / *WORKLOADS) % 40
}

fn produce(brokers: &str) -> Duration {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "500000")
        .set("message.timeout.ms", "60000")
        .create()
        .unwrap();
    let started = Instant::now();
    for i in 0..MESSAGES {
        let workload = i % *WORKLOADS;
        let payload = format!(
            r#"{{"target": "w-{workload}", "action": "scale_out", "targetReplicas": {}, "urgency": 1, "reason": "lb load", "region": "eu-{}"}}"#,
            replicas(i),
            i % 3
        );
        let key = format!("w-{workload}");
        let mut record = BaseRecord::to(TOPIC).key(&key).payload(&payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    // local queue full: let librdkafka deliver
                    record = returned;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    started.elapsed()
}

struct Sample {
    at: Duration,
    signals: u64,
    rss_mib: f64,
}

fn get(admin: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(admin).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn counter(metrics: &str, name: &str) -> u64 {
    metrics.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

async fn run() {
    let broker = Tansu::start(free_port());
    broker.create_topic(TOPIC, 4);
    let brokers = broker.brokers();
    let produced = tokio::task::spawn_blocking({
        let brokers = brokers.clone();
        move || produce(&brokers)
    })
    .await
    .unwrap();
    println!(
        "# backlog: {MESSAGES} ScaleSignals for {} workloads produced in {:.1} s ({:.0} msg/s into tansu)",
        *WORKLOADS,
        produced.as_secs_f64(),
        MESSAGES as f64 / produced.as_secs_f64()
    );

    let fake = FakeApiServer::start().await;
    let mut workloads = String::new();
    for w in 0..*WORKLOADS {
        fake.add_scalable("apps/v1", "statefulsets", "rtc", &format!("w-{w}"), 1, &format!("app=w-{w}"));
        workloads.push_str(&format!(
            "  - {{target: {{kind: StatefulSet, namespace: rtc, name: w-{w}}}, interval: 1h, max_replicas: 100, policies: [{{policy: directive}}]}}\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::copy(support::policy("directive.wasm"), dir.path().join("policies/directive.wasm")).unwrap();
    std::fs::write(dir.path().join("kubeconfig"), fake.kubeconfig()).unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        format!(
            "policies: {{directory: {}}}\nsources:\n  kafka:\n    brokers: \"{brokers}\"\n    group_id: ingest\n    options: {{auto.offset.reset: earliest}}\n    directives: [{{topic: {TOPIC}}}]\nworkloads:\n{workloads}",
            dir.path().join("policies").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_scalegate"))
        .args(["run", "--config"])
        .arg(dir.path().join("config.yaml"))
        .arg("--kubeconfig")
        .arg(dir.path().join("kubeconfig"))
        .args(["--admin-listen", "127.0.0.1:0", "--log-level", "warn"])
        .env("SCALEGATE_CACHE_DIR", support::shared_cache())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let admin = loop {
        let line = lines.next().expect("scalegate run exited").unwrap();
        if let Some((_, addr)) = line.split_once("admin API on http://") {
            break addr.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let idle_rss = rss_mib(pid).0;

    let started = Instant::now();
    let cpu_start = cpu_seconds(pid);
    let name = format!("scalegate_signals_total{{source=\"kafka:{TOPIC}\"}}");
    let mut samples = Vec::new();
    let mut first: Option<(Duration, u64, f64)> = None;
    loop {
        let metrics = get(&admin, "/metrics");
        let signals = counter(&metrics, &name);
        let sample = Sample { at: started.elapsed(), signals, rss_mib: rss_mib(pid).0 };
        if first.is_none() && signals > 0 {
            first = Some((sample.at, signals, cpu_seconds(pid)));
        }
        let done = signals >= MESSAGES as u64;
        samples.push(sample);
        if done {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "ingest stalled at {signals} signals");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (first_at, first_count, first_cpu) = first.unwrap();
    let last = samples.last().unwrap();
    let cpu = cpu_seconds(pid) - first_cpu;
    let window = (last.at - first_at).as_secs_f64();
    let rate = (last.signals - first_count) as f64 / window;
    let peak = samples.iter().map(|s| s.rss_mib).fold(0.0, f64::max);
    let hwm = rss_mib(pid).1;

    // every workload ends at its last directive: the messages reached the snapshots
    let workloads = *WORKLOADS;
    let expected: Vec<u32> = (0..workloads).map(|w| replicas(MESSAGES - workloads + w) as u32).collect();
    let settle = Instant::now();
    loop {
        let at: Vec<u32> = (0..workloads).map(|w| fake.replicas("rtc", &format!("w-{w}")).unwrap()).collect();
        if at == expected {
            break;
        }
        if settle.elapsed() > Duration::from_secs(30) {
            let wrong: Vec<usize> = (0..workloads).filter(|w| at[*w] != expected[*w]).collect();
            let w = wrong[0];
            panic!(
                "workloads {wrong:?} did not settle on their last directives: w-{w} at {}, expected {}: {}",
                at[w],
                expected[w],
                get(&admin, &format!("/v1/workloads/rtc/w-{w}/decisions?limit=3"))
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = get(&admin, "/metrics");
    let dropped = counter(&metrics, &format!("scalegate_signals_dropped_total{{source=\"kafka:{TOPIC}\"}}"));
    let scaled = counter(&metrics, "scalegate_decisions_total{kind=\"scaled\"}");
    let total_cpu = cpu_seconds(pid) - cpu_start;

    println!(
        "# sustained ingest of ScaleSignals for {workloads} workloads (tansu on loopback, 4 partitions, one consumer, 2 cores shared)"
    );
    println!("| | value |");
    println!("|---|---:|");
    println!("| messages consumed | {} |", last.signals);
    println!("| ingest rate (first → last message) | {rate:.0} msg/s over {window:.1} s |");
    println!("| daemon CPU while ingesting | {:.0} % of one core |", cpu / window * 100.0);
    println!("| daemon RSS idle → peak (VmHWM) | {idle_rss:.0} → {peak:.0} MiB ({hwm:.0} MiB) |");
    println!("| signals superseded in full queues (QUEUED_SIGNALS / workloads, 16–256 each) | {dropped} |");
    println!("| scales written meanwhile | {scaled} |");
    println!("| daemon CPU in total | {total_cpu:.1} s |");
    println!("# RSS over the run (MiB), every ~10 % of the messages:");
    let mut next = 0u64;
    let mut line = String::new();
    for sample in &samples {
        if sample.signals >= next {
            line.push_str(&format!(" {:.0}%:{:.0}", sample.signals as f64 * 100.0 / MESSAGES as f64, sample.rss_mib));
            next = sample.signals + MESSAGES as u64 / 10;
        }
    }
    println!("#{line}");
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = child.wait();
    broker.stop();
}
