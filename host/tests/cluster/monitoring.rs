//! The monitoring component (`deploy/components/monitoring`): every PromQL
//! expression of the Grafana dashboard and the PrometheusRule parses
//! (`promtool check rules`), and every metric they query is one a running
//! `scalegate run` exports — read from its `/metrics`, with series of every
//! kind present (a kube workload with a pushed input and a shadow, a KEDA
//! workload, the KEDA listener).

use crate::deploy::{of_kind, rendered};
use crate::support::daemon::{Daemon, workdir};
use crate::support::rig::eventually;
use fake_apiserver::FakeApiServer;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

/// Every PromQL expression of the dashboard (Grafana's variables replaced
/// by values of the same type) and of the rules, with where it came from.
fn expressions(docs: &[serde_json::Value]) -> (Vec<(String, String)>, serde_json::Value) {
    let dashboard = of_kind(docs, "ConfigMap")
        .find(|c| c["metadata"]["name"] == "scalegate-dashboard")
        .expect("the dashboard ConfigMap");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1", "Grafana's sidecar picks it up by label");
    let dashboard: serde_json::Value =
        serde_json::from_str(dashboard["data"]["scalegate-dashboard.json"].as_str().unwrap()).expect("dashboard JSON");
    let grafana = |expr: &str| {
        expr.replace("$__rate_interval", "5m")
            .replace("$__interval", "1m")
            .replace("$namespace", ".*")
            .replace("$workload", ".*")
    };
    let mut found = vec![];
    for panel in dashboard["panels"].as_array().expect("panels") {
        let targets = panel["targets"].as_array().unwrap_or_else(|| panic!("panel {} has no targets", panel["title"]));
        assert!(!targets.is_empty(), "panel {} queries nothing", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_else(|| panic!("panel {}: no expr", panel["title"]));
            found.push((format!("panel {}", panel["title"]), grafana(expr)));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"]["query"].as_str() {
            // label_values(SELECTOR, label) is Grafana's: its selector is PromQL
            let selector = query.strip_prefix("label_values(").and_then(|q| q.rsplit_once(',')).unwrap().0;
            found.push((format!("variable {}", variable["name"]), grafana(selector)));
        }
    }
    let rule = of_kind(docs, "PrometheusRule").next().expect("the PrometheusRule");
    for group in rule["spec"]["groups"].as_array().unwrap() {
        for r in group["rules"].as_array().unwrap() {
            found.push((format!("alert {}", r["alert"]), r["expr"].as_str().unwrap().to_string()));
        }
    }
    (found, rule["spec"].clone())
}

/// The `scalegate_*` names an expression reads (outside quoted label values).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut unquoted = String::new();
    let mut quote = None;
    for c in expr.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' || c == '`' => quote = Some(c),
            None => unquoted.push(c),
        }
    }
    unquoted
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with("scalegate_"))
        .map(str::to_string)
        .collect()
}

/// The sample names a scrape can carry, from its `# TYPE` lines (a family
/// with no series yet still declares itself).
fn exported(scrape: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in scrape.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else { continue };
        let (name, kind) = rest.split_once(' ').unwrap();
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            "info" => &["_info"],
            _ => &[""],
        };
        names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
    }
    names
}

