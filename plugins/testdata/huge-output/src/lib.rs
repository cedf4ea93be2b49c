//! Deliberately misbehaving policy for the host's sandbox tests: returns a 2 MiB state and a 1 MiB reason

use scalegate_policy_sdk::Guest;
use scalegate_policy_sdk::types::{Decision, PolicyError, PolicyInfo, Snapshot};

struct Policy;

impl Guest for Policy {
    fn metadata() -> PolicyInfo {
        PolicyInfo {
            name: "huge-output".into(),
            version: "0.1.0".into(),
            description: "returns a 2 MiB state and a 1 MiB reason".into(),
            params_schema: "{}".into(),
            reads: vec![],
        }
    }

    fn evaluate(snapshot: Snapshot) -> Result<Decision, PolicyError> {
        let mut decision = Decision::replicas(snapshot.workload.current_replicas, "x".repeat(1 << 20));
        decision.state = vec![7u8; 2 << 20];
        Ok(decision)
    }
}

scalegate_policy_sdk::export_policy!(Policy);
