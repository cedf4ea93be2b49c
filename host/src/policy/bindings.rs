//! Generated bindings of every contract version the host serves, and the
//! conversions between them and the host's own types (one internal
//! snapshot and decision, `crate::snapshot`). Nothing outside this module
//! sees a generated type.
//!
//! Served: `scalegate:policy@0.1.0` (`wit/0.1.0/`, frozen) and `@0.2.0`
//! (`wit/`). A component's version is read from the `scalegate:policy`
//! interfaces it imports, before it is linked, so a component of another
//! version is refused with the versions this host serves. Records common to
//! both versions convert through one macro body ([`common!`]); each version
//! adds what is its own (0.2.0: containers in, resource recommendations out).

use super::sandbox::{HostState, LogLevel};
use super::{Declined, Error, PolicyInfo};
use crate::snapshot as domain;
use wasmtime::Store;
use wasmtime::component::{Component, InstancePre, Linker};

mod v0_1 {
    wasmtime::component::bindgen!({
        world: "policy",
        path: "../wit/0.1.0",
        // calls run on a fiber so the host can bound them in wall-clock time
        exports: { default: async },
    });
}

mod v0_2 {
    wasmtime::component::bindgen!({
        world: "policy",
        path: "../wit",
        exports: { default: async },
    });
}

/// A contract version the host serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Contract {
    V0_1,
    V0_2,
}

impl Contract {
    /// Every version served, oldest first.
    pub const SERVED: [Contract; 2] = [Contract::V0_1, Contract::V0_2];
    /// The newest: what the bundled policies and the SDKs target.
    pub const NEWEST: Contract = Contract::V0_2;

    pub fn version(self) -> &'static str {
        match self {
            Contract::V0_1 => "0.1.0",
            Contract::V0_2 => "0.2.0",
        }
    }

    /// `scalegate:policy/policy@<version>`.
    pub fn world(self) -> String {
        format!("scalegate:policy/policy@{}", self.version())
    }

    /// "0.1.0, 0.2.0".
    pub fn served() -> String {
        Contract::SERVED.map(Contract::version).join(", ")
    }

    /// The version a compiled component targets, from the
    /// `scalegate:policy/…@version` interfaces it imports.
    pub fn of(component: &Component, engine: &wasmtime::Engine) -> Result<Contract, Error> {
        let ty = component.component_type();
        let mut versions: Vec<&str> = ty
            .imports(engine)
            .filter_map(|(name, _)| name.strip_prefix("scalegate:policy/"))
            .filter_map(|interface| interface.split_once('@').map(|(_, version)| version))
            .collect();
        versions.sort_unstable();
        versions.dedup();
        match versions[..] {
            [version] => Contract::SERVED
                .into_iter()
                .find(|c| c.version() == version)
                .ok_or_else(|| Error::Incompatible(format!("it targets scalegate:policy@{version}"))),
            [] => {
                let exports: Vec<String> = ty.exports(engine).map(|(name, _)| name.to_string()).collect();
                Err(Error::Incompatible(format!(
                    "it imports no scalegate:policy interface (it exports: {})",
                    if exports.is_empty() { "nothing".into() } else { exports.join(", ") }
                )))
            }
            _ => Err(Error::Incompatible(format!(
                "it imports scalegate:policy at several versions ({})",
                versions.join(", ")
            ))),
        }
    }
}

impl std::fmt::Display for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.version())
    }
}

/// Adds the `host` and `types` interfaces of every served version to the linker.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime::component::HasSelf;
    v0_1::Policy::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)?;
    v0_2::Policy::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)
}

/// A component linked and type-checked against its version's world.
pub enum PolicyPre {
    V0_1(v0_1::PolicyPre<HostState>),
    V0_2(v0_2::PolicyPre<HostState>),
}

/// An instance of a policy.
pub enum PolicyInstance {
    V0_1(v0_1::Policy),
    V0_2(v0_2::Policy),
}

impl PolicyPre {
    pub fn new(contract: Contract, pre: InstancePre<HostState>) -> Result<PolicyPre, Error> {
        let incompatible =
            |e: wasmtime::Error| Error::Incompatible(format!("not the {} world: {e:#}", contract.world()));
        Ok(match contract {
            Contract::V0_1 => PolicyPre::V0_1(v0_1::PolicyPre::new(pre).map_err(incompatible)?),
            Contract::V0_2 => PolicyPre::V0_2(v0_2::PolicyPre::new(pre).map_err(incompatible)?),
        })
    }

    pub fn contract(&self) -> Contract {
        match self {
            PolicyPre::V0_1(_) => Contract::V0_1,
            PolicyPre::V0_2(_) => Contract::V0_2,
        }
    }

    pub async fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<PolicyInstance> {
        Ok(match self {
            PolicyPre::V0_1(pre) => PolicyInstance::V0_1(pre.instantiate_async(store).await?),
            PolicyPre::V0_2(pre) => PolicyInstance::V0_2(pre.instantiate_async(store).await?),
        })
    }
}

/// What to hand a policy beyond the snapshot every version carries.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reads {
    /// `metadata().reads` lists "containers" (0.2.0 and later).
    pub containers: bool,
}

impl Reads {
    pub fn of(info: &PolicyInfo) -> Reads {
        Reads { containers: info.reads.iter().any(|r| r == "containers") }
    }
}

