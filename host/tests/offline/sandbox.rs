//! A faulty or hostile policy cannot hurt the host: every misbehaving
//! fixture in `plugins/testdata/` ends as its typed error, within its
//! budget, and the runtime keeps serving other policies afterwards.

use crate::support::*;
use scalegate::policy::{Error, LogLevel, Runtime, RuntimeConfig};
use std::time::{Duration, Instant};

fn snapshot() -> scalegate::snapshot::Snapshot {
    example("target-tracking-scale-in.json")
}

#[test]
fn infinite_loop_is_stopped_within_twice_its_deadline() {
    let deadline = Duration::from_millis(200);
    let runtime = Runtime::new(RuntimeConfig { deadline, ..config() }).unwrap();
    let (policy, _) = runtime.load_file(&policy("testdata/infinite_loop.wasm")).unwrap();
    let started = Instant::now();
    let evaluation = policy.evaluate(&snapshot());
    let elapsed = started.elapsed();
    assert!(matches!(evaluation.outcome, Err(Error::Timeout { deadline_ms: 200 })), "{:?}", evaluation.outcome);
    assert!(elapsed >= deadline, "stopped before its deadline: {elapsed:?}");
    assert!(elapsed < deadline * 2, "took {elapsed:?}, more than twice the {deadline:?} deadline");
}

#[test]
fn memory_bomb_is_stopped_at_the_cap() {
    let limit = 32 << 20;
    let runtime = Runtime::new(RuntimeConfig { memory_limit_bytes: limit, ..config() }).unwrap();
    let (policy, _) = runtime.load_file(&policy("testdata/memory_bomb.wasm")).unwrap();
    let evaluation = policy.evaluate(&snapshot());
    match evaluation.outcome {
        Err(Error::MemoryLimit { limit_bytes }) => assert_eq!(limit_bytes, limit),
        other => panic!("expected MemoryLimit, got {other:?}"),
    }
}

#[test]
fn panic_is_a_trap_and_its_message_is_captured() {
    let runtime = runtime();
    let (policy, _) = runtime.load_file(&policy("testdata/panic.wasm")).unwrap();
    let evaluation = policy.evaluate(&snapshot());
    match &evaluation.outcome {
        Err(error @ Error::Trap(message)) => {
            assert!(message.contains("unreachable"), "{message}");
            assert!(error.is_fault());
            assert_eq!(error.metric_label(), "trap");
        }
        other => panic!("expected Trap, got {other:?}"),
    }
    let output = evaluation.logs.iter().find(|l| l.level == LogLevel::Output).expect("panic message captured");
    assert!(output.message.contains("index out of bounds"), "{}", output.message);
}

#[test]
fn huge_output_is_rejected() {
    let runtime = runtime();
    let (policy, _) = runtime.load_file(&policy("testdata/huge_output.wasm")).unwrap();
    match policy.evaluate(&snapshot()).outcome {
        Err(Error::InvalidOutput(message)) => assert!(message.contains("state is 2097152 bytes"), "{message}"),
        other => panic!("expected InvalidOutput, got {other:?}"),
    }
}

#[test]
fn wrong_world_is_incompatible_and_names_the_mismatch() {
    let runtime = runtime();
    let error = runtime.load_file(&policy("testdata/wrong_world.wasm")).unwrap_err();
    assert!(matches!(error, Error::Incompatible(_)), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("serves (0.1.0, 0.2.0)") && message.contains("exports: evaluate"), "{message}");
}

#[test]
fn invalid_metadata_is_rejected_with_the_offending_value() {
    let runtime = runtime();
    let error = runtime.load_file(&policy("testdata/bad_metadata.wasm")).unwrap_err();
    assert!(matches!(error, Error::InvalidMetadata(_)), "{error:?}");
    assert!(error.to_string().contains("\"Not A Valid Name!\""), "{error}");
}