const CONFIG: &str = r#"
policies: {directory: POLICIES}
workloads:
  - target: {namespace: shop, name: web}
    interval: 1s
    max_replicas: 20
    policies: [{policy: fixed, params: {replicas: 5}}]
    shadow: {policy: fixed, params: {replicas: 4}}
    metrics: [{name: queue, push: {}, required: false}]
  - target: {namespace: shop, name: worker}
    interval: 1s
    min_replicas: 0
    max_replicas: 10
    actuator: keda
    policies: [{policy: fixed, params: {replicas: 2}}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_query_only_what_the_daemon_exports_and_parse() {
    let docs = rendered("deploy/overlays/full");
    let (expressions, rules) = expressions(&docs);
    assert!(expressions.len() > 20, "{} expressions", expressions.len());

    // every expression parses: the rules as they are, the dashboard's as recording rules
    let dir = tempfile::tempdir().unwrap();
    let mut groups = rules["groups"].as_array().unwrap().clone();
    let recorded: Vec<serde_json::Value> = expressions
        .iter()
        .enumerate()
        .filter(|(_, (from, _))| !from.starts_with("alert"))
        .map(|(i, (_, expr))| serde_json::json!({"record": format!("scalegate:dashboard_{i}"), "expr": expr}))
        .collect();
    groups.push(serde_json::json!({"name": "dashboard", "rules": recorded}));
    let file = dir.path().join("rules.yaml");
    std::fs::write(&file, serde_json::to_string(&serde_json::json!({"groups": groups})).unwrap()).unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool (the prometheus package: scripts/install-test-tools.sh)");
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // a running daemon with series of every kind
    let fake = FakeApiServer::start().await;
    for name in ["web", "worker"] {
        fake.add_deployment("shop", name, 2);
        fake.put_running_pod("shop", name, &format!("{name}-0"), true, "100m");
    }
    let run = workdir(&fake.kubeconfig(), CONFIG, &[("fixed.wasm", "fixed.wasm")]);
    let token = run.path().join("token");
    std::fs::write(&token, "s3cret-token-for-tests").unwrap();
    let daemon = Daemon::start(
        run.path(),
        &["--admin-token-file", token.to_str().unwrap(), "--keda-listen", "127.0.0.1:0", "--keda-plaintext"],
    );
    eventually("the scale", Duration::from_secs(20), || fake.replicas("shop", "web") == Some(5)).await;
    let push = br#"{"workload": "shop/web", "metrics": [{"name": "queue", "value": 3}]}"#;
    let (status, body) = daemon.request("POST", "/v1/signals", Some("s3cret-token-for-tests"), push);
    assert_eq!(status, 202, "{body}");
    let mut scrape = String::new();
    eventually("every per-workload series", Duration::from_secs(10), || {
        scrape = daemon.get("/metrics");
        scrape.contains("scalegate_workload_input_age_seconds{")
            && scrape.contains("scalegate_workload_keda_active{")
            && scrape.contains("scalegate_workload_shadow_diverged{")
    })
    .await;
    let exported = exported(&scrape);

    let mut unknown = vec![];
    let mut queried = BTreeSet::new();
    for (from, expr) in &expressions {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{from} queries no scalegate metric: {expr}");
        for name in names {
            if !exported.contains(&name) {
                unknown.push(format!("{from}: {name}"));
            }
            queried.insert(name);
        }
    }
    assert!(unknown.is_empty(), "queried but not exported:\n{}\nexported: {exported:?}", unknown.join("\n"));
    // what the issue asks the dashboard and the alerts to cover
    for needed in [
        "scalegate_decisions_total",
        "scalegate_workload_desired_replicas",
        "scalegate_workload_current_replicas",
        "scalegate_guardrail_clamps_total",
        "scalegate_policy_faults_total",
        "scalegate_policy_evaluation_seconds_bucket",
        "scalegate_source_errors_total",
        "scalegate_workload_input_age_seconds",
        "scalegate_workload_input_stale",
        "scalegate_keda_rpc_seconds_bucket",
        "scalegate_keda_rpc_seconds_count",
        "scalegate_leader",
    ] {
        assert!(queried.contains(needed), "nothing queries {needed}");
    }
    for alert in ["ScalegatePolicyFaulting", "ScalegateInputsStale", "ScalegateNoLeader", "ScalegateKedaRpcErrors"] {
        assert!(expressions.iter().any(|(from, _)| from == &format!("alert \"{alert}\"")), "alert {alert} missing");
    }
}

#[test]
fn metric_names_are_read_whole() {
    let names =
        metric_names(r#"time() - max by (x) (scalegate_a_seconds{y="scalegate_b"}) / rate(my_scalegate_c[5m])"#);
    assert_eq!(names, BTreeSet::from(["scalegate_a_seconds".to_string()]));
}
