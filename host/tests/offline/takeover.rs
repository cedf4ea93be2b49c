//! Decision state that survives a failover or a restart, on the simulated
//! cluster with tokio's paused clock: a replica that takes over the stored
//! state continues exactly where the previous writer stopped (HPA
//! stabilization window, an EMA), and one that does not starts afresh.

use crate::support::*;
use scalegate::clock::TokioClock;
use scalegate::config::Config;
use scalegate::decide::{Decider, DeciderConfig, Persist};
use scalegate::policy_store::PolicyStore;
use scalegate::sim::{SimCluster, SimWorkload};
use std::sync::Arc;
use std::time::Duration;

type Loop = Decider<SimCluster<TokioClock>>;

const DROP_AT_MS: u64 = 300_000;

/// `shop/web` at 2 replicas; `high` rps until 300 s after the start, `low` after.
fn cluster(clock: &Arc<TokioClock>, high: f64, low: f64) -> Arc<SimCluster<TokioClock>> {
    let cluster = Arc::new(SimCluster::new(clock.clone()));
    let mut web = SimWorkload::new("web", 2, 1, 50);
    web.startup_ms = 0;
    cluster.add("shop", web, Box::new(move |t| if t < DROP_AT_MS { high } else { low }));
    cluster
}

/// A daemon's loop over `yaml` that keeps its state in the cluster.
fn replica(cluster: &Arc<SimCluster<TokioClock>>, clock: &Arc<TokioClock>, store: &PolicyStore, yaml: &str) -> Loop {
    let config =
        DeciderConfig { persist: Some(Persist { every: Duration::from_secs(10) }), ..DeciderConfig::default() };
    let workloads = Config::parse(yaml).unwrap().workloads;
    Decider::new(cluster.clone(), clock.clone(), Arc::new(store.clone()), workloads, config)
}

/// Evaluates every 15 s until `until_ms` after the start; returns (time,
/// replicas) after each evaluation that wrote.
async fn run(
    decider: &Loop,
    cluster: &SimCluster<TokioClock>,
    start: tokio::time::Instant,
    until_ms: u64,
) -> Vec<(u64, u32)> {
    let mut writes = vec![];
    loop {
        let next = start.elapsed().as_millis() as u64 / 15_000 * 15_000 + 15_000;
        if next > until_ms {
            return writes;
        }
        tokio::time::advance(Duration::from_millis(next) - start.elapsed()).await;
        let record = decider.evaluate("shop/web").await.unwrap();
        if record.applied {
            writes.push((next, cluster.replicas("shop", "web").unwrap()));
        }
    }
}

const HPA_300S: &str = r#"
workloads:
  - target: {namespace: shop, name: web}
    max_replicas: 20
    interval: 15s
    policies:
      - policy: hpa
        params:
          metrics: [{type: External, external: {metric: {name: rps}, target: {type: AverageValue, averageValue: "100"}}}]
          behavior: {scaleDown: {stabilizationWindowSeconds: 300}}
"#;

/// Load drops at 300 s; the leader is killed 60 s later; a new replica
/// takes over at 375 s. The last high recommendation was made at 285 s, so
/// the controller's window ends at 585 s: the new leader holds 10 replicas
/// until then and scales down exactly there. A replica that starts afresh
/// seeds its history with the current count, as a restarted HPA controller
/// does, and waits a whole window from its own start (690 s).
#[tokio::test(start_paused = true)]
async fn a_new_leader_keeps_the_hpa_stabilization_window_of_the_old_one() {
    let (store, _dir) = open_store(&[("hpa.wasm", "hpa.wasm")]);
    for take_over in [true, false] {
        let clock = Arc::new(TokioClock::starting_at(1_700_000_000_000));
        let start = tokio::time::Instant::now();
        let cluster = cluster(&clock, 1000.0, 200.0);
        let leader = replica(&cluster, &clock, &store, HPA_300S);
        let up = run(&leader, &cluster, start, DROP_AT_MS + 60_000).await;
        assert_eq!(up, [(15_000, 6), (30_000, 10)], "scaled up to 1000 / 100 and held after the drop");
        drop(leader); // killed: no goodbye, no last write

        let successor = replica(&cluster, &clock, &store, HPA_300S);
        if take_over {
            assert_eq!(successor.load_states().await.unwrap(), 1);
        }
        tokio::time::advance(Duration::from_secs(15)).await;
        let down = run(&successor, &cluster, start, 700_000).await;
        let expected = if take_over { 585_000 } else { 690_000 };
        assert_eq!(down, [(expected, 2)], "taking over the stored state: {take_over}");
    }
}