#[test]
fn corrupt_bytes_are_rejected_with_the_reason() {
    let runtime = runtime();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"definitely not wasm".to_vec(), "magic number"),
        (Vec::new(), "magic number"),
        // a core module, not a component
        (b"\0asm\x01\0\0\0".to_vec(), "core WebAssembly module"),
        // a real component cut short
        (policy_bytes("hpa.wasm")[..5000].to_vec(), "out of bounds"),
    ];
    for (bytes, needle) in cases {
        let error = runtime.load(&bytes).unwrap_err();
        assert!(matches!(error, Error::Compile(_)), "{error:?}");
        assert!(error.to_string().contains(needle), "{error} should mention {needle}");
    }
}

#[test]
fn missing_file_is_an_io_error_naming_the_path() {
    let error = runtime().load_file(std::path::Path::new("/nonexistent/policy.wasm")).unwrap_err();
    assert!(matches!(error, Error::Io(_)) && error.to_string().contains("/nonexistent/policy.wasm"), "{error}");
}

#[test]
fn sandbox_grants_no_ambient_capabilities() {
    let runtime = runtime();
    let (policy, _) = runtime.load_file(&policy("testdata/sneaky.wasm")).unwrap();
    let snapshot = snapshot();
    let evaluation = policy.evaluate(&snapshot);
    let decision = evaluation.outcome.expect("sneaky evaluates");
    let fields: std::collections::HashMap<&str, &str> =
        decision.reason.split(' ').filter_map(|kv| kv.split_once('=')).collect();
    assert_eq!(fields["file"], "false", "no filesystem");
    assert_eq!(fields["env"], "0", "no environment");
    assert_eq!(fields["args"], "0", "no arguments");
    assert_eq!(fields["net"], "false", "no sockets");
    assert_eq!(fields["resolve"], "false", "no name lookup");
    assert_eq!(fields["wall_ms"], snapshot.now_ms.to_string(), "the clock reads the snapshot time");

    // stdout is captured and capped at 8 KiB; log lines capped at 100 per call
    let output: Vec<_> = evaluation.logs.iter().filter(|l| l.level == LogLevel::Output).collect();
    assert_eq!(output.len(), 1);
    assert_eq!(output[0].message.len(), 8 << 10);
    let info = evaluation.logs.iter().filter(|l| l.level == LogLevel::Info).count();
    assert_eq!(info, 100);
    assert_eq!(evaluation.dropped_logs, 50);

    // randomness is seeded: the same call on a fresh instance gives the same hash seed
    let fresh = Runtime::new(RuntimeConfig { recycle_instances: false, ..config() }).unwrap();
    let (again, _) = fresh.load_file(&crate::support::policy("testdata/sneaky.wasm")).unwrap();
    let first = again.evaluate(&snapshot).outcome.unwrap().reason;
    let second = again.evaluate(&snapshot).outcome.unwrap().reason;
    assert_eq!(first, second, "deterministic across fresh instances");
    assert_eq!(first, decision.reason);
}

#[test]
fn host_keeps_serving_other_policies_after_faults() {
    let runtime =
        Runtime::new(RuntimeConfig { deadline: Duration::from_millis(50), memory_limit_bytes: 32 << 20, ..config() })
            .unwrap();
    let (hpa, _) = runtime.load_file(&policy("hpa.wasm")).unwrap();
    let (looping, _) = runtime.load_file(&policy("testdata/infinite_loop.wasm")).unwrap();
    let (bomb, _) = runtime.load_file(&policy("testdata/memory_bomb.wasm")).unwrap();
    let (panicking, _) = runtime.load_file(&policy("testdata/panic.wasm")).unwrap();
    let snapshot = example("hpa-scale-up.json");
    let expected = hpa.evaluate(&snapshot).outcome.unwrap();

    // faults run concurrently with healthy evaluations on other threads
    std::thread::scope(|scope| {
        let faults = scope.spawn(|| {
            for _ in 0..3 {
                assert!(matches!(looping.evaluate(&snapshot).outcome, Err(Error::Timeout { .. })));
                assert!(matches!(bomb.evaluate(&snapshot).outcome, Err(Error::MemoryLimit { .. })));
                assert!(matches!(panicking.evaluate(&snapshot).outcome, Err(Error::Trap(_))));
            }
        });
        let healthy: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    for _ in 0..200 {
                        assert_eq!(hpa.evaluate(&snapshot).outcome.as_ref().unwrap(), &expected);
                    }
                })
            })
            .collect();
        faults.join().unwrap();
        for h in healthy {
            h.join().unwrap();
        }
    });
    // and afterwards
    assert_eq!(hpa.evaluate(&snapshot).outcome.unwrap(), expected);
}

