//! The policy store: every `*.wasm` in a directory, loaded, validated and
//! versioned, behind an immutable [`Catalog`] that is swapped atomically.
//!
//! - **Identity**: name and version from `metadata()`, plus the sha256 of
//!   the bytes. Bindings resolve `name`, `name@version` or `name@sha256:…`.
//! - **Validation before activation**: compile (or load precompiled), type
//!   check, `metadata()`, then a smoke evaluation on a synthetic snapshot;
//!   only a policy that decides or cleanly declines there is admitted. A file
//!   that fails is reported in [`Catalog::problems`] and never replaces what
//!   runs.
//! - **Versions and rollback**: a version whose file disappears stays loaded
//!   (the newest `retained_versions` per name) so it can be activated again.
//!   `name` resolves to the pinned version if one was activated, else to the
//!   highest version present in the directory.
//! - **Reload**: [`PolicyStore::watch`] follows the directory with `notify`
//!   (which survives the ConfigMap `..data` symlink swap because the
//!   directory itself is watched), debounces bursts, and rescans
//!   periodically as a backstop. Unchanged files are recognised by size and
//!   mtime, then by digest, and never recompiled.
//! - **Admission never stalls the daemon**: compiling (in a budgeted child
//!   process), `metadata()` and the smoke evaluation run in the bounded
//!   [`Admissions`] queue, outside every lock the daemon needs; only the
//!   final catalog swap is serialized (microseconds), so readers, `activate`
//!   and `rollback` never wait for an admission.

mod admission;
mod oci;

pub use admission::{AdmissionStatus, Admissions, QueueError};
pub use oci::{OciConfig, Pulled, Registry, docker_auths};

use crate::policy::{Evaluator, LoadedPolicy, OciRef, Policy, PolicyRef, Runtime};
use crate::snapshot::{Observation, Past, Pod, Snapshot, Subject};
use crate::telemetry::Metrics;
use crate::watch::Follow;
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// Settings of the store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub dir: PathBuf,
    /// Backstop rescan period (default 30 s).
    pub rescan_interval: Duration,
    /// Quiet time after a filesystem event before rescanning (default 150 ms).
    pub debounce: Duration,
    /// Versions kept per name after their file disappeared (default 3).
    pub retained_versions: usize,
    /// Where admissions and rejections are counted (`policy_reloads`).
    pub metrics: Arc<Metrics>,
    /// Admissions (compile, `metadata()`, smoke evaluation) running at once (default 1).
    pub admissions_at_once: usize,
    /// Admissions waiting at most; further uploads are refused as busy (default 16).
    pub admissions_waiting: usize,
    /// Registries policies are pulled from (`oci://` references).
    pub oci: OciConfig,
    /// How often tag references are resolved again (default 60 s).
    pub oci_interval: Duration,
}

impl StoreConfig {
    pub fn new(dir: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            dir: dir.into(),
            rescan_interval: Duration::from_secs(30),
            debounce: Duration::from_millis(150),
            retained_versions: 3,
            metrics: Arc::new(Metrics::new()),
            admissions_at_once: 1,
            admissions_waiting: 16,
            oci: OciConfig { cache_dir: std::env::temp_dir().join("scalegate"), ..OciConfig::default() },
            oci_interval: Duration::from_secs(60),
        }
    }
}

/// Errors of store operations (loading files is reported, not returned).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("policy directory {path}: {message}")]
    Directory { path: String, message: String },
    #[error("no policy matches {0}")]
    NotFound(String),
    #[error("policy {0} has no earlier version to roll back to")]
    NoEarlierVersion(String),
}

/// Why an upload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstallError {
    /// Not a usable policy (or not the one the path names).
    #[error("{0}")]
    Invalid(String),
    /// That version is loaded with other bytes: versions are immutable.
    #[error("{0}")]
    Conflict(String),
    /// The store directory could not be written.
    #[error("{0}")]
    Storage(String),
    /// The admission queue is full; try again later.
    #[error("{0}")]
    Busy(String),
}

impl InstallError {
    /// Bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            InstallError::Invalid(_) => "invalid",
            InstallError::Conflict(_) => "conflict",
            InstallError::Storage(_) => "storage",
            InstallError::Busy(_) => "busy",
        }
    }
}

