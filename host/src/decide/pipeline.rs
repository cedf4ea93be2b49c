//! One evaluation of one workload: observe the target through the cluster
//! port, add the signal hub's inputs, assemble the snapshot, call the bound
//! policies (and the shadow), combine, apply the guardrails, actuate, and
//! return the record. The loop (`decide`) decides when; this decides what.

use super::call::{Called, Caller, combine};
use super::capture::{Captured, CapturedCall};
use super::record::{DecisionRecord, InputsDigest, Timing};
use super::state::WorkloadState;
use crate::clock::Clock;
use crate::cluster::{Cluster, ClusterError};
use crate::config::{Actuator, Workload as WorkloadSpec};
use crate::guardrails::{self, Proposal, Situation};
use crate::leadership::Leadership;
use crate::policy::{CallPool, Evaluator};
use crate::signals::{Delivery, Handled, SignalHub};
use crate::sink::{Answer, Answers};
use crate::snapshot::{Observation, Past, PodDeletionCost, Recommendation, ScaleEvent, Snapshot, Subject};
use crate::telemetry::Metrics;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one evaluation needs: the ports, the budget, the inputs.
pub struct Pipeline<C: Cluster> {
    pub cluster: Arc<C>,
    pub clock: Arc<dyn Clock>,
    pub evaluator: Arc<dyn Evaluator>,
    /// Bounds the policy calls running at once across all workloads.
    pub calls: CallPool,
    pub metrics: Arc<Metrics>,
    pub leadership: Arc<Leadership>,
    pub inputs: Option<Arc<SignalHub>>,
    /// Where decisions of `keda` workloads are published.
    pub answers: Option<Arc<Answers>>,
    /// Consecutive faults of a version before a workload rolls back.
    pub rollback_after: u32,
    /// Whether evaluations are captured with their snapshots (`capture`).
    pub capture: bool,
}

/// What became of the signals an evaluation took (see `signals::delivery`).
pub enum Settlement {
    /// The decision is written or needed no write: settle them once the
    /// state is stored.
    Handled(Vec<Delivery>),
    /// Writing failed: hand them back for the next evaluation.
    Retry(Vec<Delivery>),
    /// This replica may not write: leave them unsettled for the leader.
    Abandon(Vec<Delivery>),
}

/// An evaluation's record and its signals.
pub struct Evaluated {
    pub record: DecisionRecord,
    pub settlement: Settlement,
    /// The evaluation with its exact snapshot, when asked for and the
    /// policies were called.
    pub captured: Option<Captured>,
}

impl<C: Cluster> Pipeline<C> {
    /// One evaluation of `spec`, updating its `state`.
    pub async fn evaluate(&self, spec: &WorkloadSpec, state: &mut WorkloadState) -> Evaluated {
        let now_ms = self.clock.now_ms();
        let started = Instant::now();
        match self.cluster.observe(&spec.target).await {
            Ok(observation) => {
                let timing = Timing { observe_us: micros(started.elapsed()), ..Timing::default() };
                self.decide(spec, state, observation, now_ms, started, timing).await
            }
            // the signals stay queued for the next evaluation
            Err(error) => Evaluated {
                record: self.unobserved(spec, state, now_ms, error),
                settlement: Settlement::Handled(vec![]),
                captured: None,
            },
        }
    }

    fn may_write(&self) -> bool {
        self.leadership.may_write()
    }

    /// The record of an evaluation whose target could not be read.
    fn unobserved(
        &self,
        spec: &WorkloadSpec,
        state: &WorkloadState,
        now_ms: u64,
        error: ClusterError,
    ) -> DecisionRecord {
        let situation = Situation {
            now_ms,
            current_replicas: 0,
            last_scale_ms: state.last_scale_ms,
            stale_inputs: vec![],
            standby: !self.may_write(),
            last_active_ms: state.last_active_ms,
        };
        let reason = format!("cannot observe the target: {error}");
        let outcome = guardrails::apply(&spec.limits, &situation, &Proposal::NoOpinion(reason));
        DecisionRecord {
            at_ms: now_ms,
            workload: spec.name.clone(),
            inputs_digest: InputsDigest::default(),
            inputs: String::new(),
            current_replicas: 0,
            ready_replicas: 0,
            policies: vec![],
            combined: None,
            shadow: None,
            shadow_diverged: false,
            guardrails: outcome,
            applied: false,
            apply_error: Some(error.to_string()),
            served: None,
            vertical: None,
            timing: Timing::default(),
        }
    }

