//! Deliberately misbehaving policy for the host's sandbox tests: allocates until the host stops it

use scalegate_policy_sdk::Guest;
use scalegate_policy_sdk::types::{Decision, PolicyError, PolicyInfo, Snapshot};

struct Policy;

impl Guest for Policy {
    fn metadata() -> PolicyInfo {
        PolicyInfo {
            name: "memory-bomb".into(),
            version: "0.1.0".into(),
            description: "allocates until the host stops it".into(),
            params_schema: "{}".into(),
            reads: vec![],
        }
    }

    fn evaluate(snapshot: Snapshot) -> Result<Decision, PolicyError> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // touch every page so the memory is really used
            hoard.push(vec![snapshot.now_ms as u8 | 1; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }
}

scalegate_policy_sdk::export_policy!(Policy);
