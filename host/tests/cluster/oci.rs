//! Policies shipped through a real OCI registry (Debian's `docker-registry`,
//! the CNCF distribution registry) to `scalegate run`: `scalegate policy
//! push`, a binding by tag, a pull by digest through the admin API, the tag
//! moved → the new version decides without a restart, the registry down →
//! the version pulled before keeps deciding (across a restart too, from the
//! cache) and the failure shows in `/v1/policies` and the metrics; a
//! corrupted blob is refused by digest; credentials from a docker config;
//! an 18 MB Python policy travels the same way.

use crate::support::daemon::{Daemon, workdir};
use crate::support::registry::Registry;
use crate::support::rig::eventually;
use crate::support::*;
use fake_apiserver::FakeApiServer;
use std::process::Command;
use std::time::Duration;

const TOKEN: &str = "s3cret-token-for-oci-tests";

/// `scalegate policy push`; its exit status and what it printed.
fn try_push(registry: &Registry, file: &str, reference: &str, extra: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_scalegate"))
        .args(["policy", "push"])
        .arg(policy(file))
        .arg(reference)
        .args(["--insecure-registry", &registry.host()])
        .args(extra)
        .env("SCALEGATE_CACHE_DIR", shared_cache())
        .env_remove("SCALEGATE_OCI_DOCKER_CONFIG")
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn push(registry: &Registry, file: &str, reference: &str) -> String {
    let (pushed, text) = try_push(registry, file, reference, &[]);
    assert!(pushed, "push {file} to {reference}: {text}");
    text
}

/// The daemon's view of one reference in `GET /v1/policies`.
fn oci_status(daemon: &Daemon, reference: &str) -> serde_json::Value {
    let (_, body) = daemon.request("GET", "/v1/policies", None, b"");
    let listing: serde_json::Value = serde_json::from_str(&body).unwrap();
    listing["oci"].as_array().unwrap().iter().find(|s| s["reference"] == reference).cloned().unwrap_or_default()
}

fn daemon_args<'a>(registry: &'a str, token: &'a str, cache: &'a str) -> Vec<&'a str> {
    vec![
        "--oci-insecure-registry",
        registry,
        "--oci-poll-interval",
        "500ms",
        "--admin-token-file",
        token,
        "--cache-dir",
        cache,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_travel_through_a_registry_and_follow_a_moved_tag() {
    let mut registry = Registry::start();
    let stable = registry.reference("policies/fixed:stable");
    let python = registry.reference("policies/target-tracking-py:1.0.0");
    let pushed = push(&registry, "fixed.wasm", &stable);
    assert!(pushed.contains("pushed fixed@"), "{pushed}");
    push(&registry, "target_tracking_py.wasm", &python);

    let fake = FakeApiServer::start().await;
    for name in ["web", "api"] {
        fake.add_deployment("shop", name, 2);
        fake.put_running_pod("shop", name, &format!("{name}-0"), true, "100m");
    }
    let config = format!(
        "policies: {{directory: POLICIES}}\nworkloads:\n  - target: {{namespace: shop, name: web}}\n    interval: 1s\n    max_replicas: 20\n    policies: [{{policy: \"{stable}\", params: {{replicas: 5}}}}]\n  - target: {{namespace: shop, name: api}}\n    interval: 1s\n    max_replicas: 20\n    metrics: [{{name: rps, push: {{}}, required: false}}]\n    policies: [{{policy: \"{python}\", params: {{metric: rps, target: 10}}}}]\n"
    );
    let dir = workdir(&fake.kubeconfig(), &config, &[]);
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let cache = dir.path().join("cache");
    let (host, token_path, cache_path) = (registry.host(), token.display().to_string(), cache.display().to_string());
    let mut daemon = Daemon::start(dir.path(), &daemon_args(&host, &token_path, &cache_path));

    // pulled by tag at start-up and deciding
    eventually("web scaled by the pulled fixed", Duration::from_secs(60), || fake.replicas("shop", "web") == Some(5))
        .await;
    let first = oci_status(&daemon, &stable);
    assert_eq!(first["policy"], "fixed@0.1.0", "{first}");
    assert_eq!(first["followed"], true);
    assert!(first["error"].is_null(), "{first}");
    let first_manifest = first["manifest_digest"].as_str().unwrap().to_string();
    assert!(first_manifest.starts_with("sha256:"));

    // the 18 MB Python policy, pulled the same way, decides on a pushed input
    let push_rps = br#"{"workload": "shop/api", "metrics": [{"name": "rps", "value": 35}]}"#;
    let (status, body) = daemon.request("POST", "/v1/signals", Some(TOKEN), push_rps);
    assert_eq!(status, 202, "{body}");
    eventually("api scaled by the Python policy", Duration::from_secs(60), || fake.replicas("shop", "api") == Some(4))
        .await;
    assert_eq!(oci_status(&daemon, &python)["policy"], "target-tracking-py@1.0.0");
    assert!(std::fs::metadata(policy("target_tracking_py.wasm")).unwrap().len() > 10 << 20);

    // the tag moves to 0.2.0: the new version decides, no restart
    push(&registry, "testdata/fixed_v2.wasm", &stable);
    eventually("the moved tag to be followed", Duration::from_secs(20), || {
        oci_status(&daemon, &stable)["policy"] == "fixed@0.2.0"
    })
    .await;
    eventually("a decision by 0.2.0", Duration::from_secs(10), || {
        daemon.get("/v1/workloads/shop/web/decisions?limit=1").contains("fixed@0.2.0")
    })
    .await;

    // pull by digest through the admin API: the first manifest, verified
    let reference = format!("oci://{}/policies/fixed@{first_manifest}", registry.host());
    let body = serde_json::json!({"reference": reference}).to_string();
    let (status, reply) = daemon.request("POST", "/v1/policies", Some(TOKEN), body.as_bytes());
    assert_eq!(status, 201, "{reply}");
    assert!(reply.contains("\"version\":\"0.1.0\""), "{reply}");
    let (status, _) = daemon.request("POST", "/v1/policies", None, body.as_bytes());
    assert_eq!(status, 401, "pulling is an admin mutation");

    // the registry goes down: 0.2.0 keeps deciding, the failure is visible
    registry.stop();
    eventually("the failed check to show", Duration::from_secs(20), || {
        !oci_status(&daemon, &stable)["error"].is_null()
    })
    .await;
    let down = oci_status(&daemon, &stable);
    assert_eq!(down["policy"], "fixed@0.2.0", "{down}");
    let metrics = daemon.get("/metrics");
    let gauge = format!("scalegate_policy_oci_reference_up{{source=\"{stable}\"}} 0");
    assert!(metrics.contains(&gauge), "{gauge} not in the metrics");
    let before = daemon.get("/v1/workloads/shop/web/decisions?limit=100").matches("fixed@0.2.0").count();
    eventually("decisions to go on", Duration::from_secs(10), || {
        daemon.get("/v1/workloads/shop/web/decisions?limit=100").matches("fixed@0.2.0").count() > before
    })
    .await;

    // a restart while the registry is down runs the version pulled last, from the cache
    daemon.signal("-TERM");
    assert!(daemon.wait(Duration::from_secs(15)).success());
    daemon = Daemon::start(dir.path(), &daemon_args(&host, &token_path, &cache_path));
    eventually("a decision by the cached 0.2.0 after the restart", Duration::from_secs(30), || {
        daemon.get("/v1/workloads/shop/web/decisions?limit=1").contains("fixed@0.2.0")
    })
    .await;
    let cached = oci_status(&daemon, &stable);
    assert_eq!(cached["policy"], "fixed@0.2.0", "{cached}");
    assert!(!cached["error"].is_null(), "the registry is still down: {cached}");

    // back up: the check succeeds again
    registry.restart();
    eventually("the reference to recover", Duration::from_secs(20), || oci_status(&daemon, &stable)["error"].is_null())
        .await;
    assert!(daemon.get("/metrics").contains(&format!("scalegate_policy_oci_reference_up{{source=\"{stable}\"}} 1")));
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_whose_bytes_do_not_match_its_digest_is_refused() {
    let registry = Registry::start();
    let reference = registry.reference("policies/target-tracking:tampered");
    push(&registry, "target_tracking.wasm", &reference);
    // the registry's copy of the component is replaced behind its back
    let bytes = std::fs::read(policy("target_tracking.wasm")).unwrap();
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let blob = registry.blob(&digest);
    assert!(blob.is_file(), "no blob at {}", blob.display());
    std::fs::write(&blob, policy_bytes("fixed.wasm")).unwrap();

    let fake = FakeApiServer::start().await;
    let dir = workdir(&fake.kubeconfig(), "policies: {directory: POLICIES}\nworkloads: []\n", &[]);
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let cache = dir.path().join("cache");
    let (host, token_path, cache_path) = (registry.host(), token.display().to_string(), cache.display().to_string());
    let daemon = Daemon::start(dir.path(), &daemon_args(&host, &token_path, &cache_path));
    let body = serde_json::json!({"reference": reference}).to_string();
    let (status, reply) = daemon.request("POST", "/v1/policies", Some(TOKEN), body.as_bytes());
    assert_eq!(status, 422, "{reply}");
    assert!(reply.to_lowercase().contains("digest"), "{reply}");
    let listing = daemon.get("/v1/policies");
    assert!(!listing.contains("\"name\":\"target-tracking\""), "nothing was loaded: {listing}");
    assert!(!cache.join("oci").join(format!("{digest}.wasm")).exists(), "a refused component is not cached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_registry_is_reached_with_the_docker_config_credentials() {
    let registry = Registry::start_with_credentials("ci", "pull-secret");
    let reference = registry.reference("private/fixed:1");
    let (pushed, text) = try_push(&registry, "fixed.wasm", &reference, &[]);
    assert!(!pushed, "an anonymous push to a private registry must fail: {text}");

    let fake = FakeApiServer::start().await;
    fake.add_deployment("shop", "web", 2);
    fake.put_running_pod("shop", "web", "web-0", true, "100m");
    let config = format!(
        "policies: {{directory: POLICIES}}\nworkloads:\n  - target: {{namespace: shop, name: web}}\n    interval: 1s\n    max_replicas: 20\n    policies: [{{policy: \"{reference}\", params: {{replicas: 3}}}}]\n"
    );
    let dir = workdir(&fake.kubeconfig(), &config, &[]);
    // what `kubectl create secret docker-registry` puts in .dockerconfigjson
    let docker_config = dir.path().join("dockerconfig.json");
    let auth = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode("ci:pull-secret")
    };
    std::fs::write(&docker_config, serde_json::json!({"auths": {registry.host(): {"auth": auth}}}).to_string())
        .unwrap();
    let (pushed, text) =
        try_push(&registry, "fixed.wasm", &reference, &["--docker-config", docker_config.to_str().unwrap()]);
    assert!(pushed, "{text}");

    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let cache = dir.path().join("cache");
    let (host, token_path, cache_path) = (registry.host(), token.display().to_string(), cache.display().to_string());
    let mut args = daemon_args(&host, &token_path, &cache_path);
    let config_path = docker_config.display().to_string();
    args.extend(["--oci-docker-config", &config_path]);
    let _daemon = Daemon::start(dir.path(), &args);
    eventually("web scaled by the privately pulled policy", Duration::from_secs(30), || {
        fake.replicas("shop", "web") == Some(3)
    })
    .await;

    // without the credentials, start-up refuses the reference and says why
    let bare = daemon_args(&host, &token_path, &cache_path);
    let out = Command::new(env!("CARGO_BIN_EXE_scalegate"))
        .args(["run", "--config"])
        .arg(dir.path().join("config.yaml"))
        .arg("--kubeconfig")
        .arg(dir.path().join("kubeconfig"))
        .args(["--admin-listen", "127.0.0.1:0", "--cache-dir"])
        .arg(dir.path().join("fresh-cache"))
        .args(&bare[..2])
        .env_remove("SCALEGATE_OCI_DOCKER_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{text}");
    assert!(text.contains(&reference) && text.contains("could not be pulled"), "{text}");
}
