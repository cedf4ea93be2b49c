//! Deliberately misbehaving policy for the host's sandbox tests: metadata breaks the naming rules

use scalegate_policy_sdk::Guest;
use scalegate_policy_sdk::types::{Decision, PolicyError, PolicyInfo, Snapshot};

struct Policy;

impl Guest for Policy {
    fn metadata() -> PolicyInfo {
        PolicyInfo {
            name: "Not A Valid Name!".into(),
            version: "banana".into(),
            description: "metadata breaks the naming rules".into(),
            params_schema: "{}".into(),
            reads: vec![],
        }
    }

    fn evaluate(snapshot: Snapshot) -> Result<Decision, PolicyError> {
        Ok(Decision::no_opinion(format!("{}", snapshot.now_ms)))
    }
}

scalegate_policy_sdk::export_policy!(Policy);
