//! Guardrails: what the host enforces on every decision, whatever the policy
//! said. A pure function from (proposal, current state, limits) to the
//! replica count to write, with every adjustment recorded and explained.
//!
//! Order of application, each step seeing the previous one's result:
//! 1. no opinion or a policy fault → keep the current count, change nothing;
//! 2. clamp to `[min, max]`;
//! 3. hold scale-down while a required input is stale or missing;
//! 4. cooldown since the last scale (separately for up and down);
//! 5. maximum step per evaluation (separately for up and down);
//! 6. `[min, max]` again: bounds win over holds, cooldowns and step limits
//!    when the workload starts outside them (e.g. `max` was lowered);
//! 7. dry run, or standby (another replica holds the leader lease): record
//!    the count that would have been written, write nothing.
//!
//! Invariant (property-tested): whenever the outcome changes the replica
//! count, the new count is within `[min, max]`, and when the current count
//! was within bounds the change respects the step limits.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Largest change allowed in one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StepText", into = "StepText")]
pub enum Step {
    /// At most this many pods.
    Pods(u32),
    /// At most this percentage of the current count (at least one pod).
    Percent(u32),
}

impl Step {
    /// The allowed change from `current`, never less than one pod.
    pub fn allowance(self, current: u32) -> u32 {
        match self {
            Step::Pods(pods) => pods.max(1),
            Step::Percent(percent) => {
                ((u64::from(current) * u64::from(percent)) / 100).clamp(1, u64::from(u32::MAX)) as u32
            }
        }
    }
}

/// `4` or `"4"` (pods), `"50%"` (percent).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum StepText {
    Number(u32),
    Text(String),
}

impl TryFrom<StepText> for Step {
    type Error = String;
    fn try_from(text: StepText) -> Result<Step, String> {
        let step = match text {
            StepText::Number(pods) => Step::Pods(pods),
            StepText::Text(text) => match text.trim().strip_suffix('%') {
                Some(percent) => Step::Percent(percent.trim().parse().map_err(|_| {
                    format!("invalid step {text:?}: expected a number of pods or a percentage like \"50%\"")
                })?),
                None => Step::Pods(text.trim().parse().map_err(|_| {
                    format!("invalid step {text:?}: expected a number of pods or a percentage like \"50%\"")
                })?),
            },
        };
        match step {
            Step::Pods(0) | Step::Percent(0) => Err("a step limit must be at least 1 (omit it for no limit)".into()),
            Step::Percent(p) if p > 1000 => Err(format!("step percentage {p}% is above 1000%")),
            step => Ok(step),
        }
    }
}

impl From<Step> for StepText {
    fn from(step: Step) -> StepText {
        match step {
            Step::Pods(pods) => StepText::Number(pods),
            Step::Percent(percent) => StepText::Text(format!("{percent}%")),
        }
    }
}

/// The limits of one workload binding.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub max_step_up: Option<Step>,
    pub max_step_down: Option<Step>,
    /// Time after any scale before a scale-up is allowed.
    pub cooldown_up: Duration,
    /// Time after any scale before a scale-down is allowed.
    pub cooldown_down: Duration,
    /// Refuse scale-downs while an input is stale or missing.
    pub hold_on_stale: bool,
    /// Decide and record, never write.
    pub dry_run: bool,
    /// Active (should run at least one replica) while the decided count is above this.
    pub activation_threshold: u32,
    /// With `min_replicas: 0`: how long a workload stays idle (not active)
    /// before it goes to zero, counted from the last time it was active
    /// (KEDA's `cooldownPeriod`; default 300 s).
    pub idle_before_zero: Duration,
}

impl Limits {
    /// Only bounds: no step limits, no cooldowns, scale-down held on stale
    /// inputs, writes enabled — the defaults of the configuration file.
    pub fn bounds(min_replicas: u32, max_replicas: u32) -> Limits {
        Limits {
            min_replicas,
            max_replicas,
            max_step_up: None,
            max_step_down: None,
            cooldown_up: Duration::ZERO,
            cooldown_down: Duration::ZERO,
            hold_on_stale: true,
            dry_run: false,
            activation_threshold: 0,
            idle_before_zero: Duration::from_secs(300),
        }
    }

    /// Whether `desired` makes the workload active.
    pub fn is_active(&self, desired: u32) -> bool {
        desired > self.activation_threshold
    }
}

