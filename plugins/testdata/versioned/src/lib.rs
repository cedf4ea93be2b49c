//! Test fixture for per-workload rollback: version 0.1.0 recommends
//! `params.replicas`; any other version (built with
//! SCALEGATE_POLICY_VERSION=0.2.0) panics on every evaluation after passing
//! the store's smoke evaluation (which has no `replicas` param).

use scalegate_policy_sdk::Guest;
use scalegate_policy_sdk::types::{Decision, PolicyError, PolicyInfo, Snapshot};

const VERSION: &str = match option_env!("SCALEGATE_POLICY_VERSION") {
    Some(version) => version,
    None => "0.1.0",
};

struct Policy;

impl Guest for Policy {
    fn metadata() -> PolicyInfo {
        PolicyInfo {
            name: "versioned".into(),
            version: VERSION.into(),
            description: "0.1.0 works, later versions fault".into(),
            params_schema: "{}".into(),
            reads: vec![],
        }
    }

    fn evaluate(snapshot: Snapshot) -> Result<Decision, PolicyError> {
        let Some(replicas) = snapshot.params.split("\"replicas\":").nth(1).and_then(|rest| {
            rest.trim_start().split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse::<u32>().ok())
        }) else {
            return Err(PolicyError::InvalidParams("params.replicas is required".into()));
        };
        if VERSION != "0.1.0" {
            panic!("version {VERSION} is broken on purpose");
        }
        Ok(Decision::replicas(replicas, format!("versioned {VERSION}: {replicas}")))
    }
}

scalegate_policy_sdk::export_policy!(Policy);
