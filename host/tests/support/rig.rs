//! The daemon (`daemon::start`) against the strict fake API server, with
//! the given policies in its store: what the signal and Kafka tests drive.

use fake_apiserver::FakeApiServer;
use scalegate::clock::SystemClock;
use scalegate::config::Config;
use scalegate::daemon::{self, Running, Settings};
use scalegate::k8s::{KubeCluster, KubeSettings};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Polls `check` every 10 ms until it holds; fails the test after `timeout`.
pub async fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub struct Rig {
    pub fake: FakeApiServer,
    /// (namespace, name) of the scaled target.
    target: (String, String),
    running: Option<Running<KubeCluster>>,
    shutdown: tokio_util::sync::CancellationToken,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// `fake` must hold the config's target; `policies` are (file name, built policy).
    pub async fn start(
        fake: FakeApiServer,
        target: (&str, &str),
        policies: &[(&str, &str)],
        yaml: &str,
        token: Option<&str>,
    ) -> Rig {
        // loading runs the policies: blocking work, off this async worker
        let (store, dir) = tokio::task::block_in_place(|| super::open_store(policies));
        let config = Config::parse(yaml).unwrap();
        let client = scalegate::k8s::client(kube::Config::new(fake.url().parse().unwrap())).unwrap();
        let cluster = Arc::new(KubeCluster::new(client, KubeSettings::default()));
        let settings = Settings {
            config,
            config_file: None,
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            admin_token: token.map(str::to_string),
            grace: Duration::from_secs(5),
            log_level: None,
            election: None,
            resource_metrics: Some(cluster.clone()),
            state: None,
            keda: None,
            log_decisions: scalegate::decide::DecisionLines::Notable,
            capture: 8,
            calls: None,
        };
        let shutdown = tokio_util::sync::CancellationToken::new();
        let running = daemon::start(settings, store, cluster, Arc::new(SystemClock), shutdown.clone()).await.unwrap();
        Rig { fake, target: (target.0.to_string(), target.1.to_string()), running: Some(running), shutdown, _dir: dir }
    }

    pub fn running(&self) -> &Running<KubeCluster> {
        self.running.as_ref().unwrap()
    }

    pub fn admin(&self) -> String {
        format!("http://{}", self.running().admin_addr)
    }

    pub async fn get(&self, path: &str) -> serde_json::Value {
        reqwest::get(format!("{}{path}", self.admin())).await.unwrap().json().await.unwrap()
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.admin())).await.unwrap().text().await.unwrap()
    }

    pub fn replicas(&self) -> Option<u32> {
        self.fake.replicas(&self.target.0, &self.target.1)
    }

    /// (from, to) of every scale written.
    pub fn writes(&self) -> Vec<(u32, u32)> {
        self.fake.scale_writes().iter().map(|w| (w.from, w.to)).collect()
    }

    /// Waits until `metric` is reported stale, then lets three evaluations
    /// (1 s interval) run on the stale data.
    pub async fn wait_stale(&self, metric: &str) {
        let path = format!("/v1/workloads/{}/{}/inputs", self.target.0, self.target.1);
        let start = Instant::now();
        loop {
            let inputs = self.get(&path).await;
            if inputs["metrics"][metric]["fresh"] == false {
                assert!(
                    inputs["metrics"][metric]["error"].is_string() || inputs["metrics"][metric]["value"].is_number()
                );
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "{metric} never went stale: {inputs}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        self.running.take().unwrap().wait().await;
        assert_eq!(self.fake.violations(), Vec::<String>::new());
    }
}