/// What the policy (or policies, combined) proposed.
#[derive(Debug, Clone, PartialEq)]
pub enum Proposal {
    Desired(u32),
    /// The policy had no opinion or declined.
    NoOpinion(String),
    /// The policy faulted (timeout, trap, memory, invalid output).
    Fault(String),
}

/// The state the guardrails judge against.
#[derive(Debug, Clone, PartialEq)]
pub struct Situation {
    pub now_ms: u64,
    pub current_replicas: u32,
    /// When the host last changed the replica count.
    pub last_scale_ms: Option<u64>,
    /// Names of required inputs that are stale or missing.
    pub stale_inputs: Vec<String>,
    /// This replica does not hold the leader lease: decide, never write.
    pub standby: bool,
    /// When the workload was last active (`None`: never seen active).
    pub last_active_ms: Option<u64>,
}

/// One adjustment the guardrails made, with the count before and after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Clamp {
    NoOpinion {
        reason: String,
    },
    Fault {
        reason: String,
    },
    Min {
        from: u32,
        to: u32,
    },
    Max {
        from: u32,
        to: u32,
    },
    StaleHold {
        from: u32,
        to: u32,
        inputs: Vec<String>,
    },
    Cooldown {
        from: u32,
        to: u32,
        remaining_ms: u64,
    },
    StepUp {
        from: u32,
        to: u32,
    },
    StepDown {
        from: u32,
        to: u32,
    },
    DryRun {
        would_scale_to: u32,
    },
    /// Not active, but not idle for `idle_before_zero` yet: kept at one
    /// (or where it is, on stale inputs) instead of zero.
    Idle {
        from: u32,
        to: u32,
        remaining_ms: u64,
    },
    /// Another replica holds the leader lease.
    Standby {
        would_scale_to: u32,
    },
}

impl Clamp {
    /// Bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Clamp::NoOpinion { .. } => "no_opinion",
            Clamp::Fault { .. } => "fault",
            Clamp::Min { .. } => "min",
            Clamp::Max { .. } => "max",
            Clamp::StaleHold { .. } => "stale_hold",
            Clamp::Cooldown { .. } => "cooldown",
            Clamp::StepUp { .. } => "step_up",
            Clamp::StepDown { .. } => "step_down",
            Clamp::DryRun { .. } => "dry_run",
            Clamp::Idle { .. } => "idle",
            Clamp::Standby { .. } => "standby",
        }
    }
}

/// The verdict: the count to run and whether to write it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// The replica count after the guardrails.
    pub replicas: u32,
    /// True when `replicas` differs from the current count and this is not a dry run.
    pub actuate: bool,
    pub clamps: Vec<Clamp>,
}

