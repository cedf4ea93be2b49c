//! Reaction time from a `ScaleSignal` produced to Kafka to the `/scale`
//! update received by the (fake) API server, through the whole daemon:
//! rdkafka consumer → signal hub → triggered evaluation → `directive`
//! policy in the sandbox → guardrails → `PUT …/scale`. 1,000 signals, one
//! at a time, alternating the target between two counts; prints
//! percentiles beside what a KEDA Kafka trigger gets by construction.
//!
//! Needs tansu (scripts/install-test-tools.sh) and the built policies
//! (`just plugins`). Run: `cargo bench --bench signal_latency`.

#[path = "../tests/support/mod.rs"]
mod support;

use fake_apiserver::FakeApiServer;
use std::time::{Duration, Instant};
use support::rig::Rig;
use support::servers::{Tansu, free_port};

const SIGNALS: usize = 1_000;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run());
}

async fn run() {
    let broker = Tansu::start(free_port());
    broker.create_topic("rtc.control.scale", 1);
    let brokers = broker.brokers();
    let fake = FakeApiServer::start().await;
    fake.add_scalable("apps/v1", "statefulsets", "rtc", "socket", 3, "app=socket");
    let yaml = format!(
        r#"
sources:
  kafka: {{brokers: "{brokers}", group_id: bench, directives: [{{topic: rtc.control.scale}}]}}
workloads:
  - target: {{kind: StatefulSet, namespace: rtc, name: socket}}
    interval: 1h
    min_replicas: 1
    max_replicas: 100
    policies: [{{policy: directive}}]
"#
    );
    let rig = Rig::start(fake, ("rtc", "socket"), &[("directive.wasm", "directive.wasm")], &yaml, None).await;
    let producer = broker.producer();
    let send = |replicas: u32| {
        let payload = format!(r#"{{"target": "socket", "targetReplicas": {replicas}, "urgency": 3}}"#);
        let producer = producer.clone();
        async move { support::servers::send(&producer, "rtc.control.scale", &payload).await }
    };

    // wait until the consumer has joined its group and reads new messages
    let joined = Instant::now();
    let mut target = 10;
    loop {
        send(target).await;
        let asked = Instant::now();
        while rig.replicas() != Some(target) && asked.elapsed() < Duration::from_secs(2) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if rig.replicas() == Some(target) {
            break;
        }
        assert!(joined.elapsed() < Duration::from_secs(120), "the directive consumer never started reading");
        target += 1;
    }
    println!("# consumer group joined after {:.1} s", joined.elapsed().as_secs_f64());

    let mut latencies = Vec::with_capacity(SIGNALS);
    for i in 0..SIGNALS {
        let replicas = if i % 2 == 0 { 4 } else { 5 };
        let started = Instant::now();
        send(replicas).await;
        while rig.replicas() != Some(replicas) {
            assert!(started.elapsed() < Duration::from_secs(10), "signal {i} was not applied");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e3;
    println!(
        "# ScaleSignal produced to Kafka → /scale received by the API server ({SIGNALS} signals, loopback, tansu)"
    );
    println!("| | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| scalegate (directive consumer + triggered evaluation) | {:.1} | {:.1} | {:.1} | {:.1} |",
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
    println!("| KEDA Kafka trigger, by construction (30 s polling + 15 s HPA sync) | up to 45,000 | | | 45,000 |");
    let writes = rig.fake.scale_writes().len();
    assert!(writes >= SIGNALS, "every signal wrote once: {writes}");
    rig.stop().await;
    broker.stop();
}
