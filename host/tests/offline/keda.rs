//! KEDA's side of the External Scaler, played by a client generated from
//! the same protocol (`proto/externalscaler.proto`), against a running
//! daemon on the simulated cluster: every RPC, activity flipping with
//! pushed directives, the stream, a restart, NOT_FOUND, TLS and mutual TLS.

use crate::support::servers::pki;
use crate::support::*;
use scalegate::clock::SystemClock;
use scalegate::config::Config;
use scalegate::daemon::{self, KedaSettings, Running, Settings};
use scalegate::keda::proto::external_scaler_client::ExternalScalerClient;
use scalegate::keda::proto::{GetMetricsRequest, ScaledObjectRef};
use scalegate::keda::{METRIC, Tls};
use scalegate::sim::{SimCluster, SimWorkload};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

const TOKEN: &str = "keda-test-token-0123";

const CONFIG: &str = "workloads:
  - target: {namespace: shop, name: worker}
    min_replicas: 0
    max_replicas: 20
    interval: 1s
    actuator: keda
    policies: [{policy: directive}]
  - target: {namespace: shop, name: web}
    interval: 1s
    max_replicas: 20
    policies: [{policy: fixed, params: {replicas: 4}}]
";

struct Daemon {
    running: Running<SimCluster<SystemClock>>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn start(keda_listen: SocketAddr, tls: Option<Tls>) -> Daemon {
    let (store, dir) = tokio::task::block_in_place(|| {
        open_store(&[("directive.wasm", "directive.wasm"), ("fixed.wasm", "fixed.wasm")])
    });
    let clock = Arc::new(SystemClock);
    let cluster = Arc::new(SimCluster::new(clock.clone()));
    cluster.add("shop", SimWorkload::new("worker", 2, 0, 20), Box::new(|_| 100.0));
    cluster.add("shop", SimWorkload::new("web", 2, 1, 20), Box::new(|_| 100.0));
    let settings = Settings {
        config: Config::parse(CONFIG).unwrap(),
        config_file: None,
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        admin_token: Some(TOKEN.into()),
        grace: Duration::from_secs(2),
        log_level: None,
        election: None,
        resource_metrics: None,
        state: None,
        keda: Some(KedaSettings { listen: keda_listen, tls }),
        log_decisions: scalegate::decide::DecisionLines::Notable,
        capture: 8,
        calls: None,
    };
    let shutdown = CancellationToken::new();
    let running = daemon::start(settings, store, cluster, clock, shutdown.clone()).await.unwrap();
    Daemon { running, shutdown, _dir: dir }
}

impl Daemon {
    fn keda(&self) -> SocketAddr {
        self.running.keda_addr.expect("KEDA served")
    }