/// Applies the guardrails to a proposal.
pub fn apply(limits: &Limits, situation: &Situation, proposal: &Proposal) -> Outcome {
    let current = situation.current_replicas;
    let mut clamps = Vec::new();
    let desired = match proposal {
        Proposal::Desired(desired) => *desired,
        Proposal::NoOpinion(reason) => {
            clamps.push(Clamp::NoOpinion { reason: reason.clone() });
            return Outcome { replicas: current, actuate: false, clamps };
        }
        Proposal::Fault(reason) => {
            clamps.push(Clamp::Fault { reason: reason.clone() });
            return Outcome { replicas: current, actuate: false, clamps };
        }
    };
    let (min, max) = (limits.min_replicas, limits.max_replicas.max(limits.min_replicas));
    let bound = |value: u32, clamps: &mut Vec<Clamp>| {
        if value < min {
            clamps.push(Clamp::Min { from: value, to: min });
            min
        } else if value > max {
            clamps.push(Clamp::Max { from: value, to: max });
            max
        } else {
            value
        }
    };
    let mut target = bound(desired, &mut clamps);
    let stale = limits.hold_on_stale && !situation.stale_inputs.is_empty();

    // scale to zero and back (only with min_replicas 0): activity moves 0 ↔ 1
    if min == 0 {
        if limits.is_active(desired) && current == 0 {
            // activation: from zero at once, past cooldowns and step limits
            return finish(limits, situation, bound(desired.max(1), &mut clamps), clamps);
        }
        if !limits.is_active(desired) {
            if current == 0 {
                // idle at zero stays at zero, whatever count below the threshold it asks for
                return finish(limits, situation, 0, clamps);
            }
            let until =
                situation.last_active_ms.map_or(0, |t| t.saturating_add(limits.idle_before_zero.as_millis() as u64));
            if current > 0 && situation.now_ms >= until && !stale {
                // idle long enough: to zero at once, like KEDA
                return finish(limits, situation, 0, clamps);
            }
            if target == 0 && current > 0 {
                let floor = if stale { current } else { 1 };
                clamps.push(Clamp::Idle { from: 0, to: floor, remaining_ms: until.saturating_sub(situation.now_ms) });
                target = floor;
            }
        } else {
            target = target.max(1);
        }
    }

    if target < current && stale {
        clamps.push(Clamp::StaleHold { from: target, to: current, inputs: situation.stale_inputs.clone() });
        target = current;
    }

    if target != current
        && let Some(last) = situation.last_scale_ms
    {
        let cooldown = if target > current { limits.cooldown_up } else { limits.cooldown_down };
        let until = last.saturating_add(cooldown.as_millis() as u64);
        if situation.now_ms < until {
            clamps.push(Clamp::Cooldown { from: target, to: current, remaining_ms: until - situation.now_ms });
            target = current;
        }
    }

    if target > current
        && let Some(step) = limits.max_step_up
    {
        let ceiling = current.saturating_add(step.allowance(current));
        if target > ceiling {
            clamps.push(Clamp::StepUp { from: target, to: ceiling });
            target = ceiling;
        }
    } else if target < current
        && let Some(step) = limits.max_step_down
    {
        let floor = current.saturating_sub(step.allowance(current));
        if target < floor {
            clamps.push(Clamp::StepDown { from: target, to: floor });
            target = floor;
        }
    }

    // bounds have the last word: a hold or cooldown keeps a data-driven
    // change from happening, not a configured bound from being enforced
    target = bound(target, &mut clamps);
    finish(limits, situation, target, clamps)
}

