//! `cargo bench -p scalegate --bench keda_rpc` (or `just bench-keda`):
//! KEDA's call pattern against the External Scaler — a `GetMetrics` and an
//! `IsActive` for one ScaledObject, back to back — from 100 concurrent
//! requests on one connection (KEDA shares one per scaler address) over
//! 1,000 served workloads on loopback. Prints p50/p99/max of a pair and
//! pairs per second, beside what KEDA asks of it.
//!
//! Runs paced (each of the concurrent tasks sends a pair on a fixed
//! period, `--rates` pairs/s in all, 1,000, 5,000 and 10,000 by default:
//! 10 to 100 times what KEDA asks for 1,000 ScaledObjects) and a closed loop (each sends the
//! next pair as soon as the last is answered: the saturation throughput;
//! latency there is queueing, concurrency / throughput).
//!
//! Flags: `--workloads N` (1000), `--concurrency N` (100), `--measure 10s`, `--rates A,B,…`.

use scalegate::cli::bench::usage::cpu_seconds;
use scalegate::clock::SystemClock;
use scalegate::keda::proto::external_scaler_client::ExternalScalerClient;
use scalegate::keda::proto::{GetMetricsRequest, ScaledObjectRef};
use scalegate::keda::{METRIC, Scaler};
use scalegate::sink::{Answer, Answers};
use scalegate::telemetry::Metrics;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn flag<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let workloads: usize = flag("--workloads", 1000);
    let concurrency: usize = flag("--concurrency", 100);
    let measure = humantime::parse_duration(&flag("--measure", "10s".to_string())).expect("--measure");
    let server = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let client = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();

    let answers = Arc::new(Answers::default());
    let names: Vec<String> = (0..workloads).map(|i| format!("bench/w{i:04}")).collect();
    answers.serve(names.iter().map(|n| (n.clone(), Duration::from_secs(15))));
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    for (i, name) in names.iter().enumerate() {
        let desired = (i % 7) as u32;
        answers.publish(name, Answer { desired, active: desired > 0, metrics: vec![], at_ms: now() });
    }
    let listener = server.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let scaler = Scaler::new(answers.clone(), Arc::new(SystemClock), Arc::new(Metrics::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    server.spawn(scaler.serve(listener, None, stop.clone()));

    let rates: Vec<f64> = flag("--rates", "1000,5000,10000".to_string())
        .split(',')
        .map(|r| r.trim().parse().expect("--rates: numbers separated by commas"))
        .collect();
    let rows = client.block_on(async move {
        let channel =
            tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
        let names = Arc::new(names);
        // each task: a pair, then the next one `every` later (`None`: at once, a closed loop)
        let run = |until: Instant, every: Option<Duration>| {
            (0..concurrency)
                .map(|task| {
                    let (mut client, names) = (ExternalScalerClient::new(channel.clone()), names.clone());
                    tokio::spawn(async move {
                        let mut samples = Vec::new();
                        let mut i = task;
                        let mut tick = every.map(|every| {
                            let mut tick = tokio::time::interval_at(
                                tokio::time::Instant::now() + every.mul_f64(task as f64 / concurrency as f64),
                                every,
                            );
                            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                            tick
                        });
                        while Instant::now() < until {
                            if let Some(tick) = tick.as_mut() {
                                tick.tick().await;
                            }
                            let (ns, name) = names[i % names.len()].split_once('/').unwrap();
                            let reference =
                                ScaledObjectRef { name: name.into(), namespace: ns.into(), ..Default::default() };
                            let asked = Instant::now();
                            let metrics = GetMetricsRequest {
                                scaled_object_ref: Some(reference.clone()),
                                metric_name: METRIC.into(),
                            };
                            let value = client.get_metrics(metrics).await.unwrap().into_inner();
                            let active = client.is_active(reference).await.unwrap().into_inner();
                            samples.push(asked.elapsed());
                            assert_eq!(value.metric_values[0].metric_value_float > 0.0, active.result);
                            i += concurrency;
                        }
                        samples
                    })
                })
                .collect::<Vec<_>>()
        };
        for task in run(Instant::now() + Duration::from_secs(1), None) {
            task.await.unwrap();
        }
        let mut rows = Vec::new();
        let mut loads: Vec<(String, Option<Duration>)> = rates
            .iter()
            .map(|rate| {
                (format!("paced, {rate:.0} pairs/s offered"), Some(Duration::from_secs_f64(concurrency as f64 / rate)))
            })
            .collect();
        loads.push(("closed loop (saturation)".to_string(), None));
        for (label, every) in loads {
            let cpu = cpu_seconds("self");
            let begun = Instant::now();
            let mut samples = Vec::new();
            for task in run(begun + measure, every) {
                samples.extend(task.await.unwrap());
            }
            rows.push((label, samples, begun.elapsed(), cpu_seconds("self") - cpu));
        }
        rows
    });
    stop.cancel();
    println!(
        "# KEDA External Scaler: GetMetrics + IsActive pairs, {concurrency} concurrent on one connection, {workloads} workloads, loopback"
    );
    println!();
    println!(
        "| load | pairs | pairs/s | p50 µs | p90 µs | p99 µs | max µs | CPU (client + server), share of one core |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut capacity = 0.0;
    for (label, mut samples, elapsed, cpu) in rows {
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
        let pairs_per_second = samples.len() as f64 / elapsed.as_secs_f64();
        capacity = pairs_per_second;
        println!(
            "| {label} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} % |",
            samples.len(),
            pairs_per_second,
            at(0.5),
            at(0.9),
            at(0.99),
            at(1.0),
            cpu / elapsed.as_secs_f64() * 100.0
        );
    }
    let pairs_per_second = capacity;
    // KEDA polls each ScaledObject every pollingInterval (30 s) and the HPA reads the metric every
    // 15 s; each asks for GetMetrics and IsActive (useCachedMetrics off): ~1/30 + 1/15 pairs/s each
    let keda_pairs = workloads as f64 * (1.0 / 30.0 + 1.0 / 15.0);
    println!();
    println!(
        "KEDA's own load for {workloads} ScaledObjects at default intervals: ~{keda_pairs:.0} pairs/s ({:.1}% of the measured capacity)",
        keda_pairs / pairs_per_second * 100.0
    );
    println!("target: p99 ≤ 1000 µs");
}
