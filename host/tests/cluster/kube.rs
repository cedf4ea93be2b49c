//! The Kubernetes actuator and leader election, with the real `kube::Client`
//! talking over loopback HTTP to the strict fake API server
//! (`host/fake-apiserver`), including injected faults: 409, 500, 403, slow
//! answers, writes that land but answer with an error, dropped watches and
//! expired watch history. Every test ends by asserting that the fake saw no
//! request it does not understand.

use crate::support::rig::eventually;
use crate::support::*;
use fake_apiserver::{FakeApiServer, Fault};
use hyper::Method;
use scalegate::clock::SystemClock;
use scalegate::cluster::{Cluster, ClusterError, Target};
use scalegate::config::Config;
use scalegate::decide::{Decider, DeciderConfig};
use scalegate::k8s::{KubeCluster, KubeSettings, LeaderElector, LeaseSettings};
use scalegate::leadership::Leadership;
use scalegate::snapshot::PodDeletionCost;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn client(fake: &FakeApiServer) -> kube::Client {
    scalegate::k8s::client(kube::Config::new(fake.url().parse().unwrap())).unwrap()
}

fn settings() -> KubeSettings {
    KubeSettings {
        request_timeout: Duration::from_millis(500),
        backoff: Duration::from_millis(20),
        identity: "scalegate-test".into(),
        cache_sync_timeout: Duration::from_secs(5),
        ..KubeSettings::default()
    }
}

fn web() -> Target {
    Target { api_version: "apps/v1".into(), kind: "Deployment".into(), namespace: "shop".into(), name: "web".into() }
}

/// `shop/web` at 3 replicas with pods web-0, web-1 (ready) and web-2 (not
/// ready), and a pod of another app in the same namespace.
async fn fake_with_web() -> FakeApiServer {
    let fake = FakeApiServer::start().await;
    fake.add_deployment("shop", "web", 3);
    fake.put_running_pod("shop", "web", "web-0", true, "500m");
    fake.put_running_pod("shop", "web", "web-1", true, "500m");
    fake.put_running_pod("shop", "web", "web-2", false, "500m");
    fake.put_running_pod("shop", "db", "db-0", true, "2");
    fake
}

fn puts(fake: &FakeApiServer) -> usize {
    fake.requests().iter().filter(|r| r.starts_with("PUT /apis/apps/v1/namespaces/shop/deployments/web/scale")).count()
}

