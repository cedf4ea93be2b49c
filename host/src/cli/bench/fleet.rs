//! `scalegate bench --fleet N`: the daemon's decision loop driving N
//! simulated workloads bound to `hpa` at a 15 s interval, measuring the
//! process's CPU share and resident memory once the staggered first round is
//! over. Linux only (reads `/proc/self`).

use super::usage::{cpu_seconds, rss_mib};
use crate::cli::common::runtime_config;
use crate::clock::SystemClock;
use crate::cluster::Target;
use crate::config::{Actuator, Binding, Workload};
use crate::decide::{Decider, DeciderConfig, WorkloadView};
use crate::guardrails::Limits;
use crate::policy::{PolicyRef, Runtime};
use crate::policy_store::{PolicyStore, StoreConfig};
use crate::sim::{SimCluster, SimWorkload, daily_load};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn run(
    policies: &Path,
    workloads: usize,
    measure: Duration,
    capture: usize,
    cache_dir: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let runtime = Arc::new(Runtime::new(runtime_config(cache_dir, 64))?);
    let dir = tempfile::tempdir()?;
    std::fs::copy(policies.join("hpa.wasm"), dir.path().join("hpa.wasm"))?;
    let store = PolicyStore::open(runtime, StoreConfig::new(dir.path()))?;
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    tokio.block_on(async {
        let clock = Arc::new(SystemClock);
        let cluster = Arc::new(SimCluster::new(clock.clone()));
        let interval = Duration::from_secs(15);
        let params = serde_json::json!({
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}
        });
        let mut specs = Vec::with_capacity(workloads);
        for i in 0..workloads {
            let name = format!("app-{i:05}");
            // each workload its own phase of the daily curve, 2-6 pods
            let offset = (i as u64 * 7919) % 600_000;
            cluster.add("fleet", SimWorkload::new(&name, 2 + (i % 5) as u32, 1, 50), Box::new(move |t| 0.3 * daily_load(t + offset, 600_000)));
            specs.push(Arc::new(Workload {
                name: format!("fleet/{name}"),
                target: Target { api_version: "apps/v1".into(), kind: "Deployment".into(), namespace: "fleet".into(), name },
                policies: vec![Binding::new(PolicyRef::Latest("hpa".into()), params.clone())],
                combine: Default::default(),
                shadow: None,
                interval,
                limits: Limits::bounds(1, 50),
                actuator: Actuator::Kubernetes,
                metrics: vec![],
                vertical: None,
            }));
        }
        let decider =
            Arc::new(Decider::new(cluster.clone(), clock, Arc::new(store), specs, DeciderConfig { capture, ..DeciderConfig::default() }));
        let shutdown = tokio_util::sync::CancellationToken::new();
        decider.run(shutdown.clone());
        println!("# scalegate bench --fleet: {workloads} workloads bound to hpa, 15 s interval, simulated cluster");
        // the first round is staggered over one interval; measure steady state after it
        tokio::time::sleep(interval + Duration::from_secs(2)).await;
        let (cpu0, wall0) = (cpu_seconds("self"), Instant::now());
        let decided0 = decider.total_decisions();
        tokio::time::sleep(measure).await;
        let (cpu, wall) = (cpu_seconds("self") - cpu0, wall0.elapsed().as_secs_f64());
        let decided = decider.total_decisions() - decided0;
        let (rss, peak) = rss_mib("self");
        shutdown.cancel();
        decider.stopped().await;
        let scales = cluster.scale_calls().len();
        println!("| measure | value |\n|---|---:|");
        println!("| measured wall time | {wall:.1} s |");
        println!("| decisions in that time | {decided} ({:.0}/s; expected {:.0}/s) |", decided as f64 / wall, workloads as f64 / interval.as_secs_f64());
        println!("| CPU, share of one core | {:.1} % |", 100.0 * cpu / wall);
        println!("| RSS at the end / peak | {rss:.0} MiB / {peak:.0} MiB |");
        println!("| scales applied (whole run) | {scales} |");
        println!("targets: ≤ 25 % of one core, ≤ 300 MB");
        anyhow::Ok(())
    })
}
