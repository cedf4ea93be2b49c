//! Kafka against a real Kafka-API broker (tansu) started here: `ScaleSignal`
//! directives scale at once (and malformed ones are counted and skipped),
//! applied decisions are published to the audit topic, directives flow again
//! soon after a network partition, and consumer-group
//! lag drives scaling, goes stale while the broker is down and recovers.

use crate::support::rig::{Rig, eventually};
use crate::support::servers::{Tansu, TcpProxy, free_port, send};
use fake_apiserver::FakeApiServer;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use scalegate::signals::kafka::CloseAside;
use std::time::{Duration, Instant};

use crate::support::servers::ONE_BROKER_AT_A_TIME;

/// The daemon with directive and target-tracking, against a fake API server
/// holding the StatefulSet `rtc/socket` at 3 replicas.
async fn socket_rig(yaml: &str) -> Rig {
    let fake = FakeApiServer::start().await;
    fake.add_scalable("apps/v1", "statefulsets", "rtc", "socket", 3, "app=socket");
    let policies = [("directive.wasm", "directive.wasm"), ("tt.wasm", "target_tracking.wasm")];
    Rig::start(fake, ("rtc", "socket"), &policies, yaml, None).await
}

/// `rtc/socket` following the directives of `rtc.control.scale`, at 2 to 40
/// replicas; `kafka` adds lines to `sources.kafka`, `metrics` to the workload.
fn directive_config(brokers: &str, kafka: &str, metrics: &str) -> String {
    format!(
        r#"
sources:
  kafka:
    brokers: "{brokers}"
    directives: [{{topic: rtc.control.scale}}]
{kafka}workloads:
  - target: {{kind: StatefulSet, namespace: rtc, name: socket}}
    interval: 1h
    min_replicas: 2
    max_replicas: 40
    policies: [{{policy: directive}}]
{metrics}"#
    )
}

/// `rtc/socket` tracking the lag of group `order-workers` on `orders` (5
/// per replica, 1 to 20 replicas); `kafka` is the `sources.kafka` mapping's
/// lines.
fn lag_config(kafka: &str) -> String {
    format!(
        r#"
sources:
  kafka:
{kafka}workloads:
  - target: {{kind: StatefulSet, namespace: rtc, name: socket}}
    interval: 1s
    min_replicas: 1
    max_replicas: 20
    policies: [{{policy: target-tracking, params: {{metric: lag, target: 5}}}}]
    metrics:
      - {{name: lag, max_age: 3s, kafka_lag: {{topic: orders, group: order-workers}}}}
"#
    )
}

/// The first `count` audit records (JSON) read by a consumer of `client`.
async fn audit_records(mut client: ClientConfig, count: usize) -> Vec<serde_json::Value> {
    if client.get("group.id").is_none() {
        client.set("group.id", "audit-reader");
    }
    client.set("auto.offset.reset", "earliest");
    // closed aside: dropping a consumer after its broker is gone never returns
    let audit: CloseAside<StreamConsumer> = CloseAside::new(client.create().unwrap());
    audit.subscribe(&["scalegate.decisions"]).unwrap();
    let mut records = Vec::new();
    while records.len() < count {
        let message =
            tokio::time::timeout(Duration::from_secs(20), audit.recv()).await.expect("audit records").unwrap();
        assert_eq!(message.key(), Some(&b"rtc/socket"[..]));
        records.push(serde_json::from_slice(message.payload().unwrap()).unwrap());
    }
    records
}

