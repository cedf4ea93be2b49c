//! The `hpa` policy's parameters: the `spec` of an `autoscaling/v2`
//! HorizontalPodAutoscaler (camelCase, so a manifest's `metrics` and
//! `behavior` can be pasted as they are) plus the controller's flags.

use crate::quantity::{Milli, deserialize_fraction, deserialize_milli};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HpaParams {
    /// HPA `minReplicas`; the workload's `min_replicas` when absent.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(range(min = 0)))]
    pub min_replicas: Option<i32>,
    /// HPA `maxReplicas`; the workload's `max_replicas` when absent.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub max_replicas: Option<i32>,
    /// Defaults to `[Resource cpu, Utilization 80]` like the API server.
    #[serde(default)]
    pub metrics: Vec<MetricSpec>,
    /// `None` selects the legacy normalization (§4 of the reference).
    #[serde(default)]
    pub behavior: Option<Behavior>,
    /// `--horizontal-pod-autoscaler-tolerance` (default 0.1).
    #[serde(default = "default_tolerance")]
    #[cfg_attr(feature = "schema", schemars(range(min = 0), extend("exclusiveMaximum" = 1)))]
    pub tolerance: f64,
    /// `--horizontal-pod-autoscaler-downscale-stabilization` in seconds (default 300).
    #[serde(default = "default_downscale_stabilization")]
    #[cfg_attr(feature = "schema", schemars(range(min = 0)))]
    pub downscale_stabilization_seconds: i64,
    /// `--horizontal-pod-autoscaler-cpu-initialization-period` in seconds (default 300).
    #[serde(default = "default_cpu_initialization")]
    #[cfg_attr(feature = "schema", schemars(range(min = 0)))]
    pub cpu_initialization_period_seconds: i64,
    /// `--horizontal-pod-autoscaler-initial-readiness-delay` in seconds (default 30).
    #[serde(default = "default_readiness_delay")]
    #[cfg_attr(feature = "schema", schemars(range(min = 0)))]
    pub initial_readiness_delay_seconds: i64,
}

