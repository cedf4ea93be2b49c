//! The decision loop on the simulated cluster: combining policies, shadow,
//! guardrails, faults, per-workload rollback, conflicts, and the timed loop
//! with triggers and shutdown (tokio's paused clock).

use crate::support::*;
use scalegate::clock::TokioClock;
use scalegate::config::Config;
use scalegate::decide::{Decider, DeciderConfig};
use scalegate::guardrails::Clamp;
use scalegate::policy_store::PolicyStore;
use scalegate::sim::{SimCluster, SimWorkload};
use std::sync::Arc;
use std::time::Duration;

type Loop = Decider<SimCluster<TokioClock>>;

struct Rig {
    decider: Arc<Loop>,
    cluster: Arc<SimCluster<TokioClock>>,
    store: PolicyStore,
    dir: tempfile::TempDir,
}

/// A store holding `files` (name in the store → built policy), a simulated
/// `shop/web` at 2 replicas under a constant 400 rps, and the workloads of `yaml`.
fn rig(files: &[(&str, &str)], yaml: &str) -> Rig {
    rig_under(files, yaml, 400.0)
}

/// [`rig`] with another constant load (rps).
fn rig_under(files: &[(&str, &str)], yaml: &str, load: f64) -> Rig {
    let (store, dir) = open_store(files);
    let clock = Arc::new(TokioClock::starting_at(1_700_000_000_000));
    let cluster = Arc::new(SimCluster::new(clock.clone()));
    let mut web = SimWorkload::new("web", 2, 1, 50);
    web.startup_ms = 0;
    cluster.add("shop", web, Box::new(move |_| load));
    let config = Config::parse(yaml).unwrap();
    let decider = Arc::new(Decider::new(
        cluster.clone(),
        clock,
        Arc::new(store.clone()),
        config.workloads,
        DeciderConfig::default(),
    ));
    Rig { decider, cluster, store, dir }
}

const TRACKING: &[(&str, &str)] = &[("fixed.wasm", "fixed.wasm"), ("tt.wasm", "target_tracking.wasm")];

fn web(extra: &str) -> String {
    format!("workloads:\n  - target: {{namespace: shop, name: web}}\n    max_replicas: 20\n{extra}")
}

