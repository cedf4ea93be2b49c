//! The per-metric replica calculation (`ReplicaCalculator`, §2 of
//! `docs/reference/hpa-algorithm.md`) and the combination of several metrics
//! (§3). All usage values are integers in milli-units; ratios are f64.

use crate::params::{MetricSpec, Target};
use crate::quantity::Milli;
use crate::{Input, Phase};

/// Scale-up and scale-down tolerances (`Tolerances{scaleDown, scaleUp}`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tolerances {
    pub down: f64,
    pub up: f64,
}

impl Tolerances {
    pub fn is_within(self, ratio: f64) -> bool {
        (1.0 - self.down) <= ratio && ratio <= (1.0 + self.up)
    }
}

/// What one metric proposes, and what to report about it.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricProposal {
    pub replicas: i32,
    /// Name used in reports, e.g. "cpu" or the custom metric's name.
    pub name: String,
    /// The current value as `status.currentMetrics` shows it: a utilization
    /// percentage, or an (average) value in base units.
    pub current: f64,
    /// "utilization" | "average-value" | "value".
    pub measure: &'static str,
}

/// Why a metric could not produce a proposal (a `FailedGet*Metric` condition).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricError {
    pub reason: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    value: i64,
    timestamp_ms: i64,
    window_ms: i64,
}

/// Samples by pod index (`Input::pods`); `None` where a pod has no sample.
type MetricMap = Vec<Option<Sample>>;

fn entries(metrics: &MetricMap) -> usize {
    metrics.iter().filter(|s| s.is_some()).count()
}

/// Pod indexes by group (§2.2).
struct Grouping {
    ready_count: i64,
    unready: Vec<usize>,
    missing: Vec<usize>,
    ignored: Vec<usize>,
}

pub(crate) struct Calculator<'a> {
    pub input: &'a Input,
    pub tolerances: Tolerances,
    pub cpu_initialization_ms: i64,
    pub initial_readiness_delay_ms: i64,
}

fn ceil_i32(value: f64) -> i32 {
    // `int32(math.Ceil(x))` with the newest code's MaxInt32 clamp
    let value = value.ceil();
    if value >= f64::from(i32::MAX) { i32::MAX } else { value as i32 }
}

impl<'a> Calculator<'a> {
    /// `computeReplicasForMetrics`: the maximum over valid proposals, or the
    /// first error when every metric failed or a failure could hide a larger
    /// proposal than the current replica count.
    pub fn compute(&self, specs: &[MetricSpec]) -> (Result<i32, MetricError>, Vec<MetricProposal>, Vec<MetricError>) {
        let mut replicas = 0;
        let mut proposals = Vec::new();
        let mut errors = Vec::new();
        for spec in specs {
            match self.propose(spec) {
                Ok(proposal) => {
                    if replicas == 0 || proposal.replicas > replicas {
                        replicas = proposal.replicas;
                    }
                    proposals.push(proposal);
                }
                Err(error) => errors.push(error),
            }
        }
        let invalid = errors.len();
        let result = if invalid >= specs.len() || (invalid > 0 && replicas < self.input.current_replicas) {
            Err(errors[0].clone())
        } else {
            Ok(replicas)
        };
        (result, proposals, errors)
    }