fn default_tolerance() -> f64 {
    0.1
}
fn default_downscale_stabilization() -> i64 {
    300
}
fn default_cpu_initialization() -> i64 {
    300
}
fn default_readiness_delay() -> i64 {
    30
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", deny_unknown_fields)]
pub enum MetricSpec {
    Resource {
        resource: ResourceSource,
    },
    #[serde(rename_all = "camelCase")]
    ContainerResource {
        container_resource: ContainerResourceSource,
    },
    Pods {
        pods: MetricSource,
    },
    Object {
        object: MetricSource,
    },
    External {
        external: MetricSource,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceSource {
    /// Resource name, e.g. "cpu" or "memory".
    pub name: String,
    pub target: Target,
    /// scalegate extension: snapshot metric holding the per-pod usage
    /// (default: the resource name).
    #[serde(default)]
    pub snapshot_metric: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerResourceSource {
    pub name: String,
    pub container: String,
    pub target: Target,
    /// scalegate extension: snapshot metric holding the container's per-pod
    /// usage (default: "<container>/<name>").
    #[serde(default)]
    pub snapshot_metric: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricSource {
    pub metric: MetricIdentifier,
    pub target: Target,
    /// Accepted for compatibility with HPA manifests; the host resolves the object.
    #[serde(default)]
    pub described_object: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricIdentifier {
    /// Snapshot metric name.
    pub name: String,
    /// Accepted for compatibility with HPA manifests; the host applies selectors.
    #[serde(default)]
    pub selector: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", deny_unknown_fields)]
pub enum Target {
    #[serde(rename_all = "camelCase")]
    Utilization {
        #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
        average_utilization: i32,
    },
    #[serde(rename_all = "camelCase")]
    AverageValue {
        #[serde(deserialize_with = "deserialize_milli")]
        #[cfg_attr(feature = "schema", schemars(with = "crate::quantity::Quantity"))]
        average_value: Milli,
    },
    Value {
        #[serde(deserialize_with = "deserialize_milli")]
        #[cfg_attr(feature = "schema", schemars(with = "crate::quantity::Quantity"))]
        value: Milli,
    },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Behavior {
    #[serde(default)]
    pub scale_up: Option<ScalingRulesSpec>,
    #[serde(default)]
    pub scale_down: Option<ScalingRulesSpec>,
}

/// `HPAScalingRules` as written by the user: every field optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingRulesSpec {
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(range(min = 0, max = 3600)))]
    pub stabilization_window_seconds: Option<i32>,
    #[serde(default)]
    pub select_policy: Option<SelectPolicy>,
    #[serde(default)]
    pub policies: Option<Vec<ScalingPolicy>>,
    #[serde(default, deserialize_with = "deserialize_fraction")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<crate::quantity::Quantity>"))]
    pub tolerance: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum SelectPolicy {
    Max,
    Min,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum PolicyType {
    Pods,
    Percent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingPolicy {
    #[serde(rename = "type")]
    pub kind: PolicyType,
    #[cfg_attr(feature = "schema", schemars(range(min = 1)))]
    pub value: i32,
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 1800)))]
    pub period_seconds: i32,
}

/// Rules after API-server defaulting (`GenerateHPAScale{Up,Down}Rules`) and the
/// controller's `maybeInitScaleDownStabilizationWindow`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingRules {
    pub stabilization_window_seconds: i64,
    pub select_policy: SelectPolicy,
    pub policies: Vec<ScalingPolicy>,
    pub tolerance: Option<f64>,
}

impl ScalingRules {
    pub fn scale_up(spec: Option<&ScalingRulesSpec>) -> ScalingRules {
        let defaults = ScalingRules {
            stabilization_window_seconds: 0,
            select_policy: SelectPolicy::Max,
            policies: vec![
                ScalingPolicy { kind: PolicyType::Pods, value: 4, period_seconds: 15 },
                ScalingPolicy { kind: PolicyType::Percent, value: 100, period_seconds: 15 },
            ],
            tolerance: None,
        };
        defaults.overlay(spec)
    }

    pub fn scale_down(spec: Option<&ScalingRulesSpec>, controller_window_seconds: i64) -> ScalingRules {
        let defaults = ScalingRules {
            stabilization_window_seconds: controller_window_seconds,
            select_policy: SelectPolicy::Max,
            policies: vec![ScalingPolicy { kind: PolicyType::Percent, value: 100, period_seconds: 15 }],
            tolerance: None,
        };
        defaults.overlay(spec)
    }

    /// Copies every field the user set over the defaults; a user `policies`
    /// list replaces the default list as a whole.
    fn overlay(mut self, spec: Option<&ScalingRulesSpec>) -> ScalingRules {
        if let Some(spec) = spec {
            if let Some(window) = spec.stabilization_window_seconds {
                self.stabilization_window_seconds = i64::from(window);
            }
            if let Some(select) = spec.select_policy {
                self.select_policy = select;
            }
            if let Some(policies) = &spec.policies {
                self.policies = policies.clone();
            }
            if spec.tolerance.is_some() {
                self.tolerance = spec.tolerance;
            }
        }
        self
    }
}

impl HpaParams {
    pub fn parse(json: &str) -> Result<HpaParams, String> {
        let json = if json.trim().is_empty() { "{}" } else { json };
        let params: HpaParams = serde_json::from_str(json).map_err(|e| e.to_string())?;
        params.complete()
    }

    /// The API server's defaulting (`[Resource cpu, Utilization 80]` when
    /// `metrics` is empty) and the rules a schema cannot state (min <= max,
    /// positive quantity targets).
    pub fn complete(mut self) -> Result<HpaParams, String> {
        if self.metrics.is_empty() {
            self.metrics.push(MetricSpec::Resource {
                resource: ResourceSource {
                    name: "cpu".into(),
                    target: Target::Utilization { average_utilization: 80 },
                    snapshot_metric: None,
                },
            });
        }
        self.validate()?;
        Ok(self)
    }

    fn validate(&self) -> Result<(), String> {
        if !(0.0..1.0).contains(&self.tolerance) && self.tolerance != 0.0 {
            return Err(format!("tolerance must be in [0, 1), got {}", self.tolerance));
        }
        if let (Some(min), Some(max)) = (self.min_replicas, self.max_replicas)
            && min > max
        {
            return Err(format!("minReplicas ({min}) is greater than maxReplicas ({max})"));
        }
        for (index, metric) in self.metrics.iter().enumerate() {
            let target = match metric {
                MetricSpec::Resource { resource } => &resource.target,
                MetricSpec::ContainerResource { container_resource } => &container_resource.target,
                MetricSpec::Pods { pods } => &pods.target,
                MetricSpec::Object { object } => &object.target,
                MetricSpec::External { external } => &external.target,
            };
            let positive = match target {
                Target::Utilization { average_utilization } => *average_utilization > 0,
                Target::AverageValue { average_value } => average_value.0 > 0,
                Target::Value { value } => value.0 > 0,
            };
            if !positive {
                return Err(format!("metrics[{index}].target must be positive"));
            }
        }
        if let Some(behavior) = &self.behavior {
            for (side, rules) in [("scaleUp", &behavior.scale_up), ("scaleDown", &behavior.scale_down)] {
                for (index, policy) in rules.iter().flat_map(|r| r.policies.iter().flatten()).enumerate() {
                    if policy.value <= 0 || policy.period_seconds <= 0 || policy.period_seconds > 1800 {
                        return Err(format!(
                            "behavior.{side}.policies[{index}]: value must be > 0 and periodSeconds in 1..=1800"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpa_manifest_fragment_parses() {
        let params = HpaParams::parse(
            r#"{"minReplicas":2,"maxReplicas":10,
                "metrics":[{"type":"Resource","resource":{"name":"cpu","target":{"type":"Utilization","averageUtilization":60}}},
                           {"type":"External","external":{"metric":{"name":"queue","selector":{"matchLabels":{"q":"a"}}},"target":{"type":"AverageValue","averageValue":"30"}}}],
                "behavior":{"scaleDown":{"stabilizationWindowSeconds":60,"policies":[{"type":"Pods","value":1,"periodSeconds":30}]},
                            "scaleUp":{"selectPolicy":"Min","tolerance":"0.05"}}}"#,
        )
        .unwrap();
        assert_eq!(params.metrics.len(), 2);
        let behavior = params.behavior.unwrap();
        let up = ScalingRules::scale_up(behavior.scale_up.as_ref());
        assert_eq!(up.select_policy, SelectPolicy::Min);
        assert_eq!(up.policies.len(), 2, "defaults kept when only selectPolicy is set");
        assert_eq!(up.tolerance, Some(0.05));
        let down = ScalingRules::scale_down(behavior.scale_down.as_ref(), 300);
        assert_eq!(down.stabilization_window_seconds, 60);
        assert_eq!(down.policies, vec![ScalingPolicy { kind: PolicyType::Pods, value: 1, period_seconds: 30 }]);
    }

    #[test]
    fn empty_params_default_to_cpu_80() {
        let params = HpaParams::parse("{}").unwrap();
        assert!(matches!(
            &params.metrics[0],
            MetricSpec::Resource { resource } if resource.name == "cpu"
                && matches!(resource.target, Target::Utilization { average_utilization: 80 })
        ));
        assert!(params.behavior.is_none());
        assert_eq!(ScalingRules::scale_down(None, 300).stabilization_window_seconds, 300);
    }

    #[test]
    fn bad_params_are_named() {
        let err = HpaParams::parse(r#"{"metrics":[{"type":"Resource","resource":{"name":"cpu","target":{"type":"Utilization","averageUtilization":0}}}]}"#).unwrap_err();
        assert!(err.contains("metrics[0].target"), "{err}");
        let err = HpaParams::parse(r#"{"minReplica":2}"#).unwrap_err();
        assert!(err.contains("unknown field `minReplica`"), "{err}");
        let err =
            HpaParams::parse(r#"{"behavior":{"scaleUp":{"policies":[{"type":"Pods","value":0,"periodSeconds":15}]}}}"#)
                .unwrap_err();
        assert!(err.contains("behavior.scaleUp.policies[0]"), "{err}");
    }
}
