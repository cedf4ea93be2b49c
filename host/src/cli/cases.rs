//! `scalegate test POLICY --cases DIR`: expected decisions kept next to a
//! policy, checked through the host's real call path (the same runtime,
//! limits and output checks as the daemon). Each case is a file
//! (`.json`, `.yaml`, `.yml`) in DIR:
//!
//! ```yaml
//! description: scale up on CPU        # optional
//! snapshot: ../../../examples/snapshots/hpa-scale-up.json   # a path (relative to the case) or the snapshot itself
//! expect:
//!   replicas: 5                        # null: no opinion
//!   reason_contains: DesiredWithinRange
//!   deletion_costs: [{pod: web-2, cost: 120}]   # exactly these, any order
//!   metrics: {cpu: 90}                 # reported metrics, by name
//!   resources: {redis: {cpu: 0.143}}   # recommended targets (vertical)
//!   state_round_trip: true             # the returned state, fed back, is accepted
//!   error: invalid_params              # instead: the policy declines or faults with this kind
//! ```
//!
//! Prints a table and, under each failing case, what differed; exits 1
//! when any case fails (64 for unusable cases, 65 for an unusable policy).

use super::common::{EX_POLICY, Failure, runtime_config};
use crate::policy::{Declined, Error, LoadedPolicy, Runtime};
use crate::snapshot::{Decision, Snapshot};
use clap::Args;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The policy component (.wasm).
    pub policy: PathBuf,
    /// Directory of case files (.json, .yaml, .yml).
    #[arg(long)]
    pub cases: PathBuf,
}

/// One case file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    #[serde(default)]
    pub description: Option<String>,
    /// A path relative to the case file, or the snapshot itself.
    pub snapshot: serde_json::Value,
    pub expect: Expect,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `Some(None)`: no opinion.
    #[serde(default, deserialize_with = "present")]
    pub replicas: Option<Option<u32>>,
    pub reason_contains: Option<String>,
    pub deletion_costs: Option<Vec<ExpectedCost>>,
    pub metrics: Option<BTreeMap<String, f64>>,
    pub resources: Option<BTreeMap<String, BTreeMap<String, f64>>>,
    #[serde(default)]
    pub state_round_trip: bool,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedCost {
    pub pod: String,
    pub cost: i32,
}

/// Tells `replicas: null` (no opinion expected) from an absent `replicas`.
fn present<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<Option<u32>>, D::Error> {
    Option::<u32>::deserialize(de).map(Some)
}

/// The kind a case names an error by: `invalid_params`, `missing_input`,
/// `internal` for a policy declining; the fault's kind otherwise.
pub fn error_kind(error: &Error) -> &'static str {
    match error {
        Error::Declined(Declined::InvalidParams(_)) => "invalid_params",
        Error::Declined(Declined::MissingInput(_)) => "missing_input",
        Error::Declined(Declined::Internal(_)) => "internal",
        other => other.metric_label(),
    }
}

/// Reads a case file and the snapshot it names.
pub fn read_case(path: &Path) -> Result<(Case, Snapshot), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let case: Case = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| e.to_string())?
    } else {
        serde_yaml_ng::from_str(&text).map_err(|e| e.to_string())?
    };
    let snapshot = match &case.snapshot {
        serde_json::Value::String(relative) => {
            let file = path.parent().unwrap_or(Path::new(".")).join(relative);
            let text = std::fs::read_to_string(&file).map_err(|e| format!("snapshot {}: {e}", file.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("snapshot {}: {e}", file.display()))?
        }
        inline => serde_json::from_value(inline.clone()).map_err(|e| format!("snapshot: {e}"))?,
    };
    Ok((case, snapshot))
}

