//! HA that loses nothing: two `scalegate run` processes with leader
//! election against the fake API server, 50 workloads bound to `directive`,
//! and the leader killed with SIGKILL in the middle of a stream of
//! directives — sent through Kafka (tansu), or pushed through the admin API
//! of either replica. Every workload must end at the target of its last
//! directive, and every directive must have been acted on.

use crate::support::daemon::{Daemon, workdir};
use crate::support::rig::eventually;
use crate::support::servers::{ONE_BROKER_AT_A_TIME, Tansu, free_port};
use fake_apiserver::FakeApiServer;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

const WORKLOADS: usize = 50;
const DIRECTIVES: usize = 1000;

fn workload(i: usize) -> String {
    format!("w-{i:02}")
}

/// A config with the 50 workloads bound to `directive` (and `sources`).
fn config(sources: &str) -> String {
    let mut yaml = format!("policies: {{directory: POLICIES}}\n{sources}workloads:\n");
    for i in 0..WORKLOADS {
        yaml.push_str(&format!(
            "  - {{target: {{namespace: shop, name: {}}}, interval: 1h, max_replicas: 5000, policies: [{{policy: directive}}]}}\n",
            workload(i)
        ));
    }
    yaml
}

async fn fake_fleet() -> FakeApiServer {
    let fake = FakeApiServer::start().await;
    for i in 0..WORKLOADS {
        fake.add_deployment("shop", &workload(i), 1);
    }
    fake
}

fn setup(fake: &FakeApiServer, config: &str) -> tempfile::TempDir {
    workdir(&fake.kubeconfig(), config, &[("directive.wasm", "directive.wasm")])
}

/// Two replicas; returns (leader, standby) once one leads.
async fn pair(fake: &FakeApiServer, dir: &std::path::Path) -> (Daemon, Daemon) {
    let flags = |identity: &'static str| {
        ["--leader-election", "--lease-namespace", "scalegate", "--lease-duration", "3s", "--identity", identity]
    };
    let a = Daemon::start(dir, &flags("a"));
    let b = Daemon::start(dir, &flags("b"));
    let holder = || {
        fake.lease("scalegate", "scalegate-leader")
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
    };
    eventually("a leader", Duration::from_secs(15), || holder().is_some()).await;
    if holder().as_deref() == Some("a") { (a, b) } else { (b, a) }
}

/// The target of each workload's last directive, and the directives sent.
fn last_targets(sent: &[(usize, u32)]) -> Vec<u32> {
    let mut last = vec![1; WORKLOADS];
    for &(i, target) in sent {
        last[i] = target;
    }
    last
}