const HPA_2_PER_4_MIN: &str = r#"
workloads:
  - target: {namespace: shop, name: web}
    max_replicas: 20
    interval: 15s
    policies:
      - policy: hpa
        params:
          metrics: [{type: External, external: {metric: {name: rps}, target: {type: AverageValue, averageValue: "100"}}}]
          behavior:
            scaleDown: {stabilizationWindowSeconds: 0, policies: [{type: Pods, value: 2, periodSeconds: 240}]}
"#;

/// The scale-down rate limit lives in the applied scale events: 10 → 8 at
/// the drop (300 s), then nothing more until that event is 240 s old
/// (540 s). The leader dies at 360 s. A successor that took over the events
/// waits until 540 s; one that starts without them scales down again at
/// its second evaluation (390 s; the first only seeds its history),
/// 150 s before the policy allows.
#[tokio::test(start_paused = true)]
async fn a_new_leader_keeps_the_scale_down_rate_limit_of_the_old_one() {
    let (store, _dir) = open_store(&[("hpa.wasm", "hpa.wasm")]);
    for (take_over, expected) in [(true, (540_000, 6)), (false, (390_000, 6))] {
        let clock = Arc::new(TokioClock::starting_at(1_700_000_000_000));
        let start = tokio::time::Instant::now();
        let cluster = cluster(&clock, 1000.0, 200.0);
        let leader = replica(&cluster, &clock, &store, HPA_2_PER_4_MIN);
        let writes = run(&leader, &cluster, start, DROP_AT_MS + 60_000).await;
        assert_eq!(writes, [(15_000, 6), (30_000, 10), (300_000, 8)]);
        drop(leader);

        let successor = replica(&cluster, &clock, &store, HPA_2_PER_4_MIN);
        if take_over {
            successor.load_states().await.unwrap();
        }
        tokio::time::advance(Duration::from_secs(15)).await;
        let down = run(&successor, &cluster, start, 600_000).await;
        assert_eq!(down.first(), Some(&expected), "taking over the stored state: {take_over}: {down:?}");
    }
}

const THRESHOLDS: &str = r#"
workloads:
  - target: {namespace: shop, name: web}
    max_replicas: 20
    interval: 15s
    policies:
      - policy: thresholds
        params: {metric: rps, alpha: 0.5, levels: {"2": [1e9, 0]}}
"#;

/// The EMA lives in the policy's state: 1000 until the drop, 500 after one
/// value of 0 there, 250 after the next — on the new replica, which has
/// taken over the stored state; 0 on one that starts afresh.
#[tokio::test(start_paused = true)]
async fn thresholds_keeps_its_ema_across_a_restart() {
    let (store, _dir) = open_store(&[("thresholds.wasm", "thresholds.wasm")]);
    for (take_over, expected) in [(true, "rps ema 250.0"), (false, "rps ema 0.0")] {
        let clock = Arc::new(TokioClock::starting_at(1_700_000_000_000));
        let start = tokio::time::Instant::now();
        let cluster = cluster(&clock, 1000.0, 0.0);
        let before = replica(&cluster, &clock, &store, THRESHOLDS);
        run(&before, &cluster, start, DROP_AT_MS).await;
        let last = before.decisions("shop/web", 1).unwrap().pop().unwrap();
        assert!(last.policies[0].reason.starts_with("rps ema 500.0"), "{last:?}");
        drop(before);

        let after = replica(&cluster, &clock, &store, THRESHOLDS);
        if take_over {
            after.load_states().await.unwrap();
        }
        tokio::time::advance(Duration::from_secs(15)).await;
        let first = after.evaluate("shop/web").await.unwrap();
        assert!(first.policies[0].reason.starts_with(expected), "{take_over}: {}", first.policies[0].reason);
    }
}
