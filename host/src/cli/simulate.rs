//! `scalegate simulate --config FILE --trace FILE [--compare FILE…] --out DIR`:
//! runs a configuration as deployed — the real daemon assembly, the
//! simulated cluster in place of Kubernetes, tokio's paused clock so a day
//! takes seconds — over a load trace, and writes a chart per workload and
//! a summary per configuration (`sim::engine`, `sim::chart`). Each
//! `--compare` configuration runs over the same trace and shows beside it.

use super::common::{Failure, runtime_config};
use crate::clock::TokioClock;
use crate::config::Config;
use crate::daemon::{self, Settings};
use crate::decide::{DecisionLines, WorkloadView};
use crate::policy::Runtime;
use crate::sim::engine::{self, Run, Setup};
use crate::sim::trace::{Trace, at};
use crate::sim::{SimCluster, SimWorkload, chart};
use crate::snapshot::Metric;
use clap::Args;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The configuration to simulate (the daemon's YAML, as deployed).
    #[arg(long)]
    pub config: PathBuf,
    /// Load per workload over time: CSV `time,workload,load[,<metric>…]` or JSON rows (docs/SIMULATE.md).
    #[arg(long)]
    pub trace: PathBuf,
    /// Other configurations to run over the same trace, shown beside it (repeatable).
    #[arg(long)]
    pub compare: Vec<PathBuf>,
    /// Directory for the charts (`<workload>.svg`) and `summary.md`.
    #[arg(long)]
    pub out: PathBuf,
    /// Directory holding the policies the configurations bind.
    #[arg(long, default_value = "target/policies")]
    pub policies: PathBuf,
    /// Sampling step, and how often the trace's metric values are pushed.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "15s")]
    pub step: Duration,
    /// Requests per second one pod serves at 100 % of its CPU request.
    #[arg(long, default_value_t = 100.0)]
    pub pod_rps: f64,
    /// Time a new pod takes to become ready.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub startup: Duration,
    /// Utilization above which pods count as overloaded in the summary (0–1).
    #[arg(long, default_value_t = 0.8)]
    pub slo: f64,
    /// Length to simulate (default: to the trace's last row).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
}

pub fn run(args: &SimulateArgs, cache_dir: Option<PathBuf>) -> Result<(), Failure> {
    if !(args.pod_rps.is_finite() && args.pod_rps > 0.0) {
        return Err(Failure::usage(format!("--pod-rps must be > 0, got {}", args.pod_rps)));
    }
    if !(args.slo > 0.0 && args.slo <= 1.0) {
        return Err(Failure::usage(format!("--slo must be in (0, 1], got {}", args.slo)));
    }
    if args.step < Duration::from_secs(1) {
        return Err(Failure::usage("--step must be at least 1s"));
    }
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))
    };
    let trace =
        Trace::parse(&read(&args.trace)?).map_err(|e| Failure::usage(format!("{}: {e}", args.trace.display())))?;
    let setup = Setup {
        policies: args.policies.clone(),
        step: args.step,
        rps_per_pod: args.pod_rps,
        startup: args.startup,
        slo: args.slo,
        duration: args.duration,
    };
    let mut configs = vec![];
    for path in std::iter::once(&args.config).chain(&args.compare) {
        let config =
            engine::adapt(&read(path)?, &trace).map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
        let mut label = path.file_stem().map_or("config".into(), |s| s.to_string_lossy().into_owned());
        if configs.iter().any(|(l, _)| *l == label) {
            label = format!("{label}-{}", configs.len() + 1);
        }
        configs.push((label, config));
    }
    std::fs::create_dir_all(&args.out)
        .map_err(|e| Failure::cannot_create(format!("cannot create {}: {e}", args.out.display())))?;
    let runtime = Arc::new(Runtime::new(runtime_config(cache_dir, 64))?);
    let started = Instant::now();
    let mut runs = vec![];
    for (label, config) in configs {
        eprintln!("simulating {label} ({} workloads)…", config.workloads.len());
        runs.push(run_config(&label, config, &trace, &setup, runtime.clone()).map_err(Failure::internal)?);
    }
    let elapsed = started.elapsed();
    let summary = summary(&runs, &setup);
    print!("{summary}");
    let simulated = runs.first().and_then(|r| r.workloads.first()).and_then(|w| w.samples.last()).map_or(0, |s| s.t_ms);
    let decisions: u64 = runs.iter().map(|r| r.decisions).sum();
    println!(
        "\nsimulated {} of {} workload(s) × {} configuration(s) in {:.2} s ({decisions} decisions); charts and summary.md in {}",
        humantime::format_duration(Duration::from_millis(simulated)),
        runs.first().map_or(0, |r| r.workloads.len()),
        runs.len(),
        elapsed.as_secs_f64(),
        args.out.display()
    );
    let write = |name: &str, text: &str| {
        let path = args.out.join(name);
        std::fs::write(&path, text).map_err(|e| Failure::cannot_create(format!("cannot write {}: {e}", path.display())))
    };
    write("summary.md", &summary)?;
    for name in workload_names(&runs) {
        let series: Vec<(&str, &engine::WorkloadRun)> =
            runs.iter().filter_map(|r| r.workload(&name).map(|w| (r.label.as_str(), w))).collect();
        write(&format!("{}.svg", file_name(&name)), &chart::svg(&name, &series, &setup))?;
    }
    Ok(())
}

