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
use crate::policy::{CallPool, Runtime};
use crate::sim::engine::{self, Adapted, Run, Setup};
use crate::sim::trace::{self, Trace, at};
use crate::sim::{SimCluster, SimWorkload, chart, pod_weight};
use crate::snapshot::{Forecast, Metric, PodSample, ScaleAction, Signal};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
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
    /// Directory for the charts (`<workload>.svg` and `.png`) and `summary.md`.
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
    /// Threads to run the workloads on (default: one per core); the results do not depend on it.
    #[arg(long)]
    pub jobs: Option<usize>,
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
        jobs: args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from)).max(1),
    };
    let mut configs = vec![];
    for path in std::iter::once(&args.config).chain(&args.compare) {
        let config = engine::adapt(&read(path)?, &trace, &setup)
            .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))?;
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
    let steps = setup.end_ms(&trace) / setup.step_ms() + 1;
    let total: u64 = configs.iter().map(|(_, c)| c.config.workloads.len() as u64 * steps).sum();
    let bar = progress_bar(total);
    let mut runs = vec![];
    for (label, config) in configs {
        bar.set_message(label.clone());
        runs.push(run_config(&label, config, &trace, &setup, runtime.clone(), &bar).map_err(Failure::internal)?);
    }
    bar.finish_and_clear();
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
    let write = |name: &str, bytes: &[u8]| {
        let path = args.out.join(name);
        std::fs::write(&path, bytes)
            .map_err(|e| Failure::cannot_create(format!("cannot write {}: {e}", path.display())))
    };
    write("summary.md", summary.as_bytes())?;
    let rasterizer = chart::Rasterizer::new();
    for name in workload_names(&runs) {
        let series: Vec<(&str, &engine::WorkloadRun)> =
            runs.iter().filter_map(|r| r.workload(&name).map(|w| (r.label.as_str(), w))).collect();
        let svg = chart::svg(&name, &series, &setup);
        write(&format!("{}.svg", file_name(&name)), svg.as_bytes())?;
        let png = rasterizer.png(&svg).map_err(Failure::internal)?;
        write(&format!("{}.png", file_name(&name)), &png)?;
    }
    Ok(())
}

/// The progress of a run in workload-steps, drawn on stderr when it is a
/// terminal (hidden otherwise).
fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {percent:>3}% {elapsed} (eta {eta})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar
}

/// Runs `config` over `trace` and samples every workload each step.
///
/// The workloads are independent in the daemon (they share only the
/// evaluation rate, far above a simulation's), so they run in
/// `setup.jobs` shards — a daemon each, on its own thread — and the
/// courses are put back in the configuration's order: the same result on
/// one thread or many, in a fraction of the time.
pub fn run_config(
    label: &str,
    adapted: Adapted,
    trace: &Trace,
    setup: &Setup,
    runtime: Arc<Runtime>,
    bar: &ProgressBar,
) -> Result<Run, String> {
    let Adapted { config, memory } = adapted;
    let memory = &memory;
    let order: Vec<String> = config.workloads.iter().map(|w| w.name.clone()).collect();
    let jobs = setup.jobs.clamp(1, order.len().max(1));
    let shards: Vec<Config> = (0..jobs)
        .map(|shard| Config {
            workloads: config.workloads.iter().skip(shard).step_by(jobs).cloned().collect(),
            ..config.clone()
        })
        .collect();
    let runs: Vec<Result<Run, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = shards
            .into_iter()
            .map(|shard| {
                let runtime = runtime.clone();
                scope.spawn(move || run_shard(shard, memory, trace, setup, runtime, bar))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("a simulation thread panicked".into()))).collect()
    });
    let mut run = Run { label: label.to_string(), workloads: vec![], decisions: 0 };
    for shard in runs {
        let shard = shard?;
        run.decisions += shard.decisions;
        run.workloads.extend(shard.workloads);
    }
    run.workloads.sort_by_key(|w| order.iter().position(|n| *n == w.name));
    Ok(run)
}

