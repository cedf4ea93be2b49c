//! KEDA's External Scaler, served from the loop's decisions.
//!
//! A workload bound with `actuator: keda` is evaluated like any other
//! (policies, guardrails, shadow, audit) but never written to `/scale`: its
//! decision is published to [`Answers`] and served here to KEDA, whose
//! ScaledObject (trigger `external` or `external-push`, `scalerAddress`
//! pointing at this listener) then scales it. An RPC never runs a policy.
//!
//! - The decision R goes out as metric [`METRIC`] with value R and target 1
//!   (KEDA's default `AverageValue`), so the HPA KEDA creates computes
//!   desired = ceil(R / 1) = R (subject to the HPA's ±10 % tolerance; see
//!   docs/KEDA.md). Metrics the policies reported can be asked for by name.
//! - Active = the decision is above the workload's activation threshold and
//!   no older than three evaluation intervals (a daemon that stopped
//!   deciding does not keep a workload up; KEDA's `fallback` takes over).
//! - `GetMetricSpec` answers from the configuration alone, so it succeeds
//!   while inputs are down and KEDA's `fallback` keeps working.
//! - `StreamIsActive` sends the current activity when it opens, then every
//!   change as soon as a decision makes it.
//! - Which workload: `scalerMetadata.workload` (`namespace/name`, or the
//!   binding's `name`), else the ScaledObject's own `namespace/name`.

pub mod proto {
    tonic::include_proto!("externalscaler");
}

use crate::clock::Clock;
use crate::sink::{Answer, Answers};
use crate::telemetry::Metrics;
use proto::external_scaler_server::{ExternalScaler, ExternalScalerServer};
use proto::{
    GetMetricSpecResponse, GetMetricsRequest, GetMetricsResponse, IsActiveResponse, MetricSpec, MetricValue,
    ScaledObjectRef,
};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tonic::codegen::tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// The metric whose value is the decided replica count.
pub const METRIC: &str = "scalegate-desired-replicas";

/// An answer older than this many evaluation intervals is stale.
const STALE_AFTER_INTERVALS: u64 = 3;

/// The gRPC service.
pub struct Scaler {
    answers: Arc<Answers>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    /// Ends the open streams when the server stops.
    stopping: CancellationToken,
}

/// TLS for the listener: the server's certificate and key (PEM), and the
/// CA that client certificates must chain to (mutual TLS) if given.
#[derive(Debug, Clone)]
pub struct Tls {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub client_ca: Option<Vec<u8>>,
}

impl Scaler {
    pub fn new(answers: Arc<Answers>, clock: Arc<dyn Clock>, metrics: Arc<Metrics>) -> Scaler {
        Scaler { answers, clock, metrics, stopping: CancellationToken::new() }
    }

    /// Serves on `listener` until `shutdown`.
    pub async fn serve(
        mut self,
        listener: tokio::net::TcpListener,
        tls: Option<Tls>,
        shutdown: CancellationToken,
    ) -> Result<(), String> {
        self.stopping = shutdown.clone();
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            let mut config = tonic::transport::ServerTlsConfig::new()
                .identity(tonic::transport::Identity::from_pem(tls.cert, tls.key));
            if let Some(ca) = tls.client_ca {
                config = config.client_ca_root(tonic::transport::Certificate::from_pem(ca));
            }
            server = server.tls_config(config).map_err(|e| format!("KEDA listener TLS: {e}"))?;
        }
        let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        server
            .add_service(ExternalScalerServer::new(self))
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await
            .map_err(|e| format!("KEDA listener: {e}"))
    }

    /// The workload a ScaledObject asks about and its latest answer if fresh.
    fn lookup(&self, reference: &ScaledObjectRef) -> Result<(String, Option<Answer>), Status> {
        let workload = workload_of(reference);
        let Some((answer, interval)) = self.answers.latest(&workload) else {
            return Err(Status::not_found(format!(
                "no workload {workload:?} is served to KEDA (asked by ScaledObject {}/{}): bind it with `actuator: keda`, or name it in the trigger's metadata as `workload: namespace/name`",
                reference.namespace, reference.name
            )));
        };
        Ok((workload, fresh(answer, interval, self.clock.now_ms())))
    }

    fn observe<T>(&self, rpc: &'static str, started: Instant, result: Result<T, Status>) -> Result<T, Status> {
        let code = match &result {
            Ok(_) => "ok",
            Err(status) => code_label(status.code()),
        };
        self.metrics.observe_keda(rpc, code, started.elapsed());
        result
    }

    fn is_active_now(&self, reference: &ScaledObjectRef) -> Result<bool, Status> {
        Ok(self.lookup(reference)?.1.is_some_and(|a| a.active))
    }
}

/// `answer` if it is no older than [`STALE_AFTER_INTERVALS`] intervals at `now_ms`.
fn fresh(answer: Option<Answer>, interval: Duration, now_ms: u64) -> Option<Answer> {
    let horizon = (interval.as_millis() as u64).saturating_mul(STALE_AFTER_INTERVALS);
    answer.filter(|a| now_ms.saturating_sub(a.at_ms) <= horizon)
}

/// `scalerMetadata.workload`, else the ScaledObject's own `namespace/name`.
fn workload_of(reference: &ScaledObjectRef) -> String {
    match reference.scaler_metadata.get("workload") {
        Some(workload) if !workload.is_empty() => workload.clone(),
        _ => format!("{}/{}", reference.namespace, reference.name),
    }
}