/// One loaded version of a policy.
#[derive(Clone)]
pub struct VersionEntry {
    pub policy: LoadedPolicy,
    /// `policy.info().version`, parsed once at admission.
    pub version: semver::Version,
    /// File it was loaded from (for a pull: the `oci://` reference).
    pub source: PathBuf,
    /// Whether that file is still in the directory (for a pull: whether
    /// the reference still resolves to it).
    pub present: bool,
    /// The OCI reference it was pulled through, if any.
    pub registry: Option<String>,
    pub loaded_at: SystemTime,
}

/// A file that could not be admitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub path: PathBuf,
    pub digest: Option<String>,
    /// `policy::Error::metric_label()` or `conflict` / `io` / `busy`.
    pub kind: String,
    pub message: String,
}

/// An immutable view of the store; cheap to clone, swapped on reload.
#[derive(Clone, Default)]
pub struct Catalog {
    /// Incremented by every reload.
    pub generation: u64,
    /// Versions by policy name, ascending by semantic version.
    versions: BTreeMap<String, Vec<VersionEntry>>,
    /// Digests pinned by `activate`/`rollback`, by policy name.
    pinned: BTreeMap<String, String>,
    pub problems: Vec<Problem>,
    /// OCI references followed or pulled, by reference text.
    pub oci: BTreeMap<String, OciStatus>,
}

/// What an OCI reference resolved to, and how the last check went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OciStatus {
    pub reference: String,
    /// `name@version` of the component it resolves to.
    pub policy: Option<String>,
    /// sha256 of that component (lowercase hex).
    pub digest: Option<String>,
    /// `sha256:…` of the manifest.
    pub manifest_digest: Option<String>,
    /// Whether the daemon re-resolves it (a tag in the configuration).
    pub followed: bool,
    /// Milliseconds since the epoch of the last check.
    pub checked_ms: Option<u64>,
    /// Why the last check failed; the version it resolved to before keeps running.
    pub error: Option<String>,
}

/// What the admin API shows about one version.
#[derive(Debug, Clone, Serialize)]
pub struct VersionStatus {
    pub name: String,
    pub version: String,
    pub digest: String,
    /// The contract version the component targets, e.g. "0.2.0".
    pub contract: &'static str,
    pub source: PathBuf,
    pub present: bool,
    pub active: bool,
}

impl Catalog {
    /// The version `name` stands for: the pinned one, else the highest
    /// present in the directory, else the highest retained.
    fn active(&self, name: &str) -> Option<&VersionEntry> {
        let versions = self.versions.get(name)?;
        if let Some(digest) = self.pinned.get(name)
            && let Some(pinned) = versions.iter().find(|v| v.policy.digest() == digest)
        {
            return Some(pinned);
        }
        versions.iter().rev().find(|v| v.present).or_else(|| versions.last())
    }

    pub fn resolve(&self, reference: &PolicyRef) -> Option<LoadedPolicy> {
        let versions = || self.versions.get(reference.name());
        let entry = match reference {
            PolicyRef::Latest(name) => self.active(name),
            PolicyRef::Version(_, version) => versions()?.iter().rev().find(|v| &v.version == version),
            PolicyRef::Digest(_, digest) => versions()?.iter().find(|v| v.policy.digest() == digest),
            PolicyRef::Oci(text) => self.find_digest(self.oci.get(text)?.digest.as_deref()?),
        };
        entry.map(|e| e.policy.clone())
    }

    pub fn status(&self) -> Vec<VersionStatus> {
        let mut out = Vec::new();
        for (name, versions) in &self.versions {
            let active = self.active(name).map(|e| e.policy.digest().to_string());
            for v in versions {
                out.push(VersionStatus {
                    name: name.clone(),
                    version: v.policy.info().version.clone(),
                    digest: v.policy.digest().to_string(),
                    contract: v.policy.contract().version(),
                    source: v.source.clone(),
                    present: v.present,
                    active: active.as_deref() == Some(v.policy.digest()),
                });
            }
        }
        out
    }

    fn find_digest(&self, digest: &str) -> Option<&VersionEntry> {
        self.versions.values().flatten().find(|v| v.policy.digest() == digest)
    }
}

/// What one rescan did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    pub generation: u64,
    /// `name@version` of newly admitted versions.
    pub loaded: Vec<String>,
    /// Files that failed (also in the catalog's problems).
    pub failed: Vec<Problem>,
    /// `name@version` whose files disappeared (kept for rollback while retained).
    pub removed: Vec<String>,
}

