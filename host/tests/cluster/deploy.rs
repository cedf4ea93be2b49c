//! The manifests in `deploy/` (and any in `examples/`): rendered with
//! `kubectl kustomize`, validated against the Kubernetes API schemas with
//! `kubernetes-validate --strict`, the scalegate config inside them parsed
//! by the daemon's own parser, the container's flags parsed by its own CLI,
//! and the RBAC checked to be least-privilege *and* sufficient: every
//! request the actuator and the leader election make against the fake API
//! server must be allowed by a rule, and no rule may allow more than the
//! actuator's request table.

use crate::support::*;
use clap::Parser;
use fake_apiserver::FakeApiServer;
use scalegate::cluster::{Cluster, PINS_KEY, ResourceMetrics, StoredState, Target};
use scalegate::config::Config;
use scalegate::k8s::{KubeCluster, KubeSettings, LeaderElector, LeaseSettings};
use scalegate::leadership::Leadership;
use scalegate::snapshot::PodDeletionCost;
use serde::Deserialize;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

fn render(overlay: &str) -> String {
    let out = Command::new("kubectl")
        .args(["kustomize", overlay])
        .current_dir(workspace())
        .output()
        .expect("kubectl is needed to render deploy/ (scripts/install-test-tools.sh checks for it)");
    assert!(out.status.success(), "kubectl kustomize {overlay}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Strict validation, custom resources (KEDA's, the Prometheus operator's)
/// against their vendored CRDs (`host/tests/crds`); an unknown kind fails.
fn validate(path: &Path) {
    let out = Command::new("python3")
        .arg(workspace().join("scripts/validate-manifests.py"))
        .arg(path)
        .output()
        .expect("python3");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!report.contains("No module named"), "kubernetes-validate is missing: run scripts/install-test-tools.sh");
    assert!(out.status.success(), "{} does not validate:\n{report}", path.display());
}

pub(crate) fn documents(yaml: &str) -> Vec<serde_json::Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|doc| serde_json::Value::deserialize(doc).expect("YAML document"))
        .filter(|doc| !doc.is_null())
        .collect()
}

pub(crate) fn of_kind<'a>(docs: &'a [serde_json::Value], kind: &'a str) -> impl Iterator<Item = &'a serde_json::Value> {
    docs.iter().filter(move |d| d["kind"] == kind)
}

/// Renders, writes and validates one kustomization; returns its documents.
pub(crate) fn rendered(overlay: &str) -> Vec<serde_json::Value> {
    let yaml = render(overlay);
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    std::fs::write(file.path(), &yaml).unwrap();
    validate(file.path());
    documents(&yaml)
}