// ---- hostile policies (plugins/testdata/hostile, and components made by support::hostile)

fn attack(params: serde_json::Value) -> scalegate::snapshot::Snapshot {
    let mut snapshot = snapshot();
    snapshot.params = params;
    snapshot
}

#[test]
fn waiting_on_time_in_evaluate_is_a_timeout_at_once() {
    let runtime = runtime();
    let (policy, _) = runtime.load_file(&policy("testdata/hostile.wasm")).unwrap();
    for name in ["sleep-3s", "sleep-hour", "pollable-forever", "poll-never"] {
        let started = Instant::now();
        let evaluation = policy.evaluate(&attack(serde_json::json!({ "attack": name })));
        assert!(
            matches!(evaluation.outcome, Err(Error::Timeout { deadline_ms: 100 })),
            "{name}: {:?}",
            evaluation.outcome
        );
        assert!(started.elapsed() < Duration::from_millis(200), "{name} took {:?}", started.elapsed());
    }
    // and the policy keeps working (a fresh instance replaces each dropped one)
    assert!(policy.evaluate(&attack(serde_json::json!({}))).outcome.is_ok());
}

#[test]
fn waiting_on_time_in_metadata_is_a_timeout_at_load() {
    let runtime = runtime();
    for variant in ["sleep_3s", "sleep_hour", "pollable_forever"] {
        let started = Instant::now();
        let error = runtime.load_file(&policy(&format!("testdata/hostile_metadata_{variant}.wasm"))).unwrap_err();
        assert!(matches!(error, Error::Timeout { deadline_ms: 2000 }), "{variant}: {error:?}");
        assert!(started.elapsed() < Duration::from_secs(4), "{variant} took {:?}", started.elapsed());
    }
}

#[test]
fn oversized_metadata_is_refused_naming_the_limit() {
    let runtime = runtime();
    let error = runtime.load_file(&policy("testdata/hostile_metadata_huge_version.wasm")).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, Error::InvalidMetadata(_)), "{error:?}");
    assert!(message.contains("version of policy hostile is 10485766 bytes, the limit is 64"), "{message}");
    assert!(message.len() < 200, "the message does not quote the value: {} bytes", message.len());
    let error = runtime.load_file(&policy("testdata/hostile_metadata_huge_description.wasm")).unwrap_err();
    assert!(
        error.to_string().contains("description of policy hostile is 41943040 bytes, the limit is 4096"),
        "{error}"
    );
}

#[test]
fn a_multi_megabyte_decline_is_invalid_output() {
    // building 32 MiB takes a while on a busy machine: the deadline is not what is tested here
    let runtime = Runtime::new(RuntimeConfig { deadline: Duration::from_secs(5), ..config() }).unwrap();
    let (policy, _) = runtime.load_file(&policy("testdata/hostile.wasm")).unwrap();
    let evaluation = policy.evaluate(&attack(serde_json::json!({ "attack": "decline-32mib" })));
    match evaluation.outcome {
        Err(error @ Error::InvalidOutput(_)) => {
            assert!(error.is_fault());
            let message = error.to_string();
            assert!(message.contains("policy-error message is 33554432 bytes, the limit is 16384"), "{message}");
        }
        other => panic!("expected InvalidOutput, got {other:?}"),
    }
}

