//! The engine, the linker and loading: bytes in, validated [`LoadedPolicy`] out.

use super::bindings::{self, Contract, PolicyPre};
use super::cache::ArtifactCache;
use super::compiler;
use super::driver::Driver;
use super::loaded::LoadedPolicy;
use super::sandbox::{HostState, PinnedClocksView};
use super::{Error, PolicyInfo, RuntimeConfig, clip};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Instant;
use wasmtime::Engine;
use wasmtime::component::Linker;
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;

/// How a load went, for `policy inspect` and the benchmark.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct LoadStats {
    /// True when a precompiled artifact was used.
    pub cache_hit: bool,
    /// Time to compile or deserialize, in milliseconds.
    pub compile_ms: f64,
    /// Total load time including type check and `metadata()`, in milliseconds.
    pub total_ms: f64,
}

/// One per process: engine, linker, artifact cache, call driver (epoch
/// ticker and wall-clock bounds).
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache: Option<ArtifactCache>,
    config: Arc<RuntimeConfig>,
    driver: Arc<Driver>,
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> Result<Runtime, Error> {
        Runtime::build(config, true)
    }

    /// With WASI's own monotonic clock, whose pollables really wait: only
    /// to test that the wall-clock bound ends a call blocked in a host call.
    #[cfg(test)]
    fn with_waiting_clock(config: RuntimeConfig) -> Result<Runtime, Error> {
        Runtime::build(config, false)
    }

    fn build(config: RuntimeConfig, pinned_clocks: bool) -> Result<Runtime, Error> {
        let engine = Engine::new(&compiler::engine_config(&config, true))
            .map_err(|e| Error::Instantiate(format!("cannot create engine: {e}")))?;

        let mut linker = Linker::new(&engine);
        let link = |linker: &mut Linker<HostState>| -> wasmtime::Result<()> {
            wasmtime_wasi::p2::add_to_linker_async(linker)?;
            // time does not pass inside a call: clock pollables resolve against the snapshot's time
            if pinned_clocks {
                linker.allow_shadowing(true);
                monotonic_clock::add_to_linker::<HostState, PinnedClocksView>(linker, HostState::pinned_clocks)?;
                linker.allow_shadowing(false);
            }
            bindings::add_to_linker(linker)
        };
        link(&mut linker).map_err(|e| Error::Instantiate(format!("cannot link the sandbox: {e:#}")))?;

        let cache = match &config.cache_dir {
            Some(dir) => Some(
                ArtifactCache::open(dir, &engine)
                    .map_err(|e| Error::Io(format!("cache directory {}: {e}", dir.display())))?,
            ),
            None => None,
        };

        let driver =
            Driver::start(&engine).map_err(|e| Error::Instantiate(format!("cannot start the policy timer: {e}")))?;
        Ok(Runtime { engine, linker, cache, config: Arc::new(config), driver: Arc::new(driver) })
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Reads a file and loads it.
    pub fn load_file(&self, path: &std::path::Path) -> Result<(LoadedPolicy, LoadStats), Error> {
        let bytes = std::fs::read(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        self.load(&bytes)
    }

    /// Compiles (or loads precompiled), type-checks against the world, runs
    /// `metadata()` and validates it.
    pub fn load(&self, bytes: &[u8]) -> Result<(LoadedPolicy, LoadStats), Error> {
        let started = Instant::now();
        let digest = hex::encode(Sha256::digest(bytes));
        if !is_component_binary(bytes) {
            return Err(Error::Compile(if bytes.starts_with(b"\0asm") {
                "this is a core WebAssembly module, not a component (build for wasm32-wasip2 or run `wasm-tools component new`)".into()
            } else {
                "the bytes do not start with the WebAssembly magic number".into()
            }));
        }
        self.config.compile.check_size(bytes.len())?;
        let cached = self.cache.as_ref().and_then(|c| c.load(&self.engine, &digest));
        let cache_hit = cached.is_some();
        let component = match cached {
            Some(component) => component,
            None => compiler::compile(&self.engine, bytes, &digest, &self.config.compile, self.cache.as_ref())?,
        };
        let compile_ms = started.elapsed().as_secs_f64() * 1e3;

        let contract = Contract::of(&component, &self.engine)?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| Error::Incompatible(format!("{} imports: {e:#}", contract.world())))?;
        let pre = PolicyPre::new(contract, instance_pre)?;
        let (info, build) = LoadedPolicy::prepare(
            pre,
            self.engine.clone(),
            self.driver.clone(),
            self.config.clone(),
            digest,
            bytes.len(),
        )?;
        validate_info(&info)?;
        let policy = build(info);
        let total_ms = started.elapsed().as_secs_f64() * 1e3;
        Ok((policy, LoadStats { cache_hit, compile_ms, total_ms }))
    }
}

