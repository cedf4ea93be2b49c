//! The `vpa` policy through the host's real call path (contract 0.2.0): its
//! model lives in `decision.state` between calls, it reads containers (and
//! only it: `reads` gates them), reproduces the reference's vectors, takes
//! an OOM kill once, and honours the VPA resource policy in its params.

use crate::support::*;
use scalegate::policy::{Contract, LoadedPolicy};
use scalegate::snapshot::{Compute, Container, Pod, Snapshot, Termination, Usage, Workload};

const START: u64 = 1_767_225_600_000;
const MINUTE: u64 = 60_000;
const MIB: f64 = 1024.0 * 1024.0;

fn snapshot(now_ms: u64, containers: Vec<Container>, params: serde_json::Value, state: Vec<u8>) -> Snapshot {
    let mut pod = Pod::running("redis-0", START - 3_600_000, START - 3_500_000, 0.25, 256.0 * MIB);
    pod.containers = containers;
    Snapshot {
        now_ms,
        workload: Workload {
            kind: "StatefulSet".into(),
            namespace: "meme-generator".into(),
            name: "redis".into(),
            current_replicas: 1,
            status_replicas: None,
            ready_replicas: None,
            min_replicas: 1,
            max_replicas: 1,
        },
        pods: vec![pod],
        metrics: vec![],
        signals: vec![],
        forecasts: vec![],
        recommendations: vec![],
        scale_events: vec![],
        params,
        state,
    }
}

fn redis(cpu: f64, memory: f64, at: u64) -> Container {
    Container {
        name: "redis".into(),
        requests: Compute { cpu: Some(0.25), memory: Some(256.0 * MIB) },
        limits: Compute { cpu: None, memory: Some(512.0 * MIB) },
        restart_count: 0,
        last_termination: None,
        usage: Some(Usage { cpu, memory, timestamp_ms: at, window_ms: 30_000 }),
        restart_on_resize: vec![],
    }
}

/// `(resource, target, lower, upper, uncapped)` of the first container.
fn recommended(decision: &scalegate::snapshot::Decision) -> Vec<(String, f64, f64, f64, f64)> {
    decision.resources[0]
        .resources
        .iter()
        .map(|r| (r.resource.clone(), r.target, r.lower_bound, r.upper_bound, r.uncapped_target))
        .collect()
}

fn run_day(vpa: &LoadedPolicy, params: serde_json::Value) -> scalegate::snapshot::Decision {
    let mut state = vec![];
    let mut last = None;
    for minute in 0..1441 {
        let at = START + minute * MINUTE;
        let s = snapshot(at, vec![redis(0.5, 5e8, at)], params.clone(), state);
        let decision = vpa.evaluate(&s).outcome.unwrap();
        state = decision.state.clone();
        last = Some(decision);
    }
    last.unwrap()
}

#[test]
fn vpa_reproduces_the_reference_through_its_state() {
    let runtime = runtime();
    let (vpa, _) = runtime.load_file(&policy("vpa.wasm")).unwrap();
    assert_eq!(vpa.contract(), Contract::V0_2);
    assert_eq!(vpa.info().reads, ["pods", "containers"]);
    let decision = run_day(&vpa, serde_json::json!({}));
    assert_eq!(decision.desired_replicas, None, "no opinion on replicas");
    // T1: 587m [585m, 1174m], 587804717 B [586630868, 1175609434]
    assert_eq!(
        recommended(&decision),
        [
            ("cpu".to_string(), 0.587, 0.585, 1.174, 0.587),
            ("memory".to_string(), 587_804_717.0, 586_630_868.0, 1_175_609_434.0, 587_804_717.0)
        ]
    );
    assert!(decision.reason.contains("redis: cpu 587m [585m, 1174m]"), "{}", decision.reason);
    assert!(decision.state.len() < 4096, "{} bytes of state", decision.state.len());
}