#[test]
fn the_memory_cap_holds_for_all_memories_of_an_instance() {
    let limit = 256 << 20;
    // touching 180 MiB takes a while on a busy machine: the deadline is not what is tested here
    let deadline = Duration::from_secs(5);
    let runtime = Runtime::new(RuntimeConfig { memory_limit_bytes: limit, deadline, ..config() }).unwrap();
    let hostile = policy_bytes("testdata/hostile.wasm");
    let grow = |mib: u32| attack(serde_json::json!({ "attack": "grow", "mib": mib }));

    // one memory: 180 MiB fits under 256 MiB
    let (alone, _) = runtime.load(&hostile).unwrap();
    let grown = alone.evaluate(&grow(180)).outcome;
    assert!(grown.is_ok(), "{grown:?}");

    // three more memories of 60 MiB each: loading fits (180 MiB) ...
    let (four, _) = runtime.load(&crate::support::hostile::with_side_memories(&hostile, 3, 60)).unwrap();
    assert!(four.evaluate(&attack(serde_json::json!({}))).outcome.is_ok());
    // ... but growing the main one by 100 MiB more does not, though each memory stays far below the cap
    match four.evaluate(&grow(100)).outcome {
        Err(Error::MemoryLimit { limit_bytes }) => assert_eq!(limit_bytes, limit),
        other => panic!("expected MemoryLimit, got {other:?}"),
    }

    // three memories of 200 MiB each at instantiation: refused at load
    let error = runtime.load(&crate::support::hostile::with_side_memories(&hostile, 3, 200)).unwrap_err();
    assert!(matches!(error, Error::MemoryLimit { .. }), "{error:?}");
}

#[test]
fn a_compile_bomb_is_refused_within_the_budget() {
    let bomb = crate::support::hostile::compile_bomb(10_000, 2_000);
    let dir = tempfile::tempdir().unwrap();
    let budget = |timeout_s: u64, memory_mib: u64| scalegate::policy::CompileBudget {
        timeout: Duration::from_secs(timeout_s),
        memory_bytes: memory_mib << 20,
        ..compile_budget()
    };
    let runtime_with = |compile| {
        Runtime::new(RuntimeConfig { cache_dir: Some(dir.path().to_path_buf()), compile, ..config() }).unwrap()
    };

    // out of time: killed at the wall-clock budget
    let started = Instant::now();
    let error = runtime_with(budget(2, 4096)).load(&bomb).unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(error, Error::OverBudget(_)), "{error:?}");
    assert!(error.to_string().contains("longer than 2s (the compile timeout)"), "{error}");
    assert!(elapsed < Duration::from_secs(4), "refused after {elapsed:?}");

    // out of memory: the child's address space runs out
    let error = runtime_with(budget(60, 256)).load(&bomb).unwrap_err();
    assert!(error.to_string().contains("more than 256 MiB of address space"), "{error}");

    // too big to be considered at all
    let small = scalegate::policy::CompileBudget { max_component_bytes: 100_000, ..compile_budget() };
    let error = runtime_with(small).load(&bomb).unwrap_err();
    assert!(error.to_string().contains("the component is 252557 bytes, the limit is 100000"), "{error}");

    // the child leaves nothing behind but artifacts
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.ends_with(".cwasm"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn the_compiler_child_writes_the_artifact_the_host_loads() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(RuntimeConfig { cache_dir: Some(dir.path().to_path_buf()), ..config() }).unwrap();
    let hpa = policy("hpa.wasm");
    let (loaded, stats) = runtime.load_file(&hpa).unwrap();
    assert!(!stats.cache_hit);
    let artifacts = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(artifacts, 1, "the child wrote the artifact into the cache");
    assert!(loaded.evaluate(&example("hpa-scale-up.json")).outcome.is_ok());
    // without a cache the artifact goes through a temporary directory
    let uncached = Runtime::new(RuntimeConfig { cache_dir: None, ..config() }).unwrap();
    let (loaded, stats) = uncached.load_file(&hpa).unwrap();
    assert!(!stats.cache_hit);
    assert!(loaded.evaluate(&example("hpa-scale-up.json")).outcome.is_ok());
    // a component that does not compile: the child's reason comes back
    let error = runtime.load(b"\0asm\x0d\x00\x01\x00\x01\x05garbage").unwrap_err();
    assert!(matches!(error, Error::Compile(_)), "{error:?}");
}