/// A component starts with the magic number and the component layer/version
/// (`0d 00 01 00`); a core module has version `01 00 00 00`.
fn is_component_binary(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes.starts_with(b"\0asm") && bytes[4..8] == [0x0d, 0x00, 0x01, 0x00]
}

/// Longest `version` (a semantic version with pre-release and build parts).
pub const MAX_VERSION_BYTES: usize = 64;
/// Longest `description`.
pub const MAX_DESCRIPTION_BYTES: usize = 4 << 10;
/// Longest `params-schema`.
pub const MAX_SCHEMA_BYTES: usize = 64 << 10;
/// Most entries in `reads`, and the longest one.
pub const MAX_READS: usize = 64;
pub const MAX_READ_BYTES: usize = 253;

fn validate_info(info: &PolicyInfo) -> Result<(), Error> {
    let name_ok = !info.name.is_empty()
        && info.name.len() <= 63
        && info.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !info.name.starts_with('-')
        && !info.name.ends_with('-');
    if !name_ok {
        return Err(Error::InvalidMetadata(format!(
            "name {:?} must be 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'",
            clip(&info.name, 80)
        )));
    }
    let too_long = |field: &str, size: usize, limit: usize| {
        Err(Error::InvalidMetadata(format!("{field} of policy {} is {size} bytes, the limit is {limit}", info.name)))
    };
    if info.version.len() > MAX_VERSION_BYTES {
        return too_long("version", info.version.len(), MAX_VERSION_BYTES);
    }
    if semver::Version::parse(&info.version).is_err() {
        return Err(Error::InvalidMetadata(format!(
            "version {:?} of policy {} is not a semantic version (like 1.2.3)",
            info.version, info.name
        )));
    }
    if info.description.len() > MAX_DESCRIPTION_BYTES {
        return too_long("description", info.description.len(), MAX_DESCRIPTION_BYTES);
    }
    if info.params_schema.len() > MAX_SCHEMA_BYTES {
        return too_long("params-schema", info.params_schema.len(), MAX_SCHEMA_BYTES);
    }
    if info.reads.len() > MAX_READS {
        return Err(Error::InvalidMetadata(format!(
            "reads of policy {} has {} entries, the limit is {MAX_READS}",
            info.name,
            info.reads.len()
        )));
    }
    if let Some(read) = info.reads.iter().find(|r| r.len() > MAX_READ_BYTES) {
        return too_long("an entry of reads", read.len(), MAX_READ_BYTES);
    }
    if !info.params_schema.trim().is_empty() {
        let schema: serde_json::Value = serde_json::from_str(&info.params_schema)
            .map_err(|e| Error::InvalidMetadata(format!("params-schema of policy {} is not JSON: {e}", info.name)))?;
        if !(schema.is_object() || schema.is_boolean()) {
            return Err(Error::InvalidMetadata(format!("params-schema of policy {} must be a JSON object", info.name)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, version: &str, schema: &str) -> PolicyInfo {
        PolicyInfo {
            name: name.into(),
            version: version.into(),
            description: String::new(),
            params_schema: schema.into(),
            reads: vec![],
        }
    }

    fn hostile() -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/policies/testdata/hostile.wasm");
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run `just plugins` first)", path.display()))
    }

    fn attack(attack: &str) -> crate::snapshot::Snapshot {
        let mut snapshot = crate::policy_store::smoke_snapshot();
        snapshot.params = serde_json::json!({ "attack": attack });
        snapshot
    }

    /// The backstop holds without the pinned clock: a call blocked inside a
    /// host call (here WASI's real sleep) is dropped at its wall-clock bound
    /// as a `timeout`, and its instance slot is freed — 20 such calls on a
    /// runtime of 4 slots.
    #[test]
    fn a_call_blocked_in_a_host_call_ends_at_its_wall_clock_bound() {
        let deadline = std::time::Duration::from_millis(100);
        let config = RuntimeConfig { deadline, max_instances: 4, ..RuntimeConfig::default() };
        let runtime = Runtime::with_waiting_clock(config).unwrap();
        let (policy, _) = runtime.load(&hostile()).unwrap();
        for round in 0..20 {
            let started = std::time::Instant::now();
            let evaluation = policy.evaluate(&attack(if round % 2 == 0 { "sleep-hour" } else { "pollable-forever" }));
            let elapsed = started.elapsed();
            assert!(matches!(evaluation.outcome, Err(Error::Timeout { deadline_ms: 100 })), "{:?}", evaluation.outcome);
            assert!(elapsed < deadline * 2, "round {round} took {elapsed:?}, more than twice the deadline");
            assert!(evaluation.logs.iter().any(|l| l.message.contains("wall-clock bound")), "{:?}", evaluation.logs);
        }
        // the slots were given back: the runtime still instantiates
        assert!(policy.evaluate(&attack("none")).outcome.is_ok());
    }

    /// With the pinned clock, waiting on time ends the call at once.
    #[test]
    fn waiting_on_a_pinned_clock_is_a_timeout_at_once() {
        let runtime = Runtime::new(RuntimeConfig { max_instances: 4, ..RuntimeConfig::default() }).unwrap();
        let (policy, _) = runtime.load(&hostile()).unwrap();
        for attack_name in ["sleep-3s", "sleep-hour", "pollable-forever", "poll-never"] {
            let started = std::time::Instant::now();
            let evaluation = policy.evaluate(&attack(attack_name));
            assert!(
                matches!(evaluation.outcome, Err(Error::Timeout { .. })),
                "{attack_name}: {:?}",
                evaluation.outcome
            );
            assert!(started.elapsed() < std::time::Duration::from_millis(50), "{attack_name}: {:?}", started.elapsed());
            assert!(evaluation.logs.iter().any(|l| l.message.contains("time does not pass")), "{:?}", evaluation.logs);
        }
        // a zero-length timer is due now: no fault
        let evaluation = policy.evaluate(&attack("sleep-zero"));
        assert_eq!(evaluation.outcome.unwrap().reason, "slept for zero");
    }

    #[test]
    fn metadata_rules() {
        assert!(validate_info(&info("hpa", "1.0.0", "{}")).is_ok());
        assert!(validate_info(&info("target-tracking-py", "0.1.0-rc.1", "")).is_ok());
        for (name, version, schema, needle) in [
            ("Bad Name", "1.0.0", "{}", "name \"Bad Name\""),
            ("-x", "1.0.0", "{}", "name \"-x\""),
            ("ok", "banana", "{}", "version \"banana\""),
            ("ok", "1.0.0", "{", "not JSON"),
            ("ok", "1.0.0", "[1]", "must be a JSON object"),
            ("ok", &"9".repeat(10 << 20), "{}", "version of policy ok is 10485760 bytes, the limit is 64"),
            (
                "ok",
                "1.0.0",
                &format!("{{\"d\": \"{}\"}}", "x".repeat(70_000)),
                "params-schema of policy ok is 70009 bytes",
            ),
        ] {
            let err = validate_info(&info(name, version, schema)).unwrap_err().to_string();
            assert!(err.contains(needle), "{err} should contain {needle}");
            assert!(err.len() < 300, "the message stays short: {} bytes", err.len());
        }
        let long_name = info(&"N".repeat(1 << 20), "1.0.0", "{}");
        assert!(validate_info(&long_name).unwrap_err().to_string().len() < 300);
        let mut reads = info("ok", "1.0.0", "{}");
        reads.reads = vec!["metric:cpu".into(); 65];
        assert!(validate_info(&reads).unwrap_err().to_string().contains("65 entries, the limit is 64"));
        let mut description = info("ok", "1.0.0", "{}");
        description.description = "d".repeat(40 << 20);
        assert!(
            validate_info(&description).unwrap_err().to_string().contains("description of policy ok is 41943040 bytes")
        );
    }
}
