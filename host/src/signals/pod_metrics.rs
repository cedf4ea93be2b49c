//! Pod CPU and memory usage from the resource metrics API
//! (`metrics.k8s.io/v1beta1` `PodMetrics`, served by metrics-server) — what
//! the `hpa` policy needs for `Resource` and `ContainerResource` metrics.
//!
//! Each declared metric names a resource (`cpu` in cores, `memory` in bytes)
//! and optionally one container. A pod's sample is that container's usage,
//! or the sum over its containers; like the HPA controller's metrics client,
//! a pod with a container that reports no usage for the resource (or without
//! the named container) gives no sample. Only pods of the target count: the
//! selector of its `/scale` over the pod watch cache. One `list` per
//! namespace per poll serves every workload of that namespace. Requests and
//! readiness are not read here: they come with the pods of the snapshot.

use super::SignalHub;
use super::poll::{Fetcher, Job, Outcome, Poller};
use crate::config::{MetricSource, Target, Workload};
use crate::snapshot::{Metric, PodSample};
use crate::telemetry::Metrics;
use futures::future::BoxFuture;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// `sources.pod_metrics` — optional: the API is the cluster's own.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// How often usage is listed (default 15 s, metrics-server's resolution).
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for Source {
    fn default() -> Self {
        Source { interval: default_interval() }
    }
}

fn default_interval() -> Duration {
    Duration::from_secs(15)
}

impl Source {
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        super::check_interval(self.interval)
    }
}

/// `workloads[].metrics[].pod_metrics`: which usage becomes the metric.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    /// `cpu` (cores) or `memory` (bytes).
    pub resource: String,
    /// Only this container's usage (default: the sum over the pod's containers).
    pub container: Option<String>,
}

impl Usage {
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !matches!(self.resource.as_str(), "cpu" | "memory") {
            return Err(("resource", format!("{:?}: metrics.k8s.io reports cpu and memory", self.resource)));
        }
        if self.container.as_ref().is_some_and(|c| c.is_empty()) {
            return Err(("container", "must not be empty".into()));
        }
        Ok(())
    }
}

/// One pod's usage, as metrics-server reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodUsage {
    pub pod: String,
    /// End of the sampling window (ms since the epoch).
    pub timestamp_ms: u64,
    pub window_ms: u64,
    /// Container name → resource → amount in base units.
    pub containers: BTreeMap<String, BTreeMap<String, f64>>,
}

/// A failed list: (kind for `scalegate_source_errors_total`, message).
pub type ListError = (&'static str, String);

/// What the source needs from the cluster (implemented by `KubeCluster`).
pub trait PodMetricsApi: Send + Sync + 'static {
    /// Usage of every pod of a namespace.
    fn list_pod_metrics<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Vec<PodUsage>, ListError>>;
    /// Names of the target's pods: its scale's selector over the pod cache.
    fn pods_of<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<HashSet<String>, String>>;
}

/// Parses one `PodMetrics` object (everything but its metadata).
pub fn parse(pod: &str, object: &serde_json::Value) -> Result<PodUsage, String> {
    #[derive(Deserialize)]
    struct Raw {
        timestamp: String,
        window: String,
        #[serde(default)]
        containers: Vec<Container>,
    }
    #[derive(Deserialize)]
    struct Container {
        name: String,
        #[serde(default)]
        usage: BTreeMap<String, String>,
    }
    let raw = Raw::deserialize(object).map_err(|e| format!("PodMetrics {pod}: {e}"))?;
    let timestamp: k8s_openapi::jiff::Timestamp =
        raw.timestamp.parse().map_err(|e| format!("PodMetrics {pod}: timestamp {:?}: {e}", raw.timestamp))?;
    let window = go_duration(&raw.window).ok_or_else(|| format!("PodMetrics {pod}: window {:?}", raw.window))?;
    let mut containers = BTreeMap::new();
    for container in raw.containers {
        let mut usage = BTreeMap::new();
        for (resource, quantity) in container.usage {
            let amount = crate::k8s::quantity::parse(&quantity)
                .filter(|a| a.is_finite())
                .ok_or_else(|| format!("PodMetrics {pod}: container {}: {resource} {quantity:?}", container.name))?;
            usage.insert(resource, amount);
        }
        containers.insert(container.name, usage);
    }
    Ok(PodUsage {
        pod: pod.to_string(),
        timestamp_ms: timestamp.as_millisecond().max(0) as u64,
        window_ms: window.as_millis() as u64,
        containers,
    })
}

