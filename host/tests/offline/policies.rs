//! The bundled policies through the host's real call path: `hpa` decides
//! exactly like the native library, the Rust, Python and JavaScript versions
//! of `target-tracking` decide identically, and the precompiled cache is
//! reused, invalidated and survives corruption.

use crate::support::*;
use scalegate::cli::bench::{hpa_bench_snapshot, native_hpa};
use scalegate::policy::{Declined, Error, LoadedPolicy, Runtime, RuntimeConfig};
use scalegate::sim::{SimWorkload, daily_load};
use scalegate::snapshot::Snapshot;

#[test]
fn hpa_metadata_and_example_decision() {
    let runtime = runtime();
    let (hpa, _) = runtime.load_file(&policy("hpa.wasm")).unwrap();
    assert_eq!(hpa.info().name, "hpa");
    assert_eq!(hpa.digest().len(), 64);
    assert!(hpa.info().params_schema.contains("behavior"));
    let decision = hpa.evaluate(&example("hpa-scale-up.json")).outcome.unwrap();
    // 0.45 of 0.5 cores = 90 % of a 60 % target → ceil(1.5 × 3) = 5
    assert_eq!(decision.desired_replicas, Some(5));
    assert!(decision.reason.contains("cpu utilization 90 → 5"), "{}", decision.reason);
}

#[test]
fn hpa_wasm_matches_native_over_a_simulated_day() {
    let runtime = runtime();
    let (hpa, _) = runtime.load_file(&policy("hpa.wasm")).unwrap();
    let params = serde_json::json!({
        "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}],
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60, "policies": [{"type": "Pods", "value": 2, "periodSeconds": 30}]}}
    });
    let mut workload = SimWorkload::new("web", 2, 1, 40);
    let mut state = Vec::new();
    let mut changes = 0;
    for step in 1..=96u64 {
        let now = step * 15_000;
        let mut snapshot = workload.snapshot(now, daily_load(now, 96 * 15_000), params.clone());
        snapshot.state = state.clone();
        let native = native_hpa(&snapshot);
        let decision = hpa.evaluate(&snapshot).outcome.unwrap();
        assert_eq!(decision.desired_replicas, native, "step {step}");
        state = decision.state;
        if let Some(desired) = decision.desired_replicas {
            if desired != workload.replicas() {
                changes += 1;
            }
            workload.set_replicas(desired, now, true);
        }
    }
    assert!(changes >= 4, "the day should scale up and down, saw {changes} changes");
    assert_eq!(
        hpa.evaluate(&hpa_bench_snapshot()).outcome.unwrap().desired_replicas,
        native_hpa(&hpa_bench_snapshot())
    );
}

#[test]
fn hpa_invalid_params_are_declined_with_the_field() {
    let runtime = runtime();
    let (hpa, _) = runtime.load_file(&policy("hpa.wasm")).unwrap();
    let mut snapshot = example("hpa-scale-up.json");
    snapshot.params = serde_json::json!({"metrics": [], "behaviour": {}});
    match hpa.evaluate(&snapshot).outcome {
        Err(error @ Error::Declined(Declined::InvalidParams(_))) => {
            assert!(error.to_string().contains("unknown field `behaviour`"), "{error}");
            assert!(!error.is_fault());
        }
        other => panic!("expected InvalidParams, got {other:?}"),
    }
}

fn tracking_cases() -> Vec<(&'static str, Snapshot)> {
    let base = example("target-tracking-scale-in.json");
    let with = |f: &dyn Fn(&mut Snapshot)| {
        let mut s = base.clone();
        f(&mut s);
        s
    };
    vec![
        ("scale-in with deletion costs", base.clone()),
        ("scale-out", with(&|s| s.metrics[0].value = 7321.5)),
        ("exact multiple", with(&|s| s.metrics[0].value = 1800.0)),
        ("zero load", with(&|s| s.metrics[0].value = 0.0)),
        ("negative load is zero", with(&|s| s.metrics[0].value = -5.0)),
        ("fractional target", with(&|s| s.params = serde_json::json!({"metric": "connections", "target": 0.7}))),
        ("stale metric", with(&|s| s.metrics[0].timestamp_ms = s.now_ms - 61_000)),
        (
            "custom max age",
            with(&|s| {
                s.metrics[0].timestamp_ms = s.now_ms - 61_000;
                s.params = serde_json::json!({"metric": "connections", "target": 600, "max_age_seconds": 120});
            }),
        ),
        ("missing metric", with(&|s| s.params = serde_json::json!({"metric": "rps", "target": 100}))),
        ("invalid target", with(&|s| s.params = serde_json::json!({"metric": "connections", "target": 0}))),
        ("params not an object", with(&|s| s.params = serde_json::json!([1, 2]))),
        ("huge load saturates", with(&|s| s.metrics[0].value = 1e15)),
        ("samples out of pod order", with(&|s| s.metrics[0].pods.reverse())),
    ]
}