/// KEDA prefixes metric names with `s<trigger index>-` on its side and
/// usually strips it before asking; accept both.
fn unprefixed(metric: &str) -> &str {
    match metric.split_once('-') {
        Some((index, rest))
            if index.len() > 1 && index.starts_with('s') && index[1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            rest
        }
        _ => metric,
    }
}

fn code_label(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::NotFound => "not_found",
        tonic::Code::Unavailable => "unavailable",
        tonic::Code::InvalidArgument => "invalid_argument",
        tonic::Code::Unimplemented => "unimplemented",
        _ => "other",
    }
}

type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalScaler for Scaler {
    async fn is_active(&self, request: Request<ScaledObjectRef>) -> Result<Response<IsActiveResponse>, Status> {
        let started = Instant::now();
        let result = self.is_active_now(request.get_ref()).map(|result| Response::new(IsActiveResponse { result }));
        self.observe("IsActive", started, result)
    }

    type StreamIsActiveStream = Streamed<IsActiveResponse>;

    async fn stream_is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<Self::StreamIsActiveStream>, Status> {
        let started = Instant::now();
        let reference = request.into_inner();
        let opened = self.lookup(&reference).and_then(|(workload, _)| {
            self.answers.watch(&workload).ok_or_else(|| Status::not_found(format!("no workload {workload:?}")))
        });
        let mut answers = match self.observe("StreamIsActive", started, opened) {
            Ok(answers) => answers,
            Err(status) => return Err(status),
        };
        let (clock, lookup_answers, stopping) = (self.clock.clone(), self.answers.clone(), self.stopping.clone());
        let workload = workload_of(&reference);
        let active_now = move || {
            let (answer, interval) = lookup_answers.latest(&workload)?;
            Some(fresh(answer, interval, clock.now_ms()).is_some_and(|a| a.active))
        };
        let stream = async_stream(move |sender| async move {
            let mut last = None;
            while let Some(active) = active_now() {
                if last != Some(active) {
                    last = Some(active);
                    if sender.send(Ok(IsActiveResponse { result: active })).await.is_err() {
                        break;
                    }
                }
                // a new decision, or a staleness check once a second
                tokio::select! {
                    changed = answers.changed() => if changed.is_err() { break },
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = stopping.cancelled() => break,
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn get_metric_spec(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<GetMetricSpecResponse>, Status> {
        let started = Instant::now();
        // from the configuration alone: answers while inputs are down, so KEDA's fallback works
        let result = self.lookup(request.get_ref()).map(|_| Response::new(metric_spec()));
        self.observe("GetMetricSpec", started, result)
    }

    async fn get_metrics(&self, request: Request<GetMetricsRequest>) -> Result<Response<GetMetricsResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let reference = request.scaled_object_ref.unwrap_or_default();
        let result = self.lookup(&reference).and_then(|(workload, answer)| {
            let answer = answer.ok_or_else(|| {
                Status::unavailable(format!(
                    "no fresh decision for {workload} yet (KEDA's fallback applies until there is one)"
                ))
            })?;
            let asked = unprefixed(&request.metric_name);
            let value = if asked.is_empty() || asked == METRIC {
                f64::from(answer.desired)
            } else {
                answer.metrics.iter().find(|(name, _)| name == asked).map(|(_, v)| *v).ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "{workload} has no metric {asked:?}: ask for {METRIC:?} or one its policies report"
                    ))
                })?
            };
            Ok(Response::new(GetMetricsResponse { metric_values: vec![metric_value(&request.metric_name, value)] }))
        });
        self.observe("GetMetrics", started, result)
    }

    type StreamMetricSpecStream = Streamed<GetMetricSpecResponse>;

    async fn stream_metric_spec(
        &self,
        _request: Request<ScaledObjectRef>,
    ) -> Result<Response<Self::StreamMetricSpecStream>, Status> {
        // KEDA falls back to GetMetricSpec silently; the spec never changes anyway
        Err(Status::unimplemented("the metric spec is static: use GetMetricSpec"))
    }
}

/// The one metric spec: the decided replicas against a target of 1. KEDA
/// reads the deprecated int64 field when the float one is 0, so both are
/// filled.
#[allow(deprecated)]
fn metric_spec() -> GetMetricSpecResponse {
    GetMetricSpecResponse {
        metric_specs: vec![MetricSpec { metric_name: METRIC.into(), target_size: 1, target_size_float: 1.0 }],
    }
}

/// A value in both fields (float, and the deprecated int64, rounded).
#[allow(deprecated)]
fn metric_value(name: &str, value: f64) -> MetricValue {
    MetricValue { metric_name: name.to_string(), metric_value: value.round() as i64, metric_value_float: value }
}

/// A stream fed by a task through a small channel.
fn async_stream<T, F, Fut>(produce: F) -> Streamed<T>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<Result<T, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    tokio::spawn(produce(sender));
    Box::pin(futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keda_index_prefixes_are_stripped() {
        assert_eq!(unprefixed("s0-scalegate-desired-replicas"), METRIC);
        assert_eq!(unprefixed("s12-queue"), "queue");
        assert_eq!(unprefixed(METRIC), METRIC);
        assert_eq!(unprefixed("sx-queue"), "sx-queue");
    }

    #[test]
    fn the_workload_comes_from_metadata_or_the_scaled_object() {
        let mut reference = ScaledObjectRef { name: "web".into(), namespace: "shop".into(), ..Default::default() };
        assert_eq!(workload_of(&reference), "shop/web");
        reference.scaler_metadata.insert("workload".into(), "shop/api".into());
        assert_eq!(workload_of(&reference), "shop/api");
    }
}