#[test]
fn vpa_caps_to_the_resource_policy_and_skips_containers_off() {
    let (vpa, _) = runtime().load_file(&policy("vpa.wasm")).unwrap();
    let params = serde_json::json!({"containerPolicies": [
        {"containerName": "*", "minAllowed": {"cpu": "600m"}, "maxAllowed": {"memory": "512Mi"}, "controlledResources": ["cpu", "memory"]}
    ]});
    let decision = run_day(&vpa, params);
    assert_eq!(
        recommended(&decision),
        [
            ("cpu".to_string(), 0.6, 0.6, 1.174, 0.587),
            ("memory".to_string(), 512.0 * MIB, 512.0 * MIB, 512.0 * MIB, 587_804_717.0)
        ]
    );
    let off = serde_json::json!({"containerPolicies": [{"containerName": "redis", "mode": "Off"}]});
    let s = snapshot(START, vec![redis(0.5, 5e8, START)], off, vec![]);
    assert!(vpa.evaluate(&s).outcome.unwrap().resources.is_empty());
    let only_memory =
        serde_json::json!({"containerPolicies": [{"containerName": "redis", "controlledResources": ["memory"]}]});
    let s = snapshot(START, vec![redis(0.5, 5e8, START)], only_memory, vec![]);
    let d = vpa.evaluate(&s).outcome.unwrap();
    assert_eq!(d.resources[0].resources.len(), 1);
    assert_eq!(d.resources[0].resources[0].resource, "memory");
    // bad params name the field
    let bad = serde_json::json!({"containerPolicies": [{"containerName": "*", "maxAllowed": {"cpu": "lots"}}]});
    let error = vpa.evaluate(&snapshot(START, vec![], bad, vec![])).outcome.unwrap_err();
    assert!(error.to_string().contains("containerPolicies[0].maxAllowed.cpu"), "{error}");
}

#[test]
fn an_oom_kill_is_taken_once_and_bumps_memory() {
    let (vpa, _) = runtime().load_file(&policy("vpa.wasm")).unwrap();
    let mut state = vec![];
    let mut memory_target = vec![];
    for minute in 0..120 {
        let at = START + minute * MINUTE;
        let mut c = redis(0.2, 200.0 * MIB, at);
        if minute >= 60 {
            // the kubelet reports the OOM kill at minute 60 on every later look
            c.restart_count = 1;
            c.last_termination = Some(Termination {
                reason: "OOMKilled".into(),
                exit_code: 137,
                finished_ms: Some(START + 60 * MINUTE),
            });
        }
        let d = vpa.evaluate(&snapshot(at, vec![c], serde_json::json!({}), state)).outcome.unwrap();
        state = d.state.clone();
        memory_target.push(recommended(&d)[1].1);
    }
    // before: 200 MiB peaks; after: max(256 MiB + 100 MiB, 256 × 1.2) = 356 MiB, bucket end + 15 %
    assert!(memory_target[59] < 300.0 * MIB, "{}", memory_target[59]);
    assert_eq!(memory_target[60], 442_809_964.0);
    // taken once: the same termination seen again changes nothing
    assert!(memory_target[60..].iter().all(|m| *m == memory_target[60]));
}

#[test]
fn the_seed_004_redis_example_decides_as_its_readme_says() {
    let (vpa, _) = runtime().load_file(&policy("vpa.wasm")).unwrap();
    let text = std::fs::read_to_string(workspace().join("examples/hpa-keda-vpa/redis-snapshot.json")).unwrap();
    let decision = vpa.evaluate(&serde_json::from_str(&text).unwrap()).outcome.unwrap();
    assert_eq!(decision.reason, "redis: cpu 143m [50m, 1000m], memory 283Mi [250Mi, 1024Mi] (0.0 days of history)");
    let readme = std::fs::read_to_string(workspace().join("examples/hpa-keda-vpa/README.md")).unwrap();
    assert!(readme.contains(&decision.reason), "examples/hpa-keda-vpa/README.md shows another reason");
}

#[test]
fn policies_that_do_not_read_containers_decide_the_same_with_or_without_them() {
    let runtime = runtime();
    let (hpa, _) = runtime.load_file(&policy("hpa.wasm")).unwrap();
    assert!(!hpa.info().reads.iter().any(|r| r == "containers"));
    let plain = example("hpa-scale-up.json");
    let mut with = plain.clone();
    for pod in &mut with.pods {
        pod.containers = vec![redis(0.5, 5e8, plain.now_ms)];
    }
    assert_eq!(hpa.evaluate(&plain).outcome.unwrap(), hpa.evaluate(&with).outcome.unwrap());
}