#[tokio::test(start_paused = true)]
async fn several_policies_combine_by_max_and_the_result_is_applied() {
    let rig = rig(
        TRACKING,
        &web(
            "    policies:\n      - {policy: fixed, params: {replicas: 3}}\n      - {policy: target-tracking, params: {metric: rps, target: 100}}\n",
        ),
    );
    let record = rig.decider.evaluate("shop/web").await.unwrap();
    let desired: Vec<Option<u32>> = record.policies.iter().map(|p| p.desired).collect();
    assert_eq!(desired, vec![Some(3), Some(4)], "{record:#?}");
    assert_eq!(record.guardrails.replicas, 4);
    assert!(record.applied);
    assert_eq!(rig.cluster.replicas("shop", "web"), Some(4));
    let calls = rig.cluster.scale_calls();
    assert_eq!((calls[0].from, calls[0].to), (2, 4));
    assert!(calls[0].reason.contains("target-tracking@1.0.0: rps at 400%"), "{}", calls[0].reason);
    let digest = serde_json::to_value(record.inputs_digest).unwrap();
    assert!(digest.as_str().is_some_and(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit())), "{digest}");
    assert!(record.inputs.contains("rps=400.000"), "{}", record.inputs);

    // steady state: nothing more to do, nothing written
    let again = rig.decider.evaluate("shop/web").await.unwrap();
    assert!(!again.applied && again.guardrails.replicas == 4);
    assert_eq!(rig.cluster.scale_calls().len(), 1);
    assert_eq!(rig.decider.decisions("shop/web", 10).unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_prefer_rule_and_a_scale_up_only_backup_decide_through_the_loop() {
    // 400 rps at 2 replicas: target-tracking (100 rps/pod) wants 4; `fixed` pins what the test says
    let hybrid = |pinned: u32, backup: u32| {
        web(&format!(
            "    policies:\n      - {{policy: fixed, name: predictive, params: {{replicas: {pinned}}}}}\n      - {{policy: target-tracking, name: reactive, params: {{metric: rps, target: 100}}}}\n      - {{policy: fixed, name: backup, only: scale-up, params: {{replicas: {backup}}}}}\n    combine: {{prefer: predictive, unless_differs_from: reactive, by_more_than: 2}}\n"
        ))
    };
    // within 2 of reactive's 4: predictive's 3 wins although smaller; the backup's 2 is not above current
    let first = rig(TRACKING, &hybrid(3, 2));
    let record = first.decider.evaluate("shop/web").await.unwrap();
    assert_eq!(record.guardrails.replicas, 3, "{record:#?}");
    assert_eq!(
        record.combined.as_deref(),
        Some("backup 2 ignored (only scale-up, current 2); predictive 3: within 2 of reactive 4")
    );
    assert_eq!(first.cluster.replicas("shop", "web"), Some(3));
    // predictive far off (9 vs 4): reactive decides
    let far = rig(TRACKING, &hybrid(9, 1));
    let record = far.decider.evaluate("shop/web").await.unwrap();
    assert_eq!(record.guardrails.replicas, 4, "{record:#?}");
    assert!(record.combined.as_deref().unwrap().contains("reactive 4: differs from predictive 9 by 5 > 2"));
    assert!(record.line().contains("reactive 4: differs"), "{}", record.line());
    // the backup raises it when above current and above the rule's result
    let raised = rig(TRACKING, &hybrid(4, 12));
    let record = raised.decider.evaluate("shop/web").await.unwrap();
    assert_eq!(record.guardrails.replicas, 12, "{record:#?}");
    assert_eq!(raised.cluster.replicas("shop", "web"), Some(12));
}

#[tokio::test(start_paused = true)]
async fn shadow_is_recorded_and_never_actuated() {
    let rig = rig(
        TRACKING,
        &web(
            "    policies: [{policy: fixed, params: {replicas: 3}}]\n    shadow: {policy: fixed, params: {replicas: 9}}\n",
        ),
    );
    let record = rig.decider.evaluate("shop/web").await.unwrap();
    assert_eq!(record.shadow.as_ref().unwrap().desired, Some(9));
    assert!(record.shadow_diverged);
    assert_eq!(rig.cluster.replicas("shop", "web"), Some(3));
}

#[tokio::test(start_paused = true)]
async fn guardrails_limit_what_is_written() {
    let rig = rig(
        TRACKING,
        &web(
            "    policies: [{policy: fixed, params: {replicas: 15}}]\n    guardrails: {max_step_up: 1, cooldown_up: 1m}\n",
        ),
    );
    let record = rig.decider.evaluate("shop/web").await.unwrap();
    assert_eq!(record.guardrails.clamps, vec![Clamp::StepUp { from: 15, to: 3 }]);
    assert_eq!(rig.cluster.replicas("shop", "web"), Some(3));
    // within the cooldown: held
    tokio::time::advance(Duration::from_secs(30)).await;
    let held = rig.decider.evaluate("shop/web").await.unwrap();
    assert!(matches!(held.guardrails.clamps[0], Clamp::Cooldown { .. }), "{:?}", held.guardrails.clamps);
    assert_eq!(rig.cluster.replicas("shop", "web"), Some(3));
    tokio::time::advance(Duration::from_secs(31)).await;
    rig.decider.evaluate("shop/web").await.unwrap();
    assert_eq!(rig.cluster.replicas("shop", "web"), Some(4));
}

#[tokio::test(start_paused = true)]
async fn a_faulting_policy_keeps_the_current_replicas() {
    let rig = rig(
        &[("loop.wasm", "testdata/panic.wasm"), ("fixed.wasm", "fixed.wasm")],
        &web(
            "    policies:\n      - {policy: fixed, params: {replicas: 8}}\n      - {policy: panic}\n      - {policy: not-there}\n",
        ),
    );
    // the panicking policy fails the store's smoke evaluation, so it is not loaded
    assert!(rig.store.catalog().problems.iter().any(|p| p.kind == "trap"));
    let record = rig.decider.evaluate("shop/web").await.unwrap();
    let errors: Vec<Option<&str>> = record.policies.iter().map(|p| p.error.as_deref()).collect();
    assert_eq!(errors, vec![None, Some("not_loaded"), Some("not_loaded")]);
    assert!(matches!(record.guardrails.clamps[0], Clamp::Fault { .. }));
    assert!(!record.applied);
    assert_eq!(rig.cluster.replicas("shop", "web"), Some(2));
    assert!(rig.cluster.scale_calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn repeated_faults_of_a_new_version_roll_the_workload_back() {
    let rig = rig(
        &[("versioned.wasm", "testdata/versioned.wasm")],
        &web("    policies: [{policy: versioned, params: {replicas: 5}}]\n"),
    );
    assert_eq!(rig.decider.evaluate("shop/web").await.unwrap().guardrails.replicas, 5);

    // version 0.2.0 arrives (it passes the smoke test, then faults on real params)
    std::fs::write(rig.dir.path().join("versioned-next.wasm"), policy_bytes("testdata/versioned_v2.wasm")).unwrap();
    let store = rig.store.clone();
    let report = tokio::task::spawn_blocking(move || store.rescan()).await.unwrap();
    assert_eq!(report.loaded, vec!["versioned@0.2.0".to_string()]);
    for attempt in 1..=3 {
        let record = rig.decider.evaluate("shop/web").await.unwrap();
        assert_eq!(&*record.policies[0].policy, "versioned@0.2.0");
        assert_eq!(record.policies[0].error.as_deref(), Some("trap"), "attempt {attempt}");
        assert!(!record.applied);
    }
    let record = rig.decider.evaluate("shop/web").await.unwrap();
    assert_eq!(&*record.policies[0].policy, "versioned@0.1.0", "rolled back after 3 faults");
    assert!(record.policies[0].rolled_back);
    assert_eq!(record.policies[0].desired, Some(5));
    assert_eq!(rig.cluster.replicas("shop", "web"), Some(5));
    // the store still says 0.2.0 is the newest: the rollback is this workload's own
    assert_eq!(rig.store.catalog().resolve(&"versioned".parse().unwrap()).unwrap().info().version, "0.2.0");
}

#[tokio::test(start_paused = true)]
async fn a_failed_write_is_recorded_and_retried_next_time() {
    let rig = rig(TRACKING, &web("    policies: [{policy: fixed, params: {replicas: 6}}]\n"));
    rig.cluster.fail_next_scales(1);
    let record = rig.decider.evaluate("shop/web").await.unwrap();
    assert!(!record.applied);
    assert!(record.apply_error.as_deref().unwrap().contains("conflict"), "{:?}", record.apply_error);
    assert_eq!(rig.cluster.replicas("shop", "web"), Some(2));
    let retry = rig.decider.evaluate("shop/web").await.unwrap();
    assert!(retry.applied);
    assert_eq!(rig.cluster.replicas("shop", "web"), Some(6));
}

#[tokio::test(start_paused = true)]
async fn policy_state_and_history_are_carried_between_evaluations() {
    let rig = rig(TRACKING, &web("    policies: [{policy: target-tracking, params: {metric: rps, target: 100}}]\n"));
    rig.decider.evaluate("shop/web").await.unwrap();
    tokio::time::advance(Duration::from_secs(15)).await;
    let second = rig.decider.evaluate("shop/web").await.unwrap();
    // the policy reads no state, but the host carried it; history shows the scale
    assert_eq!(second.current_replicas, 4);
    assert_eq!(second.policies[0].desired, Some(4));
    assert_eq!(rig.cluster.scale_calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_loop_runs_on_its_interval_reacts_to_triggers_and_stops() {
    let rig = rig(TRACKING, &web("    interval: 15s\n    policies: [{policy: fixed, params: {replicas: 3}}]\n"));
    let shutdown = tokio_util::sync::CancellationToken::new();
    rig.decider.run(shutdown.clone());
    tokio::time::sleep(Duration::from_secs(61)).await;
    let count = rig.decider.decisions("shop/web", 100).unwrap().len();
    assert!((4..=5).contains(&count), "{count} evaluations in 61 s at a 15 s interval");
    assert!(rig.decider.trigger("shop/web"));
    assert!(!rig.decider.trigger("shop/nothing"));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(rig.decider.decisions("shop/web", 100).unwrap().len(), count + 1, "a trigger evaluates at once");
    shutdown.cancel();
    rig.decider.stopped().await;
}

#[tokio::test(start_paused = true)]
async fn a_trigger_does_not_wait_for_the_staggered_first_evaluation() {
    // the second workload's first evaluation is staggered 1/97 of an hour (37 s) in
    let yaml = "workloads:\n\
        - {target: {namespace: shop, name: web}, max_replicas: 20, interval: 1h, policies: [{policy: fixed, params: {replicas: 3}}]}\n\
        - {name: second, target: {namespace: shop, name: web}, max_replicas: 20, interval: 1h, policies: [{policy: fixed, params: {replicas: 3}}]}\n";
    let rig = rig(TRACKING, yaml);
    let shutdown = tokio_util::sync::CancellationToken::new();
    rig.decider.run(shutdown.clone());
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(rig.decider.decisions("second", 10).unwrap().len(), 0, "not its turn yet");
    assert!(rig.decider.trigger("second"));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(rig.decider.decisions("second", 10).unwrap().len(), 1, "a signal is acted on at once");
    shutdown.cancel();
    rig.decider.stopped().await;
}

/// The HPA controller's rate limit over a long period: with a scaling
/// policy of 100 pods per 1800 s (and one pod per 15 s), a workload that
/// wants far more grows by one pod every 15 s until 100 pods were added in
/// the last 30 minutes, is then held, and grows again exactly when the
/// first of those scale events is 1800 s old (the controller counts an
/// event while `timestamp + periodSeconds` is after now). The host must keep
/// every applied scale event of those 30 minutes — 100 of them here.
#[tokio::test(start_paused = true)]
async fn a_long_scaling_period_is_limited_exactly_as_the_controller_limits_it() {
    let yaml = r#"
workloads:
  - target: {namespace: shop, name: web}
    min_replicas: 1
    max_replicas: 1000
    interval: 15s
    policies:
      - policy: hpa
        params:
          metrics: [{type: External, external: {metric: {name: rps}, target: {type: AverageValue, averageValue: "10"}}}]
          behavior:
            scaleUp:
              stabilizationWindowSeconds: 0
              selectPolicy: Min
              policies: [{type: Pods, value: 1, periodSeconds: 15}, {type: Pods, value: 100, periodSeconds: 1800}]
"#;
    // 5000 rps at 10 per pod: the HPA wants 500 pods all along
    let rig = rig_under(&[("hpa.wasm", "hpa.wasm")], yaml, 5000.0);
    let mut replicas = vec![];
    for _ in 1..=125 {
        tokio::time::advance(Duration::from_secs(15)).await;
        let record = rig.decider.evaluate("shop/web").await.unwrap();
        assert_eq!(record.policies[0].error, None, "{record:?}");
        replicas.push(rig.cluster.replicas("shop", "web").unwrap());
    }
    // ticks 1..=100: one pod each; 101..=120: held at 102; from 121 on the
    // oldest events leave the window one per tick
    let expected: Vec<u32> = (1..=125u32)
        .map(|k| {
            if k <= 100 {
                2 + k
            } else if k <= 120 {
                102
            } else {
                102 + (k - 120)
            }
        })
        .collect();
    assert_eq!(replicas, expected);
    let writes = rig.cluster.scale_calls();
    assert_eq!(writes.len(), 105);
    // in every 1800 s window, at most 100 pods were added
    for (i, first) in writes.iter().enumerate() {
        let added: u32 =
            writes[i..].iter().take_while(|w| w.at_ms < first.at_ms + 1_800_000).map(|w| w.to - w.from).sum();
        assert!(added <= 100, "{added} pods added in the 1800 s from the write at {}", first.at_ms);
    }
}
