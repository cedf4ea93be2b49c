//! `scalegate run --config FILE`: the daemon against a Kubernetes API
//! server — policy store with hot reload, decision loop, Kubernetes
//! actuator, optional leader election, admin API — until SIGTERM/Ctrl-C.
//!
//! Start-up refuses, with exit code 64 and the offending field, a config
//! that does not parse or validate and a binding whose policy reference
//! matches nothing in the store (later, a reference that stops resolving is
//! a fault: the workload keeps its replicas and the decision says why).

use super::common::{Failure, admin_token, tokio_runtime};
use crate::admin::LogLevelSetter;
use crate::clock::SystemClock;
use crate::config::Config;
use crate::daemon::{self, Election, KedaSettings, Settings, StateSettings};
use crate::decide::DecisionLines;
use crate::decide::Persist;
use crate::k8s::{KubeCluster, KubeSettings, LeaseSettings};
use crate::policy::{CompileBudget, Runtime, RuntimeConfig};
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration file (YAML, see docs/CONFIG.md).
    #[arg(long, env = "SCALEGATE_CONFIG")]
    pub config: PathBuf,
    /// Policy store directory; overrides `policies.directory` of the config.
    #[arg(long, env = "SCALEGATE_POLICIES")]
    pub policies: Option<PathBuf>,
    /// Admin API listen address (health, metrics, policies, decisions).
    #[arg(long, default_value = "127.0.0.1:9090", env = "SCALEGATE_ADMIN_LISTEN")]
    pub admin_listen: std::net::SocketAddr,
    /// File holding the admin bearer token (or set SCALEGATE_ADMIN_TOKEN); without one, admin mutations are refused.
    #[arg(long)]
    pub admin_token_file: Option<PathBuf>,
    /// Kubeconfig to use [default: $KUBECONFIG or ~/.kube/config, else the in-cluster service account].
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Deadline of one Kubernetes API request.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    pub request_timeout: Duration,
    /// Kubernetes API requests in flight at once; more wait their turn (watches and the Lease not counted).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub kube_max_in_flight: u32,
    /// Elect a leader through a Lease; only the leader writes (run several replicas with this).
    #[arg(long)]
    pub leader_election: bool,
    /// scalegate's own namespace: its Lease and its stored policy pins [default: $POD_NAMESPACE, else "default"].
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(long, default_value = "scalegate-leader")]
    pub lease_name: String,
    /// How long a standby waits after the leader's last renewal before taking over.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "15s")]
    pub lease_duration: Duration,
    /// This replica's identity in the Lease, Events and field managers [default: $POD_NAME, else the host name].
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Time allowed to finish decisions in flight on SIGTERM.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "20s")]
    pub grace: Duration,
    /// With --leader-election: label this replica's pod (named by --identity, $POD_NAME in a cluster) `scalegate.dev/leader=true` while it leads, so a Service can route pushes and pins to the leader.
    #[arg(long, requires = "leader_election")]
    pub label_leader_pod: bool,
    /// Where decision state (policy state, recommendations, scale events, cooldown clocks, pins) is kept: in the cluster (ScalegateState objects, deploy/base/crd.yaml), so a new leader or a restarted daemon continues from it, or in memory only.
    #[arg(long, value_enum, default_value_t = DecisionState::Cluster)]
    pub decision_state: DecisionState,
    /// Longest time a changed decision state waits to be stored in the cluster (applied scales are stored at once) [default: 30s, or 10 ms per workload when longer, so a fleet makes at most ~100 such writes per second].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub state_sync_interval: Option<Duration>,
    /// Serve KEDA's External Scaler (gRPC) on this address, e.g. `0.0.0.0:50051`, for workloads bound with `actuator: keda` (docs/KEDA.md).
    #[arg(long, env = "SCALEGATE_KEDA_LISTEN")]
    pub keda_listen: Option<std::net::SocketAddr>,
    /// With --keda-listen: the server certificate (PEM) for TLS (KEDA's `enableTLS`/`caCert`).
    #[arg(long, requires = "keda_tls_key")]
    pub keda_tls_cert: Option<PathBuf>,
    /// With --keda-listen: the server's private key (PEM).
    #[arg(long, requires = "keda_tls_cert")]
    pub keda_tls_key: Option<PathBuf>,
    /// With TLS: require client certificates signed by this CA (PEM), i.e. mutual TLS (KEDA's `tlsClientCert`/`tlsClientKey`).
    #[arg(long, requires = "keda_tls_cert")]
    pub keda_tls_client_ca: Option<PathBuf>,
    /// With --keda-listen: serve without TLS (otherwise a certificate is required).
    #[arg(long, conflicts_with = "keda_tls_cert")]
    pub keda_plaintext: bool,
    /// Which decisions are logged at `info`, one line each (`ns/name 3 → 9 policy@ver wants 9 [inputs] guardrails: …`): `notable` (scaled, failed, served a new count to KEDA, faulted, or clamped), `all`, or `off`.
    #[arg(long, value_enum, default_value_t = DecisionLines::Notable)]
    pub log_decisions: DecisionLines,
    /// Evaluations each workload keeps with their exact snapshots, for `GET /v1/workloads/{ns}/{name}/snapshots` and `scalegate replay` (0: none; at most 20,000 across the fleet and 1 MiB per workload).
    #[arg(long, default_value_t = 8)]
    pub capture: usize,
    /// Largest policy component accepted, from the directory or an upload, in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    pub max_policy_bytes: usize,
    /// Wall-clock budget of compiling one policy (in a child process, killed when it runs out; CPU budget: twice this).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub compile_timeout: Duration,
    /// Address-space budget of the compiling child process, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub compile_memory_mib: u64,
    /// Registry (`host:port`) spoken to over plain HTTP for `oci://` policies; repeatable. Others use HTTPS.
    #[arg(long = "oci-insecure-registry", value_name = "HOST:PORT")]
    pub oci_insecure: Vec<String>,
    /// Docker config file with registry credentials (in a cluster: the `.dockerconfigjson` of a mounted Secret).
    #[arg(long, env = "SCALEGATE_OCI_DOCKER_CONFIG")]
    pub oci_docker_config: Option<PathBuf>,
    /// How often `oci://` references with a tag are resolved again (a moved tag is hot-reloaded).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub oci_poll_interval: Duration,
}