    async fn decide(
        &self,
        spec: &WorkloadSpec,
        state: &mut WorkloadState,
        mut observation: Observation,
        now_ms: u64,
        started: Instant,
        mut timing: Timing,
    ) -> Evaluated {
        let mut deliveries = Vec::new();
        if let Some(hub) = &self.inputs {
            let inputs = hub.collect(&spec.name, now_ms);
            observation.metrics.extend(inputs.metrics);
            observation.forecasts.extend(inputs.forecasts);
            observation.stale_inputs.extend(inputs.stale);
            for delivery in inputs.signals {
                if state.handled(&delivery) {
                    // read again from its stream after a failover: already acted on
                    if let Some(receipt) = delivery.receipt {
                        receipt.settle(&Handled::Superseded);
                    }
                    continue;
                }
                observation.signals.push(delivery.signal.clone());
                let waited = started.saturating_duration_since(delivery.received);
                timing.signal_wait_us = timing.signal_wait_us.max(micros(waited));
                deliveries.push(delivery);
            }
        }
        if spec.vertical.is_some() {
            self.join_usage(spec, &mut observation).await;
        }
        let current = observation.spec_replicas;
        let stale_inputs = std::mem::take(&mut observation.stale_inputs);
        let subject = Subject {
            kind: &spec.target.kind,
            namespace: &spec.target.namespace,
            name: &spec.target.name,
            min_replicas: spec.limits.min_replicas,
            max_replicas: spec.limits.max_replicas,
        };
        let past = Past {
            recommendations: state.history.recommendations().iter().copied().collect(),
            scale_events: state.history.scale_events().iter().copied().collect(),
        };
        let base = crate::snapshot::assemble(now_ms, subject, observation, past);
        let base_json = serde_json::to_vec(&base).unwrap_or_default();
        let inputs_digest = InputsDigest(Some(Sha256::digest(&base_json).into()));
        // what each binding is given, before the calls replace it
        let states_in: Option<Vec<Vec<u8>>> =
            self.capture.then(|| state.bindings.iter().map(|h| h.state.clone()).collect());
        let inputs = summarize(&base);

        let calling = Instant::now();
        let caller = Caller {
            evaluator: self.evaluator.as_ref(),
            calls: &self.calls,
            metrics: &self.metrics,
            rollback_after: self.rollback_after,
        };
        let mut called = Vec::with_capacity(spec.policies.len());
        for (binding, health) in spec.policies.iter().zip(state.bindings.iter_mut()) {
            called.push(caller.call(binding, health, &base).await);
        }
        let shadow = match &spec.shadow {
            Some(binding) => Some(caller.call(binding, &mut state.shadow, &base).await),
            None => None,
        };

        timing.policies_us = micros(calling.elapsed());
        let (proposal, combined) = combine(&called, &spec.policies, spec.combine, current);
        if let Proposal::Desired(desired) = proposal {
            state.history.recommend(Recommendation { timestamp_ms: now_ms, replicas: desired });
        }
        // a workload first seen counts as active now: its idle period starts here
        let last_active_ms = *state.last_active_ms.get_or_insert(now_ms);
        let situation = Situation {
            now_ms,
            current_replicas: current,
            last_scale_ms: state.last_scale_ms,
            stale_inputs,
            standby: !self.may_write(),
            last_active_ms: Some(last_active_ms),
        };
        if let Proposal::Desired(desired) = proposal
            && spec.limits.is_active(desired)
        {
            state.last_active_ms = Some(now_ms);
        }
        let mut outcome = guardrails::apply(&spec.limits, &situation, &proposal);
        let mut served = None;
        if spec.actuator == Actuator::Keda {
            // KEDA scales it: the decision is served, never written (by any replica)
            outcome.actuate = false;
            served = Some(outcome.replicas);
            if let Some(answers) = &self.answers {
                let metrics = called
                    .iter()
                    .filter_map(|c| c.decision.as_ref())
                    .flat_map(|d| d.metrics.iter().map(|m| (m.name.clone(), m.value)))
                    .collect();
                let answer = Answer {
                    desired: outcome.replicas,
                    active: spec.limits.is_active(outcome.replicas),
                    metrics,
                    at_ms: now_ms,
                };
                answers.publish(&spec.name, answer);
            }
        }
        if outcome.actuate && !self.may_write() {
            // the lease was lost while the policies ran
            outcome.actuate = false;
            outcome.clamps.push(guardrails::Clamp::Standby { would_scale_to: outcome.replicas });
        }

        let (mut applied, mut apply_error) = (false, None);
        if outcome.actuate {
            let writing = Instant::now();
            let written = self.actuate(spec, &called, current, outcome.replicas).await;
            timing.write_us = micros(writing.elapsed());
            match written {
                Ok(()) => {
                    applied = true;
                    state.last_scale_ms = Some(now_ms);
                    let event =
                        ScaleEvent { timestamp_ms: now_ms, from_replicas: current, to_replicas: outcome.replicas };
                    state.history.scaled(event);
                }
                Err(error) => apply_error = Some(error.to_string()),
            }
        }
        let vertical = match &spec.vertical {
            Some(vertical) => Some(Box::new(self.vertical(spec, vertical, state, &called, &base, now_ms).await)),
            None => None,
        };
        let shadow_diverged = shadow.as_ref().is_some_and(|s| match proposal {
            Proposal::Desired(desired) => s.verdict.desired != Some(desired),
            _ => s.verdict.desired.is_some(),
        });
        let standby =
            outcome.clamps.iter().any(|c| matches!(c, guardrails::Clamp::Standby { .. })) || !self.may_write();
        let settlement = if apply_error.is_some() {
            Settlement::Retry(deliveries)
        } else if standby {
            Settlement::Abandon(deliveries)
        } else {
            for delivery in &deliveries {
                state.mark_handled(delivery);
            }
            Settlement::Handled(deliveries)
        };
        let record = DecisionRecord {
            at_ms: now_ms,
            workload: spec.name.clone(),
            inputs_digest,
            inputs,
            current_replicas: current,
            ready_replicas: base.workload.ready_replicas(),
            policies: called.into_iter().map(|c| c.verdict).collect(),
            combined,
            shadow: shadow.map(|s| Box::new(s.verdict)),
            shadow_diverged,
            guardrails: outcome,
            applied,
            apply_error,
            served,
            vertical,
            timing,
        };
        let captured = states_in.map(|states| Captured {
            at_ms: now_ms,
            snapshot: base_json.into(),
            calls: spec
                .policies
                .iter()
                .zip(states)
                .zip(&record.policies)
                .map(|((binding, state), verdict)| CapturedCall {
                    name: binding.name.clone(),
                    policy: verdict.policy.clone(),
                    params: binding.params.clone(),
                    state,
                    desired: verdict.desired,
                    reason: verdict.reason.clone(),
                    error: verdict.error.clone(),
                })
                .collect(),
            replicas: record.guardrails.replicas,
            applied: record.applied,
        });
        Evaluated { record, settlement, captured }
    }