/// What the last rescan learned, so the next one repeats no work: file
/// identities (unchanged files are not re-hashed) and components that failed
/// admission (they are not compiled and smoke-tested again; admission depends
/// on the bytes alone, so the verdict stands until the bytes change).
#[derive(Default)]
struct ReloadMemo {
    stamps: HashMap<PathBuf, FileStamp>,
    /// digest → (error kind, message)
    rejected: HashMap<String, (String, String)>,
}

/// Cached identity of a file, so unchanged files are not re-hashed.
#[derive(Clone, PartialEq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    digest: String,
}

#[derive(Clone)]
pub struct PolicyStore {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: Arc<Runtime>,
    /// The registry client (`None` when its cache cannot be created: then
    /// every `oci://` reference reports why).
    registry: Result<Arc<Registry>, String>,
    /// The OCI references the configuration binds (re-resolved on an interval).
    followed: Mutex<Vec<OciRef>>,
    config: StoreConfig,
    catalog: ArcSwap<Catalog>,
    /// Serializes changes of the catalog (read, modify, swap); held for the
    /// swap only, never while a policy compiles or runs. Readers never take it.
    swap: Mutex<()>,
    /// Serializes directory scans (held while a scan's files are admitted;
    /// only scans take it) and keeps what the last scan learned.
    scan: Mutex<ReloadMemo>,
    admissions: Admissions,
}

impl PolicyStore {
    /// Opens the directory and loads what is there. Files that fail are
    /// problems in the catalog; only an unreadable directory is an error.
    ///
    /// Blocking (compiles and runs policies): like [`PolicyStore::rescan`],
    /// call it from a blocking thread or outside the runtime, never on an
    /// async worker (see [`LoadedPolicy::evaluate`]).
    pub fn open(runtime: Arc<Runtime>, config: StoreConfig) -> Result<PolicyStore, StoreError> {
        list_policy_files(&config.dir)?;
        let admissions = Admissions::new(config.admissions_at_once, config.admissions_waiting);
        let registry = Registry::new(&config.oci, runtime.config().compile.max_component_bytes).map(Arc::new);
        let store = PolicyStore {
            inner: Arc::new(Inner {
                runtime,
                registry,
                followed: Mutex::new(Vec::new()),
                config,
                catalog: ArcSwap::from_pointee(Catalog::default()),
                swap: Mutex::new(()),
                scan: Mutex::new(ReloadMemo::default()),
                admissions,
            }),
        };
        store.rescan();
        Ok(store)
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.inner.catalog.load_full()
    }