    fn propose(&self, spec: &MetricSpec) -> Result<MetricProposal, MetricError> {
        match spec {
            MetricSpec::Resource { resource } => {
                let metric = resource.snapshot_metric.clone().unwrap_or_else(|| resource.name.clone());
                self.resource(&resource.name, None, &metric, &resource.target, "FailedGetResourceMetric")
            }
            MetricSpec::ContainerResource { container_resource: c } => {
                let metric = c.snapshot_metric.clone().unwrap_or_else(|| format!("{}/{}", c.container, c.name));
                self.resource(&c.name, Some(&c.container), &metric, &c.target, "FailedGetContainerResourceMetric")
            }
            MetricSpec::Pods { pods } => match pods.target {
                Target::AverageValue { average_value } => {
                    let reason = "FailedGetPodsMetric";
                    let metrics = self.per_pod_samples(&pods.metric.name, reason, "custom metrics API")?;
                    let (replicas, usage) = self.plain(metrics, "", average_value, reason)?;
                    Ok(proposal(replicas, &pods.metric.name, usage as f64 / 1000.0, "average-value"))
                }
                _ => Err(invalid_target("FailedGetPodsMetric", "Pods metrics need an AverageValue target")),
            },
            MetricSpec::Object { object } => {
                self.object_or_external(&object.metric.name, &object.target, "FailedGetObjectMetric")
            }
            MetricSpec::External { external } => {
                self.object_or_external(&external.metric.name, &external.target, "FailedGetExternalMetric")
            }
        }
    }

    fn resource(
        &self,
        resource: &str,
        container: Option<&str>,
        metric_name: &str,
        target: &Target,
        reason: &'static str,
    ) -> Result<MetricProposal, MetricError> {
        let metrics = self.per_pod_samples(metric_name, reason, "resource metrics API")?;
        match *target {
            Target::Utilization { average_utilization } => {
                let (replicas, utilization) =
                    self.utilization(metrics, resource, container, average_utilization, reason)?;
                Ok(proposal(replicas, metric_name, f64::from(utilization), "utilization"))
            }
            Target::AverageValue { average_value } => {
                let (replicas, usage) = self.plain(metrics, resource, average_value, reason)?;
                Ok(proposal(replicas, metric_name, usage as f64 / 1000.0, "average-value"))
            }
            Target::Value { .. } => {
                Err(invalid_target(reason, "resource metrics need a Utilization or AverageValue target"))
            }
        }
    }

    fn per_pod_samples(&self, name: &str, reason: &'static str, api: &str) -> Result<MetricMap, MetricError> {
        let mut map: MetricMap = vec![None; self.input.pods.len()];
        let samples = self.input.metrics.iter().find(|m| m.name == name).map_or(&[][..], |m| &m.pods[..]);
        for s in samples {
            if let Some(slot) = map.get_mut(s.pod) {
                *slot = Some(Sample {
                    value: Milli::from_base(s.value).0,
                    timestamp_ms: s.timestamp_ms,
                    window_ms: s.window_ms,
                });
            }
        }
        if samples.is_empty() {
            return Err(MetricError { reason, message: format!("no metrics returned from {api} for metric {name:?}") });
        }
        if self.input.pods.is_empty() {
            return Err(MetricError {
                reason,
                message: "no pods returned by selector while calculating replica count".into(),
            });
        }
        Ok(map)
    }

    /// `groupPods` (§2.2).
    fn group_pods(&self, metrics: &MetricMap, resource: &str) -> Grouping {
        let now = self.input.now_ms;
        let mut grouping = Grouping { ready_count: 0, unready: vec![], missing: vec![], ignored: vec![] };
        for (index, pod) in self.input.pods.iter().enumerate() {
            if pod.terminating || pod.phase == Phase::Failed {
                grouping.ignored.push(index);
                continue;
            }
            if pod.phase == Phase::Pending {
                grouping.unready.push(index);
                continue;
            }
            let Some(sample) = metrics[index] else {
                grouping.missing.push(index);
                continue;
            };
            if resource == "cpu" {
                let (Some(ready), Some(start)) = (pod.ready, pod.start_ms) else {
                    grouping.unready.push(index);
                    continue;
                };
                let transition = pod.ready_transition_ms.unwrap_or(0);
                let unready = if start + self.cpu_initialization_ms > now {
                    // still initializing: trust only samples taken after it became ready
                    !ready || sample.timestamp_ms < transition + sample.window_ms
                } else {
                    // never became ready after starting
                    !ready && start + self.initial_readiness_delay_ms > transition
                };
                if unready {
                    grouping.unready.push(index);
                    continue;
                }
            }
            grouping.ready_count += 1;
        }
        grouping
    }