/// A Go `time.Duration` string as the API serializes it (`30s`, `15.02s`, `1m0s`).
fn go_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (number, tail) = rest.split_at(digits);
        let number: f64 = number.parse().ok()?;
        let unit = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * seconds;
        rest = tail;
    }
    Some(Duration::from_secs_f64(total))
}

/// The pod's sample of `usage`, if it reports one (see the module doc).
fn sample(pod: &PodUsage, usage: &Usage) -> Option<f64> {
    match &usage.container {
        Some(container) => pod.containers.get(container)?.get(&usage.resource).copied(),
        None if pod.containers.is_empty() => None,
        None => pod.containers.values().map(|c| c.get(&usage.resource).copied()).sum(),
    }
}

/// The metric of one workload from its namespace's usage.
fn metric(name: &str, usage: &Usage, listed: &[PodUsage], own: &HashSet<String>, now_ms: u64) -> Outcome {
    let mut pods = Vec::new();
    let mut without = 0;
    for pod in listed.iter().filter(|p| own.contains(&p.pod)) {
        match sample(pod, usage) {
            Some(value) => pods.push(PodSample {
                pod: pod.pod.clone(),
                value,
                timestamp_ms: pod.timestamp_ms,
                window_ms: pod.window_ms,
            }),
            None => without += 1,
        }
    }
    if pods.is_empty() && !own.is_empty() {
        let what = usage.container.as_ref().map_or(usage.resource.clone(), |c| format!("{c}/{}", usage.resource));
        return Outcome::Missing(
            "empty",
            format!("no {what} usage for any of the target's {} pods ({without} listed without it)", own.len()),
        );
    }
    let newest = pods.iter().map(|p| p.timestamp_ms).max().unwrap_or(now_ms);
    let value = pods.iter().map(|p| p.value).sum();
    Outcome::Value(Metric { name: name.into(), source: "pod-metrics".into(), value, timestamp_ms: newest, pods })
}

pub struct PodMetrics {
    api: Arc<dyn PodMetricsApi>,
}

/// What a job reads: the target (namespace, selector) and the usage.
pub type Spec = (Target, Usage);

impl Fetcher for PodMetrics {
    type Spec = Spec;
    const SOURCE: &'static str = "pod-metrics";

    fn fetch_all<'a>(&'a self, jobs: &'a [Job<Spec>]) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(async move {
            let namespaces: HashSet<&str> = jobs.iter().map(|j| j.spec.0.namespace.as_str()).collect();
            let lists = futures::future::join_all(
                namespaces
                    .into_iter()
                    .map(|namespace| async move { (namespace, self.api.list_pod_metrics(namespace).await) }),
            )
            .await;
            let lists: HashMap<&str, Result<Vec<PodUsage>, ListError>> = lists.into_iter().collect();
            let now_ms = crate::decide::Clock::now_ms(&crate::decide::SystemClock);
            super::poll::fetch_each(jobs, |job| {
                let listed = &lists[job.spec.0.namespace.as_str()];
                async move {
                    let listed = match listed {
                        Ok(listed) => listed,
                        Err((kind, why)) => return Outcome::Failed(kind, why.clone()),
                    };
                    match self.api.pods_of(&job.spec.0).await {
                        Ok(own) => metric(&job.metric, &job.spec.1, listed, &own, now_ms),
                        Err(why) => Outcome::Failed("target", why),
                    }
                }
            })
            .await
        })
    }
}

