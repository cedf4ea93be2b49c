//! The loop shared by polling sources (Prometheus, NATS, forecasts): every
//! `interval`, fetch every job's value, write values to the hub, count
//! failures, time fetches. A source implements [`Fetcher`]; most fetch each
//! job on its own (`fetch_each`), some read one document for all jobs.

use super::SignalHub;
use crate::decide::Clock;
use crate::snapshot::{Forecast, Metric};
use crate::telemetry::Metrics;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A source's long-running task.
pub type SourceTask = BoxFuture<'static, ()>;
/// Starts a source's task with the loop's clock, stopping at the token.
pub type StartSource = Box<dyn FnOnce(Arc<dyn Clock>, CancellationToken) -> SourceTask + Send>;

/// One input of one workload that a source fetches.
#[derive(Debug, Clone)]
pub struct Job<S> {
    pub workload: String,
    pub metric: String,
    pub spec: S,
}

/// The outcome of fetching one job.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Value(Metric),
    /// A forecast (also delivered as its own entry in the snapshot).
    Forecast(Box<(Metric, Forecast)>),
    /// Not updated, not a failure of the source: (kind, why).
    Missing(&'static str, String),
    Failed(&'static str, String),
}

pub trait Fetcher: Send + Sync + 'static {
    type Spec: Send + Sync + 'static;
    /// Bounded label: metrics, stale-input names, logs.
    const SOURCE: &'static str;
    /// The outcome of every job, in order.
    fn fetch_all<'a>(&'a self, jobs: &'a [Job<Self::Spec>]) -> BoxFuture<'a, Vec<Outcome>>;
}

/// One job per workload metric that `pick` recognises as this source's.
pub fn jobs<S>(
    workloads: &[crate::config::Workload],
    pick: impl Fn(&crate::config::Workload, &crate::config::MetricSource) -> Option<S>,
) -> Vec<Job<S>> {
    let mut jobs = Vec::new();
    for workload in workloads {
        for metric in &workload.metrics {
            if let Some(spec) = pick(workload, &metric.source) {
                jobs.push(Job { workload: workload.name.clone(), metric: metric.name.clone(), spec });
            }
        }
    }
    jobs
}

/// Runs `fetch` for every job, 16 at a time, keeping the order.
pub async fn fetch_each<'a, S, F, Fut>(jobs: &'a [Job<S>], fetch: F) -> Vec<Outcome>
where
    F: Fn(&'a Job<S>) -> Fut,
    Fut: std::future::Future<Output = Outcome> + 'a,
{
    let limit = tokio::sync::Semaphore::new(16);
    let calls: Vec<_> = jobs
        .iter()
        .map(|job| {
            let (call, limit) = (fetch(job), &limit);
            async move {
                let _permit = limit.acquire().await;
                call.await
            }
        })
        .collect();
    futures::future::join_all(calls).await
}

pub struct Poller<F: Fetcher> {
    pub fetcher: F,
    pub jobs: Vec<Job<F::Spec>>,
    pub interval: Duration,
    pub hub: Arc<SignalHub>,
    pub metrics: Arc<Metrics>,
}

impl<F: Fetcher> Poller<F> {
    /// This poller as a task to start.
    pub fn into_start(self) -> StartSource {
        Box::new(move |clock, stop| Box::pin(self.run(clock, stop)))
    }

    /// Polls every `interval` until `shutdown`.
    pub async fn run(self, clock: Arc<dyn Clock>, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            self.poll(clock.as_ref()).await;
        }
    }

    /// Fetches every job once and records the outcomes.
    pub async fn poll(&self, clock: &dyn Clock) {
        let started = Instant::now();
        let outcomes = self.fetcher.fetch_all(&self.jobs).await;
        self.metrics.observe_fetch(F::SOURCE, started.elapsed());
        let mut succeeded = false;
        for (job, outcome) in self.jobs.iter().zip(outcomes) {
            let (metric, forecast) = match outcome {
                Outcome::Value(metric) => (metric, None),
                Outcome::Forecast(pair) => {
                    let (metric, forecast) = *pair;
                    (metric, Some(forecast))
                }
                Outcome::Missing(kind, why) | Outcome::Failed(kind, why) => {
                    self.hub.fail(&job.workload, &job.metric, kind, why);
                    continue;
                }
            };
            succeeded = true;
            if let Err(error) = self.hub.update(&job.workload, F::SOURCE, metric, forecast, clock.now_ms()) {
                tracing::warn!(workload = %job.workload, metric = %job.metric, %error, "value refused");
            }
        }
        if succeeded {
            self.metrics.mark_source_success(F::SOURCE);
        }
    }
}
