//! `scalegate bench`: the policy call path, loading, and (`--fleet N`) the
//! decision loop over a simulated fleet.
//!
//! The benchmark measures the host's real call path (`LoadedPolicy::evaluate`:
//! snapshot conversion, instance checkout, call, output checks) for the `hpa`
//! policy on a 50-pod, 2-metric snapshot, next to the same algorithm called
//! natively (`scalegate-hpa`) on the same input, and the cost of loading a
//! component cold (compile) versus from the precompiled cache. Results are
//! recorded in `docs/BENCHMARKS.md`.

mod fleet;
pub mod usage;

use super::common::{Failure, runtime_config};
use crate::policy::{LoadedPolicy, Runtime, RuntimeConfig};
use crate::snapshot::{Metric, Observation, Past, Pod, PodPhase, PodSample, Snapshot, Subject};
use anyhow::Context;
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Directory holding the built policies (`just plugins`).
    #[arg(long, default_value = "target/policies")]
    pub policies: PathBuf,
    /// Measured evaluations per variant.
    #[arg(long, default_value_t = 20_000)]
    pub iterations: usize,
    /// The `hpa` built against contract 0.1.0, measured beside today's (0.2.0).
    #[arg(long, default_value = "plugins/testdata/contract-0.1.0/hpa.wasm")]
    pub hpa_0_1_0: PathBuf,
    /// Skip the cold-compile measurements (they take ~20 s each for Python and JS).
    #[arg(long)]
    pub skip_load: bool,
    /// Instead: run the decision loop over this many simulated workloads bound to `hpa` and report CPU and memory.
    #[arg(long)]
    pub fleet: Option<usize>,
    /// With --fleet: how long to measure after the first round.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub fleet_measure: Duration,
    /// With --fleet: evaluations each workload captures with their snapshots (as `run --capture`).
    #[arg(long, default_value_t = 8)]
    pub fleet_capture: usize,
}

/// Latency percentiles of a run.
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

pub fn percentiles(mut samples: Vec<Duration>) -> Percentiles {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Percentiles { p50: at(0.50), p90: at(0.90), p99: at(0.99), max: *samples.last().expect("samples") }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The benchmark input: 50 ready pods (each with its container, as the
/// Kubernetes watch gives them) with CPU samples and an external
/// queue-length metric, bound to `hpa` with two metrics and default behavior.
pub fn hpa_bench_snapshot() -> Snapshot {
    let now_ms = 1_700_000_000_000;
    let pods: Vec<Pod> = (0..50)
        .map(|i| {
            let mut pod = Pod::running(
                format!("web-7d9f8b6c4-{i:05}"),
                now_ms - 3_600_000,
                now_ms - 3_590_000,
                0.5,
                536_870_912.0,
            );
            pod.containers = vec![crate::snapshot::Container {
                name: "app".into(),
                requests: crate::snapshot::Compute { cpu: Some(0.5), memory: Some(536_870_912.0) },
                limits: crate::snapshot::Compute { cpu: None, memory: Some(536_870_912.0) },
                restart_count: 0,
                last_termination: None,
                usage: None,
                restart_on_resize: vec![],
            }];
            pod
        })
        .collect();
    let cpu = pods
        .iter()
        .enumerate()
        .map(|(i, p)| PodSample {
            pod: p.name.clone(),
            value: 0.30 + (i % 7) as f64 * 0.01,
            timestamp_ms: now_ms - 10_000,
            window_ms: 15_000,
        })
        .collect::<Vec<_>>();
    let observation = Observation {
        spec_replicas: 50,
        status_replicas: 50,
        ready_replicas: 50,
        metrics: vec![
            Metric {
                name: "cpu".into(),
                source: "pod-metrics".into(),
                value: cpu.iter().map(|s| s.value).sum(),
                timestamp_ms: now_ms - 10_000,
                pods: cpu,
            },
            Metric {
                name: "queue".into(),
                source: "prometheus".into(),
                value: 1800.0,
                timestamp_ms: now_ms - 2_000,
                pods: vec![],
            },
        ],
        pods,
        ..Observation::default()
    };
    let subject = Subject { kind: "Deployment", namespace: "shop", name: "web", min_replicas: 2, max_replicas: 200 };
    let mut snapshot = crate::snapshot::assemble(now_ms, subject, observation, Past::default());
    snapshot.params = serde_json::json!({
        "metrics": [
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}},
            {"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "AverageValue", "averageValue": "30"}}}
        ],
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 120}}
    });
    snapshot.state = br#"{"recommendations":[{"replicas":50,"timestamp_ms":1699999990000}]}"#.to_vec();
    snapshot
}