/// The audit producer holds records for `linger.ms` (2 s here, 5 ms by
/// default) to batch them; a stop right after an applied decision must
/// still deliver its record: the daemon flushes its sinks within the grace
/// period (dropping a producer purges what it holds, queued or in flight).
/// The first decision's record warms the producer's connection and topic
/// metadata; the second one is followed by the stop at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_record_of_an_applied_decision_survives_an_immediate_stop() {
    let _one = ONE_BROKER_AT_A_TIME.lock().await;
    let broker = Tansu::start(free_port());
    broker.create_topic("rtc.control.scale", 1);
    broker.create_topic("scalegate.decisions", 1);
    let brokers = broker.brokers();
    let kafka =
        "    group_id: scalegate-flush\n    audit: {topic: scalegate.decisions}\n    options: {linger.ms: \"2000\"}\n";
    let rig = socket_rig(&directive_config(&brokers, kafka, "")).await;
    let producer = broker.producer();
    let start = Instant::now();
    while !rig.metrics().await.contains("scalegate_source_errors_total{source=\"kafka\",kind=\"parse\"}") {
        send(&producer, "rtc.control.scale", "probe").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(start.elapsed() < Duration::from_secs(30), "the directive consumer never read a message");
    }
    let reader = ClientConfig::new().set("bootstrap.servers", &brokers).clone();
    send(&producer, "rtc.control.scale", r#"{"target": "socket", "targetReplicas": 9}"#).await;
    eventually("the first directive to be applied", Duration::from_secs(10), || rig.replicas() == Some(9)).await;
    let first = audit_records(reader.clone(), 1).await;
    assert_eq!(first[0]["guardrails"]["replicas"], 9);
    send(&producer, "rtc.control.scale", r#"{"target": "socket", "targetReplicas": 11}"#).await;
    eventually("the second directive to be applied", Duration::from_secs(10), || rig.replicas() == Some(11)).await;
    let stopping = Instant::now();
    rig.stop().await;
    println!("stopped {:?} after the second scale", stopping.elapsed());
    let records = audit_records(reader.clone().set("group.id", "audit-reader-after").clone(), 2).await;
    let replicas: Vec<_> = records.iter().map(|r| r["guardrails"]["replicas"].as_u64().unwrap()).collect();
    assert_eq!(replicas, [9, 11], "the record of the decision just before the stop is there");
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_signals_scale_at_once_bad_ones_are_skipped_and_decisions_are_audited() {
    let _one = ONE_BROKER_AT_A_TIME.lock().await;
    let broker = Tansu::start(free_port());
    broker.create_topic("rtc.control.scale", 1);
    broker.create_topic("scalegate.decisions", 1);
    let brokers = broker.brokers();
    let yaml =
        directive_config(&brokers, "    group_id: scalegate-test\n    audit: {topic: scalegate.decisions}\n", "");
    let rig = socket_rig(&yaml).await;
    let producer = broker.producer();

    // the consumer starts at the end of the topic: probe with malformed
    // messages until it counts them (it is then assigned and reading)
    let start = Instant::now();
    loop {
        send(&producer, "rtc.control.scale", "this is not json").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        if rig.metrics().await.contains("scalegate_source_errors_total{source=\"kafka\",kind=\"parse\"}") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the directive consumer never read a message");
    }
    for bad in [r#"{"target": "checkout", "targetReplicas": 9}"#, r#"{"target": "socket", "urgency": 11}"#] {
        send(&producer, "rtc.control.scale", bad).await;
    }
    let sent = Instant::now();
    send(
        &producer,
        "rtc.control.scale",
        r#"{"target": "socket", "targetReplicas": 7, "urgency": 3, "reason": "lag spike"}"#,
    )
    .await;
    eventually("the directive to be applied", Duration::from_secs(10), || rig.replicas() == Some(7)).await;
    println!("ScaleSignal → /scale in {:?}", sent.elapsed());
    send(&producer, "rtc.control.scale", r#"{"target": "rtc/socket", "action": "scale_in", "delta": -2}"#).await;
    eventually("the delta to be applied", Duration::from_secs(10), || rig.replicas() == Some(5)).await;
    let writes = rig.writes();
    assert_eq!(writes, [(3, 7), (7, 5)], "malformed and misrouted messages changed nothing");
    let metrics = rig.metrics().await;
    assert!(metrics.contains("scalegate_source_errors_total{source=\"kafka\",kind=\"route\"} 1"), "{metrics}");
    assert!(metrics.contains("scalegate_source_errors_total{source=\"kafka\",kind=\"invalid\"} 1"), "{metrics}");

    // both applied decisions are on the audit topic
    let records = audit_records(ClientConfig::new().set("bootstrap.servers", &brokers).clone(), 2).await;
    assert!(records.iter().all(|r| r["applied"] == true), "{records:?}");
    let seen: Vec<_> = records.iter().map(|r| r["guardrails"]["replicas"].as_u64().unwrap()).collect();
    assert_eq!(seen, [7, 5]);
    rig.stop().await;
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_lag_drives_scaling_goes_stale_without_the_broker_and_recovers() {
    let _one = ONE_BROKER_AT_A_TIME.lock().await;
    let port = free_port();
    let broker = Tansu::start(port);
    broker.create_topic("orders", 2);
    let brokers = broker.brokers();
    let producer = broker.producer();
    for i in 0..30 {
        producer
            .send(FutureRecord::<(), _>::to("orders").payload("order").partition(i % 2), Duration::from_secs(5))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    // the workers' group has processed 5 messages of each partition
    let workers: CloseAside<rdkafka::consumer::BaseConsumer> = CloseAside::new(
        ClientConfig::new().set("bootstrap.servers", &brokers).set("group.id", "order-workers").create().unwrap(),
    );
    let mut done = rdkafka::TopicPartitionList::new();
    done.add_partition_offset("orders", 0, rdkafka::Offset::Offset(5)).unwrap();
    done.add_partition_offset("orders", 1, rdkafka::Offset::Offset(5)).unwrap();
    workers.commit(&done, rdkafka::consumer::CommitMode::Sync).unwrap();

    let yaml = lag_config(&format!("    brokers: \"{brokers}\"\n    lag_interval: 300ms\n    timeout: 1s\n"));
    let rig = socket_rig(&yaml).await;
    // (15 − 5) × 2 partitions = 20 behind, 5 per replica → 4
    eventually("scale to 4", Duration::from_secs(20), || rig.replicas() == Some(4)).await;
    let inputs = rig.get("/v1/workloads/rtc/socket/inputs").await;
    assert_eq!(inputs["metrics"]["lag"]["value"], 20.0);

    broker.stop();
    rig.wait_stale("lag").await;
    assert_eq!(rig.replicas(), Some(4), "nothing changes on stale lag");

    // a fresh broker (memory storage: empty) on the same address: the group
    // has nothing to catch up on any more → 0 lag → minimum
    let broker = Tansu::start(port);
    broker.create_topic("orders", 2);
    eventually("scale to 1 after recovery", Duration::from_secs(30), || rig.replicas() == Some(1)).await;
    let writes = rig.writes();
    assert_eq!(writes, [(3, 4), (4, 1)]);
    rig.stop().await;
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directives_flow_again_after_a_network_partition() {
    let _one = ONE_BROKER_AT_A_TIME.lock().await;
    // every client reaches the broker through a proxy the test can cut
    let proxy = TcpProxy::start(free_port(), free_port()).await;
    let broker = Tansu::start_advertising(proxy.upstream, proxy.port, false);
    broker.create_topic("rtc.control.scale", 1);
    let yaml = directive_config(&format!("127.0.0.1:{}", proxy.port), "    group_id: scalegate-partition\n", "");
    let rig = socket_rig(&yaml).await;
    let producer = broker.producer();
    // sends directives (each to a replica count the workload does not have
    // yet) until one is applied; how long that took
    let mut next = 0u32;
    let mut applied = async |within: Duration| {
        let start = Instant::now();
        loop {
            next += 1;
            let target = 5 + next % 30;
            if rig.replicas() == Some(target) {
                continue;
            }
            send(&producer, "rtc.control.scale", &format!(r#"{{"target": "socket", "targetReplicas": {target}}}"#))
                .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            if rig.replicas() == Some(target) {
                return start.elapsed();
            }
            assert!(start.elapsed() < within, "no directive applied within {within:?}");
        }
    };
    applied(Duration::from_secs(60)).await;

    // a partition: every connection to the broker is cut and new ones are
    // refused for 3 s; the consumer counts it, reconnects and rejoins
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let metrics = rig.metrics().await;
    assert!(metrics.contains(r#"scalegate_source_errors_total{source="kafka",kind="connect"}"#), "{metrics}");
    proxy.restore().await;
    let after = applied(Duration::from_secs(30)).await;
    println!("directives applied again {after:?} after the partition ended");
    let writes = rig.writes();
    assert!(writes.windows(2).all(|w| w[0].1 == w[1].0), "every write starts from the last one: {writes:?}");
    rig.stop().await;
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_end_to_end_and_scram_reaches_the_broker() {
    let _one = ONE_BROKER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = crate::support::servers::certificates();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    // TLS terminated in front of the broker (tansu 0.6 has no TLS of its own)
    let proxy = TcpProxy::start_tls(free_port(), free_port(), &cert, &key).await;
    let broker = Tansu::start_advertising(proxy.upstream, proxy.port, false);
    for topic in ["rtc.control.scale", "scalegate.decisions", "orders"] {
        broker.create_topic(topic, 1);
    }
    let brokers = format!("127.0.0.1:{}", proxy.port);
    let tls = |extra: &[(&str, &str)]| {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &brokers)
            .set("security.protocol", "SSL")
            .set("ssl.ca.location", ca_file.to_str().unwrap());
        for (key, value) in extra {
            config.set(*key, *value);
        }
        config
    };
    // the certificate is verified: without the CA the handshake fails
    let mut untrusted = tls(&[]);
    untrusted.remove("ssl.ca.location");
    let client: CloseAside<rdkafka::consumer::BaseConsumer> = CloseAside::new(untrusted.create().unwrap());
    assert!(client.fetch_metadata(None, Duration::from_secs(2)).is_err(), "TLS without the CA was accepted");

    // directives, lag and audit all over TLS
    let kafka = format!(
        "    group_id: scalegate-tls\n    options: {{security.protocol: SSL, ssl.ca.location: \"{}\", \
         auto.offset.reset: earliest}}\n    lag_interval: 300ms\n    audit: {{topic: scalegate.decisions}}\n",
        ca_file.display()
    );
    let metrics = "    metrics:\n      - {name: lag, kafka_lag: {topic: orders, group: order-workers}}\n";
    let yaml = directive_config(&brokers, &kafka, metrics);
    let rig = socket_rig(&yaml).await;
    let producer: rdkafka::producer::FutureProducer = tls(&[("message.timeout.ms", "10000")]).create().unwrap();
    send(&producer, "rtc.control.scale", r#"{"target": "socket", "targetReplicas": 6}"#).await;
    eventually("the directive to be applied", Duration::from_secs(60), || rig.replicas() == Some(6)).await;
    // `orders` has one partition the group never committed: KEDA's 1
    let inputs = rig.get("/v1/workloads/rtc/socket/inputs").await;
    assert_eq!(inputs["metrics"]["lag"]["value"], 1.0, "{inputs}");
    let records = audit_records(tls(&[]), 1).await;
    assert_eq!(records[0]["guardrails"]["replicas"], 6);
    assert_eq!(rig.writes(), [(3, 6)]);
    rig.stop().await;
    broker.stop();

    // a broker that requires SASL (SCRAM-SHA-256/512): scalegate's clients
    // run the SCRAM exchange with the password from its file; tansu 0.6 lets
    // only authenticated clients create users, so the user is unknown and
    // the failure must be reported, not hidden
    let port = free_port();
    let broker = Tansu::start_advertising(port, port, true);
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "s3cret\n").unwrap();
    let yaml = lag_config(&format!(
        "    brokers: \"{}\"\n    options: {{security.protocol: SASL_PLAINTEXT, sasl.mechanism: SCRAM-SHA-512, \
         sasl.username: scalegate}}\n    sasl_password_file: \"{}\"\n    lag_interval: 300ms\n    timeout: 1s\n",
        broker.brokers(),
        password_file.display()
    ));
    let rig = socket_rig(&yaml).await;
    let start = Instant::now();
    loop {
        let inputs = rig.get("/v1/workloads/rtc/socket/inputs").await;
        let error = inputs["metrics"]["lag"]["error"].as_str().unwrap_or_default().to_string();
        if error.contains("Authentication") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the failed authentication is not named: {inputs}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = rig.metrics().await;
    assert!(metrics.contains(r#"scalegate_source_errors_total{source="kafka",kind="auth"}"#), "{metrics}");
    assert_eq!(rig.writes(), [], "nothing scales without the lag");
    rig.stop().await;
    broker.stop();
}
