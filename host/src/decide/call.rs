//! Calling the bound policies of one evaluation: resolving each binding to
//! the version to call (with the per-workload rollback rule), running it on
//! the blocking pool behind the evaluation semaphore, updating the
//! binding's health and state, and combining the answers.

use super::record::PolicyVerdict;
use super::state::BindingHealth;
use crate::config::Binding;
use crate::guardrails::Proposal;
use crate::policy::{self, CallPool, Evaluator, Policy};
use crate::snapshot::{Decision, Snapshot};
use crate::telemetry::Metrics;
use std::sync::Arc;

/// A policy call's result as the loop sees it.
pub struct Called {
    pub verdict: PolicyVerdict,
    pub decision: Option<Decision>,
    pub fault: bool,
}

/// What calling needs from the loop.
pub struct Caller<'a> {
    pub evaluator: &'a dyn Evaluator,
    pub calls: &'a CallPool,
    pub metrics: &'a Metrics,
    /// Consecutive faults of a version before a workload rolls back.
    pub rollback_after: u32,
}

impl Caller<'_> {
    /// Resolves and calls one binding's policy on `base` (with the binding's
    /// params and state), and updates the binding's health.
    pub async fn call(&self, binding: &Binding, health: &mut BindingHealth, base: &Snapshot) -> Called {
        let Some(latest) = self.evaluator.resolve(&binding.policy) else {
            let verdict = PolicyVerdict {
                policy: binding.policy.to_string().into(),
                digest: "".into(),
                desired: None,
                reason: format!("policy {} is not loaded", binding.policy),
                error: Some("not_loaded".into()),
                duration_us: 0,
                rolled_back: false,
            };
            return Called { verdict, decision: None, fault: true };
        };
        let mut rolled_back = false;
        let policy: Arc<dyn Policy> = match (&health.avoid_digest, &health.last_good) {
            (Some(avoid), Some(good)) if **avoid == *latest.digest() => {
                rolled_back = true;
                good.clone()
            }
            _ => {
                health.avoid_digest = None;
                latest
            }
        };
        let mut snapshot = base.clone();
        snapshot.params = (*binding.params).clone();
        snapshot.state = health.state.clone();
        let (outcome, duration_us) = match self.calls.evaluate(policy.clone(), snapshot).await {
            Some(evaluation) => (evaluation.outcome, evaluation.duration.as_micros() as u64),
            None => (Err(policy::Error::Trap("the evaluation's thread panicked".into())), 0),
        };
        let fault = outcome.as_ref().err().is_some_and(policy::Error::is_fault);
        if let Err(error) = &outcome
            && fault
        {
            Metrics::count(&self.metrics.policy_faults, error.metric_label());
        }
        if fault {
            health.consecutive_faults += 1;
            let has_alternative = health.last_good.as_ref().is_some_and(|g| g.digest() != policy.digest());
            if health.consecutive_faults >= self.rollback_after && has_alternative && !rolled_back {
                tracing::warn!(policy = %policy.id(), faults = health.consecutive_faults, "repeated faults: rolling this workload back to its last good version");
                health.avoid_digest = Some(policy.digest());
            }
        } else {
            health.consecutive_faults = 0;
            health.last_good = Some(policy.clone());
        }
        let verdict = |desired, reason: String, error: Option<String>| PolicyVerdict {
            policy: policy.id(),
            digest: policy.digest(),
            desired,
            reason,
            error,
            duration_us,
            rolled_back,
        };
        match outcome {
            Ok(decision) => {
                health.state = decision.state.clone();
                Called {
                    verdict: verdict(decision.desired_replicas, decision.reason.clone(), None),
                    decision: Some(decision),
                    fault: false,
                }
            }
            Err(error) => Called {
                verdict: verdict(None, error.to_string(), Some(error.metric_label().into())),
                decision: None,
                fault,
            },
        }
    }
}

/// Longest summary of the policies' reasons in a guardrail clamp; the
/// verdicts beside it in the record keep the whole text.
const CLAMP_REASON_BYTES: usize = 512;

/// Max of the desired counts; any fault keeps the current count.
pub fn combine(called: &[Called]) -> Proposal {
    if let Some(faulty) = called.iter().find(|c| c.fault) {
        let reason = format!("{}: {}", faulty.verdict.policy, faulty.verdict.reason);
        return Proposal::Fault(policy::clip(&reason, CLAMP_REASON_BYTES));
    }
    match called.iter().filter_map(|c| c.verdict.desired).max() {
        Some(desired) => Proposal::Desired(desired),
        None => {
            let reasons = called.iter().map(|c| c.verdict.reason.as_str()).collect::<Vec<_>>().join("; ");
            Proposal::NoOpinion(policy::clip(&reasons, CLAMP_REASON_BYTES))
        }
    }
}
