//! What the loop remembers of one workload binding between evaluations:
//! each bound policy's `state` and health (for per-workload rollback), the
//! recommendations made and the scale events applied (kept by time, not by
//! count), and when the host last scaled (cooldowns).
//!
//! All of it but the health is also kept in the cluster ([`Stored`]), so a
//! new leader or a restarted daemon continues where the last writer stopped.

use crate::config::Workload as WorkloadSpec;
use crate::policy::{Policy, PolicyRef};
use crate::signals::Delivery;
use crate::snapshot::{Recommendation, ScaleEvent};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// How long applied scale events are kept: the longest window a bound
/// policy may look back over them (an HPA scaling policy's `periodSeconds`
/// is at most 1800 s).
pub const SCALE_EVENT_WINDOW: Duration = Duration::from_secs(1800);

/// How long recommendations are kept: the longest stabilization window an
/// HPA `behavior` allows (3600 s).
pub const RECOMMENDATION_WINDOW: Duration = Duration::from_secs(3600);

/// At most this many of each are kept, whatever the windows say (a
/// workload evaluated every second for an hour stays bounded).
pub const HISTORY_CAP: usize = 4096;

/// The health of one binding on one workload.
#[derive(Default)]
pub struct BindingHealth {
    /// The reference this health belongs to (a rebinding to another policy
    /// starts afresh).
    pub policy: Option<PolicyRef>,
    /// What the policy returned as `decision.state` last time.
    pub state: Vec<u8>,
    pub last_good: Option<Arc<dyn Policy>>,
    pub consecutive_faults: u32,
    /// A version set aside after repeated faults.
    pub avoid_digest: Option<Arc<str>>,
}

impl BindingHealth {
    pub fn for_policy(policy: &PolicyRef) -> BindingHealth {
        BindingHealth { policy: Some(policy.clone()), ..BindingHealth::default() }
    }
}

/// Recommendations and applied scale events, oldest first.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct History {
    recommendations: VecDeque<Recommendation>,
    scale_events: VecDeque<ScaleEvent>,
}

impl History {
    pub fn from_parts(recommendations: Vec<Recommendation>, scale_events: Vec<ScaleEvent>) -> History {
        History { recommendations: recommendations.into(), scale_events: scale_events.into() }
    }

    /// Adds a recommendation. One equal to the newest kept moves that one's
    /// time forward instead of adding another: "the largest (or smallest)
    /// recommendation of the last W seconds" stays exact for every W, and a
    /// workload whose recommendation holds keeps one entry, not one per
    /// evaluation (10,000 workloads at 15 s would otherwise keep 2.4 million
    /// for the hour).
    pub fn recommend(&mut self, recommendation: Recommendation) {
        match self.recommendations.back_mut() {
            Some(newest) if newest.replicas == recommendation.replicas => {
                newest.timestamp_ms = newest.timestamp_ms.max(recommendation.timestamp_ms);
            }
            _ => self.recommendations.push_back(recommendation),
        }
        self.prune(recommendation.timestamp_ms);
    }

    pub fn scaled(&mut self, event: ScaleEvent) {
        self.scale_events.push_back(event);
        self.prune(event.timestamp_ms);
    }

    /// Drops what is older than its window at `now_ms`, and the oldest
    /// beyond [`HISTORY_CAP`].
    pub fn prune(&mut self, now_ms: u64) {
        let keep_after = |window: Duration| now_ms.saturating_sub(window.as_millis() as u64);
        let recent = keep_after(RECOMMENDATION_WINDOW);
        while self.recommendations.front().is_some_and(|r| r.timestamp_ms < recent) {
            self.recommendations.pop_front();
        }
        let recent = keep_after(SCALE_EVENT_WINDOW);
        while self.scale_events.front().is_some_and(|e| e.timestamp_ms < recent) {
            self.scale_events.pop_front();
        }
        while self.recommendations.len() > HISTORY_CAP {
            self.recommendations.pop_front();
        }
        while self.scale_events.len() > HISTORY_CAP {
            self.scale_events.pop_front();
        }
    }

    pub fn recommendations(&self) -> &VecDeque<Recommendation> {
        &self.recommendations
    }

    pub fn scale_events(&self) -> &VecDeque<ScaleEvent> {
        &self.scale_events
    }
}