/// What the `hpa` plugin does, natively: parse params and state, convert,
/// evaluate, encode the new state. The Wasm path does the same work.
pub fn native_hpa(snapshot: &Snapshot) -> Option<u32> {
    use scalegate_hpa as hpa;
    let params = hpa::HpaParams::parse(&snapshot.params.to_string()).ok()?;
    let state = hpa::State::decode(&snapshot.state).ok()?;
    let w = &snapshot.workload;
    let input = hpa::Input {
        now_ms: snapshot.now_ms as i64,
        current_replicas: w.current_replicas as i32,
        status_replicas: w.status_replicas() as i32,
        min_replicas: w.min_replicas as i32,
        max_replicas: w.max_replicas as i32,
        pods: snapshot
            .pods
            .iter()
            .map(|p| hpa::Pod {
                name: p.name.clone(),
                phase: match p.phase {
                    PodPhase::Pending => hpa::Phase::Pending,
                    PodPhase::Running => hpa::Phase::Running,
                    PodPhase::Succeeded => hpa::Phase::Succeeded,
                    PodPhase::Failed => hpa::Phase::Failed,
                    PodPhase::Unknown => hpa::Phase::Unknown,
                },
                ready: p.ready,
                ready_transition_ms: p.ready_transition_ms.map(|t| t as i64),
                start_ms: p.start_ms.map(|t| t as i64),
                terminating: p.terminating,
                cpu_request: p.cpu_request,
                memory_request: p.memory_request,
                requests: p
                    .requests
                    .iter()
                    .map(|r| hpa::Request {
                        resource: r.resource.clone(),
                        container: r.container.clone(),
                        amount: r.amount,
                    })
                    .collect(),
            })
            .collect(),
        metrics: snapshot
            .metrics
            .iter()
            .map(|m| hpa::Metric {
                name: m.name.clone(),
                value: m.value,
                pods: m
                    .pods
                    .iter()
                    .enumerate()
                    .filter_map(|(position, s)| {
                        // the same position-first name resolution the Wasm path does
                        let pod = if snapshot.pods.get(position).is_some_and(|p| p.name == s.pod) {
                            position
                        } else {
                            snapshot.pods.iter().position(|p| p.name == s.pod)?
                        };
                        let (timestamp_ms, window_ms) = (s.timestamp_ms as i64, s.window_ms as i64);
                        Some(hpa::PodSample { pod, value: s.value, timestamp_ms, window_ms })
                    })
                    .collect(),
            })
            .collect(),
        scale_events: snapshot
            .scale_events
            .iter()
            .map(|e| hpa::ScaleEvent {
                timestamp_ms: e.timestamp_ms as i64,
                from_replicas: e.from_replicas as i32,
                to_replicas: e.to_replicas as i32,
            })
            .collect(),
    };
    let output = hpa::evaluate(&params, &input, state);
    std::hint::black_box(output.state.encode());
    output.desired_replicas.map(|d| d as u32)
}

fn time_runs(iterations: usize, mut f: impl FnMut()) -> Percentiles {
    for _ in 0..(iterations / 10).max(100) {
        f();
    }
    let samples = (0..iterations)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .collect();
    percentiles(samples)
}

fn row(name: &str, p: Percentiles) {
    println!(
        "| {name:<44} | {:>9.1} | {:>9.1} | {:>9.1} | {:>9.1} |",
        micros(p.p50),
        micros(p.p90),
        micros(p.p99),
        micros(p.max)
    );
}

fn evaluate_ok(policy: &LoadedPolicy, snapshot: &Snapshot) -> Option<u32> {
    match policy.evaluate(snapshot).outcome {
        Ok(decision) => decision.desired_replicas,
        Err(error) => panic!("benchmark evaluation failed: {error}"),
    }
}

pub fn run(args: &BenchArgs, cache_dir: Option<PathBuf>) -> Result<(), Failure> {
    hpa_and_loading(args, cache_dir).map_err(|e| Failure::internal(format!("{e:#}")))
}

