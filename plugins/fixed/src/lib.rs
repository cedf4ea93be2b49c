//! `fixed`: always recommends the replica count given in `params.replicas`.
//! The smallest useful policy: smoke tests, pinning a workload during an incident.

use scalegate_policy_sdk::prelude::*;

/// `{"replicas": 4}`
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Params {
    /// The replica count to recommend.
    replicas: u32,
}

struct Fixed;

impl Policy for Fixed {
    type Params = Params;
    const INFO: Info = Info::new(
        "fixed",
        // SCALEGATE_POLICY_VERSION lets the build produce a second version of
        // this policy for the host's versioning and hot-reload tests.
        match option_env!("SCALEGATE_POLICY_VERSION") {
            Some(version) => version,
            None => env!("CARGO_PKG_VERSION"),
        },
        "Recommends a fixed replica count (params.replicas)",
    );

    fn decide(_snapshot: Snapshot, params: &Params) -> Result<Decision, PolicyError> {
        Ok(Decision::replicas(params.replicas, format!("fixed at {} replicas", params.replicas)))
    }
}

scalegate_policy_sdk::export_policy!(Fixed);

#[cfg(test)]
mod tests {
    use super::*;
    use scalegate_policy_sdk::testing;

    #[test]
    fn pins_the_example_at_four() {
        let decision = testing::evaluate_file::<Fixed>("../../examples/snapshots/pin-to-4.json").unwrap();
        assert_eq!(decision.desired_replicas, Some(4));
        assert_eq!(decision.reason, "fixed at 4 replicas");
    }

    #[test]
    fn a_negative_count_names_the_field() {
        let mut snapshot = testing::snapshot_file("../../examples/snapshots/pin-to-4.json");
        snapshot.params = serde_json::json!({"replicas": -1});
        let error = testing::evaluate::<Fixed>(&snapshot).unwrap_err();
        assert!(
            matches!(&error, PolicyError::InvalidParams(m) if m == "params.replicas: must be >= 0, got -1"),
            "{error:?}"
        );
    }
}