/// The poller for every workload metric read from `metrics.k8s.io`;
/// `None` if none is. Needs the cluster (`api`) when there is one.
pub fn poller(
    source: Option<&Source>,
    api: Option<Arc<dyn PodMetricsApi>>,
    workloads: &[Workload],
    hub: Arc<SignalHub>,
    metrics: Arc<Metrics>,
) -> Result<Option<Poller<PodMetrics>>, String> {
    let jobs: Vec<Job<Spec>> = super::poll::jobs(workloads, |w, source| match source {
        MetricSource::PodMetrics(usage) => Some((w.target.clone(), usage.clone())),
        _ => None,
    });
    let Some(first) = jobs.first() else { return Ok(None) };
    let api = api.ok_or_else(|| {
        format!(
            "workload {} reads pod_metrics, which needs the Kubernetes API (scalegate run), not available here",
            first.workload
        )
    })?;
    let interval = source.cloned().unwrap_or_default().interval;
    Ok(Some(Poller { fetcher: PodMetrics { api }, jobs, interval, hub, metrics }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn usage(resource: &str, container: Option<&str>) -> Usage {
        Usage { resource: resource.into(), container: container.map(str::to_string) }
    }

    fn pod(name: &str, containers: &[(&str, &[(&str, f64)])]) -> PodUsage {
        PodUsage {
            pod: name.into(),
            timestamp_ms: 1_000,
            window_ms: 30_000,
            containers: containers
                .iter()
                .map(|(c, usage)| (c.to_string(), usage.iter().map(|(r, a)| (r.to_string(), *a)).collect()))
                .collect(),
        }
    }

    #[test]
    fn parses_what_metrics_server_serves() {
        let object = json!({
            "timestamp": "2026-11-23T10:00:00Z", "window": "15.028s",
            "containers": [
                {"name": "app", "usage": {"cpu": "250123456n", "memory": "128Mi"}},
                {"name": "proxy", "usage": {"cpu": "5m", "memory": "20480Ki"}}
            ]
        });
        let parsed = parse("web-1", &object).unwrap();
        assert_eq!(parsed.timestamp_ms, 1_795_428_000_000);
        assert_eq!(parsed.window_ms, 15_028);
        assert!((parsed.containers["app"]["cpu"] - 0.250123456).abs() < 1e-12);
        assert_eq!(parsed.containers["proxy"]["memory"], 20.0 * 1024.0 * 1024.0);
        let bad = json!({"timestamp": "yesterday", "window": "30s", "containers": []});
        assert!(parse("web-1", &bad).unwrap_err().contains("timestamp"));
        let bad = json!({"timestamp": "2026-11-23T10:00:00Z", "window": "30s",
                         "containers": [{"name": "app", "usage": {"cpu": "lots"}}]});
        assert!(parse("web-1", &bad).unwrap_err().contains("container app: cpu \"lots\""));
    }

    #[test]
    fn go_durations() {
        for (text, ms) in [("30s", 30_000), ("1m0s", 60_000), ("1m30.5s", 90_500), ("250ms", 250), ("0", 0)] {
            assert_eq!(go_duration(text), Some(Duration::from_millis(ms)), "{text}");
        }
        for bad in ["", "s", "30", "3x"] {
            assert_eq!(go_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn only_the_targets_pods_count_and_incomplete_pods_give_no_sample() {
        let listed = vec![
            pod("web-0", &[("app", &[("cpu", 0.4)]), ("proxy", &[("cpu", 0.1)])]),
            pod("web-1", &[("app", &[("cpu", 0.3)]), ("proxy", &[])]), // proxy reports no cpu
            pod("web-2", &[("app", &[("cpu", 0.2)])]),
            pod("other-0", &[("app", &[("cpu", 9.0)])]),
        ];
        let own: HashSet<String> = ["web-0", "web-1", "web-2"].map(String::from).into();
        let Outcome::Value(total) = metric("cpu", &usage("cpu", None), &listed, &own, 5) else { panic!() };
        let pods: Vec<(&str, f64)> = total.pods.iter().map(|p| (p.pod.as_str(), p.value)).collect();
        assert_eq!(pods, [("web-0", 0.5), ("web-2", 0.2)]);
        assert!((total.value - 0.7).abs() < 1e-12);
        assert_eq!((total.source.as_str(), total.pods[0].window_ms), ("pod-metrics", 30_000));

        let Outcome::Value(app) = metric("app/cpu", &usage("cpu", Some("app")), &listed, &own, 5) else { panic!() };
        assert_eq!(app.pods.len(), 3);
        assert!((app.value - 0.9).abs() < 1e-12);

        // pods listed but none with the usage: missing, not zero
        let outcome = metric("mem", &usage("memory", None), &listed, &own, 5);
        assert!(matches!(&outcome, Outcome::Missing("empty", why) if why.contains("3 pods")), "{outcome:?}");
        // a target without pods has no usage at all
        let Outcome::Value(none) = metric("cpu", &usage("cpu", None), &listed, &HashSet::new(), 5) else { panic!() };
        assert_eq!((none.value, none.timestamp_ms), (0.0, 5));
    }

    #[test]
    fn settings_are_checked() {
        assert!(usage("gpu", None).validate().unwrap_err().1.contains("cpu and memory"));
        assert!(usage("cpu", Some("")).validate().is_err());
        assert!(Source { interval: Duration::from_millis(10) }.validate().is_err());
    }
}