fn replicas(fake: &FakeApiServer) -> Vec<u32> {
    (0..WORKLOADS).map(|i| fake.replicas("shop", &workload(i)).unwrap()).collect()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_kafka_directive_is_lost_when_the_leader_is_killed_mid_stream() {
    let _one = ONE_BROKER_AT_A_TIME.lock().await;
    let broker = Tansu::start(free_port());
    broker.create_topic("scale", 4);
    let fake = fake_fleet().await;
    let sources = format!(
        "sources:\n  kafka: {{brokers: \"{}\", group_id: failover, directives: [{{topic: scale, route: key}}]}}\n",
        broker.brokers()
    );
    let dir = setup(&fake, &config(&sources));
    let (mut leader, standby) = pair(&fake, dir.path()).await;
    eventually("the leader to consume", Duration::from_secs(30), || {
        leader.stderr.lock().unwrap().contains("consuming directives")
    })
    .await;
    assert!(!standby.stderr.lock().unwrap().contains("consuming directives"), "a standby never consumes");

    // 1000 directives, keyed by workload (each workload's go to one of the 4
    // partitions, in order); targets only grow, so a stale one would show
    let producer = broker.producer();
    let mut sent = Vec::with_capacity(DIRECTIVES);
    let started = Instant::now();
    for n in 0..DIRECTIVES {
        let i = n % WORKLOADS;
        let target = 2 + n as u32;
        let key = format!("shop/{}", workload(i));
        let payload = format!(r#"{{"targetReplicas": {target}, "timestampMs": {}}}"#, now_ms());
        producer
            .send(FutureRecord::to("scale").key(&key).payload(&payload), Duration::from_secs(5))
            .await
            .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
        sent.push((i, target));
        if n == 400 {
            leader.signal("-KILL");
            leader.wait(Duration::from_secs(5));
        }
        if n >= 400 {
            // the rest arrive while the standby waits out the lease and takes over
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let expected = last_targets(&sent);
    let deadline = Instant::now() + Duration::from_secs(60);
    while replicas(&fake) != expected {
        if Instant::now() > deadline {
            let wrong: Vec<(usize, u32, u32)> = (0..WORKLOADS)
                .filter(|&i| replicas(&fake)[i] != expected[i])
                .map(|i| (i, replicas(&fake)[i], expected[i]))
                .collect();
            panic!(
                "workloads not at their last directive (workload, replicas, expected): {wrong:?}\nkilled:\n{}\nsurvivor:\n{}",
                leader.stderr.lock().unwrap(),
                standby.stderr.lock().unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "1000 directives, leader killed after 401: all 50 workloads at their last target {:?} after the first send",
        started.elapsed()
    );

    // every directive was acted on: the group's committed offsets reach the end of every partition
    let client: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", broker.brokers()).set("group.id", "failover").create().unwrap();
    let mut partitions = TopicPartitionList::new();
    for partition in 0..4 {
        partitions.add_partition("scale", partition);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let (committed_total, end_total) = loop {
        let committed = client.committed_offsets(partitions.clone(), Duration::from_secs(5)).unwrap();
        let mut all = true;
        let (mut committed_total, mut end_total) = (0, 0);
        for partition in 0..4 {
            let (_, end) = client.fetch_watermarks("scale", partition, Duration::from_secs(5)).unwrap();
            let done = match committed.find_partition("scale", partition).map(|p| p.offset()) {
                Some(Offset::Offset(offset)) => offset,
                _ => 0,
            };
            all &= done == end;
            committed_total += done;
            end_total += end;
        }
        if all {
            break (committed_total, end_total);
        }
        assert!(
            Instant::now() < deadline,
            "committed {committed_total} of {end_total}: some directives were not acted on"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(end_total, DIRECTIVES as i64);
    let writes = fake.scale_writes();
    let writers: std::collections::BTreeSet<String> = writes.iter().filter_map(|w| w.field_manager.clone()).collect();
    assert_eq!(writers.len(), 2, "both replicas wrote, one after the other: {writers:?}");
    println!("committed {committed_total} of {end_total} offsets; {} scales written", writes.len());
    drop(client);
    drop(standby);
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_push_is_lost_when_the_leader_is_killed_mid_stream() {
    let fake = fake_fleet().await;
    let dir = setup(&fake, &config(""));
    let token = "failover-token-0123456789";
    let flags = |identity: &'static str| {
        ["--leader-election", "--lease-namespace", "scalegate", "--lease-duration", "3s", "--identity", identity]
    };
    let start = |identity: &'static str| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_scalegate"));
        command.env("SCALEGATE_ADMIN_TOKEN", token);
        Daemon::start_with(command, dir.path(), &flags(identity))
    };
    let mut replicas_of = [start("a"), start("b")];
    eventually("a leader", Duration::from_secs(15), || {
        fake.lease("scalegate", "scalegate-leader").is_some_and(|l| l["spec"]["holderIdentity"].is_string())
    })
    .await;
    let leader =
        fake.lease("scalegate", "scalegate-leader").unwrap()["spec"]["holderIdentity"].as_str().unwrap().to_string();
    let admins: Vec<String> = replicas_of.iter().map(|d| format!("http://{}", d.admin)).collect();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();

    // a client behind a Service: either pod; 503 or no answer → the other one
    let (mut sent, mut retries, mut refused_by_standby) = (Vec::with_capacity(DIRECTIVES), 0, 0);
    let started = Instant::now();
    for n in 0..DIRECTIVES {
        let i = n % WORKLOADS;
        let target = 2 + n as u32;
        let body = serde_json::json!({"workload": format!("shop/{}", workload(i)),
                                      "signals": [{"kind": "scale", "target_replicas": target}]});
        let mut pod = n % 2;
        loop {
            let answer = client.post(format!("{}/v1/signals", admins[pod])).bearer_auth(token).json(&body).send().await;
            match answer {
                Ok(response) if response.status() == 200 => {
                    let decision: serde_json::Value = response.json().await.unwrap();
                    assert_eq!(decision["decision"]["replicas"], target, "{decision}");
                    break;
                }
                Ok(response) if response.status() == 503 => {
                    assert!(response.headers().contains_key("retry-after"));
                    refused_by_standby += 1;
                }
                other => {
                    assert!(other.is_err(), "{:?}", other.map(|r| r.status()));
                }
            }
            retries += 1;
            assert!(retries < 5000, "pushes keep failing");
            pod = 1 - pod;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sent.push((i, target));
        if n == 400 {
            let dead = if leader == "a" { 0 } else { 1 };
            replicas_of[dead].signal("-KILL");
            replicas_of[dead].wait(Duration::from_secs(5));
        }
    }
    assert_eq!(replicas(&fake), last_targets(&sent), "every workload at its last push");
    println!(
        "1000 pushes answered 200 in {:?} ({retries} retries, {refused_by_standby} refused with 503), leader killed after 401",
        started.elapsed()
    );
    assert_eq!(fake.violations(), Vec::<String>::new());
}
