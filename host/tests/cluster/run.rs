//! `scalegate run` as a process against the strict fake API server: it
//! scales through the API, serves its decisions, stops cleanly on SIGTERM,
//! refuses bad start-up input without touching the cluster, and — run
//! twice with leader election — only one replica writes, and the other
//! takes over after the leader is killed.

use crate::support::daemon::{Daemon, workdir};
use crate::support::rig::eventually;
use crate::support::*;
use fake_apiserver::FakeApiServer;
use std::process::Command;
use std::time::{Duration, Instant};

const CONFIG: &str = "policies: {directory: POLICIES}\nworkloads:\n  - target: {namespace: shop, name: web}\n    interval: 1s\n    max_replicas: 20\n    policies: [{policy: fixed, params: {replicas: 5}}]\n";

/// A directory with the config, a kubeconfig for `fake` and a policy store.
fn setup(fake: &FakeApiServer, config: &str) -> tempfile::TempDir {
    workdir(&fake.kubeconfig(), config, &[("fixed.wasm", "fixed.wasm"), ("directive.wasm", "directive.wasm")])
}

async fn fake_web() -> FakeApiServer {
    let fake = FakeApiServer::start().await;
    fake.add_deployment("shop", "web", 2);
    fake.put_running_pod("shop", "web", "web-0", true, "250m");
    fake.put_running_pod("shop", "web", "web-1", true, "250m");
    fake
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_scales_through_the_api_serves_its_decisions_and_stops_on_sigterm() {
    let fake = fake_web().await;
    let dir = setup(&fake, CONFIG);
    let mut daemon = Daemon::start(dir.path(), &[]);
    eventually("the scale to be written", Duration::from_secs(20), || fake.replicas("shop", "web") == Some(5)).await;
    let writes = fake.scale_writes();
    assert_eq!((writes[0].from, writes[0].to), (2, 5));
    assert!(writes[0].field_manager.as_deref().is_some_and(|m| !m.is_empty()));
    eventually("the Event", Duration::from_secs(5), || fake.events().len() == 1).await;

    let decisions = daemon.get("/v1/workloads/shop/web/decisions?limit=5");
    assert!(decisions.contains("\"applied\":true") && decisions.contains("fixed@"), "{decisions}");
    assert!(daemon.get("/metrics").contains("scalegate_decisions_total{kind=\"scaled\"} 1"));

    // someone scales it down by hand: the next evaluation puts it back, once
    fake.set_replicas("shop", "web", 1);
    eventually("the correction", Duration::from_secs(10), || fake.replicas("shop", "web") == Some(5)).await;
    assert_eq!(fake.scale_writes().len(), 2);

    let stopping = Instant::now();
    daemon.signal("-TERM");
    let status = daemon.wait(Duration::from_secs(15));
    assert!(status.success(), "{status:?}: {}", daemon.stderr.lock().unwrap());
    assert!(stopping.elapsed() < Duration::from_secs(10));
    assert_eq!(fake.violations(), Vec::<String>::new());

    // the decision state is in the cluster: both scales, the last one last
    let stored = fake.objects("scalegatestates", "shop");
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["spec"]["key"], "shop/web");
    let events = stored[0]["status"]["scale_events"].as_array().unwrap();
    let changes: Vec<(u64, u64)> = events.iter().map(|e| (e[1].as_u64().unwrap(), e[2].as_u64().unwrap())).collect();
    assert_eq!(changes, [(2, 5), (1, 5)]);
    assert_eq!(stored[0]["status"]["last_scale_ms"], events[1][0]);
    assert_eq!(stored[0]["status"]["bindings"][0]["policy"], "fixed");

    // a restart takes it over before its first write
    let mut again = Daemon::start(dir.path(), &[]);
    eventually("the take-over", Duration::from_secs(10), || {
        again.stderr.lock().unwrap().contains("took over the stored decision state workloads=1")
    })
    .await;
    again.signal("-TERM");
    again.wait(Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_the_state_resource_is_a_setting_error_unless_state_stays_in_memory() {
    let fake = fake_web().await;
    fake.without_state_resource();
    let dir = setup(&fake, CONFIG);
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_scalegate"))
            .args(["run", "--config"])
            .arg(dir.path().join("config.yaml"))
            .arg("--kubeconfig")
            .arg(dir.path().join("kubeconfig"))
            .args(["--admin-listen", "127.0.0.1:0"])
            .args(extra)
            .env("SCALEGATE_CACHE_DIR", shared_cache())
            .env_remove("POD_NAMESPACE")
            .output()
            .unwrap()
    };
    let out = run(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("deploy/base/crd.yaml") && stderr.contains("--decision-state=memory"), "{stderr}");
    assert_eq!(fake.scale_writes().len(), 0);
    let mut daemon = Daemon::start(dir.path(), &["--decision-state", "memory"]);
    eventually("the scale to be written", Duration::from_secs(20), || fake.replicas("shop", "web") == Some(5)).await;
    daemon.signal("-TERM");
    assert!(daemon.wait(Duration::from_secs(15)).success());
    assert!(fake.requests().iter().all(|r| !r.contains("scalegatestates") || r.starts_with("GET")), "memory only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_start_up_input_is_refused_without_touching_the_cluster() {
    let fake = fake_web().await;
    for (config, needle) in [
        (CONFIG.replace("max_replicas: 20", "max_replicas: 0"), "workloads[0].max_replicas: must be at least 1"),
        (
            CONFIG.replace("policy: fixed", "policy: fixed@9.9.9"),
            "workloads[0].policies[0].policy: policy fixed@9.9.9 not found",
        ),
        (
            CONFIG.replace("policy: fixed", "policy: hpa"),
            "policy hpa not found: no valid version of it is in the store (loaded: directive@",
        ),
        (CONFIG.replace("interval: 1s", "intervall: 1s"), "unknown field `intervall`"),
    ] {
        let dir = setup(&fake, &config);
        let out = Command::new(env!("CARGO_BIN_EXE_scalegate"))
            .args(["run", "--config"])
            .arg(dir.path().join("config.yaml"))
            .arg("--kubeconfig")
            .arg(dir.path().join("kubeconfig"))
            .args(["--admin-listen", "127.0.0.1:0"])
            .env("SCALEGATE_CACHE_DIR", shared_cache())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{stderr}");
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
    assert!(fake.requests().is_empty(), "refused before any API request: {:?}", fake.requests());
    assert_eq!(fake.replicas("shop", "web"), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_only_the_leader_writes_and_a_standby_takes_over_after_kill() {
    let fake = fake_web().await;
    let dir = setup(&fake, CONFIG);
    let lease = Duration::from_secs(3);
    let flags = |identity: &'static str| {
        ["--leader-election", "--lease-namespace", "scalegate", "--lease-duration", "3s", "--identity", identity]
    };
    let mut a = Daemon::start(dir.path(), &flags("a"));
    let mut b = Daemon::start(dir.path(), &flags("b"));

    // someone keeps scaling it down; the leader keeps putting it back
    let holder = || fake.lease("scalegate", "scalegate-leader").map(|l| l["spec"]["holderIdentity"].clone());
    eventually("a leader", Duration::from_secs(10), || holder().is_some_and(|h| h.is_string())).await;
    let until = Instant::now() + lease * 2;
    while Instant::now() < until {
        fake.set_replicas("shop", "web", 1);
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let writers: std::collections::BTreeSet<String> =
        fake.scale_writes().iter().filter_map(|w| w.field_manager.clone()).collect();
    assert_eq!(writers.len(), 1, "exactly one replica wrote: {writers:?}");
    let leader = writers.into_iter().next().unwrap();
    assert_eq!(holder().unwrap(), leader.as_str());
    let (dead, survivor) = if leader == "a" { (&mut a, &mut b) } else { (&mut b, &mut a) };
    let before = fake.scale_writes().len();
    assert!(before >= 2, "the leader corrected every manual scale-down");

    // kill -9: no release, the survivor waits for the lease to expire
    dead.signal("-KILL");
    let killed = Instant::now();
    dead.wait(Duration::from_secs(5));
    fake.set_replicas("shop", "web", 1);
    let retry = lease / 5;
    let start = Instant::now();
    while fake.replicas("shop", "web") != Some(5) {
        assert!(start.elapsed() < lease * 3, "the standby never took over: {}", survivor.stderr.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let takeover = killed.elapsed();
    let after: Vec<String> = fake.scale_writes()[before..].iter().filter_map(|w| w.field_manager.clone()).collect();
    assert!(after.iter().all(|w| *w != leader), "the killed leader wrote after it died: {after:?}");
    assert!(takeover <= lease + 2 * retry + Duration::from_millis(500), "took over after {takeover:?}");
    println!("standby wrote {takeover:?} after the leader was killed (lease {lease:?}, retry {retry:?})");
    assert!(survivor.get("/metrics").contains("scalegate_leader 1"));
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_promptly_on_sigterm_when_the_kafka_broker_is_gone() {
    use crate::support::servers::{Tansu, free_port, send};
    let broker = Tansu::start(free_port());
    broker.create_topic("rtc.control.scale", 1);
    let fake = fake_web().await;
    let config = CONFIG
        .replace(
            "workloads:",
            &format!(
                "sources:\n  kafka: {{brokers: \"{}\", directives: [{{topic: rtc.control.scale}}]}}\nworkloads:",
                broker.brokers()
            ),
        )
        .replace("interval: 1s", "interval: 1h")
        .replace("{policy: fixed, params: {replicas: 5}}", "{policy: directive}");
    let dir = setup(&fake, &config);
    let mut daemon = Daemon::start(dir.path(), &[]);
    // the consumer is in its group once a directive gets through
    let producer = broker.producer();
    let joining = Instant::now();
    let mut target = 3;
    loop {
        let payload = format!(r#"{{"target": "web", "targetReplicas": {target}}}"#);
        send(&producer, "rtc.control.scale", &payload).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        if fake.replicas("shop", "web") == Some(target) {
            break;
        }
        assert!(joining.elapsed() < Duration::from_secs(90), "no directive applied: {}", daemon.stderr.lock().unwrap());
        target += 1;
    }
    drop(producer);

    // the broker disappears; leaving the consumer group can never finish now
    broker.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopping = Instant::now();
    daemon.signal("-TERM");
    let status = daemon.wait(Duration::from_secs(20));
    assert!(status.success(), "{status:?}: {}", daemon.stderr.lock().unwrap());
    assert!(stopping.elapsed() < Duration::from_secs(10), "took {:?}", stopping.elapsed());
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_promptly_on_sigterm_while_fetches_hang() {
    use crate::support::servers::Blackhole;
    // a Prometheus and a Kafka broker that never answer, with 30 s deadlines
    let (prometheus, kafka) = (Blackhole::start().await, Blackhole::start().await);
    let fake = fake_web().await;
    let sources = format!(
        "sources:\n  prometheus: {{url: \"http://127.0.0.1:{}\", interval: 300ms, timeout: 30s}}\n  \
         kafka: {{brokers: \"127.0.0.1:{}\", lag_interval: 300ms, timeout: 30s}}\nworkloads:",
        prometheus.port, kafka.port
    );
    let metrics = "    metrics:\n      - {name: rps, prometheus: {query: up}}\n      \
                   - {name: lag, kafka_lag: {topic: orders, group: workers}}\n";
    let config = format!("{}{metrics}", CONFIG.replace("workloads:", &sources));
    let dir = setup(&fake, &config);
    let mut daemon = Daemon::start(dir.path(), &[]);
    // fetches of both are under way
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stopping = Instant::now();
    daemon.signal("-TERM");
    let status = daemon.wait(Duration::from_secs(40));
    assert!(status.success(), "{status:?}: {}", daemon.stderr.lock().unwrap());
    assert!(stopping.elapsed() < Duration::from_secs(5), "took {:?}", stopping.elapsed());
}