/// Decision as comparable data; errors compared by kind.
fn outcome(policy: &LoadedPolicy, snapshot: &Snapshot) -> Result<scalegate::snapshot::Decision, String> {
    policy.evaluate(snapshot).outcome.map_err(|e| match e {
        Error::Declined(Declined::InvalidParams(_)) => "invalid-params".to_string(),
        Error::Declined(Declined::MissingInput(_)) => "missing-input".to_string(),
        other => format!("fault: {other}"),
    })
}

/// The target-tracking twins: Rust, Python, JavaScript.
fn twins() -> [LoadedPolicy; 3] {
    let runtime = runtime();
    ["target_tracking.wasm", "target_tracking_py.wasm", "target_tracking_js.wasm"]
        .map(|file| runtime.load_file(&policy(file)).unwrap().0)
}

#[test]
fn rust_python_and_javascript_decide_identically() {
    let [rust, python, javascript] = twins();
    assert_eq!(python.info().name, "target-tracking-py");
    assert_eq!(javascript.info().name, "target-tracking-js");
    let mut kinds = std::collections::BTreeSet::new();
    for (name, snapshot) in tracking_cases() {
        let expected = outcome(&rust, &snapshot);
        assert!(!matches!(&expected, Err(e) if e.starts_with("fault")), "{name}: rust faulted: {expected:?}");
        kinds.insert(match &expected {
            Ok(d) if d.desired_replicas.is_none() => "no-opinion".to_string(),
            Ok(d) if !d.deletion_costs.is_empty() => "scale-in".to_string(),
            Ok(_) => "decision".to_string(),
            Err(kind) => kind.clone(),
        });
        assert_eq!(outcome(&python, &snapshot), expected, "python differs on {name}");
        assert_eq!(outcome(&javascript, &snapshot), expected, "javascript differs on {name}");
    }
    // the cases exercise every branch
    assert_eq!(kinds.len(), 5, "{kinds:?}");
}

/// The schema as a comparable value: documentation (`description`,
/// `title`, `format`, `$schema`) dropped, every number as f64.
fn schema_rules(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "description" | "title" | "format" | "$schema"))
                .map(|(k, v)| (k.clone(), schema_rules(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(schema_rules).collect()),
        Value::Number(n) => serde_json::json!(n.as_f64().unwrap()),
        other => other.clone(),
    }
}

/// The twins publish the same params schema (the Rust one is generated from
/// its params type; Python and JavaScript write theirs and their SDKs enforce
/// it), so a field one of them lacks is caught here.
#[test]
fn the_three_target_trackings_publish_the_same_params_schema() {
    let [rust, python, javascript] = twins();
    let rules = |p: &LoadedPolicy| schema_rules(&serde_json::from_str(&p.info().params_schema).unwrap());
    let expected = rules(&rust);
    assert_eq!(expected["required"], serde_json::json!(["metric", "target"]));
    assert_eq!(rules(&python), expected, "python's schema differs from the Rust one");
    assert_eq!(rules(&javascript), expected, "javascript's schema differs from the Rust one");
}

#[test]
fn samples_of_unlisted_pods_never_reach_the_policy() {
    let runtime = runtime();
    let (rust, _) = runtime.load_file(&policy("target_tracking.wasm")).unwrap();
    let mut snapshot = example("target-tracking-scale-in.json");
    let mut ghost = snapshot.metrics[0].pods[0].clone();
    ghost.pod = "ghost-7".into();
    snapshot.metrics[0].pods.insert(1, ghost);
    let decision = rust.evaluate(&snapshot).outcome.unwrap();
    let pods: Vec<&str> = decision.deletion_costs.iter().map(|c| c.pod.as_str()).collect();
    assert_eq!(pods, ["socket-0", "socket-1", "socket-2", "socket-3"]);
}