/// The outcome for `target`: dry run and standby noted, actuated otherwise.
fn finish(limits: &Limits, situation: &Situation, target: u32, mut clamps: Vec<Clamp>) -> Outcome {
    let current = situation.current_replicas;
    let change = target != current;
    if change && limits.dry_run {
        clamps.push(Clamp::DryRun { would_scale_to: target });
    } else if change && situation.standby {
        clamps.push(Clamp::Standby { would_scale_to: target });
    }
    Outcome { replicas: target, actuate: change && !limits.dry_run && !situation.standby, clamps }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits() -> Limits {
        Limits::bounds(2, 20)
    }

    fn at(current: u32) -> Situation {
        Situation {
            now_ms: 1_000_000,
            current_replicas: current,
            last_scale_ms: None,
            stale_inputs: vec![],
            standby: false,
            last_active_ms: Some(1_000_000),
        }
    }

    #[test]
    fn scale_to_zero_waits_for_the_idle_period_from_the_last_activity() {
        let limits = Limits { idle_before_zero: Duration::from_secs(300), ..Limits::bounds(0, 20) };
        let idle_since = |ago_s: u64| Situation { last_active_ms: Some(1_000_000 - ago_s * 1000), ..at(4) };
        // inactive for 60 s: held at one
        let out = apply(&limits, &idle_since(60), &Proposal::Desired(0));
        assert_eq!((out.replicas, out.actuate), (1, true));
        assert_eq!(out.clamps, vec![Clamp::Idle { from: 0, to: 1, remaining_ms: 240_000 }]);
        // idle for the whole period: to zero at once, past step limits
        let stepped = Limits { max_step_down: Some(Step::Pods(1)), ..limits.clone() };
        let out = apply(&stepped, &idle_since(300), &Proposal::Desired(0));
        assert_eq!((out.replicas, out.actuate), (0, true));
        // but not on stale inputs
        let stale = Situation { stale_inputs: vec!["backlog".into()], ..idle_since(600) };
        assert_eq!(apply(&limits, &stale, &Proposal::Desired(0)).replicas, 4);
        // active again at zero: at once to what it wants, past cooldowns and step limits
        let cooling =
            Limits { cooldown_up: Duration::from_secs(600), max_step_up: Some(Step::Pods(1)), ..limits.clone() };
        let zero = Situation { last_scale_ms: Some(999_000), ..at(0) };
        let out = apply(&cooling, &zero, &Proposal::Desired(7));
        assert_eq!((out.replicas, out.actuate), (7, true));
        // below the activation threshold counts as idle
        let threshold = Limits { activation_threshold: 2, ..limits.clone() };
        assert_eq!(apply(&threshold, &zero, &Proposal::Desired(2)).replicas, 0, "2 is not above the threshold");
        assert_eq!(apply(&threshold, &zero, &Proposal::Desired(3)).replicas, 3);
        // min_replicas above zero: the rules do not apply
        assert_eq!(apply(&Limits::bounds(1, 20), &idle_since(900), &Proposal::Desired(0)).replicas, 1);
    }

    #[test]
    fn a_standby_decides_but_never_writes() {
        let mut situation = at(5);
        situation.standby = true;
        let out = apply(&limits(), &situation, &Proposal::Desired(50));
        assert_eq!((out.replicas, out.actuate), (20, false));
        assert_eq!(out.clamps, vec![Clamp::Max { from: 50, to: 20 }, Clamp::Standby { would_scale_to: 20 }]);
        assert!(apply(&limits(), &situation, &Proposal::Desired(5)).clamps.is_empty(), "no change, nothing to hold");
    }

    #[test]
    fn bounds_clamp_and_are_recorded() {
        let out = apply(&limits(), &at(5), &Proposal::Desired(50));
        assert_eq!(out.replicas, 20);
        assert_eq!(out.clamps, vec![Clamp::Max { from: 50, to: 20 }]);
        let out = apply(&limits(), &at(5), &Proposal::Desired(0));
        assert_eq!((out.replicas, out.actuate), (2, true));
        assert_eq!(out.clamps, vec![Clamp::Min { from: 0, to: 2 }]);
    }

    #[test]
    fn faults_and_no_opinion_change_nothing_even_out_of_bounds() {
        for proposal in [Proposal::Fault("trap".into()), Proposal::NoOpinion("stale".into())] {
            let out = apply(&limits(), &at(30), &proposal);
            assert_eq!((out.replicas, out.actuate), (30, false));
            assert_eq!(out.clamps.len(), 1);
        }
    }

    #[test]
    fn stale_inputs_hold_scale_down_but_not_scale_up() {
        let mut situation = at(10);
        situation.stale_inputs = vec!["prometheus:rps".into()];
        let out = apply(&limits(), &situation, &Proposal::Desired(4));
        assert_eq!((out.replicas, out.actuate), (10, false));
        assert!(matches!(&out.clamps[0], Clamp::StaleHold { inputs, .. } if inputs == &["prometheus:rps"]));
        assert_eq!(apply(&limits(), &situation, &Proposal::Desired(12)).replicas, 12);
        let relaxed = Limits { hold_on_stale: false, ..limits() };
        assert_eq!(apply(&relaxed, &situation, &Proposal::Desired(4)).replicas, 4);
    }

    #[test]
    fn cooldown_is_per_direction() {
        let limits =
            Limits { cooldown_up: Duration::from_secs(30), cooldown_down: Duration::from_secs(300), ..limits() };
        let mut situation = at(10);
        situation.last_scale_ms = Some(situation.now_ms - 60_000);
        assert_eq!(apply(&limits, &situation, &Proposal::Desired(15)).replicas, 15, "up cooldown over");
        let out = apply(&limits, &situation, &Proposal::Desired(5));
        assert_eq!(out.replicas, 10);
        assert_eq!(out.clamps, vec![Clamp::Cooldown { from: 5, to: 10, remaining_ms: 240_000 }]);
    }

    #[test]
    fn step_limits_in_pods_and_percent() {
        let pods = Limits { max_step_up: Some(Step::Pods(3)), max_step_down: Some(Step::Pods(1)), ..limits() };
        assert_eq!(apply(&pods, &at(10), &Proposal::Desired(19)).replicas, 13);
        assert_eq!(apply(&pods, &at(10), &Proposal::Desired(2)).replicas, 9);
        let percent =
            Limits { max_step_up: Some(Step::Percent(50)), max_step_down: Some(Step::Percent(10)), ..limits() };
        assert_eq!(apply(&percent, &at(10), &Proposal::Desired(19)).replicas, 15);
        assert_eq!(apply(&percent, &at(10), &Proposal::Desired(2)).replicas, 9);
        assert_eq!(apply(&percent, &at(3), &Proposal::Desired(2)).replicas, 2, "at least one pod");
    }

    #[test]
    fn bounds_win_over_steps_when_starting_outside() {
        let limits = Limits { max_step_down: Some(Step::Pods(1)), ..limits() };
        let out = apply(&limits, &at(40), &Proposal::Desired(10));
        assert_eq!(out.replicas, 20);
    }

    #[test]
    fn a_lowered_max_is_enforced_despite_stale_inputs_and_cooldown() {
        let limits = Limits { cooldown_down: Duration::from_secs(300), ..limits() };
        let mut situation = at(30);
        situation.stale_inputs = vec!["kafka-lag".into()];
        situation.last_scale_ms = Some(situation.now_ms - 1_000);
        let out = apply(&limits, &situation, &Proposal::Desired(25));
        assert_eq!((out.replicas, out.actuate), (20, true));
    }

    #[test]
    fn dry_run_decides_but_does_not_actuate() {
        let limits = Limits { dry_run: true, ..limits() };
        let out = apply(&limits, &at(5), &Proposal::Desired(8));
        assert_eq!((out.replicas, out.actuate), (8, false));
        assert_eq!(out.clamps, vec![Clamp::DryRun { would_scale_to: 8 }]);
    }

    #[test]
    fn step_text_forms() {
        let parse = |v: serde_json::Value| serde_json::from_value::<Step>(v);
        assert_eq!(parse(serde_json::json!(4)).unwrap(), Step::Pods(4));
        assert_eq!(parse(serde_json::json!("4")).unwrap(), Step::Pods(4));
        assert_eq!(parse(serde_json::json!("25%")).unwrap(), Step::Percent(25));
        assert!(parse(serde_json::json!(0)).unwrap_err().to_string().contains("at least 1"));
        assert!(parse(serde_json::json!("lots")).unwrap_err().to_string().contains("invalid step \"lots\""));
    }

    fn step() -> impl Strategy<Value = Option<Step>> {
        prop_oneof![
            Just(None),
            (1u32..50).prop_map(|p| Some(Step::Pods(p))),
            (1u32..300).prop_map(|p| Some(Step::Percent(p)))
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// For arbitrary proposals, including absurd ones, what is written stays
        /// in bounds and within the step limits.
        #[test]
        fn written_replicas_respect_bounds_and_steps(
            min in 0u32..50,
            span in 0u32..200,
            current in 0u32..400,
            proposal in prop_oneof![
                any::<u32>().prop_map(Proposal::Desired),
                Just(Proposal::Desired(0)),
                Just(Proposal::Desired(u32::MAX)),
                Just(Proposal::Fault("trap".into())),
                Just(Proposal::NoOpinion("none".into())),
            ],
            up in step(),
            down in step(),
            stale in any::<bool>(),
            cooled in any::<bool>(),
        ) {
            let limits = Limits {
                min_replicas: min,
                max_replicas: min + span,
                max_step_up: up,
                max_step_down: down,
                cooldown_up: Duration::from_secs(30),
                cooldown_down: Duration::from_secs(30),
                hold_on_stale: true,
                dry_run: false,
                activation_threshold: 0,
                idle_before_zero: Duration::from_secs(300),
            };
            let situation = Situation {
                now_ms: 1_000_000,
                current_replicas: current,
                last_scale_ms: Some(if cooled { 0 } else { 990_000 }),
                stale_inputs: if stale { vec!["x".into()] } else { vec![] },
                standby: false,
                last_active_ms: Some(990_000),
            };
            let out = apply(&limits, &situation, &proposal);
            prop_assert_eq!(out.actuate, out.replicas != current);
            if out.actuate {
                prop_assert!(out.replicas >= limits.min_replicas && out.replicas <= limits.max_replicas);
                prop_assert!(matches!(proposal, Proposal::Desired(_)));
                // waking from zero skips cooldowns and step limits (KEDA's activation)
                let waking = current == 0 && out.replicas > 0;
                if current >= limits.min_replicas && current <= limits.max_replicas && !waking {
                    prop_assert!(cooled, "no change during a cooldown");
                    if out.replicas > current {
                        if let Some(step) = up { prop_assert!(out.replicas - current <= step.allowance(current)); }
                    } else {
                        prop_assert!(!stale, "no scale-down on stale inputs");
                        if let Some(step) = down { prop_assert!(current - out.replicas <= step.allowance(current)); }
                    }
                }
            }
        }
    }
}
