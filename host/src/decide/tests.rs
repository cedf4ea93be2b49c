//! The loop with native stand-in policies (no Wasm): combining, triggers by
//! name and target, reconfiguration (added, removed, rebound workloads).

use super::*;
use crate::clock::TokioClock;
use crate::config::Config;
use crate::policy::{Evaluation, Policy, PolicyRef};
use crate::sim::{SimCluster, SimWorkload};
use crate::snapshot::{Decision, Snapshot};
use std::collections::HashMap;
use std::time::Duration;

type Answer = dyn Fn(&Snapshot) -> Decision + Send + Sync;

/// A policy written in Rust, called like a loaded one.
struct Native {
    name: &'static str,
    answer: Box<Answer>,
}

impl Policy for Native {
    fn id(&self) -> Arc<str> {
        format!("{}@1.0.0", self.name).into()
    }
    fn digest(&self) -> Arc<str> {
        self.name.into()
    }
    fn evaluate(&self, snapshot: &Snapshot) -> Evaluation {
        let outcome = Ok((self.answer)(snapshot));
        Evaluation { outcome, logs: vec![], dropped_logs: 0, duration: Duration::from_micros(1) }
    }
}

/// Native policies by name.
#[derive(Default)]
struct Natives(HashMap<&'static str, Arc<Native>>);

impl Natives {
    fn with(mut self, name: &'static str, answer: impl Fn(&Snapshot) -> Decision + Send + Sync + 'static) -> Self {
        self.0.insert(name, Arc::new(Native { name, answer: Box::new(answer) }));
        self
    }
}

impl Evaluator for Natives {
    fn resolve(&self, reference: &PolicyRef) -> Option<Arc<dyn Policy>> {
        self.0.get(reference.name()).map(|p| p.clone() as Arc<dyn Policy>)
    }
}

fn decision(desired: Option<u32>, state: &[u8]) -> Decision {
    Decision {
        desired_replicas: desired,
        reason: "native".into(),
        state: state.to_vec(),
        deletion_costs: vec![],
        metrics: vec![],
        resources: vec![],
    }
}

/// `params.replicas`.
fn fixed(snapshot: &Snapshot) -> Decision {
    decision(snapshot.params["replicas"].as_u64().map(|r| r as u32), b"")
}

/// Counts its calls in its state: one more byte each time.
fn counter(snapshot: &Snapshot) -> Decision {
    let mut state = snapshot.state.clone();
    state.push(1);
    decision(None, &state)
}

struct Rig {
    decider: Arc<Decider<SimCluster<TokioClock>>>,
    cluster: Arc<SimCluster<TokioClock>>,
}

fn rig(yaml: &str) -> Rig {
    let clock = Arc::new(TokioClock::starting_at(1_700_000_000_000));
    let cluster = Arc::new(SimCluster::new(clock.clone()));
    for (namespace, name) in [("shop", "web"), ("shop", "api")] {
        let mut workload = SimWorkload::new(name, 2, 1, 50);
        workload.startup_ms = 0;
        cluster.add(namespace, workload, Box::new(|_| 100.0));
    }
    let evaluator = Natives::default().with("fixed", fixed).with("counter", counter);
    let workloads = Config::parse(yaml).unwrap().workloads;
    let decider =
        Arc::new(Decider::new(cluster.clone(), clock, Arc::new(evaluator), workloads, DeciderConfig::default()));
    Rig { decider, cluster }
}

const WEB: &str = "workloads:\n  - target: {namespace: shop, name: web}\n    max_replicas: 20\n    policies:\n      - {policy: fixed, params: {replicas: 3}}\n      - {policy: counter}\n";

#[tokio::test(start_paused = true)]
async fn policies_combine_by_max_and_the_result_is_written() {
    let rig = rig(WEB);
    let record = rig.decider.evaluate("shop/web").await.unwrap();
    assert_eq!(record.policies.iter().map(|p| p.desired).collect::<Vec<_>>(), [Some(3), None]);
    assert!(record.applied);
    assert_eq!(rig.cluster.replicas("shop", "web"), Some(3));
}

#[tokio::test(start_paused = true)]
async fn workloads_are_found_by_name_and_by_target() {
    let yaml = "workloads:\n  - name: storefront\n    target: {namespace: shop, name: web}\n    max_replicas: 20\n    policies: [{policy: fixed, params: {replicas: 4}}]\n";
    let rig = rig(yaml);
    assert!(rig.decider.trigger("storefront") && rig.decider.trigger("shop/web"));
    assert!(!rig.decider.trigger("shop/api") && !rig.decider.trigger("web"));
    assert!(rig.decider.evaluate("shop/web").await.unwrap().applied);
    assert_eq!(rig.decider.decisions("storefront", 5).unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn reconfiguring_adds_removes_and_rebinds_keeping_what_stays() {
    let rig = rig(WEB);
    let shutdown = CancellationToken::new();
    rig.decider.run(shutdown.clone());
    tokio::time::sleep(Duration::from_secs(16)).await;
    let web_state = || async {
        let workload = rig.decider.find("shop/web").unwrap();
        let state = workload.state.lock().await;
        state.bindings.iter().map(|b| b.state.len()).collect::<Vec<_>>()
    };
    let before = web_state().await;
    assert_eq!(before[0], 0);
    assert!(before[1] >= 1, "the counter kept its state: {before:?}");

    // web: fixed rebound to 6 (same policies, new params); api added
    let next = "workloads:\n  - target: {namespace: shop, name: web}\n    max_replicas: 20\n    policies:\n      - {policy: fixed, params: {replicas: 6}}\n      - {policy: counter}\n  - target: {namespace: shop, name: api}\n    max_replicas: 20\n    policies: [{policy: fixed, params: {replicas: 5}}]\n";
    rig.decider.reconfigure(Config::parse(next).unwrap().workloads).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(rig.cluster.replicas("shop", "web"), Some(6), "the new params apply at once");
    assert_eq!(rig.cluster.replicas("shop", "api"), Some(5), "a new workload is evaluated at once");
    let after = web_state().await;
    assert!(after[1] > before[1], "the counter's state survived the rebinding: {before:?} → {after:?}");
    assert_eq!(rig.decider.workload_names(), ["shop/web", "shop/api"]);

    // web's counter replaced by another policy: its state starts afresh; api removed
    let last = "workloads:\n  - target: {namespace: shop, name: web}\n    max_replicas: 20\n    policies:\n      - {policy: fixed, params: {replicas: 6}}\n      - {policy: fixed, params: {replicas: 1}}\n";
    rig.decider.reconfigure(Config::parse(last).unwrap().workloads).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(web_state().await, [0, 0]);
    assert_eq!(rig.decider.workload_names(), ["shop/web"]);
    assert!(rig.decider.decisions("shop/api", 1).is_none());
    let api_writes = rig.cluster.scale_calls().iter().filter(|c| c.target == "shop/api").count();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        rig.cluster.scale_calls().iter().filter(|c| c.target == "shop/api").count(),
        api_writes,
        "a removed workload is no longer evaluated"
    );
    shutdown.cancel();
    rig.decider.stopped().await;
}

#[test]
fn first_evaluations_spread_evenly_over_the_interval() {
    for workloads in [7usize, 100, 10_000] {
        let buckets = 50;
        let mut counts = vec![0usize; buckets];
        for slot in 0..workloads {
            let fraction = stagger_fraction(slot);
            assert!((0.0..1.0).contains(&fraction));
            counts[(fraction * buckets as f64) as usize] += 1;
        }
        let even = workloads.div_ceil(buckets);
        let busiest = *counts.iter().max().unwrap();
        assert!(
            busiest <= even + 2,
            "{workloads} workloads: {busiest} start together in one 50th, {even} would be even"
        );
    }
}