    /// The metrics this store counts into (shared with the loop and the admin API).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.inner.config.metrics.clone()
    }

    /// The largest component the runtime accepts.
    pub fn max_component_bytes(&self) -> usize {
        self.inner.runtime.config().compile.max_component_bytes
    }

    pub fn dir(&self) -> &Path {
        &self.inner.config.dir
    }

    /// Admissions running and waiting (uploads and new files), oldest first.
    pub fn admissions(&self) -> Vec<AdmissionStatus> {
        self.inner.admissions.status()
    }

    /// Changes the catalog: `change` gets a copy of the current one (with
    /// the generation already bumped), and the result replaces it. The only
    /// place the catalog is written; never call it with a policy running.
    fn commit<R>(&self, change: impl FnOnce(&mut Catalog) -> R) -> R {
        let _swap = self.inner.swap.lock();
        let mut next = (*self.inner.catalog.load_full()).clone();
        next.generation += 1;
        let result = change(&mut next);
        self.inner.catalog.store(Arc::new(next));
        result
    }

    /// Reads the directory and admits new or changed files. Never makes
    /// things worse: on any failure the previous versions stay. Blocking
    /// (admissions compile and run policies): call it from a blocking thread.
    pub fn rescan(&self) -> ReloadReport {
        let mut memo = self.inner.scan.lock();
        let started = SystemTime::now();
        let dir = &self.inner.config.dir;
        let files = match list_policy_files(dir) {
            Ok(files) => files,
            Err(error) => {
                // keep everything as it was; report the directory itself
                let problem =
                    Problem { path: dir.clone(), digest: None, kind: "io".into(), message: error.to_string() };
                return self.commit(|next| {
                    next.problems = vec![problem];
                    ReloadReport {
                        generation: next.generation,
                        failed: next.problems.clone(),
                        ..ReloadReport::default()
                    }
                });
            }
        };
        let limit = self.inner.runtime.config().compile.max_component_bytes;
        let mut seen = ReloadMemo::default();
        let mut problems = Vec::new();
        // digest → file, for every file whose policy is (or now gets) loaded
        let mut present: HashMap<String, PathBuf> = HashMap::new();
        let mut admitted: Vec<(PathBuf, LoadedPolicy)> = Vec::new();
        for path in files {
            let problem = |kind: &str, digest: Option<String>, message: String| Problem {
                path: path.clone(),
                digest,
                kind: kind.into(),
                message,
            };
            let (stamp, bytes) = match identify(&path, memo.stamps.get(&path), limit) {
                Ok(identity) => identity,
                Err((kind, message)) => {
                    problems.push(problem(kind, None, message));
                    continue;
                }
            };
            let digest = stamp.digest.clone();
            seen.stamps.insert(path.clone(), stamp);
            if present.contains_key(&digest) || self.catalog().find_digest(&digest).is_some() {
                present.insert(digest, path.clone());
                continue;
            }
            if let Some((kind, message)) = memo.rejected.get(&digest) {
                seen.rejected.insert(digest.clone(), (kind.clone(), message.clone()));
                problems.push(problem(kind, Some(digest), message.clone()));
                continue;
            }
            let bytes = match bytes.map_or_else(|| std::fs::read(&path).map_err(|e| e.to_string()), Ok) {
                Ok(bytes) => bytes,
                Err(message) => {
                    problems.push(problem("io", Some(digest), message));
                    continue;
                }
            };
            let runtime = &self.inner.runtime;
            match self.inner.admissions.admit(runtime, path.display().to_string(), &digest, &bytes) {
                Ok(Ok(policy)) => {
                    present.insert(digest, path.clone());
                    admitted.push((path.clone(), policy));
                }
                Ok(Err(error)) => {
                    let (kind, message) = (error.metric_label().to_string(), error.to_string());
                    Metrics::count(&self.inner.config.metrics.reloads, "rejected");
                    seen.rejected.insert(digest.clone(), (kind.clone(), message.clone()));
                    problems.push(problem(&kind, Some(digest), message));
                }
                // not remembered: the next scan tries again
                Err(busy) => problems.push(problem("busy", Some(digest), busy.to_string())),
            }
        }
        *memo = seen;
        let (keep, metrics) = (self.inner.config.retained_versions, &self.inner.config.metrics);
        self.commit(|next| {
            let mut report = ReloadReport { generation: next.generation, ..ReloadReport::default() };
            let was_present: Vec<String> =
                next.versions.values().flatten().filter(|v| v.present).map(|v| v.policy.id()).collect();
            for v in next.versions.values_mut().flatten() {
                match present.get(v.policy.digest()) {
                    Some(path) => (v.present, v.source) = (true, path.clone()),
                    // a pulled version is no file of the directory
                    None if v.registry.is_some() => {}
                    // an upload committed while this scan ran keeps its file
                    None => v.present &= v.loaded_at >= started,
                }
            }
            for (path, policy) in admitted {
                if next.find_digest(policy.digest()).is_some() {
                    continue;
                }
                let versions = next.versions.entry(policy.info().name.clone()).or_default();
                if let Some(clash) = versions.iter().find(|v| v.policy.info().version == policy.info().version) {
                    Metrics::count(&metrics.reloads, "rejected");
                    problems.push(Problem {
                        path,
                        digest: Some(policy.digest().to_string()),
                        kind: "conflict".into(),
                        message: format!(
                            "{} is already loaded with digest sha256:{} from {}; a version is immutable, bump it",
                            policy.id(),
                            clash.policy.digest(),
                            clash.source.display()
                        ),
                    });
                    continue;
                }
                report.loaded.push(policy.id());
                Metrics::count(&metrics.reloads, "loaded");
                insert_version(versions, policy, path);
            }
            report.removed = was_present
                .into_iter()
                .filter(|id| !next.versions.values().flatten().any(|v| v.present && &v.policy.id() == id))
                .collect();
            trim_retained(next, keep);
            next.problems = problems;
            report.failed = next.problems.clone();
            report
        })
    }

    /// Validates an uploaded component, checks that it calls itself `name`,
    /// writes it atomically into the directory as `<name>-<version>.wasm`
    /// and reloads. Blocking (see [`PolicyStore::open`]).
    pub fn install(&self, name: &str, bytes: &[u8]) -> Result<VersionStatus, InstallError> {
        let result = self.install_checked(name, bytes);
        if result.is_err() {
            Metrics::count(&self.inner.config.metrics.reloads, "rejected");
        }
        result
    }

    fn install_checked(&self, name: &str, bytes: &[u8]) -> Result<VersionStatus, InstallError> {
        let runtime = &self.inner.runtime;
        runtime.config().compile.check_size(bytes.len()).map_err(|e| InstallError::Invalid(e.to_string()))?;
        let digest = hex::encode(Sha256::digest(bytes));
        let policy = match self.catalog().find_digest(&digest) {
            Some(loaded) => loaded.policy.clone(),
            None => match self.inner.admissions.admit(runtime, format!("upload:{name}"), &digest, bytes) {
                Ok(admitted) => admitted.map_err(|e| InstallError::Invalid(e.to_string()))?,
                Err(busy) => return Err(InstallError::Busy(busy.to_string())),
            },
        };
        let info = policy.info();
        if info.name != name {
            return Err(InstallError::Invalid(format!(
                "the component's metadata names it {:?}, not {name:?}",
                info.name
            )));
        }
        let conflict = |catalog: &Catalog| {
            let existing = catalog.versions.get(name)?.iter().find(|v| v.policy.info().version == info.version)?;
            (existing.policy.digest() != policy.digest()).then(|| {
                InstallError::Conflict(format!(
                    "{} is already loaded with digest sha256:{}; a version is immutable, bump it",
                    policy.id(),
                    existing.policy.digest()
                ))
            })
        };
        if let Some(conflict) = conflict(&self.catalog()) {
            return Err(conflict);
        }
        // metadata validation allows only [0-9A-Za-z.+-] in a version; the name is [a-z0-9-]
        let target = self.inner.config.dir.join(format!("{name}-{}.wasm", safe_file_part(&info.version)));
        let write = || -> std::io::Result<()> {
            let mut file = tempfile::NamedTempFile::new_in(&self.inner.config.dir)?;
            std::io::Write::write_all(&mut file, bytes)?;
            file.as_file().sync_all()?;
            file.persist(&target).map_err(|e| e.error)?;
            Ok(())
        };
        write().map_err(|e| InstallError::Storage(format!("cannot write {}: {e}", target.display())))?;
        self.commit(|next| {
            if let Some(conflict) = conflict(next) {
                return Err(conflict);
            }
            if next.find_digest(policy.digest()).is_none() {
                tracing::info!(policy = %policy.id(), generation = next.generation, "policy loaded (upload)");
                Metrics::count(&self.inner.config.metrics.reloads, "loaded");
                insert_version(next.versions.entry(name.to_string()).or_default(), policy.clone(), target.clone());
            }
            Ok(())
        })?;
        self.catalog()
            .status()
            .into_iter()
            .find(|s| s.digest == policy.digest())
            .ok_or_else(|| InstallError::Storage("the uploaded version is not in the catalog".into()))
    }

    /// Pins `name` to a loaded version (by version or digest).
    pub fn activate(&self, reference: &PolicyRef) -> Result<LoadedPolicy, StoreError> {
        let _swap = self.inner.swap.lock();
        let mut next = (*self.inner.catalog.load_full()).clone();
        let policy = match reference {
            PolicyRef::Latest(name) => {
                // unpin: back to "highest present"
                next.pinned.remove(name);
                next.resolve(reference)
            }
            _ => next.resolve(reference),
        }
        .ok_or_else(|| StoreError::NotFound(reference.to_string()))?;
        if !matches!(reference, PolicyRef::Latest(_)) {
            next.pinned.insert(policy.info().name.clone(), policy.digest().to_string());
        }
        next.generation += 1;
        self.inner.catalog.store(Arc::new(next));
        Ok(policy)
    }

    /// The pins made by `activate`/`rollback`: policy name → digest.
    pub fn pins(&self) -> BTreeMap<String, String> {
        self.catalog().pinned.clone()
    }

    /// Takes over pins made elsewhere (a previous leader): each pin to a
    /// loaded version applies; pins to versions this store does not hold
    /// are reported and left out.
    pub fn restore_pins(&self, pins: &BTreeMap<String, String>) -> Vec<String> {
        self.commit(|next| {
            let mut missing = Vec::new();
            next.pinned.clear();
            for (name, digest) in pins {
                if next.versions.get(name).is_some_and(|v| v.iter().any(|e| e.policy.digest() == digest)) {
                    next.pinned.insert(name.clone(), digest.clone());
                } else {
                    missing.push(format!("{name}@sha256:{digest}"));
                }
            }
            missing
        })
    }

    /// Pins `name` to the version just below the active one.
    pub fn rollback(&self, name: &str) -> Result<LoadedPolicy, StoreError> {
        let catalog = self.catalog();
        let active = catalog.active(name).ok_or_else(|| StoreError::NotFound(name.to_string()))?;
        let current = &active.version;
        let previous = catalog.versions[name]
            .iter()
            .rev()
            .find(|v| &v.version < current)
            .ok_or_else(|| StoreError::NoEarlierVersion(name.to_string()))?;
        self.activate(&PolicyRef::Digest(name.to_string(), previous.policy.digest().to_string()))
    }

    /// Follows these OCI references (the configuration's): each one not yet
    /// resolved is pulled now; all are re-resolved by [`PolicyStore::watch_oci`].
    pub async fn follow_oci(&self, references: Vec<OciRef>) {
        *self.inner.followed.lock() = references.clone();
        for oci in references {
            let known = self.catalog().oci.get(&oci.text).is_some_and(|s| s.digest.is_some());
            if !known {
                // failures are recorded in the catalog; check_references names them
                let _ = self.refresh_oci(&oci, true).await;
            }
        }
    }

    /// Pulls `reference` once and loads what it names (an admin upload by
    /// reference): the version joins the catalog; the reference is not followed.
    pub async fn install_oci(&self, reference: &OciRef) -> Result<VersionStatus, InstallError> {
        let result = self.refresh_oci(reference, false).await;
        if result.is_err() {
            Metrics::count(&self.inner.config.metrics.reloads, "rejected");
        }
        let digest = result?;
        self.catalog()
            .status()
            .into_iter()
            .find(|s| s.digest == digest)
            .ok_or_else(|| InstallError::Storage("the pulled version is not in the catalog".into()))
    }

    /// Resolves `oci` and loads the component if it changed; returns its
    /// digest. On failure the version it resolved to before keeps running
    /// (after a restart: the cached one), and the error is recorded.
    async fn refresh_oci(&self, oci: &OciRef, followed: bool) -> Result<String, InstallError> {
        let registry = self.inner.registry.clone().map_err(InstallError::Storage)?;
        let before = self.catalog().oci.get(&oci.text).cloned();
        let loaded = before.as_ref().and_then(|s| s.digest.clone()).filter(|d| self.catalog().find_digest(d).is_some());
        let pulled = match registry.manifest_digest(oci).await {
            Ok(manifest)
                if loaded.is_some() && before.as_ref().and_then(|s| s.manifest_digest.as_ref()) == Some(&manifest) =>
            {
                Ok(None)
            }
            Ok(_) => registry.pull(oci).await.map(Some),
            Err(error) => Err(error),
        };
        let (pulled, error) = match pulled {
            Ok(pulled) => (pulled, None),
            // nothing running for it: the last version pulled, from the cache
            Err(error) if loaded.is_none() => (registry.cached(oci), Some(error)),
            Err(error) => (None, Some(error)),
        };
        let admitted = match pulled {
            None => None,
            Some(pulled) => match self.admit_pulled(oci, &pulled).await {
                Ok(policy) => Some((policy, pulled.manifest_digest)),
                Err(refused) => {
                    self.record_oci(oci, followed, None, Some(refused.to_string()));
                    return Err(refused);
                }
            },
        };
        let digest = admitted.as_ref().map(|(p, _)| p.digest().to_string()).or(loaded);
        self.record_oci(oci, followed, admitted, error.clone());
        match (digest, error) {
            (Some(digest), _) => Ok(digest),
            (None, Some(error)) => Err(InstallError::Invalid(error)),
            (None, None) => Err(InstallError::Storage(format!("{}: nothing was pulled", oci.text))),
        }
    }

    /// Admits a pulled component (once per digest) like any other.
    async fn admit_pulled(&self, oci: &OciRef, pulled: &Pulled) -> Result<LoadedPolicy, InstallError> {
        let digest = pulled.layer_digest.trim_start_matches("sha256:").to_string();
        if let Some(existing) = self.catalog().find_digest(&digest) {
            return Ok(existing.policy.clone());
        }
        let (store, label, bytes) = (self.clone(), oci.text.clone(), pulled.bytes.clone());
        let admitted = tokio::task::spawn_blocking(move || {
            store.inner.admissions.admit(&store.inner.runtime, label, &digest, &bytes)
        })
        .await
        .map_err(|e| InstallError::Storage(format!("admission task failed: {e}")))?;
        match admitted {
            Ok(Ok(policy)) => Ok(policy),
            Ok(Err(error)) => Err(InstallError::Invalid(format!("{}: {error}", oci.text))),
            Err(busy) => Err(InstallError::Busy(busy.to_string())),
        }
    }

    /// Records a check of `oci`: the version it now resolves to (present;
    /// the one before it no longer), or the error.
    fn record_oci(
        &self,
        oci: &OciRef,
        followed: bool,
        admitted: Option<(LoadedPolicy, String)>,
        error: Option<String>,
    ) {
        let metrics = &self.inner.config.metrics;
        metrics
            .oci_reference_up
            .get_or_create(&crate::telemetry::SourceLabel { source: oci.text.clone() })
            .set(i64::from(error.is_none()));
        if let Some(error) = &error {
            tracing::warn!(reference = %oci.text, %error, "OCI policy reference");
        }
        let keep = self.inner.config.retained_versions;
        self.commit(|next| {
            let status = next
                .oci
                .entry(oci.text.clone())
                .or_insert_with(|| OciStatus { reference: oci.text.clone(), ..OciStatus::default() });
            status.followed |= followed;
            status.checked_ms =
                SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).ok().map(|d| d.as_millis() as u64);
            status.error = error;
            let Some((policy, manifest)) = admitted else { return };
            status.digest = Some(policy.digest().to_string());
            status.policy = Some(policy.id());
            status.manifest_digest = Some(manifest);
            for v in next.versions.values_mut().flatten() {
                if v.registry.as_deref() == Some(&oci.text) {
                    v.present = v.policy.digest() == policy.digest();
                }
            }
            if next.find_digest(policy.digest()).is_none() {
                let versions = next.versions.entry(policy.info().name.clone()).or_default();
                if versions.iter().any(|v| v.policy.info().version == policy.info().version) {
                    let status = next.oci.get_mut(&oci.text).expect("just inserted");
                    status.error = Some(format!(
                        "{} is already loaded with another digest; a version is immutable, bump it",
                        policy.id()
                    ));
                    status.digest = None;
                    return;
                }
                tracing::info!(policy = %policy.id(), reference = %oci.text, "policy loaded (OCI)");
                Metrics::count(&metrics.reloads, "loaded");
                insert_version(versions, policy.clone(), PathBuf::from(&oci.text));
                if let Some(v) = versions.iter_mut().find(|v| v.policy.digest() == policy.digest()) {
                    v.registry = Some(oci.text.clone());
                }
            }
            trim_retained(next, keep);
        });
    }

    /// Re-resolves the followed tag references every `oci_interval` until
    /// `shutdown`; a moved tag loads the new version (hot reload).
    pub fn watch_oci(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        let interval = self.inner.config.oci_interval;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(interval) => {}
                }
                let references: Vec<OciRef> =
                    store.inner.followed.lock().iter().filter(|r| !r.is_pinned()).cloned().collect();
                for oci in references {
                    let _ = store.refresh_oci(&oci, true).await;
                }
            }
        })
    }

    /// Follows the directory until `shutdown`: filesystem events (debounced)
    /// and a periodic rescan trigger reloads on the blocking pool.
    pub fn watch(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        let follow = Follow {
            dir: self.inner.config.dir.clone(),
            debounce: self.inner.config.debounce,
            rescan: self.inner.config.rescan_interval,
            what: "policy directory",
        };
        tokio::spawn(follow.run(shutdown, move || {
            let reloader = store.clone();
            async move {
                match tokio::task::spawn_blocking(move || reloader.rescan()).await {
                    Ok(report) => log_report(&report),
                    Err(error) => tracing::error!(%error, "policy reload task failed"),
                }
            }
        }))
    }
}