    /// §2.3: Resource metric with a Utilization target. Returns the proposal
    /// and the first-pass utilization (what the HPA reports).
    fn utilization(
        &self,
        mut metrics: MetricMap,
        resource: &str,
        container: Option<&str>,
        target: i32,
        reason: &'static str,
    ) -> Result<(i32, i32), MetricError> {
        let current = self.input.current_replicas;
        let grouping = self.group_pods(&metrics, resource);
        for &pod in grouping.ignored.iter().chain(&grouping.unready) {
            metrics[pod] = None;
        }
        let requests = self
            .input
            .pods
            .iter()
            .map(|pod| {
                pod.request(resource, container).map(|r| Milli::from_base(r).0).ok_or_else(|| MetricError {
                    reason,
                    message: format!("missing request for {resource} in pod {}", pod.name),
                })
            })
            .collect::<Result<Vec<i64>, MetricError>>()?;
        if entries(&metrics) == 0 {
            return Err(MetricError {
                reason,
                message: "did not receive metrics for targeted pods (pods might be unready)".into(),
            });
        }
        let ratio_of = |metrics: &MetricMap| -> Result<(f64, i32), MetricError> {
            let (mut used, mut requested) = (0i64, 0i64);
            for (sample, request) in metrics.iter().zip(&requests) {
                if let Some(sample) = sample {
                    used = used.saturating_add(sample.value);
                    requested = requested.saturating_add(*request);
                }
            }
            if requested == 0 {
                return Err(MetricError { reason, message: "no metrics returned matched known pods".into() });
            }
            let utilization = (i128::from(used) * 100 / i128::from(requested)) as i32;
            Ok((f64::from(utilization) / f64::from(target), utilization))
        };
        let (ratio, utilization) = ratio_of(&metrics)?;

        let scale_up_with_unready = !grouping.unready.is_empty() && ratio > 1.0;
        if !scale_up_with_unready && grouping.missing.is_empty() {
            if self.tolerances.is_within(ratio) {
                return Ok((current, utilization));
            }
            return Ok((ceil_i32(ratio * grouping.ready_count as f64), utilization));
        }
        if ratio < 1.0 {
            // missing pods are assumed to use max(100%, target) of their request on scale-down
            let fallback = i64::from(target.max(100));
            for &pod in &grouping.missing {
                metrics[pod] = Some(filled(requests[pod].saturating_mul(fallback) / 100));
            }
        } else if ratio > 1.0 {
            for &pod in &grouping.missing {
                metrics[pod] = Some(filled(0));
            }
        }
        if scale_up_with_unready {
            for &pod in &grouping.unready {
                metrics[pod] = Some(filled(0));
            }
        }
        let (new_ratio, _) = ratio_of(&metrics)?;
        Ok((self.second_pass(ratio, new_ratio, entries(&metrics)), utilization))
    }

    /// §2.4: Resource metric with an AverageValue target, and Pods metrics.
    /// Returns the proposal and the first-pass average usage (milli).
    fn plain(
        &self,
        mut metrics: MetricMap,
        resource: &str,
        target: Milli,
        reason: &'static str,
    ) -> Result<(i32, i64), MetricError> {
        let current = self.input.current_replicas;
        let grouping = self.group_pods(&metrics, resource);
        for &pod in grouping.ignored.iter().chain(&grouping.unready) {
            metrics[pod] = None;
        }
        if entries(&metrics) == 0 {
            return Err(MetricError {
                reason,
                message: "did not receive metrics for targeted pods (pods might be unready)".into(),
            });
        }
        let ratio_of = |metrics: &MetricMap| -> (f64, i64) {
            let total = metrics.iter().flatten().fold(0i64, |sum, s| sum.saturating_add(s.value));
            let usage = total / entries(metrics) as i64;
            (usage as f64 / target.0 as f64, usage)
        };
        let (ratio, usage) = ratio_of(&metrics);
        let scale_up_with_unready = !grouping.unready.is_empty() && ratio > 1.0;
        if !scale_up_with_unready && grouping.missing.is_empty() {
            if self.tolerances.is_within(ratio) {
                return Ok((current, usage));
            }
            return Ok((ceil_i32(ratio * grouping.ready_count as f64), usage));
        }
        let fill = if ratio < 1.0 {
            Some(target.0)
        } else if ratio > 1.0 {
            Some(0)
        } else {
            None
        };
        if let Some(value) = fill {
            for &pod in &grouping.missing {
                metrics[pod] = Some(filled(value));
            }
        }
        if scale_up_with_unready {
            for &pod in &grouping.unready {
                metrics[pod] = Some(filled(0));
            }
        }
        let (new_ratio, _) = ratio_of(&metrics);
        Ok((self.second_pass(ratio, new_ratio, entries(&metrics)), usage))
    }