fn assert_strict(fake: &FakeApiServer) {
    assert_eq!(fake.violations(), Vec::<String>::new(), "requests the fake API server refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observes_the_scale_and_the_pods_of_its_selector() {
    let fake = fake_with_web().await;
    let cluster = KubeCluster::new(client(&fake), settings());
    let seen = cluster.observe(&web()).await.unwrap();
    assert_eq!((seen.spec_replicas, seen.status_replicas, seen.ready_replicas), (3, 3, 2));
    let names: Vec<&str> = seen.pods.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["web-0", "web-1", "web-2"], "db-0 is not selected");
    assert_eq!(seen.pods[0].cpu_request, Some(0.5));
    assert!(seen.stale_inputs.is_empty());
    assert_strict(&fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_is_written_with_its_resource_version_and_recorded_as_an_event() {
    let fake = fake_with_web().await;
    let cluster = KubeCluster::new(client(&fake), settings());
    cluster.observe(&web()).await.unwrap();
    cluster.scale(&web(), 3, 5, "fixed@0.1.0: pinned").await.unwrap();
    assert_eq!(fake.replicas("shop", "web"), Some(5));
    let writes = fake.scale_writes();
    assert_eq!(writes.len(), 1);
    assert_eq!((writes[0].from, writes[0].to), (3, 5));
    assert_eq!(writes[0].field_manager.as_deref(), Some("scalegate-test"));
    // the Event is recorded in the background
    eventually("the Event", Duration::from_secs(5), || fake.events().len() == 1).await;
    let events = fake.events();
    assert_eq!(events[0]["reason"], "ScaledUp");
    assert_eq!(events[0]["regarding"]["kind"], "Deployment");
    assert!(events[0]["note"].as_str().unwrap().starts_with("3 → 5: fixed@0.1.0"), "{}", events[0]);
    assert_strict(&fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_without_a_change_of_replicas_is_retried_on_the_new_version() {
    let fake = fake_with_web().await;
    let cluster = KubeCluster::new(client(&fake), settings());
    cluster.observe(&web()).await.unwrap();
    // another writer touched the object (new resourceVersion) without changing replicas
    fake.set_replicas("shop", "web", 3);
    cluster.scale(&web(), 3, 5, "r").await.unwrap();
    assert_eq!(fake.replicas("shop", "web"), Some(5));
    assert_eq!(fake.scale_writes().len(), 1);
    assert_eq!(puts(&fake), 2, "one conflict, one write");
    assert_strict(&fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_change_of_replicas_is_not_overwritten() {
    let fake = fake_with_web().await;
    let cluster = KubeCluster::new(client(&fake), settings());
    cluster.observe(&web()).await.unwrap();
    fake.set_replicas("shop", "web", 7);
    let error = cluster.scale(&web(), 3, 5, "r").await.unwrap_err();
    assert!(matches!(&error, ClusterError::Conflict(m) if m.contains("3 → 7")), "{error}");
    assert_eq!(fake.replicas("shop", "web"), Some(7), "the other writer's count stands");
    assert!(fake.scale_writes().is_empty());
    assert!(fake.events().is_empty(), "no Event for a scale that did not happen");
    assert_strict(&fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_with_backoff() {
    let fake = fake_with_web().await;
    let cluster = KubeCluster::new(client(&fake), settings());
    cluster.observe(&web()).await.unwrap();
    fake.inject(Method::PUT, "/deployments/web/scale", Fault::Status(500), 2);
    fake.inject(Method::GET, "/deployments/web/scale", Fault::Status(503), 1);
    cluster.scale(&web(), 3, 4, "r").await.unwrap();
    assert_eq!(fake.replicas("shop", "web"), Some(4));
    assert_eq!(puts(&fake), 3, "two failures, one success");
    // reads are retried too
    assert_eq!(cluster.observe(&web()).await.unwrap().spec_replicas, 4);

    // a persistent outage gives up after the configured attempts with a clear error
    fake.inject(Method::PUT, "/deployments/web/scale", Fault::Status(500), 100);
    let error = cluster.scale(&web(), 4, 6, "r").await.unwrap_err().to_string();
    assert!(error.contains("HTTP 500"), "{error}");
    assert_eq!(puts(&fake), 3 + settings().attempts as usize);
    assert_eq!(fake.replicas("shop", "web"), Some(4));
    assert_strict(&fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_landed_but_answered_with_an_error_is_not_repeated() {
    let fake = fake_with_web().await;
    let cluster = KubeCluster::new(client(&fake), settings());
    cluster.observe(&web()).await.unwrap();
    fake.inject(Method::PUT, "/deployments/web/scale", Fault::ApplyThenStatus(500), 1);
    cluster.scale(&web(), 3, 6, "r").await.unwrap();
    assert_eq!(fake.replicas("shop", "web"), Some(6));
    let writes = fake.scale_writes();
    assert_eq!(writes.len(), 1, "exactly one change: {writes:?}");
    assert_eq!(puts(&fake), 2, "the retry met a conflict, the re-read showed the write had landed");
    assert_strict(&fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_is_reported_as_an_rbac_problem_and_not_retried() {
    let fake = fake_with_web().await;
    let cluster = KubeCluster::new(client(&fake), settings());
    cluster.observe(&web()).await.unwrap();
    fake.inject(Method::PUT, "/deployments/web/scale", Fault::Status(403), 1);
    let error = cluster.scale(&web(), 3, 4, "r").await.unwrap_err().to_string();
    assert!(error.contains("forbidden to update Deployment shop/web (scale)") && error.contains("RBAC"), "{error}");
    assert_eq!(puts(&fake), 1);
    assert_eq!(fake.replicas("shop", "web"), Some(3));
    assert_strict(&fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_answers_time_out_and_a_later_read_succeeds() {
    let fake = fake_with_web().await;
    let cluster = KubeCluster::new(client(&fake), KubeSettings { attempts: 1, ..settings() });
    fake.inject(Method::GET, "/deployments/web/scale", Fault::Delay(Duration::from_secs(2)), 1);
    let start = Instant::now();
    let error = cluster.observe(&web()).await.unwrap_err().to_string();
    assert!(error.contains("no answer within 500ms"), "{error}");
    assert!(start.elapsed() < Duration::from_millis(1500), "gave up at the deadline, not after the answer");
    assert_eq!(cluster.observe(&web()).await.unwrap().spec_replicas, 3);
    assert_strict(&fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_watches_resume_and_expired_history_relists() {
    let fake = fake_with_web().await;
    let cluster = KubeCluster::new(client(&fake), settings());
    assert_eq!(cluster.observe(&web()).await.unwrap().pods.len(), 3);
    eventually("the pod watch to open", Duration::from_secs(5), || fake.open_watches() == 1).await;

    assert_eq!(fake.drop_watches(), 1);
    fake.put_running_pod("shop", "web", "web-3", true, "500m");
    let start = Instant::now();
    loop {
        if cluster.observe(&web()).await.unwrap().pods.len() == 4 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "the watch did not resume");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // history gone: the resumed watch gets 410 and the cache lists again
    eventually("the pod watch to reopen", Duration::from_secs(5), || fake.open_watches() == 1).await;
    fake.forget_history();
    assert_eq!(fake.drop_watches(), 1);
    fake.delete_pod("shop", "web-0");
    let start = Instant::now();
    loop {
        let seen = cluster.observe(&web()).await.unwrap();
        if seen.pods.iter().all(|p| p.name != "web-0") && seen.pods.len() == 3 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the cache did not relist after 410");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lists = fake
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET /api/v1/namespaces/shop/pods") && !r.contains("watch="))
        .count();
    assert!(lists >= 2, "expected a second list after 410, saw {lists}");
    assert_strict(&fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_costs_annotate_only_pods_of_the_workload() {
    let fake = fake_with_web().await;
    let cluster = KubeCluster::new(client(&fake), settings());
    cluster.observe(&web()).await.unwrap();
    let costs = [
        PodDeletionCost { pod: "web-2".into(), cost: -100 },
        PodDeletionCost { pod: "web-0".into(), cost: 50 },
        PodDeletionCost { pod: "db-0".into(), cost: -1000 },
    ];
    cluster.set_deletion_costs(&web(), &costs).await.unwrap();
    let annotation = |name: &str| {
        fake.pod("shop", name).unwrap()["metadata"]["annotations"]["controller.kubernetes.io/pod-deletion-cost"].clone()
    };
    assert_eq!(annotation("web-2"), "-100");
    assert_eq!(annotation("web-0"), "50");
    assert!(annotation("db-0").is_null(), "a policy may not rank another workload's pods");
    // the watch cache shows the new costs to the next snapshot
    let start = Instant::now();
    loop {
        let seen = cluster.observe(&web()).await.unwrap();
        if seen.pods.iter().find(|p| p.name == "web-2").and_then(|p| p.deletion_cost) == Some(-100) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_strict(&fake);
}

const PIN_WEB_TO_5: &str = "workloads:\n  - target: {namespace: shop, name: web}\n    max_replicas: 20\n    policies: [{policy: fixed, params: {replicas: 5}}]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decision_loop_scales_through_the_api_and_holds_on_failures() {
    let fake = fake_with_web().await;
    let (store, _dir) = open_store(&[("fixed.wasm", "fixed.wasm")]);
    let cluster = Arc::new(KubeCluster::new(client(&fake), settings()));
    let workloads = Config::parse(PIN_WEB_TO_5).unwrap().workloads;
    let decider = Decider::new(cluster, Arc::new(SystemClock), Arc::new(store), workloads, DeciderConfig::default());

    // the API refuses: nothing written, the record says why
    fake.inject(Method::PUT, "/deployments/web/scale", Fault::Status(403), 1);
    let record = decider.evaluate("shop/web").await.unwrap();
    assert!(!record.applied);
    assert!(record.apply_error.as_deref().is_some_and(|e| e.contains("RBAC")), "{record:?}");
    assert_eq!(fake.replicas("shop", "web"), Some(3));

    // the target cannot be read: no decision, no write
    fake.inject(Method::GET, "/deployments/web/scale", Fault::Status(500), settings().attempts as usize);
    let record = decider.evaluate("shop/web").await.unwrap();
    assert!(!record.applied && record.apply_error.as_deref().is_some_and(|e| e.contains("HTTP 500")), "{record:?}");
    assert_eq!(fake.replicas("shop", "web"), Some(3));

    let record = decider.evaluate("shop/web").await.unwrap();
    assert!(record.applied, "{record:?}");
    assert_eq!(record.inputs, "replicas 3 (2 ready), 3 pods");
    assert_eq!(fake.replicas("shop", "web"), Some(5));
    let record = decider.evaluate("shop/web").await.unwrap();
    assert!(!record.applied && record.apply_error.is_none(), "already at 5: nothing to write");
    assert_eq!(fake.scale_writes().len(), 1);
    eventually("the Event", Duration::from_secs(5), || fake.events().len() == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fake.events().len(), 1, "one Event for one scale");
    assert_strict(&fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_decides_but_only_the_leader_writes() {
    let fake = fake_with_web().await;
    let (store, _dir) = open_store(&[("fixed.wasm", "fixed.wasm")]);
    let leadership = Arc::new(Leadership::elected());
    let cluster = Arc::new(KubeCluster::new(client(&fake), settings()));
    let workloads = Config::parse(PIN_WEB_TO_5).unwrap().workloads;
    let config = DeciderConfig { leadership: leadership.clone(), ..DeciderConfig::default() };
    let decider = Decider::new(cluster, Arc::new(SystemClock), Arc::new(store), workloads, config);

    let record = decider.evaluate("shop/web").await.unwrap();
    assert!(!record.applied);
    assert!(record.guardrails.clamps.iter().any(|c| c.metric_label() == "standby"), "{record:?}");
    assert_eq!(record.policies[0].desired, Some(5), "the policy still ran");
    assert_eq!(fake.replicas("shop", "web"), Some(3));

    // a term begins, but its take-over is not done: still no write
    let term = leadership.begin_term();
    leadership.lead_until(Instant::now() + Duration::from_secs(10));
    assert!(!decider.evaluate("shop/web").await.unwrap().applied);
    leadership.ready(term);
    assert!(decider.evaluate("shop/web").await.unwrap().applied);
    assert_eq!(fake.replicas("shop", "web"), Some(5));
    assert_strict(&fake);
}

/// Runs an elector; aborting the task is a crash (no release).
fn campaign(
    fake: &FakeApiServer,
    identity: &str,
    lease_duration: Duration,
) -> (Arc<Leadership>, tokio::task::JoinHandle<()>, tokio_util::sync::CancellationToken) {
    let leadership = Arc::new(Leadership::elected());
    let settings = LeaseSettings::new("scalegate", "scalegate-leader", identity, lease_duration);
    let elector = LeaderElector::new(client(fake), settings, leadership.clone());
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(elector.run(stop.clone()));
    (leadership, task, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_at_a_time_and_a_standby_takes_over_after_a_crash() {
    let fake = FakeApiServer::start().await;
    let lease = Duration::from_secs(2);
    let (a, a_task, _a_stop) = campaign(&fake, "a", lease);
    eventually("a to lead", Duration::from_secs(2), || a.is_leader()).await;
    let (b, _b_task, b_stop) = campaign(&fake, "b", lease);

    // both campaign for three lease durations: never both, a keeps it
    let start = Instant::now();
    while start.elapsed() < lease * 3 {
        assert!(!(a.is_leader() && b.is_leader()), "two leaders");
        assert!(a.is_leader(), "a lost the lease while renewing");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(fake.lease("scalegate", "scalegate-leader").unwrap()["spec"]["holderIdentity"], "a");

    // a crashes: no release; its leadership lapses by itself, b takes over
    a_task.abort();
    let crashed = Instant::now();
    let mut a_stopped = None;
    while !b.is_leader() {
        assert!(!(a.is_leader() && b.is_leader()), "two leaders");
        if a_stopped.is_none() && !a.is_leader() {
            a_stopped = Some(crashed.elapsed());
        }
        assert!(crashed.elapsed() < lease * 2, "b did not take over");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let takeover = crashed.elapsed();
    let retry = lease / 5;
    assert!(takeover <= lease + 2 * retry, "takeover after {takeover:?} (lease {lease:?})");
    assert!(a_stopped.is_some_and(|t| t < takeover), "a stopped writing before b started");
    let held = fake.lease("scalegate", "scalegate-leader").unwrap();
    assert_eq!(held["spec"]["holderIdentity"], "b");
    assert_eq!(held["spec"]["leaseTransitions"], 1);
    println!("takeover {takeover:?} after the crash (lease {lease:?})");

    // a graceful stop releases the lease: a new candidate leads at its next read
    let (c, _c_task, _c_stop) = campaign(&fake, "c", lease);
    tokio::time::sleep(retry).await;
    assert!(!c.is_leader());
    b_stop.cancel();
    eventually("b to step down", Duration::from_secs(1), || !b.is_leader()).await;
    let released = Instant::now();
    eventually("c to lead after the release", lease, || c.is_leader()).await;
    assert!(released.elapsed() < lease / 2, "release let c in after {:?}", released.elapsed());
    assert_strict(&fake);
}

/// Readiness waits for the pod caches: with the pod list answered only
/// after 2 s, `/readyz` says why it is not ready until then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waits_for_the_pod_caches() {
    let fake = fake_with_web().await;
    fake.inject(Method::GET, "/api/v1/namespaces/shop/pods", Fault::Delay(Duration::from_secs(2)), 1);
    let started = Instant::now();
    let rig =
        crate::support::rig::Rig::start(fake, ("shop", "web"), &[("fixed.wasm", "fixed.wasm")], PIN_WEB_TO_5, None)
            .await;
    let readyz = || async {
        let response = reqwest::get(format!("{}/readyz", rig.admin())).await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    let (status, text) = readyz().await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("caches not filled"), "{text}");
    while readyz().await.0 != 200 {
        assert!(started.elapsed() < Duration::from_secs(10), "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(started.elapsed() >= Duration::from_secs(2), "ready only once the pods were listed");
    rig.stop().await;
}
