//! Pod watch caches, one per namespace that has workloads: a kube reflector
//! fed by a watcher (list, then watch from the list's resourceVersion,
//! re-watching after dropped connections and re-listing after `410 Gone`,
//! with backoff on errors). Pods are stored without their managed fields,
//! volumes and environment, and converted to snapshot pods on read.

use super::quantity;
use crate::snapshot::{self, PodPhase, ResourceRequest};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::task::AbortOnDropHandle;

/// One namespace's cache.
/// The annotation the ReplicaSet controller reads to pick scale-in victims.
pub const DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

pub struct PodCache {
    store: Store<Pod>,
    /// False from a watch error until the next successful event.
    healthy: Arc<AtomicBool>,
    _task: AbortOnDropHandle<()>,
}

impl PodCache {
    fn start(client: kube::Client, namespace: &str) -> PodCache {
        let api: Api<Pod> = Api::namespaced(client, namespace);
        let (store, writer) = reflector::store();
        let healthy = Arc::new(AtomicBool::new(true));
        let stream = watcher(api, watcher::Config::default()).default_backoff().modify(slim).reflect(writer);
        let (flag, namespace) = (healthy.clone(), namespace.to_string());
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(_) => {
                        if !flag.swap(true, Ordering::Relaxed) {
                            tracing::info!(%namespace, "pod watch recovered");
                        }
                    }
                    Err(error) => {
                        if flag.swap(false, Ordering::Relaxed) {
                            tracing::warn!(%namespace, %error, "pod watch failed; pods are stale until it recovers");
                        }
                    }
                }
            }
        });
        PodCache { store, healthy, _task: AbortOnDropHandle::new(task) }
    }

    /// Waits until the first list has been applied; false on timeout.
    pub async fn wait_synced(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.store.wait_until_ready()).await.is_ok_and(|r| r.is_ok())
    }

    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Pods matching `selector`, as the snapshot shows them, sorted by name.
    pub fn matching(&self, selector: &Selector) -> Vec<snapshot::Pod> {
        let empty = BTreeMap::new();
        let mut pods: Vec<snapshot::Pod> = self
            .store
            .state()
            .iter()
            .filter(|pod| selector.matches(pod.metadata.labels.as_ref().unwrap_or(&empty)))
            .map(|pod| convert(pod))
            .collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        pods
    }
}

/// Caches by namespace, started on first use.
pub struct PodCaches {
    client: kube::Client,
    caches: parking_lot::Mutex<HashMap<String, Arc<PodCache>>>,
}

impl PodCaches {
    pub fn new(client: kube::Client) -> PodCaches {
        PodCaches { client, caches: Default::default() }
    }

    pub fn get(&self, namespace: &str) -> Arc<PodCache> {
        self.caches
            .lock()
            .entry(namespace.to_string())
            .or_insert_with(|| Arc::new(PodCache::start(self.client.clone(), namespace)))
            .clone()
    }
}

/// Drops what the snapshot never reads, to keep the cache small.
fn slim(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    if let Some(annotations) = pod.metadata.annotations.as_mut() {
        annotations.retain(|key, _| key == DELETION_COST_ANNOTATION);
    }
    if let Some(spec) = pod.spec.as_mut() {
        spec.volumes = None;
        // sidecars (restartable init containers) count towards requests
        if let Some(init) = spec.init_containers.as_mut() {
            init.retain(|c| c.restart_policy.as_deref() == Some("Always"));
        }
        for container in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
            container.env = None;
            container.env_from = None;
            container.volume_mounts = None;
            container.command = None;
            container.args = None;
        }
    }
    if let Some(status) = pod.status.as_mut() {
        status.container_statuses = None;
        status.init_container_statuses = None;
    }
}

