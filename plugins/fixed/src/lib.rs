//! `fixed`: always recommends the replica count given in `params.replicas`.
//! The smallest useful policy: smoke tests, pinning a workload during an incident.

use scalegate_policy_sdk::Guest;
use scalegate_policy_sdk::types::{Decision, PolicyError, PolicyInfo, Snapshot};

struct Fixed;

impl Guest for Fixed {
    fn metadata() -> PolicyInfo {
        PolicyInfo {
            name: "fixed".into(),
            // SCALEGATE_POLICY_VERSION lets the build produce a second version of
            // this policy for the host's versioning and hot-reload tests.
            version: option_env!("SCALEGATE_POLICY_VERSION").unwrap_or(env!("CARGO_PKG_VERSION")).into(),
            description: "Recommends a fixed replica count (params.replicas)".into(),
            params_schema: r#"{"type":"object","properties":{"replicas":{"type":"integer","minimum":0}},"required":["replicas"],"additionalProperties":false}"#.into(),
            reads: vec![],
        }
    }

    fn evaluate(snapshot: Snapshot) -> Result<Decision, PolicyError> {
        let params: serde_json::Value = serde_json::from_str(&snapshot.params)
            .map_err(|e| PolicyError::InvalidParams(format!("params are not JSON: {e}")))?;
        let replicas =
            params
                .get("replicas")
                .and_then(serde_json::Value::as_u64)
                .and_then(|r| u32::try_from(r).ok())
                .ok_or_else(|| PolicyError::InvalidParams("params.replicas must be a non-negative integer".into()))?;
        Ok(Decision::replicas(replicas, format!("fixed at {replicas} replicas")))
    }
}

scalegate_policy_sdk::export_policy!(Fixed);