/// Everything remembered of one workload binding.
#[derive(Default)]
pub struct WorkloadState {
    /// One per bound policy, in the binding's order.
    pub bindings: Vec<BindingHealth>,
    pub shadow: BindingHealth,
    pub history: History,
    /// When the host last changed the replica count.
    pub last_scale_ms: Option<u64>,
    /// When the decision last said "active" (above the activation
    /// threshold): a workload may go to zero only an idle period after it.
    pub last_active_ms: Option<u64>,
    /// When the state was last stored in the cluster (host clock).
    pub saved_ms: Option<u64>,
    /// What was stored then (a hash), to skip storing the same again.
    pub saved_digest: Option<u64>,
    /// The last handled offset of each replayable stream of signals
    /// (`kafka:topic/partition`), to recognise a signal read again.
    pub handled: BTreeMap<String, i64>,
    /// Vertical scaling: the resize in flight, the last one, what was published.
    pub vertical: crate::vertical::State,
}

/// The stored form of a workload's state (the `status` of its
/// `ScalegateState`): readable with `kubectl get scalegatestates -o yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    /// Format version (1).
    pub version: u32,
    /// When it was written (ms since the epoch).
    pub saved_at_ms: u64,
    #[serde(default)]
    pub last_scale_ms: Option<u64>,
    /// When the workload was last active (scale to zero counts from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_active_ms: Option<u64>,
    /// When a pod was last resized in place (the vertical cooldown counts from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_resize_ms: Option<u64>,
    /// `[timestamp_ms, from, to]`, oldest first.
    #[serde(default)]
    pub scale_events: Vec<(u64, u32, u32)>,
    /// `[timestamp_ms, replicas]`, oldest first.
    #[serde(default)]
    pub recommendations: Vec<(u64, u32)>,
    /// One per bound policy, in order.
    #[serde(default)]
    pub bindings: Vec<StoredBinding>,
    #[serde(default)]
    pub shadow: Option<StoredBinding>,
    /// The last handled offset of each stream of directives, e.g.
    /// `{"kafka:rtc.control.scale/3": 1742}`.
    #[serde(default)]
    pub handled: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredBinding {
    /// The policy's name (a state is only restored to the same policy).
    pub policy: String,
    /// The policy's `decision.state`, base64.
    pub state: String,
}

impl StoredBinding {
    fn of(health: &BindingHealth) -> Option<StoredBinding> {
        let policy = health.policy.as_ref()?;
        Some(StoredBinding { policy: policy.name().to_string(), state: STANDARD.encode(&health.state) })
    }

    /// Puts the stored state into `health` when it is for the same policy.
    fn restore(&self, health: &mut BindingHealth) -> bool {
        let same = health.policy.as_ref().is_some_and(|p| p.name() == self.policy);
        match STANDARD.decode(&self.state) {
            Ok(state) if same => {
                health.state = state;
                true
            }
            _ => false,
        }
    }
}

impl WorkloadState {
    /// Fresh state for these bindings.
    pub fn new(policies: &[PolicyRef], shadow: Option<&PolicyRef>) -> WorkloadState {
        WorkloadState {
            bindings: policies.iter().map(BindingHealth::for_policy).collect(),
            shadow: shadow.map(BindingHealth::for_policy).unwrap_or_default(),
            ..WorkloadState::default()
        }
    }

    /// Fresh state for a workload's bindings.
    pub fn for_spec(spec: &WorkloadSpec) -> WorkloadState {
        let (policies, shadow) = references(spec);
        WorkloadState::new(&policies, shadow.as_ref())
    }

    /// Follows the workload's current bindings (see [`WorkloadState::rebind`]);
    /// nothing changes while they are the same.
    pub fn follow(&mut self, spec: &WorkloadSpec) {
        let (policies, shadow) = references(spec);
        let current = self.bindings.iter().map(|b| b.policy.as_ref()).eq(policies.iter().map(Some));
        if !current || self.shadow.policy != shadow {
            self.rebind(&policies, shadow.as_ref());
        }
    }