/// One shard: a daemon on a single-threaded runtime on paused time.
fn run_shard(
    config: Config,
    memory: &[String],
    trace: &Trace,
    setup: &Setup,
    runtime: Arc<Runtime>,
    bar: &ProgressBar,
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
            if memory.contains(&spec.name) {
                workload.memory_request = Some(256.0 * 1024.0 * 1024.0);
            }
            workload.replaced_metrics =
                series.metrics.keys().filter_map(|k| trace::fed_metric(k)).map(str::to_string).collect();
            let load = series.load.clone();
            cluster.add(&spec.target.namespace, workload, Box::new(move |t| at(&load, t).unwrap_or(0.0)));
            fed.push((spec.target.namespace.clone(), spec.target.name.clone(), series));
            runs.push(engine::WorkloadRun {
                name: spec.name.clone(),
                rps_per_pod,
                samples: vec![],
                scales: vec![],
                removals: vec![],
            });
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
            log_decisions: DecisionLines::All,
            capture: 0,
            // one thread on paused time: calls run in the loop itself
            calls: Some(CallPool::inline()),
        };
        let running = daemon::start(settings, store, cluster.clone(), clock.clone(), shutdown.clone())
            .await
            .map_err(|e| e.to_string())?;
        let (step_ms, end_ms) = (setup.step_ms(), setup.end_ms(trace));
        let mut t_ms = 0;
        while t_ms <= end_ms {
            let now_ms = engine::START_MS + t_ms;
            for ((namespace, target, series), run) in fed.iter().zip(runs.iter_mut()) {
                let mut ready: Option<ReadyPods> = None;
                for (column, values) in &series.metrics {
                    let Some(name) = column.strip_prefix(trace::FORECAST_PREFIX) else { continue };
                    let Some((metric, forecast)) = forecast(name, values, t_ms, step_ms, now_ms) else { continue };
                    if let Err(error) = running.hub.update(&run.name, "push", metric, Some(forecast), now_ms) {
                        return Err(format!("{}: {error}", run.name));
                    }
                }
                let metrics: Vec<Metric> = series
                    .metrics
                    .iter()
                    .filter(|(column, _)| !column.starts_with(trace::FORECAST_PREFIX))
                    .filter(|(column, _)| matches!(trace::Column::parse(column), Ok(trace::Column::Metric(_))))
                    .filter_map(|(column, values)| {
                        let value = at(values, t_ms)?;
                        let (name, value, pods) = match column.strip_prefix(trace::POD_PREFIX) {
                            Some(name) => {
                                let ready =
                                    ready.get_or_insert_with(|| ReadyPods::new(cluster.ready_pods(namespace, target)));
                                let (average, pods) = ready.share(value, now_ms)?;
                                (name, average, pods)
                            }
                            None => (column.as_str(), value, vec![]),
                        };
                        Some(Metric {
                            name: name.to_string(),
                            source: "push".into(),
                            value,
                            timestamp_ms: now_ms,
                            pods,
                        })
                    })
                    .collect();
                let since = t_ms.checked_sub(step_ms);
                let signals = events(series, since, t_ms, now_ms);
                if !(metrics.is_empty() && signals.is_empty())
                    && let Err(error) = running.hub.push(&run.name, metrics, signals, None, now_ms)
                {
                    return Err(format!("{}: {error}", run.name));
                }
                let (replicas, ready) = cluster.counts(namespace, target).unwrap_or((0, 0));
                run.samples.push(engine::Sample { t_ms, load: at(&series.load, t_ms).unwrap_or(0.0), replicas, ready });
            }
            bar.inc(fed.len() as u64);
            tokio::time::sleep(Duration::from_millis(step_ms)).await;
            t_ms += step_ms;
        }
        for call in cluster.scale_calls() {
            if let Some(run) = fed.iter().position(|(ns, name, _)| call.target == format!("{ns}/{name}")) {
                let t_ms = call.at_ms.saturating_sub(engine::START_MS);
                runs[run].scales.push((t_ms, call.from, call.to));
                if !call.removed.is_empty() {
                    runs[run].removals.push((t_ms, call.pods, call.removed));
                }
            }
        }
        let decisions = running.decider.total_decisions();
        shutdown.cancel();
        running.wait().await;
        Ok(Run { label: String::new(), workloads: runs, decisions })
    })
}

