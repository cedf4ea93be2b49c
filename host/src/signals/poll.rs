//! The loop shared by polling sources (Prometheus, NATS, forecasts, Redis,
//! Kafka lag, pod metrics): every `interval`, fetch every job's value, write
//! values to the hub, count failures, time fetches. A source implements
//! [`Fetcher`]; most fetch each job on its own ([`fetch_each`]), some read
//! one document for all jobs.

use super::hub::SignalHub;
use super::source::{Context, Job, SourceError, SourceTask};
use crate::clock::Clock;
use crate::snapshot::{Forecast, Metric};
use crate::telemetry::Metrics;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The outcome of fetching one job.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Value(Metric),
    /// A forecast (also delivered as its own entry in the snapshot).
    Forecast(Box<(Metric, Forecast)>),
    /// Not updated, and not a failure of the source (e.g. an empty result
    /// configured as missing): counted, the metric ages out.
    Missing(SourceError),
    Failed(SourceError),
}

pub trait Fetcher: Send + Sync + 'static {
    type Spec: Send + Sync + 'static;
    /// Bounded label: metrics, stale-input names, logs.
    const SOURCE: &'static str;
    /// The outcome of every job, in order; `clock` stamps values that carry
    /// no time of their own.
    fn fetch_all<'a>(&'a self, jobs: &'a [Job<Self::Spec>], clock: &'a dyn Clock) -> BoxFuture<'a, Vec<Outcome>>;
}

/// Runs `fetch` for every job, 16 at a time, keeping the order.
pub async fn fetch_each<'a, S: 'a, F, Fut>(jobs: impl IntoIterator<Item = &'a Job<S>>, fetch: F) -> Vec<Outcome>
where
    F: Fn(&'a Job<S>) -> Fut,
    Fut: std::future::Future<Output = Outcome> + 'a,
{
    let limit = tokio::sync::Semaphore::new(16);
    let calls: Vec<_> = jobs
        .into_iter()
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
    pub clock: Arc<dyn Clock>,
}

impl<F: Fetcher> Poller<F> {
    pub fn new(fetcher: F, jobs: Vec<Job<F::Spec>>, interval: Duration, context: &Context) -> Poller<F> {
        Poller {
            fetcher,
            jobs,
            interval,
            hub: context.hub.clone(),
            metrics: context.metrics.clone(),
            clock: context.clock.clone(),
        }
    }

    /// This poller as a task, stopping at `shutdown`.
    pub fn into_task(self, shutdown: CancellationToken) -> SourceTask {
        Box::pin(self.run(shutdown))
    }

    /// Polls every `interval` until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            self.poll().await;
        }
    }

    /// Fetches every job once and records the outcomes.
    pub async fn poll(&self) {
        let started = Instant::now();
        let outcomes = self.fetcher.fetch_all(&self.jobs, self.clock.as_ref()).await;
        self.metrics.observe_fetch(F::SOURCE, started.elapsed());
        let mut succeeded = false;
        for (job, outcome) in self.jobs.iter().zip(outcomes) {
            let (metric, forecast) = match outcome {
                Outcome::Value(metric) => (metric, None),
                Outcome::Forecast(pair) => {
                    let (metric, forecast) = *pair;
                    (metric, Some(forecast))
                }
                Outcome::Missing(error) | Outcome::Failed(error) => {
                    self.hub.fail(&job.workload, &job.metric, &error);
                    continue;
                }
            };
            succeeded = true;
            if let Err(error) = self.hub.update(&job.workload, F::SOURCE, metric, forecast, self.clock.now_ms()) {
                tracing::warn!(workload = %job.workload, metric = %job.metric, %error, "value refused");
            }
        }
        if succeeded {
            self.metrics.mark_source_success(F::SOURCE);
        }
    }
}

/// Jobs with their specs cloned out of the configuration.
pub fn owned<M: Clone>(jobs: Vec<Job<&M>>) -> Vec<Job<M>> {
    jobs.into_iter()
        .map(|job| Job { workload: job.workload, target: job.target, metric: job.metric, spec: job.spec.clone() })
        .collect()
}
