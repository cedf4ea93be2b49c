//! Snapshots and decisions: the host's types for what flows into and out of
//! a policy are the JSON model of `scalegate-snapshot` (`plugins/snapshot`),
//! shared with the Rust SDK's native test harness so both read the same
//! files. Only the `policy::bindings` module converts to and from generated
//! types; it also turns sample pod names into indexes into `pods` (the WIT
//! form).
//!
//! [`assemble`] is where a snapshot is built from what the cluster and the
//! signal sources show ([`Observation`]) and the binding's past.

mod assemble;

pub use assemble::{Observation, Past, Subject, assemble};
pub use scalegate_snapshot::*;