#[test]
fn precompiled_cache_is_reused_and_survives_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        || RuntimeConfig { cache_dir: Some(dir.path().to_path_buf()), max_instances: 8, ..RuntimeConfig::default() };
    let path = policy("fixed.wasm");
    let (first, cold) = Runtime::new(config()).unwrap().load_file(&path).unwrap();
    assert!(!cold.cache_hit);
    let (_, warm) = Runtime::new(config()).unwrap().load_file(&path).unwrap();
    assert!(warm.cache_hit, "a restart loads the precompiled artifact");

    let artifacts: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(artifacts.len(), 1);
    let name = artifacts[0].file_name().unwrap().to_string_lossy().to_string();
    assert!(name.starts_with(first.digest()), "artifact keyed by digest: {name}");

    // a truncated artifact is discarded and the component recompiled
    let bytes = std::fs::read(&artifacts[0]).unwrap();
    std::fs::write(&artifacts[0], &bytes[..bytes.len() / 3]).unwrap();
    let (again, stats) = Runtime::new(config()).unwrap().load_file(&path).unwrap();
    assert!(!stats.cache_hit);
    let mut snapshot = example("target-tracking-scale-in.json");
    snapshot.params = serde_json::json!({"replicas": 7});
    assert_eq!(again.evaluate(&snapshot).outcome.unwrap().desired_replicas, Some(7));
    let (_, healed) = Runtime::new(config()).unwrap().load_file(&path).unwrap();
    assert!(healed.cache_hit, "the artifact was rewritten");
}

#[test]
fn python_component_loads_from_the_cache() {
    // first load compiles (tens of seconds) unless an earlier run cached it
    let path = policy("target_tracking_py.wasm");
    runtime().load_file(&path).unwrap();
    let (_, stats) = runtime().load_file(&path).unwrap();
    assert!(stats.cache_hit);
}

#[test]
fn state_is_carried_by_the_caller_not_the_instance() {
    // recycled or fresh, the same input gives the same output
    let recycled = runtime();
    let fresh = Runtime::new(RuntimeConfig { recycle_instances: false, ..config() }).unwrap();
    let (a, _) = recycled.load_file(&policy("hpa.wasm")).unwrap();
    let (b, _) = fresh.load_file(&policy("hpa.wasm")).unwrap();
    let snapshot = hpa_bench_snapshot();
    for _ in 0..3 {
        assert_eq!(a.evaluate(&snapshot).outcome.unwrap(), b.evaluate(&snapshot).outcome.unwrap());
    }
}

#[test]
fn container_requests_reach_the_hpa_policy() {
    let runtime = runtime();
    let (hpa, _) = runtime.load_file(&policy("hpa.wasm")).unwrap();
    let mut snapshot = example("hpa-scale-up.json");
    for pod in &mut snapshot.pods {
        pod.requests.push(scalegate::snapshot::ResourceRequest {
            resource: "cpu".into(),
            container: Some("app".into()),
            amount: 0.25,
        });
    }
    let mut app = snapshot.metrics[0].clone();
    app.name = "app/cpu".into();
    for sample in &mut app.pods {
        sample.value = 0.2;
    }
    snapshot.metrics.push(app);
    snapshot.params = serde_json::json!({"metrics": [{"type": "ContainerResource",
        "containerResource": {"name": "cpu", "container": "app", "target": {"type": "Utilization", "averageUtilization": 40}}}]});
    // 0.2 of the container's 0.25 = 80 % of 40 % → 2 × 3 = 6 (the pod total of 0.5 would give 40 %: no change)
    let decision = hpa.evaluate(&snapshot).outcome.unwrap();
    assert_eq!(decision.metrics[0].value, 80.0, "{}", decision.reason);
    assert_eq!(decision.desired_replicas, native_hpa(&snapshot));
    assert_eq!(decision.desired_replicas, Some(6));
}

