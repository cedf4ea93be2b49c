//! `scalegate simulate`: configurations run through the real daemon
//! assembly over a trace on the paused clock — what the seeds describe,
//! checked on the simulated course, and the charts checked as SVG.

use crate::support::*;
use scalegate::sim::engine::{self, Run, Setup};
use scalegate::sim::pod_weight;
use scalegate::sim::trace::Trace;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

fn setup() -> Setup {
    Setup {
        policies: workspace().join("target/policies"),
        step: Duration::from_secs(15),
        rps_per_pod: 100.0,
        startup: Duration::from_secs(30),
        slo: 0.8,
        duration: None,
        jobs: 2,
    }
}

fn simulate(config: &str, trace: &str) -> Run {
    let trace = Trace::parse(trace).unwrap();
    let config = engine::adapt(config, &trace, &setup()).unwrap();
    scalegate::cli::simulate::run_config(
        "test",
        config,
        &trace,
        &setup(),
        Arc::new(runtime()),
        &indicatif::ProgressBar::hidden(),
    )
    .unwrap()
}

/// Replicas at `minute` of the run.
fn replicas_at(run: &Run, workload: &str, minute: u64) -> u32 {
    let w = run.workload(workload).unwrap();
    w.samples.iter().rev().find(|s| s.t_ms <= minute * 60_000).unwrap().replicas
}

#[test]
fn thresholds_never_flap_inside_a_hysteresis_band() {
    // the seed's frontend bands; 3 pods serve 25..60 rps
    let config = std::fs::read_to_string(workspace().join("examples/prometheus-ema/scalegate.yaml")).unwrap();
    // 40 rps, then three hours swinging between 28 and 58 every minute
    let mut trace = String::from("time,workload,load\n0,default/frontend,40\n0,default/checkout,60\n");
    for minute in 10..190 {
        let load = if minute % 2 == 0 { 28 } else { 58 };
        trace.push_str(&format!("{},default/frontend,{load}\n", minute * 60));
    }
    let run = simulate(&config, &trace);
    let frontend = run.workload("default/frontend").unwrap();
    assert_eq!(replicas_at(&run, "default/frontend", 9), 3, "{:?}", frontend.scales);
    let late: Vec<_> = frontend.scales.iter().filter(|(t, ..)| *t >= 10 * 60_000).collect();
    assert!(late.is_empty(), "scaled inside the band: {late:?}");
    // one level per action, a minute apart (the seed's cooldown)
    assert!(frontend.scales.iter().all(|(_, from, to)| from.abs_diff(*to) == 1), "{:?}", frontend.scales);
    assert!(frontend.scales.windows(2).all(|w| w[1].0 - w[0].0 >= 60_000), "{:?}", frontend.scales);
}

#[test]
fn the_hybrid_rule_picks_reactive_when_the_two_differ_by_more_than_n() {
    let config = r#"
workloads:
  - target: {namespace: shop, name: web}
    min_replicas: 1
    max_replicas: 30
    interval: 15s
    policies:
      - {policy: target-tracking, name: predictive, params: {metric: forecast_rps, target: 100}}
      - {policy: target-tracking, name: reactive, params: {metric: rps, target: 100}}
    combine: {prefer: predictive, unless_differs_from: reactive, by_more_than: 2}
    metrics:
      - name: forecast_rps
        prometheus: {query: 'predict_linear(http_requests_total[1h], 600)'}
"#;
    // reactive says 5 throughout; the forecast says 6, then 12, then 3
    let trace = "time,workload,load,forecast_rps\n0,shop/web,500,600\n30m,shop/web,,1200\n60m,shop/web,,300\n90m,shop/web,500,\n";
    let run = simulate(config, trace);
    assert_eq!(replicas_at(&run, "shop/web", 25), 6, "within 2 of reactive's 5: predictive");
    assert_eq!(replicas_at(&run, "shop/web", 55), 5, "12 is 7 away from 5: reactive");
    assert_eq!(replicas_at(&run, "shop/web", 85), 3, "3 is 2 away: predictive");
}

