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

use super::poll::{Fetcher, Outcome, Poller};
use super::source::{Context, FieldError, Job, Source, SourceError, Started, check_interval, from_value};
use crate::clock::Clock;
use crate::cluster::{ClusterError, PodUsage, ResourceMetrics};
use crate::snapshot::{Metric, PodSample};
use futures::future::BoxFuture;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

pub struct PodMetricsSource;

/// `sources.pod_metrics` — optional: the API is the cluster's own.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// How often usage is listed (default 15 s, metrics-server's resolution).
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
}

fn default_interval() -> Duration {
    Duration::from_secs(15)
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

impl Source for PodMetricsSource {
    const NAME: &'static str = "pod_metrics";
    const METRIC: Option<&'static str> = Some("pod_metrics");
    const LABEL: &'static str = "pod-metrics";
    const TITLE: &'static str = "metrics API";
    type Settings = Settings;
    type Metric = Usage;

    fn settings(value: serde_json::Value) -> Result<Settings, FieldError> {
        let settings: Settings = from_value(value)?;
        check_interval(settings.interval)?;
        Ok(settings)
    }

    fn default_settings() -> Option<Settings> {
        Some(Settings { interval: default_interval() })
    }

    fn validate_metric(usage: &Usage) -> Result<(), FieldError> {
        if !matches!(usage.resource.as_str(), "cpu" | "memory") {
            return Err(FieldError::new(
                "resource",
                format!("{:?}: metrics.k8s.io reports cpu and memory", usage.resource),
            ));
        }
        if usage.container.as_ref().is_some_and(|c| c.is_empty()) {
            return Err(FieldError::new("container", "must not be empty"));
        }
        Ok(())
    }

    fn refresh(settings: &Settings) -> Option<Duration> {
        Some(settings.interval)
    }

    /// Needs the cluster's resource metrics API (`scalegate run`).
    fn start(settings: &Settings, jobs: Vec<Job<&Usage>>, context: &Context) -> Result<Started, FieldError> {
        let Some(first) = jobs.first() else { return Ok(Started::default()) };
        let api = context.resource_metrics.clone().ok_or_else(|| {
            FieldError::new(
                "",
                format!(
                    "workload {} reads pod_metrics, which needs the Kubernetes API (scalegate run), not available here",
                    first.workload
                ),
            )
        })?;
        let jobs = jobs.into_iter().map(|job| {
            let usage = job.spec.clone();
            job.with(usage)
        });
        let poller = Poller::new(PodMetrics { api }, jobs.collect(), settings.interval, context);
        Ok(Started { tasks: vec![poller.into_task(context.shutdown.clone())], sink: None })
    }
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
        return Outcome::Missing(SourceError::Empty(format!(
            "no {what} usage for any of the target's {} pods ({without} listed without it)",
            own.len()
        )));
    }
    let newest = pods.iter().map(|p| p.timestamp_ms).max().unwrap_or(now_ms);
    let value = pods.iter().map(|p| p.value).sum();
    Outcome::Value(Metric { name: name.into(), source: "pod-metrics".into(), value, timestamp_ms: newest, pods })
}

/// Lists usage once per namespace per poll.
pub struct PodMetrics {
    api: Arc<dyn ResourceMetrics>,
}

/// A failure of the cluster's API as a source error.
fn source_error(error: ClusterError) -> SourceError {
    match error {
        ClusterError::NotFound(m) => SourceError::NotFound(m),
        ClusterError::Forbidden(m) => SourceError::Forbidden(m),
        ClusterError::Timeout(m) => SourceError::Timeout(m),
        ClusterError::Http(m) => SourceError::Http(m),
        ClusterError::Unavailable(m) => SourceError::Connect(m),
        ClusterError::Invalid(m) => SourceError::Parse(m),
        ClusterError::Conflict(m) | ClusterError::NotSynced(m) => SourceError::Target(m),
    }
}

impl Fetcher for PodMetrics {
    type Spec = Usage;
    const SOURCE: &'static str = "pod-metrics";

    fn fetch_all<'a>(&'a self, jobs: &'a [Job<Usage>], clock: &'a dyn Clock) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(async move {
            // one namespace's list in memory at a time (thousands of pods each)
            let mut by_namespace: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
            for (i, job) in jobs.iter().enumerate() {
                by_namespace.entry(job.target.namespace.as_str()).or_default().push(i);
            }
            let mut outcomes: Vec<Option<Outcome>> = jobs.iter().map(|_| None).collect();
            for (namespace, indices) in by_namespace {
                let listed = self.api.list_pod_usage(namespace).await;
                let now_ms = clock.now_ms();
                let listed = &listed;
                let results = super::poll::fetch_each(indices.iter().map(|&i| &jobs[i]), |job| async move {
                    let listed = match listed {
                        Ok(listed) => listed,
                        Err(error) => return Outcome::Failed(source_error(error.clone())),
                    };
                    match self.api.pods_of(&job.target).await {
                        Ok(own) => metric(&job.metric, &job.spec, listed, &own, now_ms),
                        Err(error) => Outcome::Failed(SourceError::Target(error.to_string())),
                    }
                })
                .await;
                for (i, outcome) in indices.into_iter().zip(results) {
                    outcomes[i] = Some(outcome);
                }
            }
            outcomes.into_iter().map(|o| o.expect("every job is in its namespace's group")).collect()
        })
    }
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
        assert!(matches!(&outcome, Outcome::Missing(SourceError::Empty(why)) if why.contains("3 pods")), "{outcome:?}");
        // a target without pods has no usage at all
        let Outcome::Value(none) = metric("cpu", &usage("cpu", None), &listed, &HashSet::new(), 5) else { panic!() };
        assert_eq!((none.value, none.timestamp_ms), (0.0, 5));
    }

    #[test]
    fn settings_are_checked() {
        let check = PodMetricsSource::validate_metric;
        assert!(check(&usage("gpu", None)).unwrap_err().message.contains("cpu and memory"));
        assert!(check(&usage("cpu", Some(""))).is_err());
        assert!(PodMetricsSource::settings(json!({"interval": "10ms"})).is_err());
    }
}