#[test]
fn directive_ranks_pods_for_scale_in_by_a_per_pod_metric() {
    let runtime = runtime();
    let (directive, _) = runtime.load_file(&policy("directive.wasm")).unwrap();
    let pod = |name: &str| serde_json::json!({"name": name, "phase": "Running", "ready": true});
    let sample =
        |pod: &str, value: f64| serde_json::json!({"pod": pod, "value": value, "timestamp_ms": 1_700_000_000_000u64});
    let snapshot: Snapshot = serde_json::from_value(serde_json::json!({
        "now_ms": 1_700_000_000_000u64,
        "workload": {"kind": "Deployment", "namespace": "rtc", "name": "socket", "current_replicas": 3, "min_replicas": 2, "max_replicas": 50},
        "pods": [pod("socket-a"), pod("socket-b"), pod("socket-c")],
        "metrics": [{"name": "connections", "source": "redis", "value": 1112.4, "timestamp_ms": 1_700_000_000_000u64,
                     "pods": [sample("socket-a", 800.0), sample("socket-b", 12.4), sample("socket-c", 300.0)]}],
        "signals": [{"kind": "scale-signal", "source": "kafka:rtc.control.scale", "timestamp_ms": 1_700_000_000_000u64,
                     "action": "scale_in", "urgency": 0, "reason": "low load", "attributes": [["delta", "-1"]]}],
        "params": {"deletion_cost_metric": "connections"}
    }))
    .unwrap();
    let decision = directive.evaluate(&snapshot).outcome.unwrap();
    assert_eq!(decision.desired_replicas, Some(2));
    let costs: Vec<(&str, i32)> = decision.deletion_costs.iter().map(|c| (c.pod.as_str(), c.cost)).collect();
    assert_eq!(costs, [("socket-a", 800), ("socket-b", 12), ("socket-c", 300)], "the least connected goes first");
    let mut wrong = snapshot.clone();
    wrong.params = serde_json::json!({"deletion_cost_metric": 7});
    assert!(matches!(directive.evaluate(&wrong).outcome, Err(Error::Declined(Declined::InvalidParams(_)))));
}

/// Directives of one workload may arrive out of order (two partitions, a
/// redelivery): the policy follows the newest it has seen, whatever the order.
#[test]
fn directive_ignores_a_directive_older_than_the_one_it_followed() {
    let runtime = runtime();
    let (directive, _) = runtime.load_file(&policy("directive.wasm")).unwrap();
    let snapshot = |target: u32, sent_ms: u64, state: &[u8]| -> Snapshot {
        let mut snapshot: Snapshot = serde_json::from_value(serde_json::json!({
            "now_ms": 1_700_000_100_000u64,
            "workload": {"name": "web", "current_replicas": 3, "max_replicas": 50},
            "signals": [{"kind": "scale-signal", "source": "kafka:scale", "timestamp_ms": sent_ms, "target_replicas": target}],
        }))
        .unwrap();
        snapshot.state = state.to_vec();
        snapshot
    };
    let newer = directive.evaluate(&snapshot(9, 2_000, b"")).outcome.unwrap();
    assert_eq!(newer.desired_replicas, Some(9));
    assert_eq!(newer.state, br#"{"followed_ms":2000}"#);
    let older = directive.evaluate(&snapshot(4, 1_000, &newer.state)).outcome.unwrap();
    assert_eq!(older.desired_replicas, None, "{}", older.reason);
    assert_eq!(older.state, newer.state, "still following the newer one");
    let same_time = directive.evaluate(&snapshot(5, 2_000, &newer.state)).outcome.unwrap();
    assert_eq!(same_time.desired_replicas, Some(5), "as new as the followed one: followed");
    let quiet: Snapshot = serde_json::from_value(serde_json::json!({
        "now_ms": 1, "workload": {"name": "web", "current_replicas": 3, "max_replicas": 50}
    }))
    .unwrap();
    let mut quiet = quiet;
    quiet.state = newer.state.clone();
    assert_eq!(directive.evaluate(&quiet).outcome.unwrap().state, newer.state, "kept without directives");
}

#[test]
fn the_worked_examples_decide_as_their_readme_says() {
    let runtime = runtime();
    let read = |path: &str| -> Snapshot {
        serde_json::from_str(&std::fs::read_to_string(workspace().join("examples").join(path)).unwrap()).unwrap()
    };
    for (policy_file, snapshot, desired, costs) in [
        ("directive.wasm", "kafka-scale-signal/snapshot.json", 8, vec![]),
        (
            "directive.wasm",
            "lb-urgency/directive-snapshot.json",
            2,
            vec![("socket-7d9f-a", 800), ("socket-7d9f-b", 12), ("socket-7d9f-c", 300)],
        ),
        ("urgency.wasm", "lb-urgency/snapshot.json", 8, vec![]),
        ("queue.wasm", "hpa-keda-vpa/backend-snapshot.json", 5, vec![]),
        ("forecast.wasm", "forecast-lead-time/snapshot.json", 20, vec![]),
        ("thresholds.wasm", "prometheus-ema/snapshot.json", 3, vec![]),
    ] {
        let (loaded, _) = runtime.load_file(&policy(policy_file)).unwrap();
        let decision = loaded.evaluate(&read(snapshot)).outcome.unwrap();
        assert_eq!(decision.desired_replicas, Some(desired), "{snapshot}");
        let got: Vec<(&str, i32)> = decision.deletion_costs.iter().map(|c| (c.pod.as_str(), c.cost)).collect();
        assert_eq!(got, costs, "{snapshot}");
    }
}

#[test]
fn forecast_takes_the_peak_over_the_lead_time_from_now_on() {
    let runtime = runtime();
    let (forecast, _) = runtime.load_file(&policy("forecast.wasm")).unwrap();
    let base: Snapshot = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("examples/forecast-lead-time/snapshot.json")).unwrap(),
    )
    .unwrap();
    let decide = |now_offset_s: u64, params: serde_json::Value| {
        let mut snapshot = base.clone();
        snapshot.now_ms += now_offset_s * 1000;
        snapshot.params = params;
        forecast.evaluate(&snapshot).outcome
    };
    let replicas = |outcome: Result<scalegate::snapshot::Decision, Error>| outcome.unwrap().desired_replicas;
    // series [10, 12, 15, 20, 18, 16, 14, 12, 11, 10, 30] per minute from generation
    assert_eq!(replicas(decide(0, serde_json::json!({"forecast": "replicas", "lead_time_seconds": 300}))), Some(20));
    // 7 minutes on, the past is skipped: [12, 11, 10, 30] → 30
    assert_eq!(
        replicas(decide(
            390,
            serde_json::json!({"forecast": "replicas", "lead_time_seconds": 300, "max_age_seconds": 3600})
        )),
        Some(30)
    );
    // a lead time shorter than a step still looks at the current step
    assert_eq!(replicas(decide(0, serde_json::json!({"forecast": "replicas", "lead_time_seconds": 0}))), Some(10));
    // load series: ceil(peak / target)
    assert_eq!(
        replicas(decide(0, serde_json::json!({"forecast": "replicas", "lead_time_seconds": 300, "target": 6}))),
        Some(4)
    );
    // stale (default 15 min) or run out → no opinion; unknown → missing input
    assert_eq!(replicas(decide(1000, serde_json::json!({"forecast": "replicas"}))), None);
    assert_eq!(replicas(decide(700, serde_json::json!({"forecast": "replicas", "max_age_seconds": 3600}))), None);
    assert!(matches!(
        decide(0, serde_json::json!({"forecast": "rps"})),
        Err(Error::Declined(Declined::MissingInput(_)))
    ));
    assert!(matches!(
        decide(0, serde_json::json!({"forecast": "replicas", "target": 0})),
        Err(Error::Declined(Declined::InvalidParams(_)))
    ));
}

