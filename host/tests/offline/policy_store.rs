//! The policy store against real files: loading and validation, versions,
//! a ConfigMap-style mount whose `..data` symlink is swapped, corrupt
//! replacements, reloads under load, pinning and rollback.

use crate::support::*;
use scalegate::policy::PolicyRef;
use scalegate::policy::Runtime;
use scalegate::policy_store::{PolicyStore, StoreConfig};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn shared_runtime() -> Arc<Runtime> {
    Arc::new(runtime())
}

fn r(text: &str) -> PolicyRef {
    text.parse().unwrap()
}

/// A directory laid out like a mounted ConfigMap: the real files live in a
/// timestamped folder, `..data` points at it, and each visible name is a
/// symlink through `..data`.
struct ConfigMapDir {
    root: tempfile::TempDir,
    revision: usize,
}

impl ConfigMapDir {
    fn new(files: &[(&str, Vec<u8>)]) -> ConfigMapDir {
        let mut dir = ConfigMapDir { root: tempfile::tempdir().unwrap(), revision: 0 };
        dir.update(files);
        dir
    }

    fn path(&self) -> &Path {
        self.root.path()
    }

    /// Publishes a new set of files the way the kubelet does: write a new
    /// timestamped folder, point `..data_tmp` at it, rename over `..data`.
    fn update(&mut self, files: &[(&str, Vec<u8>)]) {
        self.revision += 1;
        let root = self.root.path();
        let folder = format!("..2026_11_22_20_00_{:02}.{}", self.revision % 60, self.revision);
        std::fs::create_dir(root.join(&folder)).unwrap();
        for (name, bytes) in files {
            std::fs::write(root.join(&folder).join(name), bytes).unwrap();
        }
        let tmp = root.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&folder, &tmp).unwrap();
        std::fs::rename(&tmp, root.join("..data")).unwrap();
        for (name, _) in files {
            let link = root.join(name);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(Path::new("..data").join(name), &link).unwrap();
            }
        }
        // visible links whose target vanished from the new revision
        for entry in std::fs::read_dir(root).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if !name.starts_with('.') && !files.iter().any(|(f, _)| *f == name) {
                std::fs::remove_file(&path).unwrap();
            }
        }
    }
}

fn v1() -> Vec<u8> {
    policy_bytes("fixed.wasm")
}
fn v2() -> Vec<u8> {
    policy_bytes("testdata/fixed_v2.wasm")
}

fn version(store: &PolicyStore, reference: &str) -> Option<String> {
    store.catalog().resolve(&r(reference)).map(|p| p.info().version.clone())
}

#[test]
fn loads_a_directory_validates_and_resolves_references() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        ("hpa.wasm", policy_bytes("hpa.wasm")),
        ("fixed.wasm", v1()),
        ("fixed-next.wasm", v2()),
        ("garbage.wasm", b"not wasm".to_vec()),
        ("loop.wasm", policy_bytes("testdata/infinite_loop.wasm")),
        ("panic.wasm", policy_bytes("testdata/panic.wasm")),
        ("notes.txt", b"ignored".to_vec()),
    ] {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let store = PolicyStore::open(shared_runtime(), StoreConfig::new(dir.path())).unwrap();
    assert_eq!(version(&store, "fixed"), Some("0.2.0".into()), "highest version wins");
    assert_eq!(version(&store, "fixed@0.1.0"), Some("0.1.0".into()));
    let hpa = store.catalog().resolve(&r("hpa")).unwrap();
    assert_eq!(version(&store, &format!("hpa@sha256:{}", hpa.digest())), Some("0.1.0".into()));
    assert_eq!(version(&store, "fixed@9.9.9"), None);
    assert_eq!(version(&store, "nothing"), None);

    let problems = store.catalog().problems.clone();
    let kind_of = |file: &str| problems.iter().find(|p| p.path.ends_with(file)).map(|p| p.kind.clone());
    assert_eq!(kind_of("garbage.wasm"), Some("compile".into()));
    assert_eq!(kind_of("loop.wasm"), Some("timeout".into()), "the smoke evaluation catches it");
    assert_eq!(kind_of("panic.wasm"), Some("trap".into()));
    assert_eq!(problems.len(), 3, "{problems:?}");
    let status = store.catalog().status();
    assert_eq!(status.iter().filter(|s| s.active).count(), 2, "one active version per name: {status:?}");
}

