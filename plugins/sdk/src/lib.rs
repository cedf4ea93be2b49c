//! Write scalegate scaling policies in Rust.
//!
//! A policy is a type implementing [`Policy`]: its parameters are a serde
//! struct that also derives [`JsonSchema`], so the JSON Schema the policy
//! publishes (`metadata().params-schema`) is generated from the same type
//! its parser uses and the two cannot drift. [`export_policy!`] makes it the
//! component's export.
//!
//! ```ignore
//! use scalegate_policy_sdk::prelude::*;
//!
//! #[derive(Deserialize, JsonSchema)]
//! #[serde(deny_unknown_fields)]
//! struct Params {
//!     /// Replicas to run.
//!     replicas: u32,
//! }
//!
//! struct Pin;
//! impl Policy for Pin {
//!     type Params = Params;
//!     const INFO: Info = Info::new("pin", "1.0.0", "Runs params.replicas replicas");
//!     fn decide(_snapshot: Snapshot, params: &Params) -> Result<Decision, PolicyError> {
//!         Ok(Decision::replicas(params.replicas, format!("pinned at {}", params.replicas)))
//!     }
//! }
//! scalegate_policy_sdk::export_policy!(Pin);
//! ```
//!
//! - [`params`]: parsing with the schema's bounds enforced, errors naming the field;
//! - [`state`]: typed state in and out of `decision.state`, size-checked;
//! - helpers on [`types::Snapshot`] (metric lookup with freshness, per-pod
//!   values joined to pods, ready pods, deletion costs, history) and builders
//!   on [`types::Decision`] (module `helpers`);
//! - [`testing`] (native builds only): run `evaluate` on the same snapshot
//!   JSON files `scalegate eval` reads, without Wasm.
//!
//! Build with `cargo build --target wasm32-wasip2 --release`; the contract
//! is `scalegate:policy@0.2.0` (the WIT in this crate's `wit/`).

/// The generated bindings; policies normally use the re-exports below.
pub mod bindings {
    wit_bindgen::generate!({
        world: "policy",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "export_policy",
        default_bindings_module: "scalegate_policy_sdk::bindings",
    });
}

mod helpers;
pub mod log;
pub mod params;
pub mod state;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use bindings::Guest;
pub use bindings::export_policy;
pub use bindings::scalegate::policy::resources;
pub use bindings::scalegate::policy::types;
pub use helpers::Unusable;
pub use schemars::{self, JsonSchema};

/// The contract version this SDK builds against.
pub const CONTRACT: &str = "scalegate:policy@0.2.0";

/// What `use scalegate_policy_sdk::prelude::*` brings: the trait, the
/// records, serde's derives and `JsonSchema`.
pub mod prelude {
    pub use crate::resources::{Compute, Container, ContainerRecommendation, ResourceRecommendation};
    pub use crate::types::{
        Decision, Forecast, Metric, Pod, PodDeletionCost, PodPhase, PodSample, PolicyError, ReportedMetric,
        ScaleAction, Signal, Snapshot,
    };
    pub use crate::{Info, JsonSchema, Policy, Unusable, log};
    pub use serde::{Deserialize, Serialize};
}

/// Who a policy is: `metadata()` without the schema, which is generated.
#[derive(Debug, Clone, Copy)]
pub struct Info {
    pub name: &'static str,
    /// A semantic version (`1.2.3`); the host refuses anything else.
    pub version: &'static str,
    pub description: &'static str,
    /// Optional inputs the policy asks for (`"containers"`, contract 0.2.0);
    /// everything else is always in the snapshot.
    pub reads: &'static [&'static str],
}

impl Info {
    pub const fn new(name: &'static str, version: &'static str, description: &'static str) -> Info {
        Info { name, version, description, reads: &[] }
    }

    pub const fn reads(self, reads: &'static [&'static str]) -> Info {
        Info { reads, ..self }
    }
}

/// A scaling policy: typed params in, a decision out.
pub trait Policy {
    /// The binding's `params`, parsed by [`params::parse`] (checked against
    /// the schema generated from this type, which `metadata()` publishes).
    /// Policies without params use [`params::None`].
    type Params: serde::de::DeserializeOwned + JsonSchema + 'static;

    const INFO: Info;

    /// Rules a schema cannot state (one field against another, say) and
    /// defaults that depend on other fields; runs once per params text.
    fn prepare(params: Self::Params) -> Result<Self::Params, types::PolicyError> {
        Ok(params)
    }

    /// Decides on `snapshot` (whose `params` text became `params`).
    fn decide(snapshot: types::Snapshot, params: &Self::Params) -> Result<types::Decision, types::PolicyError>;
}

impl<P: Policy> Guest for P {
    fn metadata() -> types::PolicyInfo {
        types::PolicyInfo {
            name: P::INFO.name.into(),
            version: P::INFO.version.into(),
            description: P::INFO.description.into(),
            params_schema: params::schema::<P::Params>(),
            reads: P::INFO.reads.iter().map(|r| r.to_string()).collect(),
        }
    }

    fn evaluate(snapshot: types::Snapshot) -> Result<types::Decision, types::PolicyError> {
        let params = prepared::<P>(&snapshot.params)?;
        P::decide(snapshot, &params)
    }
}

thread_local! {
    /// The last params text and what it became. A binding sends the same
    /// params on every call and a recycled instance keeps this, so the
    /// schema check and parse run once per params; a fresh instance simply
    /// parses again, so decisions never depend on it.
    static LAST_PARAMS: std::cell::RefCell<Option<(String, std::rc::Rc<dyn std::any::Any>)>> =
        const { std::cell::RefCell::new(None) };
}

fn prepared<P: Policy>(text: &str) -> Result<std::rc::Rc<P::Params>, types::PolicyError> {
    LAST_PARAMS.with(|cell| {
        if let Some((cached, params)) = &*cell.borrow()
            && cached == text
            && let Ok(params) = params.clone().downcast::<P::Params>()
        {
            return Ok(params);
        }
        let params = std::rc::Rc::new(P::prepare(params::parse::<P::Params>(text)?)?);
        *cell.borrow_mut() = Some((text.to_string(), params.clone()));
        Ok(params)
    })
}
