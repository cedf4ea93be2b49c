//! Calling the bound policies of one evaluation: resolving each binding to
//! the version to call (with the per-workload rollback rule), running it on
//! the blocking pool behind the evaluation semaphore, updating the
//! binding's health and state, and combining the answers.

use super::record::PolicyVerdict;
use super::state::BindingHealth;
use crate::config::{Binding, Combine, Only};
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

/// The bindings' counts made one by the workload's `combine` rule, after
/// each binding's `only` restriction; any fault keeps the current count.
/// With the proposal, how it was reached (for the decision record) when
/// there was anything to choose between.
pub fn combine(called: &[Called], bindings: &[Binding], rule: Combine, current: u32) -> (Proposal, Option<String>) {
    if let Some(faulty) = called.iter().find(|c| c.fault) {
        let reason = format!("{}: {}", faulty.verdict.policy, faulty.verdict.reason);
        return (Proposal::Fault(policy::clip(&reason, CLAMP_REASON_BYTES)), None);
    }
    // each binding's count, if it counts
    let counts: Vec<Option<u32>> = called
        .iter()
        .zip(bindings)
        .map(|(c, b)| {
            c.verdict.desired.filter(|&d| match b.only {
                None => true,
                Some(Only::ScaleUp) => d > current,
                Some(Only::ScaleDown) => d < current,
            })
        })
        .collect();
    let name = |i: usize| bindings.get(i).map_or("?", |b| b.name.as_str());
    let mut notes = Vec::new();
    for (i, b) in bindings.iter().enumerate() {
        if let (Some(only), Some(d), None) = (b.only, called.get(i).and_then(|c| c.verdict.desired), counts[i]) {
            let direction = if only == Only::ScaleUp { "only scale-up" } else { "only scale-down" };
            notes.push(format!("{} {d} ignored ({direction}, current {current})", name(i)));
        }
    }
    let desired = match rule {
        Combine::Max => counts.iter().flatten().max().copied(),
        Combine::Min => counts.iter().flatten().min().copied(),
        Combine::First => counts.iter().position(Option::is_some).map(|i| {
            if bindings.len() > 1 {
                notes.push(format!("first with an opinion: {}", name(i)));
            }
            counts[i].unwrap_or(current)
        }),
        Combine::Prefer { prefer, unless, by_more_than } => {
            let (p, u) = (counts.get(prefer).copied().flatten(), counts.get(unless).copied().flatten());
            let ruled = match (p, u) {
                (Some(p), Some(u)) if p.abs_diff(u) > by_more_than => {
                    notes.push(format!(
                        "{} {u}: differs from {} {p} by {} > {by_more_than}",
                        name(unless),
                        name(prefer),
                        p.abs_diff(u)
                    ));
                    Some(u)
                }
                (Some(p), Some(u)) => {
                    notes.push(format!("{} {p}: within {by_more_than} of {} {u}", name(prefer), name(unless)));
                    Some(p)
                }
                (p, u) => p.or(u),
            };
            let others = counts.iter().enumerate().filter(|(i, _)| *i != prefer && *i != unless);
            let others_max = others.filter_map(|(_, c)| *c).max();
            if let (Some(o), Some(r)) = (others_max, ruled)
                && o > r
            {
                notes.push(format!("raised to {o} by the other bindings"));
            }
            ruled.max(others_max).or(ruled)
        }
    };
    let note = (!notes.is_empty()).then(|| policy::clip(&notes.join("; "), CLAMP_REASON_BYTES));
    match desired {
        Some(desired) => (Proposal::Desired(desired), note),
        None => {
            let reasons = called.iter().map(|c| c.verdict.reason.as_str()).collect::<Vec<_>>().join("; ");
            (Proposal::NoOpinion(policy::clip(&reasons, CLAMP_REASON_BYTES)), note)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bindings named as given, `only` where a name ends in `+` (scale-up) or `-`.
    fn bindings(names: &[&str]) -> Vec<Binding> {
        names
            .iter()
            .map(|n| {
                let (name, only) = match n.strip_suffix('+') {
                    Some(name) => (name, Some(Only::ScaleUp)),
                    None => match n.strip_suffix('-') {
                        Some(name) => (name, Some(Only::ScaleDown)),
                        None => (*n, None),
                    },
                };
                let mut binding = Binding::new("fixed".parse().unwrap(), serde_json::json!({}));
                binding.name = name.to_string();
                binding.only = only;
                binding
            })
            .collect()
    }

    fn called(desired: &[Option<u32>]) -> Vec<Called> {
        desired
            .iter()
            .map(|&desired| Called {
                verdict: PolicyVerdict {
                    policy: "fixed@0.2.0".into(),
                    digest: "d".into(),
                    desired,
                    reason: if desired.is_some() { "decided".into() } else { "no opinion".into() },
                    error: None,
                    duration_us: 1,
                    rolled_back: false,
                },
                decision: None,
                fault: false,
            })
            .collect()
    }

    fn run(names: &[&str], desired: &[Option<u32>], rule: Combine, current: u32) -> (Proposal, Option<String>) {
        combine(&called(desired), &bindings(names), rule, current)
    }

    #[test]
    fn max_min_and_first_choose_among_the_opinions() {
        let (names, counts) = (["a", "b", "c"], [None, Some(7), Some(3)]);
        assert_eq!(run(&names, &counts, Combine::Max, 5).0, Proposal::Desired(7));
        assert_eq!(run(&names, &counts, Combine::Min, 5).0, Proposal::Desired(3));
        let (first, note) = run(&names, &counts, Combine::First, 5);
        assert_eq!(first, Proposal::Desired(7));
        assert_eq!(note.as_deref(), Some("first with an opinion: b"));
        // max with nothing to choose between says nothing extra
        assert_eq!(run(&names, &counts, Combine::Max, 5).1, None);
        assert!(matches!(run(&names, &[None, None, None], Combine::First, 5).0, Proposal::NoOpinion(_)));
    }

    #[test]
    fn a_fault_keeps_the_current_count_whatever_the_rule() {
        let mut answers = called(&[Some(9), None]);
        answers[1].fault = true;
        answers[1].verdict.reason = "trap: unreachable".into();
        for rule in [Combine::Max, Combine::Min, Combine::First] {
            let (proposal, _) = combine(&answers, &bindings(&["a", "b"]), rule, 4);
            assert_eq!(proposal, Proposal::Fault("fixed@0.2.0: trap: unreachable".into()), "{rule:?}");
        }
    }

    #[test]
    fn a_scale_up_only_backup_adds_capacity_but_never_holds_a_scale_in() {
        let names = ["urgency", "cpu+"];
        // the backup sees more load: it raises the count
        assert_eq!(run(&names, &[Some(4), Some(6)], Combine::Max, 4).0, Proposal::Desired(6));
        // the main policy scales in; the backup asking for the current count does not hold it
        let (proposal, note) = run(&names, &[Some(3), Some(4)], Combine::Max, 4);
        assert_eq!(proposal, Proposal::Desired(3));
        assert_eq!(note.as_deref(), Some("cpu 4 ignored (only scale-up, current 4)"));
        // nor does one asking for fewer, under min
        assert_eq!(run(&names, &[Some(5), Some(2)], Combine::Min, 4).0, Proposal::Desired(5));
        // alone and not above current: no opinion, the count holds
        assert!(matches!(run(&["cpu+"], &[Some(4)], Combine::Max, 4).0, Proposal::NoOpinion(_)));
        // scale-down only: counts only below current
        assert_eq!(run(&["a", "saver-"], &[Some(4), Some(6)], Combine::Min, 5).0, Proposal::Desired(4));
    }

    #[test]
    fn prefer_takes_the_preferred_count_unless_the_other_differs_by_more_than_n() {
        let names = ["predictive", "reactive"];
        let rule = Combine::Prefer { prefer: 0, unless: 1, by_more_than: 2 };
        // within 2: predictive, even when lower
        let (proposal, note) = run(&names, &[Some(6), Some(8)], rule, 5);
        assert_eq!(proposal, Proposal::Desired(6));
        assert_eq!(note.as_deref(), Some("predictive 6: within 2 of reactive 8"));
        // more than 2 apart, either way: reactive
        let (proposal, note) = run(&names, &[Some(4), Some(9)], rule, 5);
        assert_eq!(proposal, Proposal::Desired(9));
        assert_eq!(note.as_deref(), Some("reactive 9: differs from predictive 4 by 5 > 2"));
        assert_eq!(run(&names, &[Some(12), Some(5)], rule, 5).0, Proposal::Desired(5));
        // one without an opinion: the other
        assert_eq!(run(&names, &[None, Some(3)], rule, 5).0, Proposal::Desired(3));
        assert_eq!(run(&names, &[Some(7), None], rule, 5).0, Proposal::Desired(7));
    }

    #[test]
    fn bindings_the_prefer_rule_does_not_name_raise_its_result() {
        let names = ["predictive", "reactive", "cpu+"];
        let rule = Combine::Prefer { prefer: 0, unless: 1, by_more_than: 2 };
        let (proposal, note) = run(&names, &[Some(6), Some(7), Some(10)], rule, 5);
        assert_eq!(proposal, Proposal::Desired(10));
        assert_eq!(note.as_deref(), Some("predictive 6: within 2 of reactive 7; raised to 10 by the other bindings"));
        // a lower one does not lower it
        assert_eq!(run(&["p", "r", "x"], &[Some(6), Some(7), Some(2)], rule, 5).0, Proposal::Desired(6));
    }
}