impl PolicyInstance {
    pub async fn metadata(&self, store: &mut Store<HostState>) -> wasmtime::Result<PolicyInfo> {
        Ok(match self {
            PolicyInstance::V0_1(p) => v0_1_convert::info(p.call_metadata(store).await?),
            PolicyInstance::V0_2(p) => v0_2_convert::info(p.call_metadata(store).await?),
        })
    }

    /// Converts the snapshot to this instance's version, calls `evaluate`
    /// and converts the answer back.
    pub async fn evaluate(
        &self,
        store: &mut Store<HostState>,
        snapshot: &domain::Snapshot,
        reads: Reads,
    ) -> wasmtime::Result<Result<domain::Decision, Declined>> {
        Ok(match self {
            PolicyInstance::V0_1(p) => {
                let input = v0_1_convert::snapshot(snapshot);
                p.call_evaluate(store, &input).await?.map(v0_1_convert::decision).map_err(v0_1_convert::declined)
            }
            PolicyInstance::V0_2(p) => {
                let input = v0_2_convert::snapshot(snapshot, reads);
                p.call_evaluate(store, &input).await?.map(v0_2_convert::decision).map_err(v0_2_convert::declined)
            }
        })
    }
}

/// The conversions of the records every version shares, written once and
/// expanded in each version's module (where `wit` and `host` name that
/// version's generated types).
macro_rules! common {
    () => {
        impl host::Host for HostState {
            fn log(&mut self, level: host::LogLevel, message: String) {
                let level = match level {
                    host::LogLevel::Trace => LogLevel::Trace,
                    host::LogLevel::Debug => LogLevel::Debug,
                    host::LogLevel::Info => LogLevel::Info,
                    host::LogLevel::Warn => LogLevel::Warn,
                    host::LogLevel::Error => LogLevel::Error,
                };
                self.push_log(level, message);
            }
        }

        impl wit::Host for HostState {}

        scalegate_snapshot::wit_conversions!();

        pub(super) fn declined(e: wit::PolicyError) -> Declined {
            match e {
                wit::PolicyError::InvalidParams(m) => Declined::InvalidParams(m),
                wit::PolicyError::MissingInput(m) => Declined::MissingInput(m),
                wit::PolicyError::Internal(m) => Declined::Internal(m),
            }
        }

        pub(super) fn info(i: wit::PolicyInfo) -> PolicyInfo {
            PolicyInfo {
                name: i.name,
                version: i.version,
                description: i.description,
                params_schema: i.params_schema,
                reads: i.reads,
            }
        }
    };
}

mod v0_1_convert {
    use super::v0_1::scalegate::policy::{host, types as wit};
    use super::*;
    common!();

    pub(super) fn snapshot(s: &domain::Snapshot) -> wit::Snapshot {
        scalegate_snapshot::snapshot_to_wit!(s;)
    }

    pub(super) fn decision(d: wit::Decision) -> domain::Decision {
        scalegate_snapshot::decision_from_wit!(d; resources: vec![])
    }
}

mod v0_2_convert {
    use super::v0_2::scalegate::policy::resources as res;
    use super::v0_2::scalegate::policy::{host, types as wit};
    use super::*;
    common!();

    impl res::Host for HostState {}

    pub(super) fn snapshot(s: &domain::Snapshot, reads: Reads) -> wit::Snapshot {
        scalegate_snapshot::snapshot_to_wit!(s; containers: if reads.containers { containers(&s.pods) } else { vec![] })
    }

    scalegate_snapshot::wit_resource_conversions!();

    pub(super) fn decision(d: wit::Decision) -> domain::Decision {
        scalegate_snapshot::decision_from_wit!(d; resources: recommendations(d.resources))
    }
}

#[cfg(test)]
mod tests {
    use super::{Contract, Reads, v0_2_convert};
    use crate::snapshot::{Compute, Container, Pod, Snapshot};

    #[test]
    fn containers_cross_only_to_policies_that_read_them() {
        let mut snapshot: Snapshot = serde_json::from_str(
            r#"{"now_ms": 1, "workload": {"name": "web", "current_replicas": 2, "max_replicas": 4}}"#,
        )
        .unwrap();
        for i in 0..2 {
            let mut pod = Pod::running(format!("web-{i}"), 0, 0, 0.5, 1e9);
            pod.containers = vec![Container {
                name: "app".into(),
                requests: Compute { cpu: Some(0.5), memory: Some(1e9) },
                limits: Compute::default(),
                restart_count: i,
                last_termination: None,
                usage: None,
                restart_on_resize: vec![],
            }];
            snapshot.pods.push(pod);
        }
        assert!(v0_2_convert::snapshot(&snapshot, Reads::default()).containers.is_empty());
        let given = v0_2_convert::snapshot(&snapshot, Reads { containers: true }).containers;
        assert_eq!(given.len(), 2);
        assert_eq!((given[1].pod, given[1].restart_count, given[1].requests.cpu), (1, 1, Some(0.5)));
    }

    #[test]
    fn the_served_versions_are_the_ones_telemetry_reports() {
        assert_eq!(Contract::SERVED.map(Contract::version).join(","), crate::telemetry::CONTRACTS);
        assert_eq!(Contract::served(), "0.1.0, 0.2.0");
        assert_eq!(Contract::NEWEST, *Contract::SERVED.last().unwrap());
    }
}
