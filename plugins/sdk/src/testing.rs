//! Native tests of a policy: run its `evaluate` on the snapshot JSON files
//! `scalegate eval` and `scalegate test` read (`docs/SNAPSHOT.md`), without
//! Wasm, in a plain `cargo test`.
//!
//! ```ignore
//! #[test]
//! fn scales_out() {
//!     let decision = scalegate_policy_sdk::testing::evaluate_file::<MyPolicy>("cases/busy.json").unwrap();
//!     assert_eq!(decision.desired_replicas, Some(4));
//! }
//! ```
//!
//! The conversion from JSON is the host's own (`scalegate-snapshot`), so a
//! policy sees here what it sees in the daemon: samples by pod index,
//! `params` as text, state bytes. The one difference: `containers` are always
//! present (the host hands them only to policies whose `reads` list them).
//! The decision comes back in the JSON model, as `scalegate eval` prints it.

use crate::Guest;
use crate::bindings::scalegate::policy::resources as res;
use crate::bindings::scalegate::policy::types as wit;
use scalegate_snapshot as domain;
use std::path::Path;

pub use scalegate_snapshot::{Decision, Snapshot};

scalegate_snapshot::wit_conversions!();
scalegate_snapshot::wit_resource_conversions!();

/// The record `evaluate` receives for a snapshot in its JSON form.
pub fn to_wit(s: &domain::Snapshot) -> wit::Snapshot {
    scalegate_snapshot::snapshot_to_wit!(s; containers: containers(&s.pods))
}

/// A decision in its JSON form.
pub fn from_wit(d: wit::Decision) -> domain::Decision {
    scalegate_snapshot::decision_from_wit!(d; resources: recommendations(d.resources))
}

/// Parses snapshot JSON; the error names what is wrong (unknown fields included).
pub fn snapshot(json: &str) -> Result<domain::Snapshot, String> {
    serde_json::from_str(json).map_err(|e| format!("snapshot JSON: {e}"))
}

/// Reads a snapshot file; panics naming the file when it cannot (a test helper).
pub fn snapshot_file(path: impl AsRef<Path>) -> domain::Snapshot {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    snapshot(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `P::evaluate` on `snapshot`, natively.
pub fn evaluate<P: Guest>(snapshot: &domain::Snapshot) -> Result<domain::Decision, wit::PolicyError> {
    P::evaluate(to_wit(snapshot)).map(from_wit)
}

/// Runs `P::evaluate` on the snapshot file at `path`.
pub fn evaluate_file<P: Guest>(path: impl AsRef<Path>) -> Result<domain::Decision, wit::PolicyError> {
    evaluate::<P>(&snapshot_file(path))
}

/// Runs `P::evaluate` `steps` times, each time on `next(step)` with the
/// previous decision's state fed back, as the daemon does; returns the decisions.
pub fn evaluate_sequence<P: Guest>(
    steps: usize,
    mut next: impl FnMut(usize) -> domain::Snapshot,
) -> Vec<Result<domain::Decision, wit::PolicyError>> {
    let mut state = Vec::new();
    (0..steps)
        .map(|step| {
            let mut snapshot = next(step);
            snapshot.state = state.clone();
            let result = evaluate::<P>(&snapshot);
            if let Ok(decision) = &result {
                state = decision.state.clone();
            }
            result
        })
        .collect()
}

/// The params schema `P` publishes, parsed (for schema tests).
pub fn params_schema<P: Guest>() -> serde_json::Value {
    serde_json::from_str(&P::metadata().params_schema).expect("the params schema is JSON")
}
