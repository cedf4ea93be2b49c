//! Real servers the signal-source tests start and stop themselves, on free
//! loopback ports: Prometheus (scraping a target the test controls).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Tests that run a Kafka broker take turns: it keeps them (and their
/// ports, consumer groups and CPU) apart.
pub static ONE_BROKER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An HTTP `/metrics` endpoint exposing `app_rps{namespace, app}` with a
/// value the test sets.
pub struct ScrapeTarget {
    pub addr: SocketAddr,
    value: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl ScrapeTarget {
    pub async fn start(namespace: &str, app: &str, value: f64) -> ScrapeTarget {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(AtomicU64::new(value.to_bits()));
        let (value_ref, labels) = (shared.clone(), format!("namespace=\"{namespace}\",app=\"{app}\""));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (value, labels) = (value_ref.clone(), labels.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_request| {
                        let text = format!(
                            "# TYPE app_rps gauge\napp_rps{{{labels}}} {}\n",
                            f64::from_bits(value.load(Ordering::Relaxed))
                        );
                        async move { Ok::<_, std::convert::Infallible>(hyper::Response::new(text)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        ScrapeTarget { addr, value: shared, task }
    }

    pub fn set(&self, value: f64) {
        self.value.store(value.to_bits(), Ordering::Relaxed);
    }
}

impl Drop for ScrapeTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A Prometheus server (Debian's `prometheus`, installed by
/// scripts/bootstrap.sh) scraping one target every second.
pub struct Prometheus {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    pub fn start(port: u16, target: SocketAddr) -> Prometheus {
        let server = Prometheus::spawn(port, target, None);
        server.wait_ready();
        server
    }

    /// Served over TLS and behind basic auth per `web_config` (Prometheus'
    /// `--web.config.file`); ready once it accepts connections.
    pub fn start_secured(port: u16, target: SocketAddr, web_config: &std::path::Path) -> Prometheus {
        let server = Prometheus::spawn(port, target, Some(web_config));
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(30), "prometheus did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn spawn(port: u16, target: SocketAddr, web_config: Option<&std::path::Path>) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
                 scrape_configs:\n  - job_name: app\n    static_configs: [{{targets: ['{target}']}}]\n"
            ),
        )
        .unwrap();
        let data: PathBuf = dir.path().join("data");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(web_config.map(|path| format!("--web.config.file={}", path.display())))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is not installed: run scripts/install-test-tools.sh");
        Prometheus { port, child, _dir: dir }
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                let _ = write!(stream, "GET /-/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut response = String::new();
                let _ = stream.read_to_string(&mut response);
                if response.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            assert!(start.elapsed() < Duration::from_secs(30), "prometheus did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `nats-server -js` (Debian's `nats-server`) with its monitoring port,
/// storing streams in a directory that survives a restart.
pub struct NatsServer {
    pub port: u16,
    pub monitor_port: u16,
    child: Child,
}

impl NatsServer {
    pub fn start(port: u16, monitor_port: u16, store: &std::path::Path) -> NatsServer {
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-m", &monitor_port.to_string()])
            .arg("-sd")
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is not installed: run scripts/install-test-tools.sh");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", monitor_port)).is_err()
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
        {
            assert!(start.elapsed() < Duration::from_secs(20), "nats-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        NatsServer { port, monitor_port, child }
    }

    pub fn monitor_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.monitor_port)
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP service the test scripts: every request gets the current body
/// (a forecaster, for instance); requests are recorded (URI, then the
/// headers a client chose to send, as ` name=value`).
pub struct HttpStub {
    pub addr: SocketAddr,
    body: Arc<std::sync::Mutex<String>>,
    requests: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpStub {
    pub async fn start(body: &str) -> HttpStub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let body = Arc::new(std::sync::Mutex::new(body.to_string()));
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (shared, seen) = (body.clone(), requests.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (body, seen) = (shared.clone(), seen.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                        let mut line = request.uri().to_string();
                        for (name, value) in request.headers() {
                            if !matches!(name.as_str(), "host" | "accept" | "user-agent" | "accept-encoding") {
                                line.push_str(&format!(" {name}={}", value.to_str().unwrap_or("?")));
                            }
                        }
                        seen.lock().unwrap().push(line);
                        let text = body.lock().unwrap().clone();
                        async move { Ok::<_, std::convert::Infallible>(hyper::Response::new(text)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        HttpStub { addr, body, requests, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, body: &str) {
        *self.body.lock().unwrap() = body.to_string();
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for HttpStub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `redis-server` (Debian's), without persistence: a restart loses the data.
pub struct RedisServer {
    pub port: u16,
    child: Child,
}

impl RedisServer {
    pub fn start(port: u16) -> RedisServer {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is not installed: run scripts/install-test-tools.sh");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        RedisServer { port, child }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Kafka-API broker: `tansu` (in-memory storage; installed by
/// scripts/bootstrap.sh with `cargo install tansu`).
pub struct Tansu {
    pub port: u16,
    child: Child,
}

impl Tansu {
    pub fn start(port: u16) -> Tansu {
        Tansu::start_advertising(port, port, false)
    }

    /// Listens on `port` but tells clients to connect to `advertised` (a
    /// [`TcpProxy`] in front of it, so that a test can cut every connection
    /// or add TLS); with `authentication` every client must authenticate
    /// (tansu 0.6 offers SCRAM-SHA-256/512 and OAUTHBEARER, and lets only
    /// authenticated clients create users).
    pub fn start_advertising(port: u16, advertised: u16, authentication: bool) -> Tansu {
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = format!("tcp://127.0.0.1:{advertised}");
        let child = Command::new(tansu_bin())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &advertised, "--silent"])
            .args(authentication.then_some("--authentication"))
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu is not installed: run scripts/install-test-tools.sh");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "tansu did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Tansu { port, child }
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker process, for CPU measurements.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A producer that sends each message at once and fails a send after
    /// 10 s when the broker went away (instead of librdkafka's 5 minutes).
    pub fn producer(&self) -> rdkafka::producer::FutureProducer {
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .set("message.timeout.ms", "10000")
            .set("linger.ms", "0")
            .set("batch.num.messages", "1")
            .create()
            .unwrap()
    }

    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let status = Command::new(tansu_bin())
            .args(["topic", "create", topic, "--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .args(["--partitions", &partitions.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "tansu topic create {topic} failed");
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tansu_bin() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo"));
    let bin = home.join("bin/tansu");
    if bin.is_file() { bin } else { PathBuf::from("tansu") }
}

/// Produces `payload` to `topic` and waits for the broker's acknowledgement.
pub async fn send(producer: &rdkafka::producer::FutureProducer, topic: &str, payload: &str) {
    producer
        .send(rdkafka::producer::FutureRecord::<(), _>::to(topic).payload(payload), Duration::from_secs(5))
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

/// A TCP forwarder on a loopback port: `cut` closes every connection and
/// stops listening (a network partition), `restore` listens again. With
/// TLS it terminates TLS (for a server that has none itself).
pub struct TcpProxy {
    pub port: u16,
    pub upstream: u16,
    tls: Option<tokio_rustls::TlsAcceptor>,
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl TcpProxy {
    pub async fn start(port: u16, upstream: u16) -> TcpProxy {
        let proxy = TcpProxy { port, upstream, tls: None, tasks: Default::default() };
        proxy.restore().await;
        proxy
    }

    /// Accepts TLS with this certificate and key (PEM).
    pub async fn start_tls(port: u16, upstream: u16, cert: &str, key: &str) -> TcpProxy {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain = vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        let tls = Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)));
        let proxy = TcpProxy { port, upstream, tls, tasks: Default::default() };
        proxy.restore().await;
        proxy
    }

    pub async fn restore(&self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        let (upstream, tls, tasks) = (self.upstream, self.tls.clone(), self.tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let tls = tls.clone();
                let forward = tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    match tls {
                        None => {
                            let mut client = client;
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                        Some(tls) => {
                            if let Ok(mut client) = tls.accept(client).await {
                                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                        }
                    }
                });
                tasks.lock().unwrap().push(forward);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    pub fn cut(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// A CA, a server certificate for 127.0.0.1 and localhost, and a client
/// certificate, both signed by the CA (PEM).
pub struct Pki {
    pub ca: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
}

pub fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    // distinct names: OpenSSL takes a certificate whose issuer is its own
    // subject for self-signed
    params.distinguished_name.push(DnType::CommonName, "scalegate test CA");
    let ca = params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(params, &ca_key);
    let leaf = |names: Vec<String>, common_name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, common_name);
        (params.signed_by(&key, &issuer).unwrap().pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["127.0.0.1".into(), "localhost".into()], "127.0.0.1");
    let (client_cert, client_key) = leaf(vec!["keda-operator".into()], "keda-operator");
    Pki { ca: ca.pem(), server_cert, server_key, client_cert, client_key }
}

/// A CA and a server certificate it signed for 127.0.0.1 and localhost:
/// (CA PEM, certificate PEM, key PEM).
pub fn certificates() -> (String, String, String) {
    let pki = pki();
    (pki.ca, pki.server_cert, pki.server_key)
}

/// A server that accepts connections and never answers (a hung peer): what
/// a client sends is read and dropped, nothing is ever written back.
pub struct Blackhole {
    pub port: u16,
    accept: tokio::task::JoinHandle<()>,
}

impl Blackhole {
    pub async fn start() -> Blackhole {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accept = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((connection, _)) = listener.accept().await {
                held.push(tokio::spawn(async move {
                    let mut connection = connection;
                    let _ = tokio::io::copy(&mut connection, &mut tokio::io::sink()).await;
                }));
            }
        });
        Blackhole { port, accept }
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
