//! Hostile policy for the host's sandbox tests: each evaluation attacks the
//! way `params.attack` says; without an attack it recommends the current
//! count, so it is admitted (the smoke evaluation has `{}` params) and a
//! workload can be switched to an attack by changing its params.
//!
//! | `attack` | what `evaluate` does |
//! |---|---|
//! | `sleep-3s` / `sleep-hour` | `std::thread::sleep` for 3 s / an hour |
//! | `pollable-forever` | blocks on a monotonic-clock pollable for instant `u64::MAX` |
//! | `poll-never` | polls a pollable due in `u64::MAX` ns |
//! | `spin` | loops forever (until the host's deadline) |
//! | `sleep-zero` | waits on a zero-length timer, then decides like without an attack |
//! | `decline-32mib` | declines with a 32 MiB message |
//! | `grow` | allocates and touches `params.mib` MiB of its memory |
//!
//! `metadata()` attacks when built with `HOSTILE_METADATA` set (see
//! `scripts/build-plugins.sh`): `sleep-3s`, `sleep-hour`, `pollable-forever`,
//! `huge-version` (10 MiB), `huge-description` (40 MiB description and schema).
//! Built with `HOSTILE_EVALUATE` set, `evaluate` makes that attack whatever
//! the params say — except on the store's smoke snapshot (namespace
//! `scalegate-smoke`), which it passes to get admitted; `HOSTILE_VERSION`
//! sets the version (default 0.1.0).

use scalegate_policy_sdk::Guest;
use scalegate_policy_sdk::types::{Decision, PolicyError, PolicyInfo, Snapshot};
use std::time::Duration;

const METADATA_ATTACK: &str = match option_env!("HOSTILE_METADATA") {
    Some(attack) => attack,
    None => "",
};
const EVALUATE_ATTACK: Option<&str> = option_env!("HOSTILE_EVALUATE");
const VERSION: &str = match option_env!("HOSTILE_VERSION") {
    Some(version) => version,
    None => "0.1.0",
};

struct Policy;

/// Attacks shared by `metadata()` and `evaluate`; false when `attack` names none of them.
fn block(attack: &str) -> bool {
    match attack {
        "sleep-3s" => std::thread::sleep(Duration::from_secs(3)),
        "sleep-hour" => std::thread::sleep(Duration::from_secs(3600)),
        "pollable-forever" => wasip2::clocks::monotonic_clock::subscribe_instant(u64::MAX).block(),
        "poll-never" => {
            let never = wasip2::clocks::monotonic_clock::subscribe_duration(u64::MAX);
            let _ = wasip2::io::poll::poll(&[&never]);
        }
        _ => return false,
    }
    true
}

/// The string value of `"key":"…"` in the params (no JSON parser in a fixture).
fn param<'a>(params: &'a str, key: &str) -> Option<&'a str> {
    let rest = params.split(&format!("\"{key}\"")).nth(1)?.trim_start().strip_prefix(':')?.trim_start();
    match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next(),
        None => rest.split(|c: char| !c.is_ascii_digit()).next(),
    }
}

impl Guest for Policy {
    fn metadata() -> PolicyInfo {
        block(METADATA_ATTACK);
        let (version, description) = match METADATA_ATTACK {
            "huge-version" => (format!("1.0.0-{}", "9".repeat(10 << 20)), String::new()),
            "huge-description" => (VERSION.to_string(), "d".repeat(40 << 20)),
            _ => (VERSION.to_string(), "attacks the host as its params say".to_string()),
        };
        let params_schema = if METADATA_ATTACK == "huge-description" {
            format!("{{\"description\": \"{}\"}}", "s".repeat(40 << 20))
        } else {
            "{}".into()
        };
        PolicyInfo { name: "hostile".into(), version, description, params_schema, reads: vec![] }
    }

    fn evaluate(snapshot: Snapshot) -> Result<Decision, PolicyError> {
        let attack = match EVALUATE_ATTACK {
            Some(attack) if snapshot.workload.namespace != "scalegate-smoke" => attack,
            _ => param(&snapshot.params, "attack").unwrap_or(""),
        };
        if block(attack) {
            return Ok(Decision::no_opinion(format!("woke up after {attack}")));
        }
        match attack {
            "spin" => {
                let mut n = snapshot.now_ms;
                loop {
                    n = std::hint::black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            "sleep-zero" => {
                wasip2::clocks::monotonic_clock::subscribe_duration(0).block();
                Ok(Decision::replicas(snapshot.workload.current_replicas, "slept for zero"))
            }
            "decline-32mib" => Err(PolicyError::Internal("x".repeat(32 << 20))),
            "grow" => {
                let mib: usize = param(&snapshot.params, "mib").and_then(|n| n.parse().ok()).unwrap_or(1);
                let mut memory = vec![0u8; mib << 20];
                for page in memory.iter_mut().step_by(4096) {
                    *page = 1;
                }
                let touched = std::hint::black_box(&memory).iter().step_by(4096).filter(|b| **b == 1).count();
                Ok(Decision::no_opinion(format!("touched {touched} pages")))
            }
            _ => Ok(Decision::replicas(snapshot.workload.current_replicas, "peaceful: no attack in params")),
        }
    }
}

scalegate_policy_sdk::export_policy!(Policy);