#[test]
fn simulate_charts_each_workload_with_one_series_per_configuration() {
    let out = tempfile::tempdir().unwrap();
    let example = workspace().join("examples/prometheus-ema");
    let output = Command::new(env!("CARGO_BIN_EXE_scalegate"))
        .args(["simulate", "--config"])
        .arg(example.join("scalegate.yaml"))
        .arg("--trace")
        .arg(example.join("trace.csv"))
        .arg("--compare")
        .arg(example.join("hybrid.yaml"))
        .arg("--out")
        .arg(out.path())
        .env("SCALEGATE_CACHE_DIR", shared_cache())
        .current_dir(workspace())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("simulated 1day 15s of 2 workload(s) × 2 configuration(s)"), "{stdout}");
    let summary = std::fs::read_to_string(out.path().join("summary.md")).unwrap();
    let rows: Vec<&str> = summary.lines().filter(|l| l.starts_with("| default/")).collect();
    assert_eq!(rows.len(), 3, "frontend under both, checkout under the first only:\n{summary}");
    assert!(
        rows[0].starts_with("| default/frontend | scalegate |") && rows[1].starts_with("| default/frontend | hybrid |")
    );

    // parsed as XML by a real parser; size and series counted
    for (file, configs) in
        [("default_frontend.svg", vec!["scalegate", "hybrid"]), ("default_checkout.svg", vec!["scalegate"])]
    {
        let path = out.path().join(file);
        let check = Command::new("python3")
            .arg("-c")
            .arg(
                "import sys, xml.etree.ElementTree as ET\n\
                 root = ET.parse(sys.argv[1]).getroot()\n\
                 ns = '{http://www.w3.org/2000/svg}'\n\
                 assert root.tag == ns + 'svg', root.tag\n\
                 print(root.get('width'), root.get('height'))\n\
                 for p in root.iter(ns + 'polyline'):\n\
                 \x20   pts = p.get('points').split()\n\
                 \x20   assert len(pts) >= 2 and all(len(x.split(',')) == 2 for x in pts), p.attrib\n\
                 \x20   print(p.get('class'), p.get('data-config', '-'))\n",
            )
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&check.stdout);
        assert!(check.status.success(), "{file}: {}", String::from_utf8_lossy(&check.stderr));
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("960 400"), "{file}");
        let series: Vec<&str> = lines.collect();
        assert_eq!(series.iter().filter(|l| l.starts_with("load")).count(), 1, "{file}: {series:?}");
        let replicas: Vec<&str> = series.iter().filter_map(|l| l.strip_prefix("replicas ")).collect();
        assert_eq!(replicas, configs, "{file}");
        let ready: Vec<&str> = series.iter().filter_map(|l| l.strip_prefix("ready ")).collect();
        assert_eq!(ready, configs, "{file}");
    }

    // and a PNG of the same size per workload (resvg), checked from its header
    for file in ["default_frontend.png", "default_checkout.png"] {
        let png = std::fs::read(out.path().join(file)).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{file}: a PNG signature");
        assert_eq!(&png[12..16], b"IHDR", "{file}");
        let size =
            (u32::from_be_bytes(png[16..20].try_into().unwrap()), u32::from_be_bytes(png[20..24].try_into().unwrap()));
        assert_eq!(size, (960, 400), "{file}");
        assert!(png.len() > 10_000, "{file}: {} bytes, nothing drawn?", png.len());
    }

    // a bad trace is named, nothing written
    let bad = out.path().join("bad.csv");
    std::fs::write(&bad, "time,workload,load\n0,default/frontend,lots\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_scalegate"))
        .args(["simulate", "--config"])
        .arg(example.join("scalegate.yaml"))
        .arg("--trace")
        .arg(&bad)
        .arg("--out")
        .arg(out.path().join("never"))
        .current_dir(workspace())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("line 2.load: not a number"));
    assert!(!out.path().join("never").exists());
}

#[test]
fn queue_goes_to_zero_after_the_cooldown_and_back_on_the_first_message() {
    // seed 004's backend: queue on the NATS backlog, 5 per replica, to zero 30 s after the last job
    let config = std::fs::read_to_string(workspace().join("examples/hpa-keda-vpa/scalegate.yaml")).unwrap();
    let trace = "time,workload,load,backlog\n0,meme-generator/meme-generator,0,12\n5m,meme-generator/meme-generator,,0\n20m,meme-generator/meme-generator,,1\n30m,meme-generator/meme-generator,,0\n";
    let run = simulate(&config, trace);
    let backend = "meme-generator/meme-generator";
    assert_eq!(replicas_at(&run, backend, 4), 3, "ceil(12 / 5)");
    let w = run.workload(backend).unwrap();
    let zero_at = w.samples.iter().find(|s| s.t_ms >= 5 * 60_000 && s.replicas == 0).expect("to zero").t_ms;
    assert!(
        (5 * 60_000 + 30_000..=5 * 60_000 + 60_000).contains(&zero_at),
        "zero 30 s after the queue emptied (within an evaluation): {zero_at} ms; {:?}",
        w.scales
    );
    assert_eq!(replicas_at(&run, backend, 19), 0, "idle stays at zero");
    let back_at = w.samples.iter().find(|s| s.t_ms >= 20 * 60_000 && s.replicas >= 1).expect("back").t_ms;
    assert!(back_at <= 20 * 60_000 + 15_000, "the first message brings a pod within a step: {back_at} ms");
    assert_eq!(replicas_at(&run, backend, 25), 1, "one message, one pod");
}

