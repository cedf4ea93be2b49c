//! Every bundled policy's published params schema agrees with its parser:
//! params the schema accepts parse, params the parser rejects are rejected
//! by the schema. The schema verdicts come from an independent validator
//! (Python's `jsonschema`, draft 2020-12, installed with
//! kubernetes-validate); the parser's from the policy itself, through the
//! host's call path. Candidates are the policy's example params and
//! mutations derived from its schema (each field removed, retyped, pushed
//! past its bounds; unknown fields; one level deep in nested objects).
//!
//! A schema cannot relate one field to another or parse a Kubernetes
//! quantity: those rules are listed per policy below, and the test checks
//! the parser refuses each with a message that names it.

use crate::support::*;
use scalegate::policy::{Declined, Error, LoadedPolicy};
use scalegate::snapshot::Snapshot;
use serde_json::{Value, json};
use std::process::Command;

/// Params a schema lets through and the parser refuses, with a word its refusal names.
type Beyond = Vec<(Value, &'static str)>;

/// (built policy, example params, rules beyond the schema)
fn policies() -> Vec<(&'static str, Value, Beyond)> {
    let tracking = json!({"metric": "rps", "target": 100, "max_age_seconds": 60});
    vec![
        ("fixed.wasm", json!({"replicas": 3}), vec![]),
        ("target_tracking.wasm", tracking.clone(), vec![]),
        ("target_tracking_py.wasm", tracking.clone(), vec![]),
        ("target_tracking_js.wasm", tracking, vec![]),
        (
            "directive.wasm",
            json!({"kinds": ["scale-signal"], "step_out": [1, 1, 2, 5], "step_in": 1, "deletion_cost_metric": "connections"}),
            vec![],
        ),
        (
            "forecast.wasm",
            json!({"forecast": "replicas", "lead_time_seconds": 300, "target": 100, "max_age_seconds": 900}),
            vec![],
        ),
        (
            "queue.wasm",
            json!({"metric": "pending", "target": 50, "activation_threshold": 2, "max_age_seconds": 60}),
            vec![],
        ),
        (
            "kpa.wasm",
            json!({"metric": "concurrency", "target": 100, "target_utilization_percentage": 70, "stable_window_seconds": 60,
                   "panic_window_percentage": 10, "panic_threshold_percentage": 200, "max_scale_up_rate": 1000,
                   "max_scale_down_rate": 2, "activation_scale": 1, "scale_down_delay_seconds": 0, "max_age_seconds": 60}),
            vec![],
        ),
        (
            "urgency.wasm",
            json!({"metrics": {"cpu": {"high": 70, "low": 30, "critical": 90}, "connections": {"high": 800, "low": 200}},
                   "step_out": [1, 2, 5], "scale_in_after_seconds": 300, "deletion_cost_metric": "connections",
                   "max_age_seconds": 30}),
            vec![
                (json!({"metrics": {"cpu": {"high": 30, "low": 70}}}), "low (70) must be <= high"),
                (json!({"metrics": {"cpu": {"high": 70, "low": 30, "critical": 50}}}), "critical (50) must be > high"),
            ],
        ),
        (
            "thresholds.wasm",
            json!({"metric": "rps", "alpha": 0.5, "levels": {"1": [10, 0], "2": [30, 8]}, "max_age_seconds": 60}),
            vec![(json!({"metric": "rps", "levels": {"2": [1, 5]}}), "lower <= upper")],
        ),
        (
            "vpa.wasm",
            json!({"containerPolicies": [{"containerName": "*", "mode": "Auto", "minAllowed": {"cpu": "100m"},
                   "maxAllowed": {"memory": "1Gi"}, "controlledResources": ["cpu", "memory"]}],
                   "recommender": {"targetPercentile": 0.9, "halfLifeSeconds": 86400, "safetyMarginFraction": 0.15}}),
            vec![(
                json!({"containerPolicies": [{"containerName": "*", "minAllowed": {"cpu": "lots"}}]}),
                "minAllowed.cpu",
            )],
        ),
        (
            "hpa.wasm",
            json!({"minReplicas": 1, "maxReplicas": 10, "tolerance": 0.1, "downscaleStabilizationSeconds": 300,
                   "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}],
                   "behavior": {"scaleDown": {"stabilizationWindowSeconds": 120, "selectPolicy": "Max"}}}),
            vec![
                (json!({"minReplicas": 5, "maxReplicas": 2}), "greater than maxReplicas"),
                (
                    json!({"metrics": [{"type": "Pods", "pods": {"metric": {"name": "q"}, "target": {"type": "AverageValue", "averageValue": "0"}}}]}),
                    "must be positive",
                ),
            ],
        ),
    ]
}

const ODD_VALUES: [&str; 9] = ["\"text\"", "12.5", "-1", "0", "true", "null", "[]", "{}", "4294967296"];

/// The example and its mutations.
fn candidates(base: &Value) -> Vec<Value> {
    let odd: Vec<Value> = ODD_VALUES.iter().map(|v| serde_json::from_str(v).unwrap()).collect();
    let mut out = vec![base.clone(), json!([]), json!("params"), json!({"zzz-unknown": 1})];
    let object = base.as_object().unwrap();
    let mut with_unknown = base.clone();
    with_unknown["zzz-unknown"] = json!(1);
    out.push(with_unknown);
    for (key, value) in object {
        let mut removed = base.clone();
        removed.as_object_mut().unwrap().remove(key);
        out.push(removed);
        for v in &odd {
            let mut changed = base.clone();
            changed[key] = v.clone();
            out.push(changed);
        }
        if let Some(inner) = value.as_object() {
            for inner_key in inner.keys() {
                for v in &odd {
                    let mut changed = base.clone();
                    changed[key][inner_key] = v.clone();
                    out.push(changed);
                }
            }
        }
    }
    out
}

/// The schema's verdict on each instance, from Python's jsonschema.
fn schema_accepts(schema: &Value, instances: &[Value]) -> Vec<bool> {
    let script = "import json,sys\nfrom jsonschema import Draft202012Validator as V\nd=json.load(sys.stdin)\nv=V(d['schema'])\nprint(json.dumps([v.is_valid(i) for i in d['instances']]))";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let input = json!({"schema": schema, "instances": instances}).to_string();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python3 jsonschema (installed with kubernetes-validate: scripts/install-test-tools.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The parser's verdict: `Err(message)` when the policy refuses the params.
fn parse(policy: &LoadedPolicy, params: &Value) -> Result<(), String> {
    let mut snapshot: Snapshot = example("target-tracking-scale-in.json");
    snapshot.params = params.clone();
    match policy.evaluate(&snapshot).outcome {
        Err(Error::Declined(Declined::InvalidParams(message))) => Err(message),
        _ => Ok(()),
    }
}

#[test]
fn every_bundled_policy_schema_agrees_with_its_parser() {
    let runtime = runtime();
    let mut checked = 0;
    for (file, base, beyond) in policies() {
        let (policy, _) = runtime.load_file(&self::policy(file)).unwrap();
        let schema: Value = serde_json::from_str(&policy.info().params_schema).unwrap();
        let instances = candidates(&base);
        let verdicts = schema_accepts(&schema, &instances);
        assert!(verdicts[0], "{file}: the example params fail the schema");
        let mut disagreements = vec![];
        for (params, accepted) in instances.iter().zip(&verdicts) {
            let parsed = parse(&policy, params);
            if parsed.is_ok() != *accepted {
                disagreements.push(format!("{params}: schema {accepted}, parser {parsed:?}"));
            }
        }
        assert!(disagreements.is_empty(), "{file}: schema and parser disagree on\n{}", disagreements.join("\n"));
        let refused = verdicts.iter().filter(|a| !**a).count();
        assert!(refused >= 5, "{file}: only {refused} of {} candidates refused", instances.len());
        // the rules a schema cannot state: the schema lets them through, the parser names them
        let beyond_params: Vec<Value> = beyond.iter().map(|(p, _)| p.clone()).collect();
        let beyond_verdicts = schema_accepts(&schema, &beyond_params);
        for ((params, names), accepted) in beyond.iter().zip(beyond_verdicts) {
            assert!(accepted, "{file}: {params} is refused by the schema already; drop it from the list");
            let message = parse(&policy, params).expect_err("the parser refuses it");
            assert!(message.contains(names), "{file}: {params} refused as {message:?}, not naming {names:?}");
        }
        checked += instances.len();
    }
    assert!(checked > 300, "{checked} candidates");
}