fn log_report(report: &ReloadReport) {
    for id in &report.loaded {
        tracing::info!(policy = %id, generation = report.generation, "policy loaded");
    }
    for id in &report.removed {
        tracing::info!(policy = %id, "policy file removed; version retained for rollback");
    }
    for problem in &report.failed {
        tracing::warn!(path = %problem.path.display(), kind = %problem.kind, message = %problem.message, "policy rejected; previous versions stay active");
    }
}

/// `*.wasm` entries of the directory (symlinks followed), skipping hidden
/// names such as the ConfigMap's `..data` and `..2026_11_22_…` folders.
fn list_policy_files(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| StoreError::Directory { path: dir.display().to_string(), message: e.to_string() })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path())
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.starts_with('.') && name.ends_with(".wasm") && path.is_file()
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The file's identity, reusing the cached digest when size and mtime are
/// unchanged; the bytes too when they had to be read.
/// Why a file could not be identified: problem kind and message.
type Unidentified = (&'static str, String);

/// A file over `limit` bytes is refused without being read.
fn identify(
    path: &Path,
    cached: Option<&FileStamp>,
    limit: usize,
) -> Result<(FileStamp, Option<Vec<u8>>), Unidentified> {
    let meta = std::fs::metadata(path).map_err(|e| ("io", format!("cannot stat: {e}")))?;
    let (len, modified) = (meta.len(), meta.modified().ok());
    if len > limit as u64 {
        return Err(("over_budget", format!("the file is {len} bytes, the limit is {limit} (--max-policy-bytes)")));
    }
    if let Some(cached) = cached
        && cached.len == len
        && cached.modified.is_some()
        && cached.modified == modified
    {
        return Ok((cached.clone(), None));
    }
    let bytes = std::fs::read(path).map_err(|e| ("io", format!("cannot read: {e}")))?;
    let digest = hex::encode(Sha256::digest(&bytes));
    Ok((FileStamp { len, modified, digest }, Some(bytes)))
}

/// Adds an admitted version, keeping the versions ascending.
fn insert_version(versions: &mut Vec<VersionEntry>, policy: LoadedPolicy, source: PathBuf) {
    // metadata validation guarantees a semantic version
    let version = semver::Version::parse(&policy.info().version).unwrap_or(semver::Version::new(0, 0, 0));
    versions.push(VersionEntry {
        policy,
        version,
        source,
        present: true,
        registry: None,
        loaded_at: SystemTime::now(),
    });
    versions.sort_by(|a, b| a.version.cmp(&b.version));
}

/// `text` with anything but ASCII letters, digits, `.`, `+` and `-` replaced,
/// for a file name (metadata validation already allows no more).
fn safe_file_part(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-') { c } else { '_' }).collect()
}

/// A small, plausible snapshot every policy must survive (deciding or
/// declining; its params are `{}`, so most policies decline).
pub fn smoke_snapshot() -> Snapshot {
    let now_ms = 1_700_000_000_000;
    let observation = Observation {
        spec_replicas: 2,
        status_replicas: 2,
        ready_replicas: 2,
        pods: (0..2)
            .map(|i| Pod::running(format!("smoke-{i}"), now_ms - 610_000, now_ms - 600_000, 0.5, 268_435_456.0))
            .collect(),
        ..Observation::default()
    };
    let subject =
        Subject { kind: "Deployment", namespace: "scalegate-smoke", name: "smoke", min_replicas: 1, max_replicas: 10 };
    let mut snapshot = crate::snapshot::assemble(now_ms, subject, observation, Past::default());
    snapshot.params = serde_json::json!({});
    snapshot
}

impl Evaluator for PolicyStore {
    fn resolve(&self, reference: &PolicyRef) -> Option<Arc<dyn Policy>> {
        self.catalog().resolve(reference).map(|policy| Arc::new(policy) as Arc<dyn Policy>)
    }
}

/// Drops the oldest versions whose files are gone, beyond `keep` per name
/// (never a pinned one).
fn trim_retained(catalog: &mut Catalog, keep: usize) {
    for (name, versions) in catalog.versions.iter_mut() {
        let pinned = catalog.pinned.get(name).cloned();
        let mut absent = versions.iter().filter(|v| !v.present).count();
        versions.retain(|v| {
            if v.present || absent <= keep || pinned.as_deref() == Some(v.policy.digest()) {
                return true;
            }
            absent -= 1;
            v.policy.drain_idle();
            false
        });
    }
    catalog.versions.retain(|_, versions| !versions.is_empty());
    let live: Vec<(String, String)> = catalog.pinned.iter().map(|(n, d)| (n.clone(), d.clone())).collect();
    for (name, digest) in live {
        if catalog.find_digest(&digest).is_none() {
            catalog.pinned.remove(&name);
        }
    }
}