/// What differs between what a case expects and what the policy did; empty
/// when the case passes.
pub fn check(policy: &LoadedPolicy, snapshot: &Snapshot, expect: &Expect) -> (String, Vec<String>) {
    let outcome = policy.evaluate(snapshot).outcome;
    let mut problems = vec![];
    let decision = match (&outcome, &expect.error) {
        (Err(error), Some(kind)) => {
            if error_kind(error) != kind {
                problems.push(format!("error: expected {kind}, got {} ({error})", error_kind(error)));
            }
            return (format!("error {}", error_kind(error)), problems);
        }
        (Err(error), None) => {
            problems.push(format!("expected a decision, got {}: {error}", error_kind(error)));
            return (format!("error {}", error_kind(error)), problems);
        }
        (Ok(_), Some(kind)) => {
            problems.push(format!("error: expected {kind}, got a decision"));
            outcome.as_ref().unwrap()
        }
        (Ok(decision), None) => decision,
    };
    let got = describe(decision.desired_replicas);
    if let Some(replicas) = expect.replicas
        && replicas != decision.desired_replicas
    {
        problems.push(format!("replicas: expected {}, got {got}", describe(replicas)));
    }
    if let Some(text) = &expect.reason_contains
        && !decision.reason.contains(text.as_str())
    {
        problems.push(format!("reason: expected it to contain {text:?}, got {:?}", decision.reason));
    }
    if let Some(costs) = &expect.deletion_costs {
        let sorted = |mut v: Vec<(String, i32)>| {
            v.sort();
            v
        };
        let want = sorted(costs.iter().map(|c| (c.pod.clone(), c.cost)).collect());
        let have = sorted(decision.deletion_costs.iter().map(|c| (c.pod.clone(), c.cost)).collect());
        if want != have {
            problems.push(format!("deletion_costs: expected {want:?}, got {have:?}"));
        }
    }
    if let Some(metrics) = &expect.metrics {
        for (name, value) in metrics {
            match decision.metrics.iter().find(|m| &m.name == name) {
                Some(m) if close(m.value, *value) => {}
                Some(m) => problems.push(format!("metric {name}: expected {value}, got {}", m.value)),
                None => problems.push(format!("metric {name}: expected {value}, not reported")),
            }
        }
    }
    if let Some(resources) = &expect.resources {
        for (container, wanted) in resources {
            for (resource, target) in wanted {
                let got = decision
                    .resources
                    .iter()
                    .filter(|c| &c.container == container)
                    .flat_map(|c| c.resources.iter())
                    .find(|r| &r.resource == resource)
                    .map(|r| r.target);
                match got {
                    Some(got) if close(got, *target) => {}
                    Some(got) => problems.push(format!("{container}/{resource} target: expected {target}, got {got}")),
                    None => problems
                        .push(format!("{container}/{resource}: expected a target of {target}, none recommended")),
                }
            }
        }
    }
    if expect.state_round_trip {
        problems.extend(round_trip(policy, snapshot, decision));
    }
    (got, problems)
}

/// The decision's state, fed back with the same snapshot, is read: the
/// policy decides again (what it decides may differ — a smoothed value
/// moves when the same observation is applied twice).
fn round_trip(policy: &LoadedPolicy, snapshot: &Snapshot, first: &Decision) -> Option<String> {
    if first.state.is_empty() {
        return Some("state round trip: the decision carries no state".into());
    }
    let again = Snapshot { state: first.state.clone(), ..snapshot.clone() };
    match policy.evaluate(&again).outcome {
        Ok(_) => None,
        Err(error) => Some(format!("state round trip: with its own state fed back it failed: {error}")),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn describe(replicas: Option<u32>) -> String {
    replicas.map_or("no opinion".into(), |r| format!("replicas {r}"))
}

/// The case files of a directory, sorted.
fn case_files(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Failure::usage(format!("cannot read cases {}: {e}", dir.display())))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json" || e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Failure::usage(format!("no case files (.json, .yaml, .yml) in {}", dir.display())));
    }
    Ok(files)
}

pub fn run(args: &TestArgs, cache_dir: Option<PathBuf>) -> Result<(), Failure> {
    let files = case_files(&args.cases)?;
    let runtime = Runtime::new(runtime_config(cache_dir, 8))?;
    let (policy, _) = runtime.load_file(&args.policy).map_err(Failure::bad_policy)?;
    println!(
        "{} (sha256:{}…): {} cases in {}\n",
        policy.id(),
        &policy.digest()[..12],
        files.len(),
        args.cases.display()
    );
    let width = files.iter().filter_map(|f| f.file_stem()).map(|s| s.len()).max().unwrap_or(4).max(4);
    println!("  {:<width$}  {:<24}  result", "case", "got");
    let mut failed = 0;
    for file in &files {
        let name = file.file_stem().unwrap_or_default().to_string_lossy();
        let (got, problems) = match read_case(file) {
            Ok((case, snapshot)) => check(&policy, &snapshot, &case.expect),
            Err(error) => ("unreadable".into(), vec![format!("{}: {error}", file.display())]),
        };
        let result = if problems.is_empty() { "pass" } else { "FAIL" };
        println!("  {name:<width$}  {got:<24}  {result}");
        for problem in &problems {
            println!("  {:<width$}    - {problem}", "");
        }
        failed += usize::from(!problems.is_empty());
    }
    println!("\n{} cases: {} passed, {failed} failed", files.len(), files.len() - failed);
    if failed > 0 {
        return Err(Failure { code: EX_POLICY, message: format!("{failed} of {} cases failed", files.len()) });
    }
    Ok(())
}