#[test]
fn same_version_with_other_bytes_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.wasm"), v1()).unwrap();
    let store = PolicyStore::open(shared_runtime(), StoreConfig::new(dir.path())).unwrap();
    // fixed@0.1.0 again, with other bytes (a trailing custom section) and so another digest
    let mut other = v1();
    other.extend_from_slice(&custom_section("scalegate-test", b"different bytes, same policy"));
    std::fs::write(dir.path().join("b.wasm"), other).unwrap();
    let report = store.rescan();
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(report.failed[0].kind, "conflict");
    assert!(report.failed[0].message.contains("fixed@0.1.0 is already loaded"), "{}", report.failed[0].message);
}

/// A component-level custom section (id 0): appending one changes the bytes
/// (and the digest) without changing the component's behaviour.
fn custom_section(name: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = vec![name.len() as u8];
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    let mut section = vec![0u8, body.len() as u8];
    section.extend_from_slice(&body);
    section
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_symlink_swap_activates_the_new_version_within_a_second() {
    let mut mount = ConfigMapDir::new(&[("fixed.wasm", v1())]);
    let config = StoreConfig { rescan_interval: Duration::from_secs(3600), ..StoreConfig::new(mount.path()) };
    let store =
        tokio::task::spawn_blocking(move || PolicyStore::open(shared_runtime(), config).unwrap()).await.unwrap();
    assert_eq!(version(&store, "fixed"), Some("0.1.0".into()));
    // warm the artifact cache so the measured time is the reload, not a first compile
    let warm = v2();
    tokio::task::spawn_blocking(move || runtime().load(&warm).unwrap()).await.unwrap();

    let shutdown = tokio_util::sync::CancellationToken::new();
    let watcher = store.watch(shutdown.clone());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    mount.update(&[("fixed.wasm", v2())]);
    while version(&store, "fixed").as_deref() != Some("0.2.0") {
        assert!(started.elapsed() < Duration::from_secs(5), "new version not active after 5 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    // the old version is retained for rollback
    assert_eq!(version(&store, "fixed@0.1.0"), Some("0.1.0".into()));

    // a corrupt replacement keeps 0.2.0 active and is reported
    let generation = store.catalog().generation;
    mount.update(&[("fixed.wasm", b"\0asm\x0d\0\x01\0garbage".to_vec())]);
    let started = Instant::now();
    while store.catalog().problems.is_empty() || store.catalog().generation == generation {
        assert!(started.elapsed() < Duration::from_secs(5), "corrupt file not reported");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let catalog = store.catalog();
    assert_eq!(catalog.problems[0].kind, "compile", "{:?}", catalog.problems);
    assert!(catalog.problems[0].path.ends_with("fixed.wasm"));
    assert_eq!(version(&store, "fixed"), Some("0.2.0".into()), "the last good version stays active");
    shutdown.cancel();
    watcher.await.unwrap();
}

#[test]
fn hundred_reloads_while_evaluating_lose_no_evaluation() {
    let mut mount = ConfigMapDir::new(&[("fixed.wasm", v1())]);
    let store = PolicyStore::open(shared_runtime(), StoreConfig::new(mount.path())).unwrap();
    let (bytes1, bytes2) = (v1(), v2());
    let stop = AtomicBool::new(false);
    let (evaluations, failures) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let seen_v2 = AtomicBool::new(false);
    let mut snapshot = example("pin-to-4.json");
    snapshot.params = serde_json::json!({"replicas": 4});
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let policy = store.catalog().resolve(&r("fixed")).expect("fixed always resolves");
                    match policy.evaluate(&snapshot).outcome {
                        Ok(d) if d.desired_replicas == Some(4) => {}
                        _ => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if policy.info().version == "0.2.0" {
                        seen_v2.store(true, Ordering::Relaxed);
                    }
                    evaluations.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for i in 0..100 {
            mount.update(&[("fixed.wasm", if i % 2 == 0 { bytes2.clone() } else { bytes1.clone() })]);
            let report = store.rescan();
            assert!(report.failed.is_empty(), "{report:?}");
            let expected = if i % 2 == 0 { "0.2.0" } else { "0.1.0" };
            assert_eq!(version(&store, "fixed").as_deref(), Some(expected), "reload {i}");
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(failures.load(Ordering::Relaxed), 0);
    assert!(evaluations.load(Ordering::Relaxed) > 100, "evaluations ran during the reloads");
    assert!(seen_v2.load(Ordering::Relaxed));
}

#[test]
fn activate_pins_and_rollback_steps_back() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.wasm"), v1()).unwrap();
    std::fs::write(dir.path().join("b.wasm"), v2()).unwrap();
    let store = PolicyStore::open(shared_runtime(), StoreConfig::new(dir.path())).unwrap();
    assert_eq!(version(&store, "fixed"), Some("0.2.0".into()));
    let rolled = store.rollback("fixed").unwrap();
    assert_eq!(rolled.info().version, "0.1.0");
    assert_eq!(version(&store, "fixed"), Some("0.1.0".into()));
    // a pin survives rescans
    store.rescan();
    assert_eq!(version(&store, "fixed"), Some("0.1.0".into()));
    assert!(store.rollback("fixed").unwrap_err().to_string().contains("no earlier version"));
    store.activate(&r("fixed@0.2.0")).unwrap();
    assert_eq!(version(&store, "fixed"), Some("0.2.0".into()));
    store.activate(&r("fixed@0.1.0")).unwrap();
    store.activate(&r("fixed")).unwrap();
    assert_eq!(version(&store, "fixed"), Some("0.2.0".into()), "activating the bare name unpins");
    assert!(store.activate(&r("fixed@3.0.0")).unwrap_err().to_string().contains("no policy matches fixed@3.0.0"));
}

#[test]
fn removed_versions_are_retained_up_to_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fixed.wasm");
    std::fs::write(&path, v1()).unwrap();
    let config = StoreConfig { retained_versions: 0, ..StoreConfig::new(dir.path()) };
    let store = PolicyStore::open(shared_runtime(), config).unwrap();
    std::fs::write(&path, v2()).unwrap();
    let report = store.rescan();
    assert_eq!(report.loaded, vec!["fixed@0.2.0".to_string()]);
    assert_eq!(report.removed, vec!["fixed@0.1.0".to_string()]);
    assert_eq!(version(&store, "fixed@0.1.0"), None, "retention 0 drops the old version");
}

#[test]
fn a_missing_directory_is_an_error_naming_it() {
    let error = PolicyStore::open(shared_runtime(), StoreConfig::new("/nonexistent/policies")).err().unwrap();
    assert!(error.to_string().contains("/nonexistent/policies"), "{error}");
}

#[test]
fn a_rejected_file_is_not_validated_again_until_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loop.wasm");
    std::fs::write(&path, policy_bytes("testdata/infinite_loop.wasm")).unwrap();
    // a 1 s deadline: the smoke evaluation of the looping policy takes at least that
    let runtime =
        Runtime::new(scalegate::policy::RuntimeConfig { deadline: Duration::from_secs(1), ..config() }).unwrap();
    let started = Instant::now();
    let store = PolicyStore::open(Arc::new(runtime), StoreConfig::new(dir.path())).unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    let started = Instant::now();
    let report = store.rescan();
    assert!(started.elapsed() < Duration::from_millis(500), "re-validated: {:?}", started.elapsed());
    assert_eq!(report.failed.len(), 1, "still reported: {report:?}");
    assert_eq!(report.failed[0].kind, "timeout");
    // new bytes under the same name are judged afresh
    std::fs::write(&path, v1()).unwrap();
    assert_eq!(store.rescan().loaded, vec!["fixed@0.1.0".to_string()]);
}

/// Admission runs outside the catalog's lock: while a compile bomb takes
/// its full budget in the queue (from the directory and from an upload),
/// resolving, `activate` and `rollback` answer at once, the admission is
/// visible, and the bomb ends as a remembered `over_budget` rejection.
#[test]
fn a_slow_admission_blocks_nothing_and_is_visible_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fixed.wasm"), v1()).unwrap();
    std::fs::write(dir.path().join("fixed-2.wasm"), v2()).unwrap();
    let budget = scalegate::policy::CompileBudget { timeout: Duration::from_secs(3), ..compile_budget() };
    let runtime = Arc::new(Runtime::new(scalegate::policy::RuntimeConfig { compile: budget, ..config() }).unwrap());
    let store = PolicyStore::open(runtime, StoreConfig::new(dir.path())).unwrap();

    let bomb = crate::support::hostile::compile_bomb(10_000, 2_000);
    std::fs::write(dir.path().join("bomb.wasm"), &bomb).unwrap();
    let scanning = std::thread::spawn({
        let store = store.clone();
        move || store.rescan()
    });
    let uploading = std::thread::spawn({
        let (store, bomb) = (store.clone(), crate::support::hostile::compile_bomb(10_001, 2_000));
        move || store.install("bomb", &bomb)
    });
    let started = Instant::now();
    let mut seen = Vec::new();
    while started.elapsed() < Duration::from_secs(2) {
        let asked = Instant::now();
        assert!(store.catalog().resolve(&r("fixed")).is_some());
        store.activate(&r("fixed@0.1.0")).unwrap();
        store.rollback("fixed").unwrap_err(); // nothing below 0.1.0
        store.activate(&r("fixed")).unwrap();
        assert!(asked.elapsed() < Duration::from_millis(50), "pin changes waited {:?}", asked.elapsed());
        seen.extend(store.admissions().into_iter().map(|a| (a.source.clone(), a.state)));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(seen.iter().any(|(_, state)| *state == "admitting"), "{seen:?}");
    assert!(seen.iter().any(|(_, state)| *state == "waiting"), "one at a time, the other waits: {seen:?}");
    assert!(seen.iter().any(|(source, _)| source == "upload:bomb"), "{seen:?}");

    let report = scanning.join().unwrap();
    let problem = report.failed.iter().find(|p| p.path.ends_with("bomb.wasm")).expect("the bomb is reported");
    assert_eq!(problem.kind, "over_budget", "{problem:?}");
    assert!(problem.message.contains("compile timeout"), "{problem:?}");
    let upload = uploading.join().unwrap().unwrap_err();
    assert!(upload.to_string().contains("compile timeout"), "{upload}");
    assert!(!dir.path().join("bomb-0.1.0.wasm").exists(), "a refused upload writes nothing");
    assert!(store.admissions().is_empty());

    // remembered: the next scan does not compile it again
    let again = Instant::now();
    let report = store.rescan();
    assert!(again.elapsed() < Duration::from_secs(1), "rescanned in {:?}", again.elapsed());
    assert!(report.failed.iter().any(|p| p.kind == "over_budget"));
}

/// A file over the size limit is refused without being read, an upload
/// with oversized metadata writes nothing.
#[test]
fn oversized_files_and_metadata_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let budget = scalegate::policy::CompileBudget { max_component_bytes: 1 << 20, ..compile_budget() };
    let runtime = Arc::new(Runtime::new(scalegate::policy::RuntimeConfig { compile: budget, ..config() }).unwrap());
    std::fs::write(dir.path().join("huge.wasm"), vec![0u8; 2 << 20]).unwrap();
    let store = PolicyStore::open(runtime, StoreConfig::new(dir.path())).unwrap();
    let problem = &store.catalog().problems[0];
    assert_eq!(problem.kind, "over_budget");
    assert!(problem.message.contains("the file is 2097152 bytes, the limit is 1048576"), "{problem:?}");

    let before: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    for fixture in ["hostile_metadata_huge_version", "hostile_metadata_huge_description"] {
        let error = store.install("hostile", &policy_bytes(&format!("testdata/{fixture}.wasm"))).unwrap_err();
        assert!(error.to_string().contains("the limit is"), "{error}");
        assert!(error.to_string().len() < 300, "{} bytes", error.to_string().len());
    }
    let after: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(before, after, "no file written");
}