fn hpa_and_loading(args: &BenchArgs, cache_dir: Option<PathBuf>) -> anyhow::Result<()> {
    if let Some(workloads) = args.fleet {
        return fleet::run(&args.policies, workloads, args.fleet_measure, args.fleet_capture, cache_dir);
    }
    let hpa_path = args.policies.join("hpa.wasm");
    let snapshot = hpa_bench_snapshot();
    println!("# scalegate bench — hpa on 50 pods × 2 metrics, {} iterations per row\n", args.iterations);
    println!("| {:<44} | {:>9} | {:>9} | {:>9} | {:>9} |", "variant", "p50 µs", "p90 µs", "p99 µs", "max µs");
    println!("|{:-<46}|{:->11}|{:->11}|{:->11}|{:->11}|", "", "", "", "", "");

    let native_desired = native_hpa(&snapshot);
    let native = time_runs(args.iterations, || {
        std::hint::black_box(native_hpa(std::hint::black_box(&snapshot)));
    });
    row("native scalegate-hpa (same input, same work)", native);

    let recycled_runtime = Runtime::new(runtime_config(cache_dir.clone(), 16))?;
    let (hpa, _) = recycled_runtime.load_file(&hpa_path).with_context(|| format!("loading {}", hpa_path.display()))?;
    anyhow::ensure!(evaluate_ok(&hpa, &snapshot) == native_desired, "wasm and native hpa disagree");
    let recycled = time_runs(args.iterations, || {
        std::hint::black_box(evaluate_ok(&hpa, &snapshot));
    });
    row("wasm hpa, recycled instance (default)", recycled);

    // the same policy built against contract 0.1.0, served side by side
    if args.hpa_0_1_0.exists() {
        let (old, _) = recycled_runtime.load_file(&args.hpa_0_1_0)?;
        anyhow::ensure!(evaluate_ok(&old, &snapshot) == native_desired, "hpa 0.1.0 and native hpa disagree");
        let p = time_runs(args.iterations, || {
            std::hint::black_box(evaluate_ok(&old, &snapshot));
        });
        row("wasm hpa built on contract 0.1.0, recycled", p);
    }

    // the floor of the call path: same snapshot, a policy that does nothing with it
    let (fixed, _) = recycled_runtime.load_file(&args.policies.join("fixed.wasm"))?;
    let mut fixed_snapshot = snapshot.clone();
    fixed_snapshot.params = serde_json::json!({"replicas": 3});
    let floor = time_runs(args.iterations, || {
        std::hint::black_box(evaluate_ok(&fixed, &fixed_snapshot));
    });
    row("wasm fixed, same snapshot (call-path floor)", floor);

    let fresh_runtime =
        Runtime::new(RuntimeConfig { recycle_instances: false, ..runtime_config(cache_dir.clone(), 16) })?;
    let (hpa_fresh, _) = fresh_runtime.load_file(&hpa_path)?;
    let fresh = time_runs((args.iterations / 4).max(100), || {
        std::hint::black_box(evaluate_ok(&hpa_fresh, &snapshot));
    });
    row("wasm hpa, fresh instance per call", fresh);

    for (file, label) in [
        ("target_tracking_py.wasm", "python target-tracking, recycled"),
        ("target_tracking_js.wasm", "javascript target-tracking, recycled"),
    ] {
        let path = args.policies.join(file);
        if !path.exists() {
            continue;
        }
        let (policy, _) = recycled_runtime.load_file(&path)?;
        let small = crate::sim::SimWorkload::new("api", 4, 1, 20).snapshot(
            60_000,
            350.0,
            serde_json::json!({"metric": "rps", "target": 100}),
        );
        let p = time_runs((args.iterations / 4).max(100), || {
            std::hint::black_box(evaluate_ok(&policy, &small));
        });
        row(label, p);
    }
    println!(
        "\nwasm/native ratio at p50: {:.2}× (recycled), {:.2}× (fresh instance)",
        micros(recycled.p50) / micros(native.p50),
        micros(fresh.p50) / micros(native.p50)
    );
    println!("targets: p50 ≤ 20 µs, p99 ≤ 100 µs (recycled instance, the default)");

    if !args.skip_load {
        println!("\n| {:<36} | {:>12} | {:>12} | {:>10} |", "component", "cold ms", "cached ms", "size MB");
        println!("|{:-<38}|{:->14}|{:->14}|{:->12}|", "", "", "", "");
        for file in ["hpa.wasm", "target_tracking_py.wasm", "target_tracking_js.wasm"] {
            let path = args.policies.join(file);
            if path.exists() {
                load_row(&path)?;
            }
        }
        println!("target: cached load ≤ 50 ms");
    }
    Ok(())
}

/// Cold load (compile + write the artifact) into an empty cache, then the
/// median of five loads from that cache by a fresh runtime (a restart).
fn load_row(path: &Path) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = || runtime_config(Some(dir.path().to_path_buf()), 8);
    let (_, cold) = Runtime::new(config())?.load_file(path)?;
    anyhow::ensure!(!cold.cache_hit, "cold load hit the cache");
    let mut cached = Vec::new();
    for _ in 0..5 {
        let runtime = Runtime::new(config())?;
        let (_, stats) = runtime.load_file(path)?;
        anyhow::ensure!(stats.cache_hit, "second load missed the cache");
        cached.push(stats.total_ms);
    }
    cached.sort_by(f64::total_cmp);
    let size = std::fs::metadata(path)?.len() as f64 / 1e6;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    println!("| {name:<36} | {:>12.1} | {:>12.1} | {size:>10.2} |", cold.total_ms, cached[2]);
    Ok(())
}