    /// Joins each container's usage (`metrics.k8s.io`) into the observed
    /// pods; a failure to read it makes the usage an input gone stale.
    async fn join_usage(&self, spec: &WorkloadSpec, observation: &mut Observation) {
        let names: Vec<String> = observation.pods.iter().map(|p| p.name.clone()).collect();
        match self.cluster.container_usage(&spec.target, &names).await {
            Ok(usages) => {
                for usage in usages {
                    let Some(pod) = observation.pods.iter_mut().find(|p| p.name == usage.pod) else { continue };
                    for container in &mut pod.containers {
                        let Some(values) = usage.containers.get(&container.name) else { continue };
                        if let (Some(cpu), Some(memory)) = (values.get("cpu"), values.get("memory")) {
                            container.usage = Some(crate::snapshot::Usage {
                                cpu: *cpu,
                                memory: *memory,
                                timestamp_ms: usage.timestamp_ms,
                                window_ms: usage.window_ms,
                            });
                        }
                    }
                }
            }
            Err(error) => {
                tracing::debug!(workload = %spec.name, %error, "container usage not read");
                observation.stale_inputs.push(format!("metrics.k8s.io:pods/{}", spec.target.namespace));
            }
        }
    }

    /// The vertical stage: the policies' recommendations bounded by the
    /// spec, an Event when they moved, and in mode `in-place` the next
    /// resize (the leader only; never in dry run).
    async fn vertical(
        &self,
        spec: &WorkloadSpec,
        vertical: &crate::vertical::Spec,
        state: &mut WorkloadState,
        called: &[Called],
        base: &Snapshot,
        now_ms: u64,
    ) -> crate::vertical::Record {
        use crate::vertical::{InFlight, Plan};
        let recommended = crate::vertical::recommended(
            vertical,
            called.iter().filter_map(|c| c.decision.as_ref()).flat_map(|d| d.resources.iter()),
        );
        let v = &mut state.vertical;
        if crate::vertical::moved(vertical, &v.published, &recommended) && self.may_write() {
            let text = crate::vertical::describe(&recommended);
            self.cluster.event(&spec.target, "RecommendationChanged", &format!("recommended {text}"));
            v.published = recommended.clone();
        }
        // the resize asked for last is done once the pod shows it, nothing pending
        if v.in_flight.as_ref().is_some_and(|flight| flight.done(&base.pods)) {
            v.in_flight = None;
        }
        let plan =
            crate::vertical::plan(vertical, &base.pods, &recommended, v.in_flight.as_ref(), v.last_resize_ms, now_ms);
        let (mut applied, mut error) = (false, None);
        if let Plan::Resize { pod, containers, reason } = &plan
            && spec.actuator != Actuator::DryRun
            && self.may_write()
        {
            match self.cluster.resize(&spec.target, pod, containers, reason).await {
                Ok(()) => {
                    applied = true;
                    v.in_flight = Some(InFlight { pod: pod.clone(), since_ms: now_ms, containers: containers.clone() });
                    v.last_resize_ms = Some(now_ms);
                }
                Err(e) => error = Some(e.to_string()),
            }
        }
        crate::vertical::Record { mode: vertical.mode, recommended, plan, applied, error }
    }

