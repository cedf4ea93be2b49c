//! Configuration hot reload through `scalegate run`, its configuration in a
//! directory laid out like a mounted ConfigMap (`config.yaml ->
//! ..data/config.yaml`, `..data` swapped atomically on each update):
//! a workload added, a binding changed, an invalid file and a reference to
//! a missing policy — each with its outcome, no restart, nothing else
//! disturbed.

use crate::support::daemon::Daemon;
use crate::support::rig::eventually;
use crate::support::*;
use fake_apiserver::FakeApiServer;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A ConfigMap-like directory whose `config.yaml` can be updated by an
/// atomic swap of `..data`, as the kubelet does.
struct ConfigMapDir {
    dir: PathBuf,
    version: u32,
}

impl ConfigMapDir {
    fn new(dir: &Path, text: &str) -> ConfigMapDir {
        let mut configmap = ConfigMapDir { dir: dir.to_path_buf(), version: 0 };
        configmap.update(text);
        std::os::unix::fs::symlink("..data/config.yaml", dir.join("config.yaml")).unwrap();
        configmap
    }

    fn update(&mut self, text: &str) {
        self.version += 1;
        let version = format!("..2026_11_30_{:04}", self.version);
        std::fs::create_dir(self.dir.join(&version)).unwrap();
        std::fs::write(self.dir.join(&version).join("config.yaml"), text).unwrap();
        let staging = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&version, &staging).unwrap();
        std::fs::rename(&staging, self.dir.join("..data")).unwrap();
    }
}

fn workload(name: &str, policy: &str) -> String {
    format!(
        "  - target: {{namespace: shop, name: {name}}}\n    interval: 1s\n    max_replicas: 20\n    policies: [{policy}]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_changes_apply_without_a_restart_and_bad_ones_are_refused() {
    let fake = FakeApiServer::start().await;
    fake.add_deployment("shop", "web", 2);
    fake.add_deployment("shop", "api", 2);
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(policies.join("fixed.wasm"), policy_bytes("fixed.wasm")).unwrap();
    std::fs::write(dir.path().join("kubeconfig"), fake.kubeconfig()).unwrap();
    let head = format!("policies: {{directory: {}}}\nworkloads:\n", policies.display());
    let web3 = workload("web", "{policy: fixed, params: {replicas: 3}}");
    // the directory the daemon reads config.yaml from is the "mount"
    let mut configmap = ConfigMapDir::new(dir.path(), &format!("{head}{web3}"));

    let mut daemon = Daemon::start(dir.path(), &[]);
    let replicas = |name: &str| fake.replicas("shop", name);
    eventually("web at 3", Duration::from_secs(20), || replicas("web") == Some(3)).await;
    let config = |daemon: &Daemon| -> serde_json::Value {
        let response = daemon.get("/v1/config");
        serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap()
    };
    assert_eq!(config(&daemon)["generation"], 1);

    // a workload added: evaluated at once; web untouched
    let api4 = workload("api", "{policy: fixed, params: {replicas: 4}}");
    configmap.update(&format!("{head}{web3}{api4}"));
    eventually("api at 4", Duration::from_secs(10), || replicas("api") == Some(4)).await;
    assert_eq!(config(&daemon)["generation"], 2);
    assert_eq!(fake.scale_writes().iter().filter(|w| w.name == "web").count(), 1, "web not rewritten");

    // a binding changed
    let web6 = workload("web", "{policy: fixed, params: {replicas: 6}}");
    configmap.update(&format!("{head}{web6}{api4}"));
    eventually("web at 6", Duration::from_secs(10), || replicas("web") == Some(6)).await;
    assert_eq!(config(&daemon)["generation"], 3);

    // an invalid file: refused with the field, counted; the running configuration stays
    configmap.update(&format!("{head}{web6}{}", api4.replace("max_replicas: 20", "max_replicas: 0")));
    eventually("the refusal", Duration::from_secs(10), || config(&daemon)["refused"].is_object()).await;
    let status = config(&daemon);
    assert_eq!(status["generation"], 3, "{status}");
    assert_eq!(status["refused"]["kind"], "invalid", "{status}");
    assert_eq!(status["refused"]["path"], "workloads[1].max_replicas", "{status}");
    assert!(daemon.get("/metrics").contains("scalegate_config_reloads_total{kind=\"invalid\"} 1"));
    // still running on generation 3: a manual scale-down of web is corrected to 6
    fake.set_replicas("shop", "web", 1);
    eventually("web corrected to 6", Duration::from_secs(10), || replicas("web") == Some(6)).await;

    // a policy the store does not hold: refused too
    configmap.update(&format!("{head}{web6}{}", api4.replace("policy: fixed", "policy: hpa")));
    eventually("the second refusal", Duration::from_secs(10), || config(&daemon)["refused"]["kind"] == "reference")
        .await;
    let status = config(&daemon);
    assert_eq!(status["refused"]["path"], "workloads[1].policies[0].policy", "{status}");
    assert!(status["refused"]["message"].as_str().unwrap().contains("policy hpa not found"), "{status}");
    assert_eq!(replicas("api"), Some(4));

    // the workload removed: no longer evaluated
    configmap.update(&format!("{head}{web6}"));
    eventually("generation 4", Duration::from_secs(10), || config(&daemon)["generation"] == 4).await;
    assert!(config(&daemon)["refused"].is_null(), "applied: the earlier refusal is over");
    fake.set_replicas("shop", "api", 1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(replicas("api"), Some(1), "a removed workload is left alone");

    daemon.signal("-TERM");
    assert!(daemon.wait(Duration::from_secs(15)).success());
    assert_eq!(fake.violations(), Vec::<String>::new());
}
