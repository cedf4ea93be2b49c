//! §1, §4 and §5 of the HPA reference: the reconcile branches, the legacy
//! normalization and `behavior` (stabilization windows and rate limits).

mod support;
use scalegate_hpa::State;
use support::*;

// ---- §1 reconcile branches ----

#[test]
fn zero_replicas_with_nonzero_min_disables_scaling() {
    let out = Case::cpu(&[2000], 50).current(0).run();
    assert_eq!(out.desired_replicas, None);
    assert!(out.reason.starts_with("ScalingDisabled"), "{}", out.reason);
}

#[test]
fn above_max_goes_to_max_without_metrics() {
    let out = Case::with_pods(3).current(12).bounds(1, 10).run();
    assert_eq!(out.desired_replicas, Some(10));
    assert!(out.reason.starts_with("TooManyReplicas"), "{}", out.reason);
}

#[test]
fn below_min_goes_to_min_without_metrics() {
    let out = Case::with_pods(1).bounds(3, 10).run();
    assert_eq!(out.desired_replicas, Some(3));
}

#[test]
fn params_bounds_take_precedence_over_the_workload() {
    let case = Case::with_pods(3).bounds(1, 10).params(r#"{"minReplicas":5,"maxReplicas":8}"#);
    assert_eq!(case.desired(), 5);
}

#[test]
fn first_reconcile_records_current_and_cannot_scale_down() {
    // 10% → proposal 1, but the initial recommendation (3, now) holds it at 3
    let case = Case::cpu(&[100, 100, 100], 50).first_reconcile();
    let out = case.run();
    assert_eq!(out.metric_desired, Some(1));
    assert_eq!(out.desired_replicas, Some(3));
    let replicas: Vec<i32> = out.state.recommendations.iter().map(|r| r.replicas).collect();
    assert_eq!(replicas, vec![3, 1], "initial entry, then the unstabilized desired");
}

#[test]
fn state_round_trips_through_bytes() {
    let out = Case::cpu(&[100, 100, 100], 50).first_reconcile().run();
    let decoded = State::decode(&out.state.encode()).unwrap().unwrap();
    assert_eq!(decoded, out.state);
    assert_eq!(State::decode(b"").unwrap(), None);
    assert!(State::decode(b"not json").unwrap_err().contains("unreadable hpa state"));
}

// ---- §4 no behavior ----

#[test]
fn legacy_scale_down_is_held_by_the_window_maximum() {
    // proposal 1; the window's maximum (4, 100 s ago) wins: stabilized 4, within max(2 × 3, 4)
    let case = Case::cpu(&[100, 100, 100], 50).recommendations(&[(2, 200 * SEC), (4, 100 * SEC)]);
    let out = case.run();
    assert_eq!(out.desired_replicas, Some(4));
    assert!(out.reason.contains("ScaleDownStabilized"), "{}", out.reason);
}

#[test]
fn legacy_window_is_inclusive_at_the_cutoff() {
    let at_cutoff = Case::cpu(&[100, 100, 100], 50).recommendations(&[(3, 300 * SEC)]);
    assert_eq!(at_cutoff.desired(), 3, "ts == now − 300 s still counts");
    let older = Case::cpu(&[100, 100, 100], 50).recommendations(&[(3, 300 * SEC + 1)]);
    assert_eq!(older.desired(), 1);
    let out = older.run();
    assert_eq!(out.state.recommendations.len(), 1, "stale entries are dropped, the new one kept");
}

#[test]
fn legacy_controller_window_is_configurable() {
    let case = Case::cpu(&[100, 100, 100], 50)
        .params(r#"{"downscaleStabilizationSeconds":60,"metrics":[{"type":"Resource","resource":{"name":"cpu","target":{"type":"Utilization","averageUtilization":50}}}]}"#)
        .recommendations(&[(3, 61 * SEC)]);
    assert_eq!(case.desired(), 1);
}

#[test]
fn legacy_scale_up_limit_is_twice_current_or_four() {
    // 1 pod at 1000% of 50 → proposal 20
    let one = Case::cpu(&[10_000], 50);
    let out = one.run();
    assert_eq!(out.metric_desired, Some(20));
    assert_eq!(out.desired_replicas, Some(4), "max(2 × 1, 4)");
    assert!(out.reason.starts_with("ScaleUpLimit"), "{}", out.reason);
    // 3 pods at 1000% → proposal 60, limit 6
    assert_eq!(Case::cpu(&[10_000, 10_000, 10_000], 50).desired(), 6);
    // the max below the limit wins with TooManyReplicas
    let out = Case::cpu(&[10_000, 10_000, 10_000], 50).bounds(1, 5).run();
    assert_eq!(out.desired_replicas, Some(5));
    assert!(out.reason.starts_with("TooManyReplicas"), "{}", out.reason);
}

#[test]
fn legacy_min_clamps_the_stabilized_value() {
    let out = Case::cpu(&[100, 100, 100, 100], 50).bounds(3, 10).run();
    assert_eq!(out.desired_replicas, Some(3));
    assert!(out.reason.starts_with("TooFewReplicas"), "{}", out.reason);
}

// ---- §5 behavior ----

#[test]
fn default_scale_up_policies_allow_4_pods_or_100_percent() {
    // 2 pods at 1000% → proposal 40. Default up rules: max(2 + 4, 2 × 2) = 6
    let case = Case::cpu(&[10_000, 10_000], 50).params(&behavior("{}"));
    let out = case.run();
    assert_eq!(out.desired_replicas, Some(6));
    assert!(out.reason.starts_with("ScaleUpLimit"), "{}", out.reason);
    // 10 pods: max(14, 20) = 20
    let ten = Case::cpu(&[10_000; 10], 50).params(&behavior("{}"));
    assert_eq!(ten.desired(), 20);
}

#[test]
fn default_scale_down_window_is_the_controller_flag() {
    // behavior {} → scaleDown window nil → 300 s; a 3 recorded 299 s ago holds the scale-down
    let held = Case::cpu(&[100, 100, 100], 50).params(&behavior("{}")).recommendations(&[(3, 299 * SEC)]);
    let out = held.run();
    assert_eq!(out.desired_replicas, Some(3));
    assert!(out.reason.contains("ScaleDownStabilized"), "{}", out.reason);
    // strict: exactly 300 s old does not count; default down policy 100%/15 s allows 1
    let free = Case::cpu(&[100, 100, 100], 50).params(&behavior("{}")).recommendations(&[(3, 300 * SEC)]);
    assert_eq!(free.desired(), 1);
}

#[test]
fn scale_up_stabilization_uses_the_window_minimum() {
    let params = behavior(r#"{"scaleUp":{"stabilizationWindowSeconds":60}}"#);
    // proposal 6 (3 pods at 100% of 50); a 4 recommended 30 s ago → up to 4 only
    let case = Case::cpu(&[1000, 1000, 1000], 50).params(&params).recommendations(&[(4, 30 * SEC)]);
    let out = case.run();
    assert_eq!(out.desired_replicas, Some(4));
    assert!(out.reason.contains("ScaleUpStabilized"), "{}", out.reason);
    // a 2 recorded 59 s ago (below current) → result stays at current 3
    let low = Case::cpu(&[1000, 1000, 1000], 50).params(&params).recommendations(&[(2, 59 * SEC)]);
    assert_eq!(low.desired(), 3);
    // 60 s old is outside (strict)
    let old = Case::cpu(&[1000, 1000, 1000], 50).params(&params).recommendations(&[(2, 60 * SEC)]);
    assert_eq!(old.desired(), 6);
}

#[test]
fn stale_recommendations_are_dropped_only_when_outside_both_windows() {
    let params =
        behavior(r#"{"scaleUp":{"stabilizationWindowSeconds":60},"scaleDown":{"stabilizationWindowSeconds":120}}"#);
    let out = Case::cpu(&[500, 500, 500], 50)
        .params(&params)
        .recommendations(&[(3, 200 * SEC), (3, 90 * SEC), (3, 10 * SEC)])
        .run();
    let ages: Vec<i64> = out.state.recommendations.iter().map(|r| NOW - r.timestamp_ms).collect();
    assert_eq!(ages, vec![90 * SEC, 10 * SEC, 0]);
}

#[test]
fn worked_example_period_start_counts_up_and_down_events() {
    // +4 up-event and −2 down-event 60 s ago, 300%/300 s, current 6 → start 4 → limit 16
    let params = behavior(r#"{"scaleUp":{"policies":[{"type":"Percent","value":300,"periodSeconds":300}]}}"#);
    let case = Case::cpu(&[10_000; 6], 50).params(&params).bounds(1, 100).scaled(4, 8, 60 * SEC).scaled(8, 6, 60 * SEC);
    assert_eq!(case.desired(), 16);
}

#[test]
fn events_exactly_one_period_old_do_not_count() {
    // Pods 2 / 60 s. A +2 event exactly 60 s ago no longer counts → 3 + 2 = 5.
    let params = behavior(r#"{"scaleUp":{"policies":[{"type":"Pods","value":2,"periodSeconds":60}]}}"#);
    let at = Case::cpu(&[10_000; 3], 50).params(&params).scaled(1, 3, 60 * SEC);
    assert_eq!(at.desired(), 5);
    // 1 ms younger it counts: period start 1 → 1 + 2 = 3 → no room above current
    let inside = Case::cpu(&[10_000; 3], 50).params(&params).scaled(1, 3, 60 * SEC - 1);
    let out = inside.run();
    assert_eq!(out.desired_replicas, Some(3));
    assert!(out.reason.starts_with("ScaleUpLimit"), "{}", out.reason);
}

#[test]
fn percent_scale_up_rounds_up() {
    // 3 × 1.5 = 4.5 → 5
    let params = behavior(r#"{"scaleUp":{"policies":[{"type":"Percent","value":50,"periodSeconds":60}]}}"#);
    assert_eq!(Case::cpu(&[10_000; 3], 50).params(&params).desired(), 5);
}

#[test]
fn select_policy_min_takes_the_smaller_scale_up() {
    let params = behavior(
        r#"{"scaleUp":{"selectPolicy":"Min","policies":[{"type":"Pods","value":1,"periodSeconds":60},{"type":"Percent","value":100,"periodSeconds":60}]}}"#,
    );
    assert_eq!(Case::cpu(&[10_000; 4], 50).params(&params).desired(), 5);
}

#[test]
fn disabled_scale_up_keeps_current() {
    let params = behavior(r#"{"scaleUp":{"selectPolicy":"Disabled"}}"#);
    let out = Case::cpu(&[10_000; 4], 50).params(&params).run();
    assert_eq!(out.desired_replicas, Some(4));
    assert!(out.reason.starts_with("ScaleUpLimit"), "{}", out.reason);
}

#[test]
fn empty_policy_list_with_max_means_no_scale_up() {
    let params = behavior(r#"{"scaleUp":{"policies":[]}}"#);
    assert_eq!(Case::cpu(&[10_000; 4], 50).params(&params).desired(), 4);
}

const DOWN_FAST: &str = r#""scaleDown":{"stabilizationWindowSeconds":0"#;

#[test]
fn percent_scale_down_truncates() {
    // current 10, 15% → int(8.5) = 8
    let params =
        behavior(&format!(r#"{{{DOWN_FAST},"policies":[{{"type":"Percent","value":15,"periodSeconds":60}}]}}}}"#));
    let out = Case::cpu(&[50; 10], 50).params(&params).run();
    assert_eq!(out.desired_replicas, Some(8));
    assert!(out.reason.starts_with("ScaleDownLimit"), "{}", out.reason);
}

#[test]
fn select_policy_min_on_scale_down_is_the_highest_floor() {
    // Pods 1 → 9, Percent 50 → 5; Min picks the smaller change: 9. Max picks 5.
    let rules =
        r#""policies":[{"type":"Pods","value":1,"periodSeconds":60},{"type":"Percent","value":50,"periodSeconds":60}]"#;
    let min = behavior(&format!(r#"{{{DOWN_FAST},"selectPolicy":"Min",{rules}}}}}"#));
    assert_eq!(Case::cpu(&[50; 10], 50).params(&min).desired(), 9);
    let max = behavior(&format!(r#"{{{DOWN_FAST},"selectPolicy":"Max",{rules}}}}}"#));
    assert_eq!(Case::cpu(&[50; 10], 50).params(&max).desired(), 5);
}

#[test]
fn scale_down_limit_counts_recent_scale_downs() {
    // Pods 2 / 60 s; already went 12 → 10 30 s ago → period start 12 → floor 10 → no room
    let params = behavior(&format!(r#"{{{DOWN_FAST},"policies":[{{"type":"Pods","value":2,"periodSeconds":60}}]}}}}"#));
    let held = Case::cpu(&[50; 10], 50).params(&params).scaled(12, 10, 30 * SEC);
    assert_eq!(held.desired(), 10);
    let free = Case::cpu(&[50; 10], 50).params(&params).scaled(12, 10, 60 * SEC);
    assert_eq!(free.desired(), 8);
}

#[test]
fn disabled_scale_down_keeps_current() {
    let params = behavior(&format!(r#"{{{DOWN_FAST},"selectPolicy":"Disabled"}}}}"#));
    assert_eq!(Case::cpu(&[50; 10], 50).params(&params).desired(), 10);
}

#[test]
fn min_replicas_below_the_rate_floor_reports_scale_down_limit_else_too_few() {
    let params =
        behavior(&format!(r#"{{{DOWN_FAST},"policies":[{{"type":"Percent","value":90,"periodSeconds":60}}]}}}}"#));
    // floor int(10 × (1 − 0.9)) = int(0.9999999999999998) = 0; min 4 is higher → TooFewReplicas
    let out = Case::cpu(&[50; 10], 50).params(&params).bounds(4, 100).run();
    assert_eq!(out.desired_replicas, Some(4));
    assert!(out.reason.starts_with("TooFewReplicas"), "{}", out.reason);
}

#[test]
fn behavior_tolerance_overrides_the_controller_flag_per_direction() {
    // 3 pods at 70% of 50 → 1.4: inside a 0.5 scale-up tolerance
    let params = behavior(r#"{"scaleUp":{"tolerance":"0.5"}}"#);
    assert_eq!(Case::cpu(&[700, 700, 700], 50).params(&params).desired(), 3);
    // scale-down still uses the controller's 0.1: 40% of 50 → 0.8 is outside it
    let down = behavior(r#"{"scaleUp":{"tolerance":"0.5"},"scaleDown":{"stabilizationWindowSeconds":0}}"#);
    assert_eq!(Case::cpu(&[400; 5], 50).params(&down).desired(), 4, "0.8 × 5 = 4");
}

#[test]
fn current_equal_to_desired_is_never_clamped() {
    let params = behavior(r#"{"scaleUp":{"selectPolicy":"Disabled"},"scaleDown":{"selectPolicy":"Disabled"}}"#);
    let out = Case::cpu(&[500, 500, 500], 50).params(&params).run();
    assert_eq!(out.desired_replicas, Some(3));
    assert!(out.reason.starts_with("DesiredWithinRange"), "{}", out.reason);
}