    /// Follows a rebinding: a binding keeps its state and health where the
    /// same policy name stays at the same position; others start afresh.
    pub fn rebind(&mut self, policies: &[PolicyRef], shadow: Option<&PolicyRef>) {
        let mut old = std::mem::take(&mut self.bindings).into_iter();
        self.bindings = policies
            .iter()
            .map(|policy| match old.next() {
                Some(health) if same_policy(health.policy.as_ref(), policy) => {
                    BindingHealth { policy: Some(policy.clone()), ..health }
                }
                _ => BindingHealth::for_policy(policy),
            })
            .collect();
        let shadow_health = std::mem::take(&mut self.shadow);
        self.shadow = match shadow {
            Some(policy) if same_policy(shadow_health.policy.as_ref(), policy) => {
                BindingHealth { policy: Some(policy.clone()), ..shadow_health }
            }
            Some(policy) => BindingHealth::for_policy(policy),
            None => BindingHealth::default(),
        };
    }
}

impl WorkloadState {
    /// The stored form at `now_ms`.
    pub fn to_stored(&self, now_ms: u64) -> Stored {
        Stored {
            version: 1,
            saved_at_ms: now_ms,
            last_scale_ms: self.last_scale_ms,
            last_active_ms: self.last_active_ms,
            last_resize_ms: self.vertical.last_resize_ms,
            scale_events: self
                .history
                .scale_events()
                .iter()
                .map(|e| (e.timestamp_ms, e.from_replicas, e.to_replicas))
                .collect(),
            recommendations: self.history.recommendations().iter().map(|r| (r.timestamp_ms, r.replicas)).collect(),
            bindings: self.bindings.iter().filter_map(StoredBinding::of).collect(),
            shadow: StoredBinding::of(&self.shadow),
            handled: self.handled.clone(),
        }
    }

    /// Whether a signal from a stream was handled already (its offset is at
    /// or below the last handled one of its stream).
    pub fn handled(&self, delivery: &Delivery) -> bool {
        let origin = delivery.receipt.as_ref().and_then(|r| r.origin.as_ref());
        origin.is_some_and(|o| self.handled.get(&o.stream).is_some_and(|last| o.offset <= *last))
    }

    /// Records a signal as handled.
    pub fn mark_handled(&mut self, delivery: &Delivery) {
        if let Some(origin) = delivery.receipt.as_ref().and_then(|r| r.origin.as_ref()) {
            let last = self.handled.entry(origin.stream.clone()).or_insert(origin.offset);
            *last = (*last).max(origin.offset);
        }
    }

    /// Takes over a stored state: history, last scale, and each binding's
    /// policy state where the same policy is bound at the same place (a
    /// rebinding since then starts that binding afresh). Health stays.
    pub fn restore(&mut self, stored: &Stored) {
        self.last_scale_ms = stored.last_scale_ms;
        self.last_active_ms = stored.last_active_ms.or(self.last_active_ms);
        self.vertical.last_resize_ms = stored.last_resize_ms.or(self.vertical.last_resize_ms);
        self.history = History::from_parts(
            stored
                .recommendations
                .iter()
                .map(|&(timestamp_ms, replicas)| Recommendation { timestamp_ms, replicas })
                .collect(),
            stored
                .scale_events
                .iter()
                .map(|&(timestamp_ms, from_replicas, to_replicas)| ScaleEvent {
                    timestamp_ms,
                    from_replicas,
                    to_replicas,
                })
                .collect(),
        );
        for (health, stored) in self.bindings.iter_mut().zip(&stored.bindings) {
            stored.restore(health);
        }
        if let Some(shadow) = &stored.shadow {
            shadow.restore(&mut self.shadow);
        }
        self.handled = stored.handled.clone();
        self.saved_ms = Some(stored.saved_at_ms);
    }
}

fn references(spec: &WorkloadSpec) -> (Vec<PolicyRef>, Option<PolicyRef>) {
    (spec.policies.iter().map(|b| b.policy.clone()).collect(), spec.shadow.as_ref().map(|b| b.policy.clone()))
}

