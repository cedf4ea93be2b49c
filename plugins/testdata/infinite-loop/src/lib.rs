//! Deliberately misbehaving policy for the host's sandbox tests: spins forever in evaluate

use scalegate_policy_sdk::Guest;
use scalegate_policy_sdk::types::{Decision, PolicyError, PolicyInfo, Snapshot};

struct Policy;

impl Guest for Policy {
    fn metadata() -> PolicyInfo {
        PolicyInfo {
            name: "infinite-loop".into(),
            version: "0.1.0".into(),
            description: "spins forever in evaluate".into(),
            params_schema: "{}".into(),
            reads: vec![],
        }
    }

    fn evaluate(snapshot: Snapshot) -> Result<Decision, PolicyError> {
        let mut n = snapshot.now_ms;
        loop {
            n = std::hint::black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

scalegate_policy_sdk::export_policy!(Policy);