#[test]
fn hpa_waits_out_its_scale_down_stabilization_window() {
    let config = r#"
workloads:
  - target: {namespace: shop, name: web}
    min_replicas: 1
    max_replicas: 10
    interval: 15s
    policies:
      - policy: hpa
        params:
          metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}}]
          behavior: {scaleDown: {stabilizationWindowSeconds: 300}}
"#;
    // 400 rps needs 8 pods at 50 %; at 10 minutes the load drops to 50 rps (1 pod)
    let trace = "time,workload,load\n0,shop/web,400\n10m,shop/web,50\n20m,shop/web,50\n";
    let mut run = simulate(config, trace);
    let web = run.workloads.remove(0);
    assert_eq!(web.samples.iter().find(|s| s.t_ms == 9 * 60_000).unwrap().replicas, 8, "{:?}", web.scales);
    let down = web.scales.iter().find(|(t, from, to)| *t >= 10 * 60_000 && to < from).expect("scales down");
    // the window runs from the last evaluation that still saw 400 rps (at most one interval before the drop)
    assert!(
        (15 * 60_000 - 15_000..=15 * 60_000 + 30_000).contains(&down.0),
        "down once the 300 s window has passed: {:?}",
        web.scales
    );
    assert_eq!(web.samples.last().unwrap().replicas, 1);
}

#[test]
fn urgency_adds_five_at_urgency_three_and_removes_the_least_loaded_pod() {
    // seed 001's example as deployed; heartbeats fed per pod from the trace
    let config = std::fs::read_to_string(workspace().join("examples/lb-urgency/scalegate.yaml")).unwrap();
    let head = "time,workload,load,pod.cpu,pod.connections,pod.mps,memory,latency_ms,kafka_lag\n";
    // busy (between the marks), a spike far over cpu's critical mark for a
    // minute, then calm for an hour (every metric under its low mark)
    let trace = format!(
        "{head}0,rtc/socket,600,60,600,300,45,80,300\n\
         3m,rtc/socket,3000,800,8000,3000,60,240,2500\n\
         4m,rtc/socket,100,10,300,40,35,30,40\n\
         70m,rtc/socket,100,10,300,40,35,30,40\n"
    );
    let run = simulate(&config, &trace);
    let socket = run.workload("rtc/socket").unwrap();
    let first_up = socket.scales.iter().find(|(_, from, to)| to > from).expect("scales out");
    assert_eq!((first_up.1, first_up.2), (2, 7), "urgency 3: +5 at once: {:?}", socket.scales);
    assert!((3 * 60_000..3 * 60_000 + 10_000).contains(&first_up.0), "within an interval: {:?}", socket.scales);

    // calm: one pod per 300 s hold, each time one with the fewest
    // connections (the policy's deletion cost: a pod's share of the 300
    // connections, floored; the ReplicaSet takes the lowest cost)
    assert!(socket.removals.len() >= 3, "{:?}", socket.scales);
    for (t_ms, before, removed) in &socket.removals {
        assert_eq!(removed.len(), 1, "one at a time at {t_ms} ms");
        let sum: f64 = before.iter().map(|p| pod_weight(p)).sum();
        let cost = |pod: &str| (300.0 * pod_weight(pod) / sum).floor();
        let least = before.iter().map(|p| cost(p)).fold(f64::INFINITY, f64::min);
        assert_eq!(cost(&removed[0]), least, "at {t_ms} ms: {} from {before:?}", removed[0]);
    }
    let gaps: Vec<u64> = socket.removals.windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert!(gaps.iter().all(|g| *g >= 300_000), "a hold between removals: {gaps:?}");
    // the ReplicaSet alone would have taken the newest pod: the costs chose
    assert!(
        socket.removals.iter().any(|(_, before, removed)| before.last() != Some(&removed[0])),
        "every least-loaded pod was also the newest: the test shows nothing"
    );
}