fn millis(time: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> Option<u64> {
    u64::try_from(time.0.as_millisecond()).ok()
}

/// A Kubernetes pod as the policy sees it.
pub fn convert(pod: &Pod) -> snapshot::Pod {
    let status = pod.status.as_ref();
    let phase = match status.and_then(|s| s.phase.as_deref()) {
        Some("Pending") => PodPhase::Pending,
        Some("Running") => PodPhase::Running,
        Some("Succeeded") => PodPhase::Succeeded,
        Some("Failed") => PodPhase::Failed,
        _ => PodPhase::Unknown,
    };
    let ready_condition =
        status.and_then(|s| s.conditions.as_ref()).and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    let deletion_cost = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DELETION_COST_ANNOTATION))
        .and_then(|v| v.trim().parse().ok());

    // Like the HPA controller: the regular containers plus the restartable
    // (sidecar) init containers; a total is only known when every one of
    // them states the request, unless the pod-level request is set.
    let mut requests = Vec::new();
    let mut totals: BTreeMap<&str, Option<f64>> = BTreeMap::new();
    let spec = pod.spec.as_ref();
    let sidecars = spec
        .and_then(|s| s.init_containers.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    let containers: Vec<_> = spec.map(|s| s.containers.iter()).into_iter().flatten().chain(sidecars).collect();
    for container in &containers {
        let stated = container.resources.as_ref().and_then(|r| r.requests.as_ref());
        for resource in ["cpu", "memory"] {
            let amount = stated.and_then(|r| r.get(resource)).and_then(|q| quantity::parse(&q.0));
            let total = totals.entry(resource).or_insert(Some(0.0));
            *total = total.zip(amount).map(|(t, a)| t + a);
        }
        for (resource, value) in stated.into_iter().flatten() {
            if let Some(amount) = quantity::parse(&value.0) {
                requests.push(ResourceRequest {
                    resource: resource.clone(),
                    container: Some(container.name.clone()),
                    amount,
                });
            }
        }
    }
    let pod_level = spec.and_then(|s| s.resources.as_ref()).and_then(|r| r.requests.as_ref());
    let total = |resource: &str| match pod_level.and_then(|r| r.get(resource)) {
        Some(amount) => quantity::parse(&amount.0),
        None if containers.is_empty() => None,
        None => totals.get(resource).copied().flatten(),
    };
    snapshot::Pod {
        name: pod.metadata.name.clone().unwrap_or_default(),
        phase,
        ready: ready_condition.map(|c| c.status == "True"),
        ready_transition_ms: ready_condition.and_then(|c| c.last_transition_time.as_ref()).and_then(millis),
        start_ms: status.and_then(|s| s.start_time.as_ref()).and_then(millis),
        terminating: pod.metadata.deletion_timestamp.is_some(),
        deletion_cost,
        cpu_request: total("cpu"),
        memory_request: total("memory"),
        requests,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn converts_phase_readiness_requests_and_deletion_cost() {
        let converted = convert(&pod(serde_json::json!({
            "metadata": {"name": "web-1", "annotations": {DELETION_COST_ANNOTATION: "-5"}},
            "spec": {"containers": [
                {"name": "app", "resources": {"requests": {"cpu": "250m", "memory": "128Mi", "nvidia.com/gpu": "1"}}},
                {"name": "sidecar", "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}}}
            ]},
            "status": {
                "phase": "Running",
                "startTime": "2026-11-22T10:00:00Z",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-22T10:00:30Z"}]
            }
        })));
        assert_eq!(converted.name, "web-1");
        assert_eq!(converted.phase, PodPhase::Running);
        assert_eq!(converted.ready, Some(true));
        assert_eq!(converted.start_ms, Some(1_795_341_600_000));
        assert_eq!(converted.ready_transition_ms, Some(1_795_341_630_000));
        assert_eq!(converted.deletion_cost, Some(-5));
        assert!((converted.cpu_request.unwrap() - 0.3).abs() < 1e-9);
        assert_eq!(converted.memory_request, Some(160.0 * 1024.0 * 1024.0));
        assert!(
            converted
                .requests
                .iter()
                .any(|r| r.resource == "nvidia.com/gpu" && r.container.as_deref() == Some("app") && r.amount == 1.0)
        );
        assert_eq!(converted.requests.len(), 5);
        assert!(!converted.terminating);
    }

    #[test]
    fn sidecars_count_and_pod_level_requests_win() {
        let mut pod = pod(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "initContainers": [
                    {"name": "setup", "resources": {"requests": {"cpu": "2"}}},
                    {"name": "mesh", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}
                ],
                "containers": [{"name": "app", "resources": {"requests": {"cpu": "400m", "memory": "1Gi"}}}]
            }
        }));
        slim(&mut pod);
        let converted = convert(&pod);
        assert!((converted.cpu_request.unwrap() - 0.5).abs() < 1e-9, "app + mesh, not the one-shot setup");
        assert_eq!(converted.memory_request, Some((1024.0 + 64.0) * 1024.0 * 1024.0));
        assert!(converted.requests.iter().any(|r| r.container.as_deref() == Some("mesh")));
        pod.spec.as_mut().unwrap().resources =
            Some(serde_json::from_value(serde_json::json!({"requests": {"cpu": "750m"}})).unwrap());
        let converted = convert(&pod);
        assert_eq!(converted.cpu_request, Some(0.75), "pod-level request");
        assert_eq!(converted.memory_request, Some((1024.0 + 64.0) * 1024.0 * 1024.0), "no pod-level memory");
    }

    #[test]
    fn a_container_without_a_request_makes_the_total_unknown() {
        let converted = convert(&pod(serde_json::json!({
            "metadata": {"name": "p", "deletionTimestamp": "2026-11-22T10:00:00Z"},
            "spec": {"containers": [
                {"name": "a", "resources": {"requests": {"cpu": "1"}}},
                {"name": "b"}
            ]},
            "status": {"phase": "Pending"}
        })));
        assert_eq!(converted.cpu_request, None);
        assert_eq!(converted.memory_request, None);
        assert_eq!(converted.ready, None);
        assert!(converted.terminating);
        assert_eq!(converted.phase, PodPhase::Pending);
    }
}