#[test]
fn thresholds_smooth_the_metric_and_move_between_overlapping_bands() {
    let runtime = runtime();
    let (thresholds, _) = runtime.load_file(&policy("thresholds.wasm")).unwrap();
    let base: Snapshot = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("examples/prometheus-ema/snapshot.json")).unwrap(),
    )
    .unwrap();
    // levels 1:[10,0] 2:[30,8] 3:[60,25] 4:[100,50] 5:[999999,90], alpha 0.7
    let decide = |current: u32, rps: f64, previous: Option<f64>| {
        let mut snapshot = base.clone();
        snapshot.workload.current_replicas = current;
        snapshot.metrics[0].value = rps;
        snapshot.state = previous.map(|p| p.to_string().into_bytes()).unwrap_or_default();
        let decision = thresholds.evaluate(&snapshot).outcome.unwrap();
        let ema: f64 = String::from_utf8(decision.state.clone()).unwrap().parse().unwrap();
        (decision.desired_replicas.unwrap(), (ema * 100.0).round() / 100.0)
    };
    assert_eq!(decide(2, 65.3, None), (4, 65.3), "no history: the value itself; 65.3 needs the band of 4");
    assert_eq!(decide(2, 65.3, Some(40.0)), (3, 57.71), "smoothed: 0.7 × 65.3 + 0.3 × 40");
    assert_eq!(decide(4, 40.0, Some(70.0)), (3, 49.0), "49 < 50, the lower bound at 4; 3 serves 25..60");
    assert_eq!(decide(3, 45.0, Some(49.0)), (3, 46.2), "inside 25..60: stay (hysteresis)");
    assert_eq!(decide(7, 95.0, None), (7, 95.0), "above the top level its band applies: stay");
    assert_eq!(decide(7, 80.0, None), (4, 80.0), "below 90: the largest level whose lower bound fits");
    assert_eq!(decide(1, 0.0, Some(3.0)), (1, 0.9));
    // stale metric: no opinion, the average is kept
    let mut stale = base.clone();
    stale.metrics[0].timestamp_ms -= 120_000;
    let decision = thresholds.evaluate(&stale).outcome.unwrap();
    assert_eq!((decision.desired_replicas, decision.state.as_slice()), (None, &b"40"[..]));
    let mut bad = base.clone();
    bad.params["levels"]["2"] = serde_json::json!([5, 8]);
    assert!(
        matches!(thresholds.evaluate(&bad).outcome, Err(Error::Declined(Declined::InvalidParams(m))) if m.contains("levels.2"))
    );
}