/// The events of the trace's rows after `since` (from the start when
/// `None`) up to `t_ms`: per row, one signal per kind — its `directive.*`
/// cells as a `scale-signal` (`target_replicas`, `delta` and `urgency`, as
/// the Kafka directive source reads a `ScaleSignal`), its
/// `signal.<kind>[.<attribute>]` cells as a signal of that kind with each
/// cell an attribute (`value` when the column names none).
fn events(series: &trace::Series, since: Option<u64>, t_ms: u64, now_ms: u64) -> Vec<Signal> {
    use trace::{Column, DirectiveField};
    let mut rows: std::collections::BTreeMap<(u64, u8, &str), Signal> = Default::default();
    for (name, values) in &series.metrics {
        let Ok(column) = Column::parse(name) else { continue };
        // a row's directive first, then its other signals by kind
        let (order, kind) = match column {
            Column::Directive(_) => (0, "scale-signal"),
            Column::Signal { kind, .. } => (1, kind),
            Column::Metric(_) => continue,
        };
        for &(at_ms, value) in values.iter().filter(|(at_ms, _)| since.is_none_or(|s| *at_ms > s) && *at_ms <= t_ms) {
            let signal = rows.entry((at_ms, order, kind)).or_insert_with(|| Signal {
                kind: kind.to_string(),
                source: "trace".into(),
                timestamp_ms: now_ms,
                action: None,
                target_replicas: None,
                urgency: None,
                reason: format!("trace row at {} s", at_ms / 1000),
                attributes: vec![],
            });
            match column {
                Column::Directive(DirectiveField::TargetReplicas) => {
                    signal.target_replicas = Some(value.max(0.0) as u32);
                }
                Column::Directive(DirectiveField::Urgency) => {
                    signal.urgency = Some(value.clamp(0.0, 3.0) as u8);
                    signal.action.get_or_insert(ScaleAction::ScaleOut);
                }
                Column::Directive(DirectiveField::Delta) => {
                    signal.attributes.push(("delta".into(), format!("{}", value as i64)));
                    signal.action = Some(if value < 0.0 { ScaleAction::ScaleIn } else { ScaleAction::ScaleOut });
                }
                Column::Signal { attribute, .. } => signal.attributes.push((attribute.to_string(), value.to_string())),
                Column::Metric(_) => {} // skipped above
            }
        }
    }
    rows.into_values().collect()
}

/// What a forecaster that knew the trace would say at `t_ms`: the
/// column's values from then on, a step apart, over the horizon.
fn forecast(name: &str, values: &[(u64, f64)], t_ms: u64, step_ms: u64, now_ms: u64) -> Option<(Metric, Forecast)> {
    let points = (trace::FORECAST_HORIZON.as_millis() as u64 / step_ms).max(1);
    let values: Vec<f64> = (0..points).map_while(|i| at(values, t_ms + i * step_ms)).collect();
    let first = *values.first()?;
    let metric =
        Metric { name: name.to_string(), source: "push".into(), value: first, timestamp_ms: now_ms, pods: vec![] };
    let forecast = Forecast {
        name: name.to_string(),
        generated_ms: now_ms,
        start_ms: now_ms,
        step_seconds: (step_ms / 1000).max(1) as u32,
        values,
    };
    Some((metric, forecast))
}

/// A workload's ready pods at one step, with their weights (computed once
/// per step, whichever `pod.*` columns share a total among them).
struct ReadyPods {
    names: Vec<String>,
    weights: Vec<f64>,
    sum: f64,
}

impl ReadyPods {
    fn new(names: Vec<String>) -> Self {
        let weights: Vec<f64> = names.iter().map(|pod| pod_weight(pod)).collect();
        let sum = weights.iter().sum();
        Self { names, weights, sum }
    }

    /// `total` shared by the pods, each its share spread by the pod's
    /// weight (the shares add up to `total`); with the average, or `None`
    /// while no pod is ready.
    fn share(&self, total: f64, now_ms: u64) -> Option<(f64, Vec<PodSample>)> {
        if self.names.is_empty() {
            return None;
        }
        let samples = self
            .names
            .iter()
            .zip(&self.weights)
            .map(|(pod, weight)| PodSample {
                pod: pod.clone(),
                value: total * weight / self.sum,
                timestamp_ms: now_ms,
                window_ms: 0,
            })
            .collect();
        Some((total / self.names.len() as f64, samples))
    }
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