#[test]
fn forecast_has_capacity_up_before_the_spike_by_the_lead_time() {
    // seed 002's example: a 10 minute lead time; the forecaster knows the 09:00 campaign
    let config = std::fs::read_to_string(workspace().join("examples/forecast-lead-time/scalegate.yaml")).unwrap();
    let trace = "time,workload,load,forecast.replicas\n\
                 0,default/my-api,300,4\n\
                 1h,default/my-api,1800,23\n\
                 2h,default/my-api,300,4\n\
                 3h,default/my-api,300,4\n";
    let run = simulate(&config, trace);
    let api = run.workload("default/my-api").unwrap();
    let ready_by = |t_ms: u64| api.samples.iter().rev().find(|s| s.t_ms <= t_ms).unwrap().ready;
    assert_eq!(ready_by(45 * 60_000), 4, "no earlier than the lead time: {:?}", api.scales);
    let up = api.scales.iter().find(|(_, from, to)| *to >= 23 && to > from).expect("scales up");
    // evaluated every 30 s: the spike enters the 600 s window within one interval of 50:00
    assert!((50 * 60_000 - 30_000..=50 * 60_000 + 31_000).contains(&up.0), "{:?}", api.scales);
    assert!(ready_by(60 * 60_000) >= 23, "ready before the spike: {:?}", api.scales);
    // after it, down by at most 20 % a step (the capacity planner's clamp)
    let downs: Vec<_> = api.scales.iter().filter(|(t, ..)| *t > 60 * 60_000).collect();
    assert!(downs.iter().all(|(_, from, to)| f64::from(*to) >= (f64::from(*from) * 0.8).floor()), "{downs:?}");
    assert!(downs.first().is_some_and(|(t, ..)| *t >= 120 * 60_000 - 10 * 60_000), "held through the spike: {downs:?}");
}

#[test]
fn directives_in_the_trace_are_followed_within_a_step() {
    // seed 000's example: scalegate executes the load balancer's ScaleSignals
    let config = std::fs::read_to_string(workspace().join("examples/kafka-scale-signal/scalegate.yaml")).unwrap();
    let trace = "time,workload,load,directive.target_replicas,directive.delta,directive.urgency\n\
                 0,rtc/socket,300,,,\n\
                 1m,rtc/socket,,,,3\n\
                 5m,rtc/socket,,12,,\n\
                 10m,rtc/socket,,,-1,\n\
                 11m,rtc/socket,,5,,\n\
                 15m,rtc/socket,300,,,\n";
    let run = simulate(&config, trace);
    // urgency 3: +5; then exactly 12; −1; 5 asked, one pod a step down (the guardrail)
    assert_scaled_within_a_step(
        &run,
        "rtc/socket",
        &[(60_000, 3, 8), (300_000, 8, 12), (600_000, 12, 11), (660_000, 11, 10)],
    );
}

/// The workload scaled exactly `expected` (the trace row's time ms, from,
/// to), each within a step (15 s) of its row.
fn assert_scaled_within_a_step(run: &Run, workload: &str, expected: &[(u64, u32, u32)]) {
    let scales = &run.workload(workload).unwrap().scales;
    let counts: Vec<(u32, u32)> = scales.iter().map(|(_, from, to)| (*from, *to)).collect();
    let expected_counts: Vec<(u32, u32)> = expected.iter().map(|(_, from, to)| (*from, *to)).collect();
    assert_eq!(counts, expected_counts, "{scales:?}");
    for ((t, ..), (row, ..)) in scales.iter().zip(expected) {
        assert!((*row..=row + 15_000).contains(t), "within a step of its row: {scales:?}");
    }
}

#[test]
fn signals_in_the_trace_arrive_by_kind_with_their_attributes() {
    // a release pipeline pushes `deploy` events (`POST /v1/signals`) with a
    // `delta` of pods to add for the rollout; `directive` follows only those
    let config = r#"
workloads:
  - target: {namespace: shop, name: web}
    min_replicas: 2
    max_replicas: 20
    interval: 1m
    policies:
      - {policy: directive, params: {kinds: [deploy]}}
"#;
    let trace = "time,workload,load,signal.deploy.delta,signal.noise,directive.target_replicas\n\
                 0,shop/web,100,,,\n\
                 2m,shop/web,,3,,\n\
                 6m,shop/web,,,7,\n\
                 8m,shop/web,,,,15\n\
                 10m,shop/web,,-2,,\n\
                 15m,shop/web,100,,,\n";
    let run = simulate(config, trace);
    // +3 at 2 min; `noise` and the scale-signal are other kinds; −2 at 10 min
    assert_scaled_within_a_step(&run, "shop/web", &[(120_000, 2, 5), (600_000, 5, 3)]);
}