/// A small deterministic generator (xorshift64*), so a failing snapshot can
/// be found again by its seed.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len() as u64) as usize]
    }
}

/// A target-tracking snapshot from the generator: pod counts, missing and
/// stale metrics, samples of pods not listed, zero, fractional and huge values.
fn generated(seed: &mut Seeded) -> Snapshot {
    let now_ms = 1_700_000_000_000u64;
    let pods = seed.below(13) as usize;
    let value =
        |seed: &mut Seeded| seed.pick(&[0.0, 0.5, 1.0, 37.25, 99.99, 600.0, 1234.5, 1e6, 1e12, 1e15, 1e17, 1e300]);
    let mut samples = vec![];
    for i in 0..pods + seed.below(3) as usize {
        if seed.below(5) > 0 {
            let v = value(seed);
            samples.push(serde_json::json!({"pod": format!("p-{i}"), "value": v, "timestamp_ms": now_ms - 5_000}));
        }
    }
    if seed.below(2) == 0 {
        samples.reverse();
    }
    let total: f64 = samples.iter().map(|s| s["value"].as_f64().unwrap()).sum();
    let metric_value = if seed.below(3) == 0 { value(seed) } else { total };
    let age_ms = seed.pick(&[0u64, 1_000, 59_000, 61_000, 3_600_000]);
    let name = if seed.below(8) == 0 { "other" } else { "load" };
    let mut params = serde_json::json!({"metric": "load", "target": seed.pick(&[0.5, 1.0, 7.0, 100.0, 600.0, 1e6])});
    if seed.below(4) == 0 {
        params["max_age_seconds"] = serde_json::json!(seed.pick(&[0, 30, 120]));
    }
    let json = serde_json::json!({
        "now_ms": now_ms,
        "workload": {"name": "api", "current_replicas": seed.below(21), "max_replicas": 50},
        "pods": (0..pods).map(|i| serde_json::json!({"name": format!("p-{i}")})).collect::<Vec<_>>(),
        "metrics": [{"name": name, "value": metric_value, "timestamp_ms": now_ms - age_ms, "pods": samples}],
        "params": params,
    });
    serde_json::from_value(json).unwrap()
}

#[test]
fn the_three_target_trackings_agree_on_generated_snapshots() {
    let [rust, python, javascript] = twins();
    let mut seed = Seeded(0x5ca1_e9a7e);
    let mut kinds = std::collections::BTreeMap::new();
    for case in 0..150 {
        let snapshot = generated(&mut seed);
        let expected = outcome(&rust, &snapshot);
        let kind = match &expected {
            Ok(d) if d.desired_replicas.is_none() => "no-opinion",
            Ok(d) if !d.deletion_costs.is_empty() => "scale-in with costs",
            Ok(_) => "decision",
            Err(e) if e.starts_with("fault") => panic!("case {case}: rust faulted: {e}"),
            Err(_) => "declined",
        };
        *kinds.entry(kind).or_insert(0) += 1;
        // every field: replicas, reason, state, deletion costs, reported metrics
        assert_eq!(outcome(&python, &snapshot), expected, "python differs on generated case {case}: {snapshot:?}");
        assert_eq!(
            outcome(&javascript, &snapshot),
            expected,
            "javascript differs on generated case {case}: {snapshot:?}"
        );
    }
    assert_eq!(kinds.len(), 4, "the generator reaches every branch: {kinds:?}");
}