#[test]
fn deploy_manifests_validate_and_carry_a_valid_config_and_valid_flags() {
    for overlay in ["deploy/base", "deploy/overlays/example", "deploy/overlays/full"] {
        let docs = rendered(overlay);
        let config = of_kind(&docs, "ConfigMap")
            .find(|c| c["metadata"]["name"].as_str().unwrap().starts_with("scalegate-config"))
            .expect("config map");
        let text = config["data"]["scalegate.yaml"].as_str().unwrap();
        Config::parse(text).unwrap_or_else(|e| panic!("{overlay}: scalegate.yaml: {e}"));

        let deployment = of_kind(&docs, "Deployment").next().expect("deployment");
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let mut argv = vec!["scalegate".to_string()];
        argv.extend(container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()));
        scalegate::cli::Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{overlay}: container args: {e}"));
        assert!(argv.contains(&"--leader-election".to_string()), "two replicas need leader election");
        assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(container["securityContext"]["capabilities"]["drop"][0], "ALL");
        assert_eq!(deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"], true);
    }
    // the KEDA component: mutual TLS, the port on both Services, the certificate mounted where the flags say
    let full = rendered("deploy/overlays/full");
    let deployment = of_kind(&full, "Deployment").next().unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    let args: Vec<&str> =
        pod["containers"][0]["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(args.contains(&"--keda-listen=0.0.0.0:50051"), "{args:?}");
    assert!(!args.contains(&"--keda-plaintext"), "TLS by default");
    let mount =
        pod["containers"][0]["volumeMounts"].as_array().unwrap().iter().find(|m| m["name"] == "keda-tls").unwrap();
    for file in ["tls.crt", "tls.key", "ca.crt"] {
        let path = format!("{}/{file}", mount["mountPath"].as_str().unwrap());
        assert!(args.iter().any(|a| a.ends_with(&format!("={path}"))), "{path} is mounted but no flag reads it");
    }
    assert!(pod["volumes"].as_array().unwrap().iter().any(|v| v["secret"]["secretName"] == "scalegate-keda-tls"));
    for service in of_kind(&full, "Service") {
        let ports = service["spec"]["ports"].as_array().unwrap();
        assert!(ports.iter().any(|p| p["port"] == 50051 && p["targetPort"] == "grpc-keda"), "{service}");
    }
    let example = rendered("deploy/overlays/example");
    let config = of_kind(&example, "ConfigMap").next().unwrap()["data"]["scalegate.yaml"].as_str().unwrap().to_string();
    assert_eq!(Config::parse(&config).unwrap().workloads[0].target.namespace, "shop");
}

#[test]
fn manifests_in_examples_validate() {
    let mut checked = 0;
    let mut configs = vec![];
    let mut scaled_objects = vec![];
    for path in files_under(&workspace().join("examples"), &["yaml", "yml"]) {
        let text = std::fs::read_to_string(&path).unwrap();
        let docs = documents(&text);
        if docs.iter().any(|d| d["apiVersion"].is_string() && d["kind"].is_string()) {
            validate(&path);
            scaled_objects.extend(of_kind(&docs, "ScaledObject").cloned().map(|d| (path.clone(), d)));
        } else {
            configs.push(Config::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
        }
        checked += 1;
    }
    // each ScaledObject pointed at scalegate names a workload an example binds with `actuator: keda`
    for (path, object) in &scaled_objects {
        let meta = &object["metadata"];
        for trigger in object["spec"]["triggers"].as_array().unwrap() {
            let metadata = &trigger["metadata"];
            if !trigger["type"].as_str().unwrap().starts_with("external")
                || !metadata["scalerAddress"].as_str().unwrap().starts_with("scalegate")
            {
                continue;
            }
            let workload = metadata["workload"].as_str().map(str::to_string).unwrap_or_else(|| {
                format!("{}/{}", meta["namespace"].as_str().unwrap(), meta["name"].as_str().unwrap())
            });
            let bound = configs.iter().flat_map(|c| &c.workloads).any(|w| {
                w.actuator == scalegate::config::Actuator::Keda
                    && (w.name == workload || format!("{}/{}", w.target.namespace, w.target.name) == workload)
            });
            assert!(bound, "{}: {workload} is bound with actuator keda in no example config", path.display());
        }
    }
    assert!(scaled_objects.len() >= 2, "seed 002 and seed 004 ship a ScaledObject");
    println!("{checked} example YAML files checked");
}

/// (apiGroup, resource, verb, namespace or "" for cluster scope, name).
type Request = (String, String, String, String, String);

/// What RBAC would check for a request the fake API server received.
fn rbac_request(line: &str) -> Request {
    let (method, rest) = line.split_once(' ').unwrap();
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let s: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, namespaced) = match s[0] {
        "api" => ("".to_string(), &s[2..]),
        _ => (s[1].to_string(), &s[3..]),
    };
    assert_eq!(namespaced[0], "namespaces", "{line}");
    let namespace = namespaced[1].to_string();
    let resource = namespaced[2].to_string();
    let name = namespaced.get(3).map(|n| n.to_string()).unwrap_or_default();
    let resource = match namespaced.get(4) {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource,
    };
    let verb = match method {
        "GET" if name.is_empty() && query.contains("watch=true") => "watch",
        "GET" if name.is_empty() => "list",
        "GET" => "get",
        "PUT" => "update",
        "PATCH" => "patch",
        "POST" => "create",
        other => panic!("unexpected method {other}"),
    };
    (group, resource, verb.to_string(), namespace, name)
}

fn allows(rules: &serde_json::Value, (group, resource, verb, _, name): &Request) -> bool {
    let list = |v: &serde_json::Value| -> Vec<String> {
        v.as_array().map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect()).unwrap_or_default()
    };
    rules.as_array().unwrap().iter().any(|rule| {
        let names = list(&rule["resourceNames"]);
        list(&rule["apiGroups"]).contains(group)
            && list(&rule["resources"]).contains(resource)
            && list(&rule["verbs"]).contains(verb)
            && (names.is_empty() || names.contains(name))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_allows_exactly_what_the_daemon_does() {
    let docs = rendered("deploy/overlays/example");
    // no wildcard, no secrets, no cluster-wide binding of the actuator
    for role in of_kind(&docs, "ClusterRole").chain(of_kind(&docs, "Role")) {
        let text = role["rules"].to_string();
        assert!(!text.contains('*'), "wildcard in {}", role["metadata"]["name"]);
        assert!(!text.contains("secrets"), "secrets in {}", role["metadata"]["name"]);
        for rule in role["rules"].as_array().unwrap() {
            for verb in rule["verbs"].as_array().unwrap() {
                assert!(
                    ["get", "list", "watch", "update", "patch", "create"].contains(&verb.as_str().unwrap()),
                    "verb {verb} is more than scalegate needs"
                );
            }
        }
    }
    assert_eq!(of_kind(&docs, "ClusterRoleBinding").count(), 0, "the actuator is bound per namespace");
    let cluster_role = of_kind(&docs, "ClusterRole").next().unwrap()["rules"].clone();
    let own_role = of_kind(&docs, "Role").next().unwrap();
    assert_eq!(own_role["metadata"]["namespace"], "scalegate");
    let bound_namespaces: Vec<String> = of_kind(&docs, "RoleBinding")
        .filter(|b| b["roleRef"]["kind"] == "ClusterRole")
        .map(|b| b["metadata"]["namespace"].as_str().unwrap().to_string())
        .collect();

    // everything the daemon does, against the fake API server
    let fake = FakeApiServer::start().await;
    fake.add_deployment("shop", "checkout", 2);
    fake.put_running_pod("shop", "checkout", "checkout-0", true, "100m");
    let client = scalegate::k8s::client(kube::Config::new(fake.url().parse().unwrap())).unwrap();
    let cluster = KubeCluster::new(client.clone(), KubeSettings::default());
    let target = Target {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        namespace: "shop".into(),
        name: "checkout".into(),
    };
    cluster.observe(&target).await.unwrap();
    cluster.set_deletion_costs(&target, &[PodDeletionCost { pod: "checkout-0".into(), cost: 1 }]).await.unwrap();
    cluster.scale(&target, 2, 3, "test").await.unwrap();
    let resize = scalegate::cluster::ContainerResize {
        container: "app".into(),
        requests: scalegate::snapshot::Compute { cpu: Some(0.1), memory: None },
        limits: scalegate::snapshot::Compute::default(),
    };
    cluster.resize(&target, "checkout-0", &[resize], "test").await.unwrap();
    fake.put_pod_metrics("shop", "checkout-0", &[("app", "50m", "64Mi")]);
    assert_eq!(cluster.list_pod_usage("shop").await.unwrap().len(), 1);
    assert_eq!(cluster.pods_of(&target).await.unwrap().len(), 1);
    // decision state: a workload's in its namespace, the pins in scalegate's own
    for (namespace, key) in [("shop", "shop/checkout"), ("scalegate", PINS_KEY)] {
        let stored =
            |n: u32| StoredState { namespace: namespace.into(), key: key.into(), data: serde_json::json!({"n": n}) };
        assert!(cluster.load_states(&[namespace.to_string()]).await.unwrap().is_empty());
        cluster.save_state(&stored(1)).await.unwrap(); // create
        cluster.save_state(&stored(2)).await.unwrap(); // replace
        let object = fake.objects("scalegatestates", namespace).pop().unwrap();
        fake.touch_object("scalegatestates", namespace, object["metadata"]["name"].as_str().unwrap());
        cluster.save_state(&stored(3)).await.unwrap(); // conflict: read again, replace
        let loaded = cluster.load_states(&[namespace.to_string()]).await.unwrap();
        assert_eq!(loaded, [stored(3)]);
    }
    let leadership = Arc::new(Leadership::elected());
    fake.put_running_pod("scalegate", "scalegate", "scalegate-7d9f-a", true, "100m");
    let settings = LeaseSettings::new("scalegate", "scalegate-leader", "scalegate-7d9f-a", Duration::from_secs(1));
    let stop = tokio_util::sync::CancellationToken::new();
    let elector =
        LeaderElector::new(client.clone(), settings, leadership.clone()).labelling(client, "scalegate-7d9f-a");
    let elector = tokio::spawn(elector.run(stop.clone()));
    while !leadership.is_leader() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // a renewal
    let label =
        || fake.pod("scalegate", "scalegate-7d9f-a").unwrap()["metadata"]["labels"]["scalegate.dev/leader"].clone();
    assert_eq!(label(), "true", "the leader labels its pod");
    stop.cancel();
    elector.await.unwrap();
    assert!(label().is_null(), "and takes the label off when it stops leading");
    assert_eq!(fake.violations(), Vec::<String>::new());

    let mut seen = std::collections::BTreeSet::new();
    for line in fake.requests() {
        let request = rbac_request(&line);
        let allowed = if request.3 == "scalegate" {
            allows(&own_role["rules"], &request)
        } else {
            bound_namespaces.contains(&request.3) && allows(&cluster_role, &request)
        };
        assert!(allowed, "RBAC in deploy/ does not allow {line} ({request:?})");
        seen.insert((request.0, request.1, request.2));
    }
    // and each rule's verbs are used (nothing granted "just in case")
    for rule in cluster_role.as_array().unwrap().iter().chain(own_role["rules"].as_array().unwrap()) {
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                for verb in rule["verbs"].as_array().unwrap() {
                    let key = (
                        group.as_str().unwrap().to_string(),
                        resource.as_str().unwrap().to_string(),
                        verb.as_str().unwrap().to_string(),
                    );
                    // statefulsets/scale mirrors deployments/scale for StatefulSet targets
                    let mirrored = (key.0.clone(), key.1.replace("statefulsets", "deployments"), key.2.clone());
                    assert!(seen.contains(&key) || seen.contains(&mirrored), "rule grants {key:?}, never used");
                }
            }
        }
    }
}