    /// Pushes a directive for shop/worker and waits for the decision it triggers.
    async fn direct(&self, replicas: u32) {
        let body = serde_json::json!({"workload": "shop/worker", "signals": [{"kind": "directive", "target_replicas": replicas}]});
        let (status, reply) = http(self.running.admin_addr, "POST", "/v1/signals", &body.to_string()).await;
        assert_eq!(status, 200, "{reply}");
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.running.wait().await;
    }
}

async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

fn scaled_object(namespace: &str, name: &str, workload: Option<&str>) -> ScaledObjectRef {
    ScaledObjectRef {
        name: name.into(),
        namespace: namespace.into(),
        scaler_metadata: workload.map(|w| [("workload".to_string(), w.to_string())].into()).unwrap_or_default(),
    }
}

fn worker() -> ScaledObjectRef {
    scaled_object("shop", "worker", None)
}

async fn metric(client: &mut ExternalScalerClient<Channel>, reference: ScaledObjectRef) -> (f64, i64) {
    let request = GetMetricsRequest { scaled_object_ref: Some(reference), metric_name: METRIC.into() };
    let reply = client.get_metrics(request).await.unwrap().into_inner();
    assert_eq!(reply.metric_values.len(), 1);
    #[allow(deprecated)]
    let value = (reply.metric_values[0].metric_value_float, reply.metric_values[0].metric_value);
    value
}

async fn active(client: &mut ExternalScalerClient<Channel>) -> bool {
    client.is_active(worker()).await.unwrap().into_inner().result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_against_a_running_daemon() {
    let daemon = start("127.0.0.1:0".parse().unwrap(), None).await;
    let addr = daemon.keda();
    let mut client = ExternalScalerClient::connect(format!("http://{addr}")).await.unwrap();

    // the spec answers from configuration, before any decision
    let spec = client.get_metric_spec(worker()).await.unwrap().into_inner();
    assert_eq!(spec.metric_specs.len(), 1);
    assert_eq!(spec.metric_specs[0].metric_name, METRIC);
    #[allow(deprecated)]
    let target = (spec.metric_specs[0].target_size_float, spec.metric_specs[0].target_size);
    assert_eq!(target, (1.0, 1));
    // named in the trigger's metadata instead of by the ScaledObject's own name
    let other = scaled_object("keda", "worker-scaler", Some("shop/worker"));
    assert!(client.get_metric_spec(other.clone()).await.is_ok());

    // unknown, or not bound to KEDA: NOT_FOUND naming what was asked
    for unknown in [scaled_object("shop", "nothing", None), scaled_object("shop", "web", None)] {
        let status = client.get_metric_spec(unknown.clone()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert!(status.message().contains(&format!("{}/{}", unknown.namespace, unknown.name)), "{status:?}");
        assert_eq!(client.is_active(unknown).await.unwrap_err().code(), tonic::Code::NotFound);
    }

    // the first decision: no directive yet, the count stays at 2
    eventually_async("a first decision", || async {
        let request = GetMetricsRequest { scaled_object_ref: Some(worker()), metric_name: METRIC.into() };
        client.clone().get_metrics(request).await.is_ok()
    })
    .await;
    assert_eq!(metric(&mut client, worker()).await, (2.0, 2));
    assert_eq!(metric(&mut client, other).await, (2.0, 2));
    // KEDA's index prefix is accepted
    let prefixed = GetMetricsRequest { scaled_object_ref: Some(worker()), metric_name: format!("s0-{METRIC}") };
    assert_eq!(client.get_metrics(prefixed).await.unwrap().into_inner().metric_values[0].metric_value_float, 2.0);
    assert!(active(&mut client).await);

    // the stream: the current activity at once, then each change as the decision is made
    let mut stream = client.stream_is_active(worker()).await.unwrap().into_inner();
    let first = tokio::time::timeout(Duration::from_millis(500), stream.message()).await.unwrap().unwrap().unwrap();
    assert!(first.result);
    for (replicas, expect_active) in [(0, false), (5, true), (0, false), (3, true)] {
        let pushed = Instant::now();
        let pushing = daemon.direct(replicas);
        let (message, ()) = tokio::join!(
            async { tokio::time::timeout(Duration::from_secs(2), stream.message()).await.unwrap().unwrap().unwrap() },
            pushing
        );
        let took = pushed.elapsed();
        assert_eq!(message.result, expect_active, "after a directive to {replicas}");
        assert!(took < Duration::from_millis(100), "the stream told of {replicas} after {took:?}");
        assert_eq!(metric(&mut client, worker()).await, (f64::from(replicas), i64::from(replicas)));
        assert_eq!(active(&mut client).await, expect_active);
    }
    // a decision that keeps the activity sends nothing
    daemon.direct(7).await;
    assert!(tokio::time::timeout(Duration::from_millis(300), stream.message()).await.is_err(), "no change, no message");

    assert_eq!(client.stream_metric_spec(worker()).await.map(|_| ()).unwrap_err().code(), tonic::Code::Unimplemented);
    let decisions = daemon.running.decider.decisions("shop/worker", 1).unwrap();
    assert_eq!(decisions[0].served, Some(7));
    assert!(!decisions[0].applied, "never written to /scale");
    let metrics = http(daemon.running.admin_addr, "GET", "/metrics", "").await.1;
    assert!(metrics.contains("scalegate_keda_rpc_seconds_count{rpc=\"GetMetrics\",code=\"ok\"}"), "{metrics}");
    assert!(metrics.contains("scalegate_decisions_total{kind=\"served\"}"), "{metrics}");
    // the per-workload gauges, computed at the scrape
    let served = r#"{namespace="shop",name="worker",binding="shop/worker"}"#;
    assert!(metrics.contains(&format!("scalegate_workload_desired_replicas{served} 7")), "{metrics}");
    assert!(metrics.contains(&format!("scalegate_workload_keda_active{served} 1")), "{metrics}");
    assert!(metrics.contains(&format!("scalegate_workload_policy_desired_replicas{served} 7")), "{metrics}");
    let web = r#"{namespace="shop",name="web",binding="shop/web"}"#;
    assert!(metrics.contains(&format!("scalegate_workload_desired_replicas{web} 4")), "{metrics}");
    assert!(!metrics.contains(&format!("scalegate_workload_keda_active{web}")), "web is not KEDA's");
    assert!(metrics.contains("scalegate_info{version=\""), "{metrics}");
    assert!(metrics.trim_end().ends_with("# EOF"), "one OpenMetrics end marker");
    assert_eq!(metrics.matches("# EOF").count(), 1);

    // the server restarts on the same address: the same client carries on, a new stream opens
    daemon.stop().await;
    let ended = tokio::time::timeout(Duration::from_secs(2), stream.message()).await.expect("the stream ends");
    assert!(!matches!(ended, Ok(Some(_))), "the stream ended with the server: {ended:?}");
    let daemon = start(addr, None).await;
    eventually_async("the client reconnected", || async { client.clone().get_metric_spec(worker()).await.is_ok() })
        .await;
    eventually_async("a decision after the restart", || async {
        client.clone().is_active(worker()).await.is_ok_and(|r| r.into_inner().result)
    })
    .await;
    let mut stream = client.stream_is_active(worker()).await.unwrap().into_inner();
    assert!(stream.message().await.unwrap().unwrap().result);
    daemon.stop().await;
}

async fn eventually_async<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < Duration::from_secs(10), "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn tls_client(
    addr: SocketAddr,
    ca: &str,
    identity: Option<(&str, &str)>,
) -> Result<ExternalScalerClient<Channel>, String> {
    let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)).domain_name("localhost");
    if let Some((cert, key)) = identity {
        config = config.identity(Identity::from_pem(cert, key));
    }
    let channel = Channel::from_shared(format!("https://localhost:{}", addr.port()))
        .unwrap()
        .tls_config(config)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(ExternalScalerClient::new(channel))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_mutual_tls() {
    let pki = pki();
    let tls = |client_ca: Option<&str>| Tls {
        cert: pki.server_cert.clone().into_bytes(),
        key: pki.server_key.clone().into_bytes(),
        client_ca: client_ca.map(|ca| ca.as_bytes().to_vec()),
    };

    // TLS: KEDA's enableTLS + caCert
    let daemon = start("127.0.0.1:0".parse().unwrap(), Some(tls(None))).await;
    let mut client = tls_client(daemon.keda(), &pki.ca, None).await.unwrap();
    assert!(client.get_metric_spec(worker()).await.is_ok());
    let mut plain = ExternalScalerClient::connect(format!("http://{}", daemon.keda())).await.unwrap();
    assert!(plain.get_metric_spec(worker()).await.is_err(), "no plaintext on a TLS listener");
    daemon.stop().await;

    // mutual TLS: KEDA's tlsClientCert/tlsClientKey
    let daemon = start("127.0.0.1:0".parse().unwrap(), Some(tls(Some(&pki.ca)))).await;
    let identity = Some((pki.client_cert.as_str(), pki.client_key.as_str()));
    let mut client = tls_client(daemon.keda(), &pki.ca, identity).await.unwrap();
    assert!(client.get_metric_spec(worker()).await.is_ok());
    let refused = match tls_client(daemon.keda(), &pki.ca, None).await {
        Ok(mut anonymous) => anonymous.get_metric_spec(worker()).await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "a client without a certificate is refused");
    daemon.stop().await;
}
