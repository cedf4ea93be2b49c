//! Contract versions side by side: the `fixed` and `hpa` builds of contract
//! 0.1.0, kept as fixtures (`plugins/testdata/contract-0.1.0/`), and their
//! 0.2.0 rebuilds decide identically — in one runtime and in one running
//! daemon — and a version the host does not serve is refused by name.

use crate::support::*;
use scalegate::clock::SystemClock;
use scalegate::config::Config;
use scalegate::daemon::{self, Settings};
use scalegate::policy::{Contract, Error, LoadedPolicy};
use scalegate::sim::{SimCluster, SimWorkload};
use scalegate::snapshot::Snapshot;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(workspace().join("plugins/testdata/contract-0.1.0").join(name)).unwrap()
}

/// Every snapshot in examples/.
fn example_snapshots() -> Vec<(String, Snapshot)> {
    let found: Vec<(String, Snapshot)> = files_under(&workspace().join("examples"), &["json"])
        .into_iter()
        .map(|path| {
            let snapshot = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            (path.display().to_string(), snapshot)
        })
        .collect();
    assert!(found.len() >= 8, "{} example snapshots", found.len());
    found
}

/// The decision in full; for a refusal only its kind (the 0.2.0 builds parse
/// params through the SDK, whose messages name the field differently).
fn outcome(policy: &LoadedPolicy, snapshot: &Snapshot) -> String {
    let text = format!("{:?}", policy.evaluate(snapshot).outcome);
    match text.find("(\"") {
        Some(cut) if text.starts_with("Err(") => text[..cut].to_string(),
        _ => text,
    }
}

#[test]
fn a_0_1_0_component_and_its_0_2_0_rebuild_decide_identically() {
    let runtime = runtime();
    let snapshots = example_snapshots();
    for name in ["fixed", "hpa"] {
        let (old, _) = runtime.load(&fixture(&format!("{name}.wasm"))).unwrap();
        let (new, _) = runtime.load_file(&policy(&format!("{name}.wasm"))).unwrap();
        assert_eq!((old.contract(), new.contract()), (Contract::V0_1, Contract::V0_2), "{name}");
        assert_eq!(old.info().name, new.info().name);
        let mut decided = 0;
        for (file, snapshot) in &snapshots {
            let (a, b) = (outcome(&old, snapshot), outcome(&new, snapshot));
            assert_eq!(a, b, "{name} on {file}");
            decided += usize::from(a.starts_with("Ok("));
        }
        assert!(decided >= 1, "{name} decided none of the examples");
    }

    // a run of hpa with its state carried from call to call, on both
    let (old, _) = runtime.load(&fixture("hpa.wasm")).unwrap();
    let (new, _) = runtime.load_file(&policy("hpa.wasm")).unwrap();
    let mut snapshot = example("hpa-scale-up.json");
    let (mut state_old, mut state_new) = (vec![], vec![]);
    for step in 0..30u64 {
        snapshot.now_ms += 15_000;
        let load = 0.2 + 0.05 * (step % 12) as f64;
        for metric in &mut snapshot.metrics {
            metric.timestamp_ms = snapshot.now_ms;
            for sample in &mut metric.pods {
                sample.value = load;
                sample.timestamp_ms = snapshot.now_ms;
            }
        }
        snapshot.state = state_old.clone();
        let a = old.evaluate(&snapshot).outcome.unwrap();
        snapshot.state = state_new.clone();
        let b = new.evaluate(&snapshot).outcome.unwrap();
        assert_eq!(a, b, "step {step}");
        (state_old, state_new) = (a.state, b.state);
        if let Some(desired) = a.desired_replicas {
            snapshot.workload.current_replicas = desired;
        }
    }
}

#[test]
fn a_version_the_host_does_not_serve_is_refused_with_the_ones_it_does() {
    let error = runtime().load_file(&policy("testdata/future_contract.wasm")).unwrap_err();
    assert!(matches!(error, Error::Incompatible(_)), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("scalegate:policy@0.3.0"), "{message}");
    assert!(message.contains("serves (0.1.0, 0.2.0)"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_daemon_serves_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    // fixed@0.1.0 on contract 0.1.0, fixed@0.2.0 on contract 0.2.0
    std::fs::write(dir.path().join("fixed-old.wasm"), fixture("fixed.wasm")).unwrap();
    std::fs::write(dir.path().join("fixed-new.wasm"), policy_bytes("testdata/fixed_v2.wasm")).unwrap();
    let path = dir.path().to_path_buf();
    let store = tokio::task::block_in_place(|| {
        scalegate::policy_store::PolicyStore::open(Arc::new(runtime()), scalegate::policy_store::StoreConfig::new(path))
            .unwrap()
    });
    let clock = Arc::new(SystemClock);
    let cluster = Arc::new(SimCluster::new(clock.clone()));
    for name in ["old", "new"] {
        cluster.add("shop", SimWorkload::new(name, 2, 1, 20), Box::new(|_| 100.0));
    }
    let config = "workloads:
  - target: {namespace: shop, name: old}
    interval: 1s
    max_replicas: 20
    policies: [{policy: fixed@0.1.0, params: {replicas: 6}}]
  - target: {namespace: shop, name: new}
    interval: 1s
    max_replicas: 20
    policies: [{policy: fixed@0.2.0, params: {replicas: 6}}]
";
    let settings = Settings {
        config: Config::parse(config).unwrap(),
        config_file: None,
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        admin_token: None,
        grace: Duration::from_secs(2),
        log_level: None,
        election: None,
        resource_metrics: None,
        state: None,
        keda: None,
        log_decisions: scalegate::decide::DecisionLines::Off,
        capture: 8,
        calls: None,
    };
    let shutdown = CancellationToken::new();
    let running = daemon::start(settings, store, cluster.clone(), clock, shutdown.clone()).await.unwrap();
    let started = std::time::Instant::now();
    while ["old", "new"].iter().any(|w| running.decider.decisions(&format!("shop/{w}"), 1).is_none_or(|d| d.is_empty()))
    {
        assert!(started.elapsed() < Duration::from_secs(10), "no decisions");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let old = &running.decider.decisions("shop/old", 1).unwrap()[0];
    let new = &running.decider.decisions("shop/new", 1).unwrap()[0];
    assert_eq!(old.policies[0].policy.as_ref(), "fixed@0.1.0");
    assert_eq!(new.policies[0].policy.as_ref(), "fixed@0.2.0");
    assert_eq!((old.guardrails.replicas, new.guardrails.replicas), (6, 6));
    assert_eq!(old.policies[0].reason, new.policies[0].reason);

    let status = running.store.catalog().status();
    let contract = |version: &str| status.iter().find(|v| v.version == version).unwrap().contract;
    assert_eq!((contract("0.1.0"), contract("0.2.0")), ("0.1.0", "0.2.0"));
    shutdown.cancel();
    running.wait().await;
}

/// The Rust SDK carries the contract it binds (so the crate builds outside
/// this repository): its `wit/` must be the newest contract, byte for byte.
#[test]
fn the_rust_sdk_carries_the_newest_contract() {
    let repo = workspace().join("wit");
    let sdk = workspace().join("plugins/sdk/wit");
    let names = |dir: &std::path::Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "wit"))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&repo), names(&sdk), "plugins/sdk/wit lists other files than wit/");
    for name in names(&repo) {
        assert_eq!(
            std::fs::read(repo.join(&name)).unwrap(),
            std::fs::read(sdk.join(&name)).unwrap(),
            "plugins/sdk/wit/{name} differs from wit/{name}: copy it over"
        );
    }
    assert!(names(&repo).len() >= 4);
}
