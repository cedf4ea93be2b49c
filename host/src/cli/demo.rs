//! `scalegate demo`: the real daemon — policy store with hot reload,
//! decision loop, guardrails, admin API — driving an in-process simulated
//! cluster under a compressed daily load. No cluster, broker or Prometheus
//! needed. Decisions are printed as they happen; the admin API is up for
//! `curl`.

use super::common::{Failure, admin_token, runtime_config, tokio_runtime};
use crate::admin::LogLevelSetter;
use crate::clock::SystemClock;
use crate::config::Config;
use crate::daemon::{self, Settings, StateSettings};
use crate::decide::Persist;
use crate::decide::{DecisionLines, DecisionRecord, WorkloadView};
use crate::policy::Runtime;
use crate::sim::{SimCluster, SimWorkload, daily_load};
use clap::Args;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory holding the bundled policies (built by `just plugins`).
    #[arg(long, default_value = "target/policies")]
    pub policies: PathBuf,
    /// Admin API listen address (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin_listen: std::net::SocketAddr,
    /// Stop after this long (e.g. `90s`); default: run until Ctrl-C or SIGTERM.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Length of the simulated day of load (the curve repeats).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "4m")]
    pub day: Duration,
    /// File holding the admin bearer token (or set SCALEGATE_ADMIN_TOKEN); without one, admin mutations are refused.
    #[arg(long)]
    pub admin_token_file: Option<PathBuf>,
    /// Serve KEDA's External Scaler (plaintext) on this address for the demo's `shop/worker` (actuator `keda`).
    #[arg(long)]
    pub keda_listen: Option<std::net::SocketAddr>,
}

/// The demo's workloads: a web Deployment scaled by `hpa` on CPU, and a
/// socket tier scaled by `target-tracking` on requests per second, each with
/// guardrails.
const DEMO_CONFIG: &str = r#"
defaults:
  interval: 2s
workloads:
  - target: {namespace: shop, name: web}
    min_replicas: 2
    max_replicas: 30
    policies:
      - policy: hpa
        params:
          metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 60}}}]
          behavior: {scaleDown: {stabilizationWindowSeconds: 10}}
    guardrails: {max_step_up: "100%", max_step_down: 3}
  - target: {kind: StatefulSet, namespace: rtc, name: socket}
    min_replicas: 2
    max_replicas: 40
    policies:
      - policy: target-tracking
        params: {metric: rps, target: 80}
    shadow: {policy: target-tracking, params: {metric: rps, target: 60}}
    guardrails: {cooldown_down: 6s}
  - target: {namespace: shop, name: worker}
    min_replicas: 0
    max_replicas: 20
    actuator: keda
    policies:
      - policy: target-tracking
        params: {metric: rps, target: 120}
"#;

pub fn run(args: &DemoArgs, cache_dir: Option<PathBuf>, log_level: Option<LogLevelSetter>) -> Result<(), Failure> {
    let token = admin_token(args.admin_token_file.as_deref())?;
    let config = Config::parse(DEMO_CONFIG).map_err(|e| Failure::internal(format!("demo config: {e}")))?;
    let runtime = Arc::new(Runtime::new(runtime_config(cache_dir, 64))?);
    let tokio = tokio_runtime()?;
    tokio.block_on(async {
        let clock = Arc::new(SystemClock);
        let cluster = Arc::new(SimCluster::new(clock.clone()));
        let day_ms = args.day.as_millis().max(1) as u64;
        let mut web = SimWorkload::new("web", 2, 2, 30);
        web.startup_ms = 3_000;
        cluster.add("shop", web, Box::new(move |t| daily_load(t, day_ms)));
        let mut socket = SimWorkload::new("socket", 3, 2, 40);
        socket.startup_ms = 2_000;
        cluster.add("rtc", socket, Box::new(move |t| 0.8 * daily_load(t + day_ms / 3, day_ms)));
        // served to KEDA, which is not here to scale it: its count stays, the decisions follow the load
        cluster.add("shop", SimWorkload::new("worker", 1, 0, 20), Box::new(move |t| 0.5 * daily_load(t, day_ms)));

        let shutdown = CancellationToken::new();
        daemon::cancel_on_signals(shutdown.clone());
        if let Some(duration) = args.duration {
            let stop = shutdown.clone();
            tokio::spawn(async move {
                tokio::time::sleep(duration).await;
                stop.cancel();
            });
        }
        let settings = Settings {
            config,
            config_file: None,
            admin_listen: args.admin_listen,
            admin_token: token.clone(),
            grace: Duration::from_secs(10),
            log_level,
            election: None,
            resource_metrics: None,
            // kept by the simulated cluster, like a real one would
            state: Some(StateSettings {
                persist: Persist { every: Duration::from_secs(10) },
                namespace: "scalegate".into(),
            }),
            keda: args.keda_listen.map(|listen| daemon::KedaSettings { listen, tls: None }),
            // the demo prints every decision itself
            log_decisions: DecisionLines::Off,
            capture: 8,
            calls: None,
        };
        let store = daemon::open_store(runtime, args.policies.clone(), None)
            .await
            .map_err(|e| Failure::usage(e.to_string()))?;
        let running = daemon::start(settings, store, cluster, clock, shutdown.clone())
            .await
            .map_err(|e| Failure::internal(e.to_string()))?;
        let addr = running.admin_addr;
        println!("scalegate demo: 3 simulated workloads, a day of load every {}", humantime::format_duration(args.day));
        if let Some(addr) = running.keda_addr {
            println!("KEDA External Scaler: {addr} (shop/worker)");
        }
        for status in running.store.catalog().status().iter().filter(|s| s.active) {
            println!("  policy {}@{}  sha256:{}…", status.name, status.version, &status.digest[..12]);
        }
        println!("admin API: http://{addr}  (try: curl http://{addr}/v1/workloads/shop/web/decisions?limit=3)");
        if token.is_none() {
            println!("admin mutations are off; set SCALEGATE_ADMIN_TOKEN to upload or roll back policies");
        }
        println!("Ctrl-C to stop.\n");
        let printer = tokio::spawn(print_decisions(running.decider.clone(), shutdown.clone()));
        running.wait().await;
        let _ = printer.await;
        println!("stopped");
        Ok(())
    })
}

/// Prints each new decision of every workload on one line.
async fn print_decisions(view: Arc<dyn WorkloadView>, shutdown: CancellationToken) {
    let mut seen: HashMap<String, u64> = HashMap::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        for name in view.workload_names() {
            let last = seen.get(&name).copied().unwrap_or(0);
            let mut fresh: Vec<DecisionRecord> =
                view.decisions(&name, 20).unwrap_or_default().into_iter().filter(|r| r.at_ms > last).collect();
            fresh.reverse();
            for record in fresh {
                seen.insert(name.clone(), record.at_ms);
                println!("{}", line(&record));
            }
        }
    }
}

fn line(record: &DecisionRecord) -> String {
    let secs = record.at_ms / 1000;
    format!("{:02}:{:02}:{:02}  {}", (secs / 3600) % 24, (secs / 60) % 60, secs % 60, record.line())
}