impl RunArgs {
    /// The KEDA listener the flags ask for: TLS unless `--keda-plaintext`.
    pub fn keda(&self) -> Result<Option<KedaSettings>, Failure> {
        let Some(listen) = self.keda_listen else { return Ok(None) };
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| usage(format!("cannot read {}: {e}", path.display())))
        };
        let tls = match (&self.keda_tls_cert, &self.keda_tls_key) {
            (Some(cert), Some(key)) => Some(crate::keda::Tls {
                cert: read(cert)?,
                key: read(key)?,
                client_ca: self.keda_tls_client_ca.as_deref().map(read).transpose()?,
            }),
            _ if self.keda_plaintext => None,
            _ => {
                return Err(usage(
                    "--keda-listen needs --keda-tls-cert and --keda-tls-key, or --keda-plaintext to serve without TLS"
                        .into(),
                ));
            }
        };
        Ok(Some(KedaSettings { listen, tls }))
    }

    /// Registries for `oci://` policies: pulled components are cached beside
    /// the precompiled ones (or in the temporary directory without a cache).
    pub fn oci(&self, cache_dir: Option<&std::path::Path>) -> daemon::Oci {
        let cache = cache_dir.map(PathBuf::from).unwrap_or_else(|| std::env::temp_dir().join("scalegate"));
        daemon::Oci {
            registries: crate::policy_store::OciConfig {
                insecure: self.oci_insecure.clone(),
                docker_config: self.oci_docker_config.clone(),
                cache_dir: cache,
            },
            interval: self.oci_poll_interval,
        }
    }

    /// The compile budget the flags set.
    pub fn compile_budget(&self) -> CompileBudget {
        CompileBudget {
            max_component_bytes: self.max_policy_bytes,
            timeout: self.compile_timeout,
            cpu_seconds: (self.compile_timeout.as_secs() * 2).max(1),
            memory_bytes: self.compile_memory_mib << 20,
            ..CompileBudget::in_child_process()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DecisionState {
    Cluster,
    Memory,
}

fn usage(message: String) -> Failure {
    Failure::usage(message)
}

fn identity(args: &RunArgs) -> String {
    args.identity
        .clone()
        .filter(|i| !i.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()))
        .unwrap_or_else(|| format!("scalegate-{}", std::process::id()))
}

async fn kube_client(args: &RunArgs) -> Result<kube::Client, Failure> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| usage(format!("cannot read kubeconfig {}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| usage(format!("kubeconfig {}: {e}", path.display())))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| usage(format!("no Kubernetes configuration (in-cluster or kubeconfig): {e}")))?,
    };
    crate::k8s::client(config).map_err(|e| usage(format!("cannot build the Kubernetes client: {e}")))
}

pub fn run(args: &RunArgs, cache_dir: Option<PathBuf>, log_level: Option<LogLevelSetter>) -> Result<(), Failure> {
    let config = Config::load(&args.config).map_err(|e| usage(format!("{}: {e}", args.config.display())))?;
    let policy_dir = args.policies.clone().or(config.policy_dir.clone()).ok_or_else(|| {
        usage(format!("no policy directory: set policies.directory in {} or pass --policies", args.config.display()))
    })?;
    if !policy_dir.is_dir() {
        return Err(usage(format!("policy directory {} does not exist", policy_dir.display())));
    }
    let token = admin_token(args.admin_token_file.as_deref())?;
    let keda = args.keda()?;
    let oci = args.oci(cache_dir.as_deref());
    let runtime = Arc::new(Runtime::new(RuntimeConfig {
        cache_dir,
        compile: args.compile_budget(),
        ..RuntimeConfig::default()
    })?);
    let tokio = tokio_runtime()?;
    let result = tokio.block_on(async {
        let store =
            daemon::open_store(runtime, policy_dir, Some(oci)).await.map_err(|e| Failure::internal(e.to_string()))?;
        store.follow_oci(config.oci_references()).await;
        daemon::check_references(&config, &store.catalog()).map_err(|e| usage(e.to_string()))?;
        let client = kube_client(args).await?;
        let identity = identity(args);
        let cluster = Arc::new(KubeCluster::new(
            client.clone(),
            KubeSettings {
                request_timeout: args.request_timeout,
                max_in_flight: args.kube_max_in_flight as usize,
                identity: identity.clone(),
                ..KubeSettings::default()
            },
        ));
        cluster.watch_namespaces(config.workloads.iter().map(|w| w.target.namespace.as_str()));
        let own_namespace = args.lease_namespace.clone().unwrap_or_else(|| "default".into());
        let election = args.leader_election.then(|| Election {
            client: client.clone(),
            settings: LeaseSettings::new(&own_namespace, &args.lease_name, &identity, args.lease_duration),
            label_pod: args.label_leader_pod.then(|| identity.clone()),
        });
        let every = args.state_sync_interval.unwrap_or_else(|| Persist::default_every(config.workloads.len()));
        let state = (args.decision_state == DecisionState::Cluster)
            .then(|| StateSettings { persist: Persist { every }, namespace: own_namespace.clone() });
        let shutdown = CancellationToken::new();
        daemon::cancel_on_signals(shutdown.clone());
        let workloads = config.workloads.len();
        let settings = Settings {
            config,
            config_file: Some(args.config.clone()),
            admin_listen: args.admin_listen,
            admin_token: token,
            grace: args.grace,
            log_level,
            election,
            resource_metrics: Some(cluster.clone()),
            state,
            keda,
            log_decisions: args.log_decisions,
            capture: args.capture,
            calls: None,
        };
        let running = daemon::start(settings, store, cluster, Arc::new(SystemClock), shutdown.clone())
            .await
            .map_err(|e| if e.is_setting() { usage(e.to_string()) } else { Failure::internal(e.to_string()) })?;
        tracing::info!(%identity, workloads, admin = %running.admin_addr, "scalegate running");
        eprintln!("scalegate: {workloads} workloads, admin API on http://{}", running.admin_addr);
        if let Some(addr) = running.keda_addr {
            eprintln!("scalegate: KEDA External Scaler on {addr}");
        }
        running.wait().await;
        Ok(())
    });
    // the daemon has stopped; what may still run is a blocking fetch (a Kafka
    // metadata request to a broker that never answers waits out its
    // deadline): do not wait for it
    tokio.shutdown_timeout(Duration::from_millis(500));
    result
}