    /// The shared tail of §2.3/§2.4 after missing and unready pods were filled in.
    fn second_pass(&self, ratio: f64, new_ratio: f64, entries: usize) -> i32 {
        let current = self.input.current_replicas;
        if self.tolerances.is_within(new_ratio) || (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0)
        {
            return current;
        }
        let new_replicas = ceil_i32(new_ratio * entries as f64);
        if (new_ratio < 1.0 && new_replicas > current) || (new_ratio > 1.0 && new_replicas < current) {
            return current;
        }
        new_replicas
    }

    /// §2.5–2.7: Object and External metrics.
    fn object_or_external(
        &self,
        name: &str,
        target: &Target,
        reason: &'static str,
    ) -> Result<MetricProposal, MetricError> {
        let metric = self.input.metrics.iter().find(|m| m.name == name).ok_or_else(|| MetricError {
            reason,
            message: format!("unable to get metric {name:?}: not in the snapshot"),
        })?;
        let usage = Milli::from_base(metric.value).0;
        match *target {
            Target::Value { value } => {
                let ratio = usage as f64 / value.0 as f64;
                let replicas = self.usage_ratio_replica_count(ratio, reason)?;
                Ok(proposal(replicas, name, usage as f64 / 1000.0, "value"))
            }
            Target::AverageValue { average_value } => {
                let status = self.input.status_replicas;
                let mut replicas = status;
                let ratio = usage as f64 / (average_value.0 as f64 * f64::from(status));
                if !self.tolerances.is_within(ratio) {
                    replicas = ceil_i32(usage as f64 / average_value.0 as f64);
                }
                let average = (usage as f64 / f64::from(status)).ceil();
                Ok(proposal(replicas, name, average / 1000.0, "average-value"))
            }
            Target::Utilization { .. } => {
                Err(invalid_target(reason, "object and external metrics need a Value or AverageValue target"))
            }
        }
    }

    /// `getUsageRatioReplicaCount`: scale relative to ready pods, or from zero.
    fn usage_ratio_replica_count(&self, ratio: f64, reason: &'static str) -> Result<i32, MetricError> {
        let current = self.input.current_replicas;
        if current == 0 {
            return Ok(ceil_i32(ratio));
        }
        if self.tolerances.is_within(ratio) {
            return Ok(current);
        }
        if self.input.pods.is_empty() {
            return Err(MetricError {
                reason,
                message: "unable to calculate ready pods: no pods returned by selector while calculating replica count"
                    .into(),
            });
        }
        let ready = self.input.pods.iter().filter(|p| p.phase == Phase::Running && p.ready == Some(true)).count();
        Ok(ceil_i32(ratio * ready as f64))
    }
}

/// A value the calculator assumes for a pod without a usable sample.
fn filled(value: i64) -> Sample {
    Sample { value, timestamp_ms: 0, window_ms: 0 }
}

fn proposal(replicas: i32, name: &str, current: f64, measure: &'static str) -> MetricProposal {
    MetricProposal { replicas, name: name.to_string(), current, measure }
}

fn invalid_target(reason: &'static str, message: &str) -> MetricError {
    MetricError { reason, message: message.to_string() }
}
