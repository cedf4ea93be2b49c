//! Deliberately misbehaving policy for the host's sandbox tests: panics in evaluate (a Wasm trap)

use scalegate_policy_sdk::Guest;
use scalegate_policy_sdk::types::{Decision, PolicyError, PolicyInfo, Snapshot};

struct Policy;

impl Guest for Policy {
    fn metadata() -> PolicyInfo {
        PolicyInfo {
            name: "panic".into(),
            version: "0.1.0".into(),
            description: "panics in evaluate (a Wasm trap)".into(),
            params_schema: "{}".into(),
            reads: vec![],
        }
    }

    fn evaluate(snapshot: Snapshot) -> Result<Decision, PolicyError> {
        let values: Vec<u32> = Vec::new();
        // indexing out of bounds panics; the panic aborts as a trap
        let index = std::hint::black_box(snapshot.pods.len() + 3);
        Ok(Decision::replicas(values[index], "unreachable"))
    }
}

scalegate_policy_sdk::export_policy!(Policy);
