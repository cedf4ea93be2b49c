//! `scalegate simulate`: replays a compressed day of load on a simulated
//! Deployment through the bundled `hpa` policy, with `target-tracking`'s
//! opinion beside it, as fast as the policies run, and prints a table.
//! Deterministic: the same inputs give the same table.

use super::common::{Failure, load_dir, runtime_config};
use crate::policy::Runtime;
use crate::sim::{SimWorkload, daily_load};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Directory holding the bundled policies (built by `just plugins`).
    #[arg(long, default_value = "target/policies")]
    pub policies: PathBuf,
    /// Number of 15-second steps to simulate.
    #[arg(long, default_value_t = 48)]
    pub steps: u32,
}

/// Replays `steps` steps of 15 s and prints one line per decision.
pub fn run(args: &SimulateArgs, cache_dir: Option<PathBuf>) -> Result<(), Failure> {
    let (policies, steps) = (args.policies.as_path(), args.steps);
    let runtime = Runtime::new(runtime_config(cache_dir, 16))?;
    let loaded = load_dir(&runtime, policies)?;
    let find = |name: &str| {
        loaded.iter().find(|p| p.info().name == name).cloned().ok_or_else(|| {
            Failure::usage(format!("policy {name:?} not found in {} (run `just plugins` first)", policies.display()))
        })
    };
    let hpa = find("hpa")?;
    let tracking = find("target-tracking")?;
    println!("loaded {} policies from {}:", loaded.len(), policies.display());
    for p in &loaded {
        println!(
            "  {:<22} {:<8} sha256:{}…  {}",
            p.info().name,
            p.info().version,
            &p.digest()[..12],
            p.info().description
        );
    }
    let hpa_params = serde_json::json!({
        "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}],
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}
    });
    let tracking_params = serde_json::json!({"metric": "rps", "target": 60});
    let step_ms = 15_000;
    let day_ms = u64::from(steps) * step_ms;
    let mut workload = SimWorkload::new("web", 2, 2, 30);
    let mut state = Vec::new();
    println!("\nA day of load compressed into {steps} steps of 15 s; pods take 20 s to become ready.");
    println!("{:>6}  {:>8}  {:>10}  {:>4}  {:>8}  reason (hpa)", "time", "load rps", "ready/pods", "hpa", "tracking");
    // The initial pods were started at t = 0; the day starts an hour later so
    // they are past the HPA's CPU initialization period, like long-running pods.
    let start_ms = 3_600_000;
    for step in 1..=steps {
        let elapsed_ms = u64::from(step) * step_ms;
        let now_ms = start_ms + elapsed_ms;
        let load = daily_load(elapsed_ms, day_ms);
        let mut snapshot = workload.snapshot(now_ms, load, hpa_params.clone());
        snapshot.state = std::mem::take(&mut state);
        let evaluation = hpa.evaluate(&snapshot);
        snapshot.params = tracking_params.clone();
        snapshot.state.clear();
        let opinion = match tracking.evaluate(&snapshot).outcome {
            Ok(d) => d.desired_replicas.map_or("-".into(), |r| r.to_string()),
            Err(e) => format!("({})", e.metric_label()),
        };
        let (desired, reason) = match evaluation.outcome {
            Ok(decision) => {
                state = decision.state;
                (decision.desired_replicas, decision.reason)
            }
            Err(error) => (None, format!("fault: {error}")),
        };
        let ready = snapshot.workload.ready_replicas();
        println!(
            "{:>3}:{:02}  {:>8.0}  {:>5}/{:<4}  {:>4}  {:>8}  {}",
            elapsed_ms / 60_000,
            (elapsed_ms / 1000) % 60,
            load,
            ready,
            workload.replicas(),
            desired.map_or("-".into(), |d| d.to_string()),
            opinion,
            reason
        );
        if let Some(desired) = desired {
            // the host's min/max guardrail
            let desired = desired.clamp(workload.min_replicas, workload.max_replicas);
            workload.set_replicas(desired, now_ms, true);
        }
    }
    println!(
        "\n{} scale events; try `scalegate eval --policy {} --snapshot examples/snapshots/hpa-scale-up.json`",
        workload.scale_events.len(),
        policies.join("hpa.wasm").display()
    );
    Ok(())
}