fn same_policy(before: Option<&PolicyRef>, now: &PolicyRef) -> bool {
    before.is_some_and(|before| before.name() == now.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: u64 = 60_000;

    #[test]
    fn history_is_kept_by_time_not_by_count() {
        let mut history = History::default();
        // a scale every 15 s for 40 minutes
        for i in 0..160u64 {
            let at = i * 15_000;
            history.scaled(ScaleEvent { timestamp_ms: at, from_replicas: 1, to_replicas: 2 });
            history.recommend(Recommendation { timestamp_ms: at, replicas: 2 + (i % 2) as u32 });
        }
        let now = 159 * 15_000;
        let events = history.scale_events();
        assert_eq!(events.len(), 121, "the last 30 minutes, both ends included");
        assert!(events.front().unwrap().timestamp_ms >= now - 30 * MINUTE);
        assert_eq!(history.recommendations().len(), 160, "recommendations are kept for an hour");
        history.prune(now + 61 * MINUTE);
        assert!(history.recommendations().is_empty() && history.scale_events().is_empty());
    }

    #[test]
    fn history_is_capped_whatever_the_windows_say() {
        let mut history = History::default();
        for i in 0..(HISTORY_CAP as u64 + 10) {
            history.recommend(Recommendation { timestamp_ms: 1_000_000 + i, replicas: 1 + (i % 2) as u32 });
        }
        assert_eq!(history.recommendations().len(), HISTORY_CAP);
    }

    #[test]
    fn a_held_recommendation_is_one_entry_and_window_maxima_stay_exact() {
        let mut history = History::default();
        let steps = [5, 5, 5, 3, 3, 4, 4, 4, 4, 2];
        for (i, replicas) in steps.iter().enumerate() {
            history.recommend(Recommendation { timestamp_ms: i as u64 * 15_000, replicas: *replicas });
        }
        let kept: Vec<(u64, u32)> = history.recommendations().iter().map(|r| (r.timestamp_ms, r.replicas)).collect();
        assert_eq!(kept, [(30_000, 5), (60_000, 3), (120_000, 4), (135_000, 2)]);
        // the largest recommendation since any cutoff, from every step and from what is kept
        for cutoff in (0..=150_000).step_by(5_000) {
            let every = steps.iter().enumerate().filter(|(i, _)| *i as u64 * 15_000 >= cutoff).map(|(_, r)| *r).max();
            let from_kept = kept.iter().filter(|(at, _)| *at >= cutoff).map(|(_, r)| *r).max();
            assert_eq!(from_kept, every, "since {cutoff} ms");
        }
    }

    #[test]
    fn the_stored_form_round_trips_and_restores_only_to_the_same_policy() {
        let hpa: PolicyRef = "hpa".parse().unwrap();
        let fixed: PolicyRef = "fixed".parse().unwrap();
        let mut state = WorkloadState::new(&[hpa.clone(), fixed.clone()], None);
        state.bindings[0].state = b"hpa-state".to_vec();
        state.bindings[1].state = b"fixed-state".to_vec();
        state.last_scale_ms = Some(1_000);
        state.history.scaled(ScaleEvent { timestamp_ms: 1_000, from_replicas: 2, to_replicas: 5 });
        state.history.recommend(Recommendation { timestamp_ms: 1_000, replicas: 5 });
        state.vertical.last_resize_ms = Some(1_500);
        let stored = state.to_stored(2_000);
        let json = serde_json::to_value(&stored).unwrap();
        assert_eq!(json["scale_events"], serde_json::json!([[1000, 2, 5]]));
        let back: Stored = serde_json::from_value(json).unwrap();
        assert_eq!(back, stored);

        // a replica bound to hpa and another policy in the second place
        let mut other = WorkloadState::new(&[hpa, "thresholds".parse().unwrap()], None);
        other.restore(&back);
        assert_eq!(other.bindings[0].state, b"hpa-state");
        assert!(other.bindings[1].state.is_empty(), "another policy's state is not taken");
        assert_eq!(other.last_scale_ms, Some(1_000));
        assert_eq!(other.vertical.last_resize_ms, Some(1_500), "the vertical cooldown survives a failover");
        assert_eq!(other.history, state.history);
        assert_eq!(other.saved_ms, Some(2_000));
    }

    #[test]
    fn a_rebinding_keeps_the_state_of_the_same_policy_at_the_same_place() {
        let hpa: PolicyRef = "hpa".parse().unwrap();
        let pinned: PolicyRef = "hpa@1.2.0".parse().unwrap();
        let fixed: PolicyRef = "fixed".parse().unwrap();
        let mut state = WorkloadState::new(&[hpa.clone(), fixed.clone()], Some(&fixed));
        state.bindings[0].state = b"hpa".to_vec();
        state.bindings[1].state = b"fixed".to_vec();
        state.shadow.state = b"shadow".to_vec();
        state.rebind(&[pinned, hpa], None);
        assert_eq!(state.bindings[0].state, b"hpa", "same policy, another version: kept");
        assert!(state.bindings[1].state.is_empty(), "another policy at this place: afresh");
        assert!(state.shadow.policy.is_none() && state.shadow.state.is_empty());
    }
}