    /// Writes `to`: deletion costs first when scaling in, then `/scale`.
    async fn actuate(&self, spec: &WorkloadSpec, called: &[Called], from: u32, to: u32) -> Result<(), ClusterError> {
        if to < from {
            let costs: Vec<PodDeletionCost> = called
                .iter()
                .filter_map(|c| c.decision.as_ref())
                .flat_map(|d| d.deletion_costs.iter().cloned())
                .collect();
            if !costs.is_empty() {
                self.cluster.set_deletion_costs(&spec.target, &costs).await?;
            }
        }
        let reason =
            called.iter().map(|c| format!("{}: {}", c.verdict.policy, c.verdict.reason)).collect::<Vec<_>>().join("; ");
        self.cluster.scale(&spec.target, from, to, &reason).await
    }
}

fn summarize(snapshot: &Snapshot) -> String {
    let w = &snapshot.workload;
    let mut text =
        format!("replicas {} ({} ready), {} pods", w.current_replicas, w.ready_replicas(), snapshot.pods.len());
    for metric in snapshot.metrics.iter().take(8) {
        text.push_str(&format!(", {}={:.3}", metric.name, metric.value));
    }
    if !snapshot.signals.is_empty() {
        text.push_str(&format!(", {} signals", snapshot.signals.len()));
    }
    text.shrink_to_fit();
    text
}

fn micros(duration: Duration) -> u64 {
    duration.as_micros().min(u128::from(u64::MAX)) as u64
}
