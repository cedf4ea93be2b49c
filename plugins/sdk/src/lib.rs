//! Helpers for writing scalegate policies in Rust.
//!
//! The crate generates the guest bindings of the contract in `wit/` (0.2.0) once, so a
//! policy crate only implements [`Guest`] and calls [`export_policy!`]:
//!
//! ```ignore
//! use scalegate_policy_sdk::{Guest, types::*};
//! struct MyPolicy;
//! impl Guest for MyPolicy {
//!     fn metadata() -> PolicyInfo { /* ... */ }
//!     fn evaluate(snapshot: Snapshot) -> Result<Decision, PolicyError> { /* ... */ }
//! }
//! scalegate_policy_sdk::export_policy!(MyPolicy);
//! ```
//!
//! Build with `cargo build --target wasm32-wasip2 --profile release-wasm`.

/// The generated bindings; policies normally use the re-exports below.
pub mod bindings {
    wit_bindgen::generate!({
        world: "policy",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_policy",
        default_bindings_module: "scalegate_policy_sdk::bindings",
    });
}

pub use bindings::Guest;
pub use bindings::export_policy;
pub use bindings::scalegate::policy::resources;
pub use bindings::scalegate::policy::types;

/// Logging through the host's `log` import (lines are capped by the host).
pub mod log {
    use super::bindings::scalegate::policy::host::{LogLevel, log};

    pub fn debug(message: &str) {
        log(LogLevel::Debug, message);
    }
    pub fn info(message: &str) {
        log(LogLevel::Info, message);
    }
    pub fn warn(message: &str) {
        log(LogLevel::Warn, message);
    }
}

impl types::Decision {
    /// A decision with a desired replica count and a reason, nothing else.
    pub fn replicas(desired: u32, reason: impl Into<String>) -> Self {
        Self {
            desired_replicas: Some(desired),
            reason: reason.into(),
            state: Vec::new(),
            deletion_costs: Vec::new(),
            metrics: Vec::new(),
            resources: Vec::new(),
        }
    }

    /// "No opinion": the host keeps the current replica count.
    pub fn no_opinion(reason: impl Into<String>) -> Self {
        Self { desired_replicas: None, ..Self::replicas(0, reason) }
    }
}

impl types::Snapshot {
    /// The metric with this name, if the host gathered it.
    pub fn metric(&self, name: &str) -> Option<&types::Metric> {
        self.metrics.iter().find(|m| m.name == name)
    }
}