/// Runs `config` over `trace` and samples every workload each step.
pub fn run_config(
    label: &str,
    config: Config,
    trace: &Trace,
    setup: &Setup,
    runtime: Arc<Runtime>,
) -> Result<Run, String> {
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    tokio.block_on(async {
        // the policies do not change during a run: no backstop rescans every simulated 30 s
        let store_config = crate::policy_store::StoreConfig {
            rescan_interval: Duration::from_secs(365 * 86_400),
            ..crate::policy_store::StoreConfig::new(setup.policies.clone())
        };
        let store = daemon::open_store_with(runtime, store_config).await.map_err(|e| e.to_string())?;
        // compiled on real time; the simulation runs on paused time
        tokio::time::pause();
        let clock = Arc::new(TokioClock::starting_at(engine::START_MS));
        let cluster = Arc::new(SimCluster::new(clock.clone()));
        // each workload: (its target's namespace and name, its trace series) beside its course
        let mut fed = Vec::new();
        let mut runs: Vec<engine::WorkloadRun> = Vec::new();
        for spec in &config.workloads {
            let path = spec.target.path();
            let series =
                trace.workloads.get(&spec.name).or_else(|| trace.workloads.get(&path)).cloned().unwrap_or_default();
            let rps_per_pod = series.pod_rps.unwrap_or(setup.rps_per_pod);
            let mut workload = SimWorkload::new(
                &spec.target.name,
                spec.limits.min_replicas.max(1),
                spec.limits.min_replicas,
                spec.limits.max_replicas,
            );
            workload.rps_per_pod = rps_per_pod;
            workload.startup_ms = setup.startup.as_millis() as u64;
            let load = series.load.clone();
            cluster.add(&spec.target.namespace, workload, Box::new(move |t| at(&load, t).unwrap_or(0.0)));
            fed.push((spec.target.namespace.clone(), spec.target.name.clone(), series));
            runs.push(engine::WorkloadRun { name: spec.name.clone(), rps_per_pod, samples: vec![], scales: vec![] });
        }
        let shutdown = CancellationToken::new();
        let settings = Settings {
            config,
            config_file: None,
            admin_listen: "127.0.0.1:0".parse().expect("address"),
            admin_token: None,
            grace: Duration::from_secs(10),
            log_level: None,
            election: None,
            resource_metrics: None,
            state: None,
            keda: None,
            log_decisions: DecisionLines::Off,
            capture: 0,
        };
        let running = daemon::start(settings, store, cluster.clone(), clock.clone(), shutdown.clone())
            .await
            .map_err(|e| e.to_string())?;
        let step_ms = setup.step.as_millis().max(1) as u64;
        let end_ms = setup.duration.map_or(trace.end_ms + step_ms, |d| d.as_millis() as u64);
        let mut t_ms = 0;
        while t_ms <= end_ms {
            let now_ms = engine::START_MS + t_ms;
            for ((namespace, target, series), run) in fed.iter().zip(runs.iter_mut()) {
                let metrics: Vec<Metric> = series
                    .metrics
                    .iter()
                    .filter_map(|(metric, values)| {
                        at(values, t_ms).map(|value| Metric {
                            name: metric.clone(),
                            source: "push".into(),
                            value,
                            timestamp_ms: now_ms,
                            pods: vec![],
                        })
                    })
                    .collect();
                if !metrics.is_empty()
                    && let Err(error) = running.hub.push(&run.name, metrics, vec![], None, now_ms)
                {
                    return Err(format!("{}: {error}", run.name));
                }
                let (replicas, ready) = cluster.counts(namespace, target).unwrap_or((0, 0));
                run.samples.push(engine::Sample { t_ms, load: at(&series.load, t_ms).unwrap_or(0.0), replicas, ready });
            }
            tokio::time::sleep(Duration::from_millis(step_ms)).await;
            t_ms += step_ms;
        }
        for call in cluster.scale_calls() {
            if let Some(run) = fed.iter().position(|(ns, name, _)| call.target == format!("{ns}/{name}")) {
                runs[run].scales.push((call.at_ms.saturating_sub(engine::START_MS), call.from, call.to));
            }
        }
        let decisions = running.decider.total_decisions();
        shutdown.cancel();
        running.wait().await;
        Ok(Run { label: label.to_string(), workloads: runs, decisions })
    })
}

/// Every workload any configuration runs, in the order they first appear.
fn workload_names(runs: &[Run]) -> Vec<String> {
    let mut names: Vec<String> = vec![];
    for workload in runs.iter().flat_map(|r| &r.workloads) {
        if !names.contains(&workload.name) {
            names.push(workload.name.clone());
        }
    }
    names
}

/// `namespace/name` as a file name.
pub fn file_name(workload: &str) -> String {
    workload.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect()
}

/// The summary table: a row per workload and configuration.
fn summary(runs: &[Run], setup: &Setup) -> String {
    let mut out = format!(
        "| workload | config | under-provisioned pod-min | over-provisioned replica-h | scale actions | largest step | min over {:.0} % utilization |\n|---|---|---:|---:|---:|---:|---:|\n",
        setup.slo * 100.0
    );
    for name in workload_names(runs) {
        for run in runs {
            let Some(w) = run.workload(&name) else { continue };
            let s = w.summary(setup);
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} | {:.2} | {} | {} | {:.1} |",
                name,
                run.label,
                s.under_pod_minutes,
                s.over_replica_hours,
                s.scale_actions,
                s.largest_step,
                s.minutes_over_slo
            );
        }
    }
    out
}
