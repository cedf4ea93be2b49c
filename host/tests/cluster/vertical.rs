//! Vertical scaling in place, end to end: `scalegate run` with the `vpa`
//! policy against the strict fake API server, which serves
//! `pods/{name}/resize` like `ValidatePodResize` and a fake kubelet. Pods
//! outside the recommendation are resized one at a time with limits in
//! proportion; within it they are left alone; an `Infeasible` resize stops
//! the workload with the reason recorded; the QoS class never changes; a
//! resource whose resizePolicy restarts the container is left alone.

use crate::support::daemon::{Daemon, workdir};
use crate::support::rig::eventually;
use fake_apiserver::{FakeApiServer, Kubelet, parse_quantity};
use std::time::Duration;

const CONFIG: &str = r#"
policies: {directory: POLICIES}
workloads:
  - target: {namespace: shop, name: redis}
    interval: 1s
    max_replicas: 5
    policies: [{policy: vpa}]
    vertical: {mode: in-place, cooldown: 0s}
"#;

fn setup(fake: &FakeApiServer) -> tempfile::TempDir {
    workdir(&fake.kubeconfig(), CONFIG, &[("vpa.wasm", "vpa.wasm")])
}

fn request(fake: &FakeApiServer, pod: &str, kind: &str, resource: &str) -> Option<f64> {
    let pod = fake.pod("shop", pod).unwrap();
    pod["spec"]["containers"][0]["resources"][kind][resource].as_str().and_then(parse_quantity)
}

fn vertical(daemon: &Daemon) -> serde_json::Value {
    let body = daemon.get("/v1/workloads/shop/redis/decisions?limit=1");
    let json = body.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or(&body);
    let decisions: serde_json::Value = serde_json::from_str(json).unwrap();
    decisions["decisions"][0]["vertical"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_outside_the_recommendation_are_resized_one_at_a_time_and_infeasible_stops() {
    let fake = FakeApiServer::start().await;
    fake.add_deployment("shop", "redis", 2);
    const MI: f64 = 1024.0 * 1024.0;
    // Burstable: 100m / 100Mi requested, memory limited to 200Mi
    for pod in ["redis-0", "redis-1"] {
        fake.put_sized_pod("shop", "redis", pod, [Some("100m"), Some("100Mi")], [None, Some("200Mi")], &[]);
        fake.put_pod_metrics("shop", pod, &[("app", "500m", "150Mi")]);
    }
    let dir = setup(&fake);
    let daemon = Daemon::start(dir.path(), &[]);

    // both resized, one at a time, to the recommendation (500m → 587m), the memory limit in proportion
    eventually("two resizes", Duration::from_secs(20), || fake.resizes().len() == 2).await;
    let resizes = fake.resizes();
    assert_ne!(resizes[0].1, resizes[1].1, "each pod once: {resizes:?}");
    for pod in ["redis-0", "redis-1"] {
        assert_eq!(request(&fake, pod, "requests", "cpu"), Some(0.587), "{pod}");
        let memory = request(&fake, pod, "requests", "memory").unwrap();
        let limit = request(&fake, pod, "limits", "memory").unwrap();
        assert!(memory > 150.0 * MI, "{pod}: memory request {memory}");
        assert!((limit - 2.0 * memory).abs() <= 1.0, "{pod}: limit {limit} follows the request {memory} (was 2×)");
        assert_eq!(request(&fake, pod, "limits", "cpu"), None, "no CPU limit stays none");
    }
    // within the recommendation now: left alone
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fake.resizes().len(), 2, "{:?}", fake.resizes());
    let v = vertical(&daemon);
    assert_eq!(v["mode"], "in-place", "{v}");
    assert_eq!(v["plan"]["action"], "idle", "{v}");
    assert_eq!(v["recommended"]["app"]["cpu"]["target"], 0.587, "{v}");
    let metrics = daemon.get("/metrics");
    let gauge = r#"scalegate_workload_container_recommendation{namespace="shop",name="redis",binding="shop/redis",container="app",resource="cpu",bound="target"} 0.587"#;
    assert!(metrics.contains(gauge), "{metrics}");
    let events: Vec<String> = fake.events().iter().map(|e| e["reason"].as_str().unwrap().to_string()).collect();
    assert_eq!(events.iter().filter(|r| *r == "Resized").count(), 2, "{events:?}");
    assert!(events.iter().any(|r| r == "RecommendationChanged"), "{events:?}");

    // a new pod the node cannot fit: Infeasible, the workload stops with the reason
    fake.set_kubelet(Kubelet::Capacity { cpu: 0.3, memory: 1e12 });
    fake.put_sized_pod("shop", "redis", "redis-2", [Some("100m"), Some("100Mi")], [None, Some("200Mi")], &[]);
    fake.put_pod_metrics("shop", "redis-2", &[("app", "500m", "150Mi")]);
    eventually("the infeasible resize", Duration::from_secs(10), || fake.resizes().len() == 3).await;
    eventually("halted", Duration::from_secs(10), || vertical(&daemon)["plan"]["action"] == "halted").await;
    let v = vertical(&daemon);
    assert!(v["plan"]["reason"].as_str().unwrap().contains("Infeasible"), "{v}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fake.resizes().len(), 3, "nothing more while halted");
    assert_eq!(fake.violations(), Vec::<String>::new());
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_class_and_restart_policy_are_respected() {
    let fake = FakeApiServer::start().await;
    fake.add_deployment("shop", "redis", 2);
    // Guaranteed (requests == limits); and a Burstable pod whose memory resize would restart it
    fake.put_sized_pod("shop", "redis", "redis-0", [Some("100m"), Some("100Mi")], [Some("100m"), Some("100Mi")], &[]);
    fake.put_sized_pod("shop", "redis", "redis-1", [Some("100m"), Some("100Mi")], [None, None], &["memory"]);
    for pod in ["redis-0", "redis-1"] {
        fake.put_pod_metrics("shop", pod, &[("app", "500m", "150Mi")]);
    }
    fake.set_kubelet(Kubelet::Hold);
    let dir = setup(&fake);
    let daemon = Daemon::start(dir.path(), &[]);
    eventually("the first resize", Duration::from_secs(20), || fake.resizes().len() == 1).await;
    // held in progress: the second pod waits for the first
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fake.resizes().len(), 1, "one pod at a time");
    assert_eq!(vertical(&daemon)["plan"]["action"], "waiting");
    fake.finish_resizes("shop");
    eventually("the second resize", Duration::from_secs(10), || fake.resizes().len() == 2).await;
    fake.finish_resizes("shop");

    // Guaranteed stays Guaranteed: limits moved with the requests
    for resource in ["cpu", "memory"] {
        assert_eq!(request(&fake, "redis-0", "requests", resource), request(&fake, "redis-0", "limits", resource));
    }
    assert_eq!(request(&fake, "redis-0", "requests", "cpu"), Some(0.587));
    // the RestartContainer resource is left alone, the other resized
    assert_eq!(request(&fake, "redis-1", "requests", "memory"), Some(100.0 * 1024.0 * 1024.0));
    assert_eq!(request(&fake, "redis-1", "requests", "cpu"), Some(0.587));
    assert_eq!(fake.violations(), Vec::<String>::new());
    drop(daemon);
}
