//! §2 and §3 of the HPA reference: per-metric replica calculation and the
//! combination of metrics. Each test names the rule it pins down.

mod support;
use scalegate_hpa::Phase;
use support::*;

// §2.3 first pass: ceil(ratio * readyPodCount)
#[test]
fn utilization_scale_up() {
    // (300+500+700)*100/3000 = 50% of 30% → ratio 1.667 → ceil(5.0) = 5
    assert_eq!(Case::cpu(&[300, 500, 700], 30).desired(), 5);
}

#[test]
fn utilization_scale_down_uses_float_ceil() {
    // 1400*100/5000 = 28% of 50% → 0.56 * 5 = 2.8000000000000003 → 3
    assert_eq!(Case::cpu(&[100, 300, 500, 250, 250], 50).desired(), 3);
}

#[test]
fn float_product_just_below_integer_rounds_up_to_it() {
    // 30% of 50% → 0.6 * 3 = 1.7999999999999998 → 2
    assert_eq!(Case::cpu(&[300, 300, 300], 50).desired(), 2);
}

#[test]
fn utilization_is_integer_truncated() {
    // 1000+1000+999 = 2999 → 2999*100/3000 = 99 (not 99.97) → ratio 0.99 within tolerance
    let out = Case::cpu(&[1000, 1000, 999], 100).run();
    assert_eq!(out.desired_replicas, Some(3));
    assert_eq!(out.proposals[0].current, 99.0);
}

// §2.1 tolerance: (1 − down) ≤ r ≤ (1 + up), inclusive at both ends
#[test]
fn tolerance_boundaries_are_inclusive() {
    assert_eq!(Case::cpu(&[1100, 1100, 1100], 100).desired(), 3, "ratio 1.1 is within");
    assert_eq!(Case::cpu(&[900, 900, 900], 100).desired(), 3, "ratio 0.9 is within");
    assert_eq!(Case::cpu(&[1110, 1110, 1110], 100).desired(), 4, "ratio 1.11 scales: ceil(3.33)");
    assert_eq!(Case::cpu(&[890, 890, 890], 100).desired(), 3, "ratio 0.89 scales: ceil(2.67) = 3");
    assert_eq!(Case::cpu(&[500, 500, 500, 500], 100).desired(), 2, "ratio 0.5");
}

#[test]
fn controller_tolerance_flag_is_honoured() {
    let case = Case::cpu(&[1200, 1200, 1200], 100)
        .params(r#"{"tolerance":0.25,"metrics":[{"type":"Resource","resource":{"name":"cpu","target":{"type":"Utilization","averageUtilization":100}}}]}"#);
    assert_eq!(case.desired(), 3, "ratio 1.2 within a 0.25 tolerance");
}

// §2.2 grouping + §2.3: unready pods count as 0 only on scale-up
#[test]
fn unready_pods_count_as_zero_on_scale_up() {
    // p0 not ready (still initializing). Ready pods: 1600/2000 = 80% of 50% → 1.6.
    // Second pass with p0 at 0: 1600*100/3000 = 53% → 1.06: within tolerance → keep 3.
    // (Without the unready rule it would be ceil(1.6 * 2) = 4.)
    let case = Case::cpu(&[0, 800, 800], 50).pod_mut(0, |p| {
        p.ready = Some(false);
        p.start_ms = Some(NOW - 60 * SEC);
        p.ready_transition_ms = Some(NOW - 60 * SEC);
    });
    assert_eq!(case.desired(), 3);
}

#[test]
fn unready_pods_are_left_out_on_scale_down() {
    // Ready pods: 400/2000 = 20% of 50% → 0.4 → ceil(0.4 * readyPodCount 2) = 1
    let case = Case::cpu(&[0, 200, 200], 50).pod_mut(0, |p| {
        p.ready = Some(false);
        p.start_ms = Some(NOW - 60 * SEC);
    });
    assert_eq!(case.desired(), 1);
}

#[test]
fn pending_pods_are_unready_for_every_metric() {
    // memory metric (no readiness rules) but p2 is Pending → unready, left out on scale-down.
    // ready: p0, p1 at 256Mi of 1Gi = 25% of 50% → 0.5 → ceil(0.5 * 2) = 1
    let mut case = Case::with_pods(3)
        .params(r#"{"metrics":[{"type":"Resource","resource":{"name":"memory","target":{"type":"Utilization","averageUtilization":50}}}]}"#)
        .per_pod_metric("memory", &[("p0", 268435456000), ("p1", 268435456000), ("p2", 268435456000)])
        .pod_mut(2, |p| p.phase = Phase::Pending);
    assert_eq!(case.desired(), 1);
    case = case.pod_mut(2, |p| p.phase = Phase::Running);
    assert_eq!(case.desired(), 2, "ceil(0.5 * 3)");
}

#[test]
fn non_cpu_resources_ignore_readiness() {
    // p0 is Running but not Ready; for memory that does not matter.
    let case = Case::with_pods(2)
        .params(r#"{"metrics":[{"type":"Resource","resource":{"name":"memory","target":{"type":"Utilization","averageUtilization":50}}}]}"#)
        .per_pod_metric("memory", &[("p0", 1073741824000), ("p1", 1073741824000)])
        .pod_mut(0, |p| p.ready = Some(false));
    assert_eq!(case.desired(), 4, "100% of 50% over 2 ready pods");
}

#[test]
fn cpu_pod_without_ready_condition_or_start_time_is_unready() {
    let bends: [fn(&mut scalegate_hpa::Pod); 2] = [|p| p.ready = None, |p| p.start_ms = None];
    for bend in bends {
        // ready pods p1,p2: 400/2000 = 20% of 50% → ceil(0.4 * 2) = 1
        let case = Case::cpu(&[1000, 200, 200], 50).pod_mut(0, bend);
        assert_eq!(case.desired(), 1);
    }
}

#[test]
fn cpu_initializing_pod_needs_a_sample_taken_after_readiness() {
    // p0 started 60 s ago (inside the 300 s initialization period), Ready since 20 s ago.
    // Its sample (window 30 s, taken 15 s ago) starts before readiness → unready.
    let base = Case::cpu(&[900, 100, 100], 50).pod_mut(0, |p| {
        p.start_ms = Some(NOW - 60 * SEC);
        p.ready_transition_ms = Some(NOW - 20 * SEC);
    });
    // unready p0 left out on scale-down: 200/2000 = 10% → 0.2 * 2 → 1
    assert_eq!(base.desired(), 1);
    // sample taken at the boundary: timestamp == transition + window → not before → ready
    let boundary = base.sample_mut("p0", |s| s.timestamp_ms = NOW - 20 * SEC + 30 * SEC);
    // all three ready: 1100/3000 = 36% → 0.72 * 3 = 2.16 → 3
    assert_eq!(boundary.desired(), 3);
}

#[test]
fn cpu_pod_that_never_became_ready_is_unready_after_initialization() {
    // Started an hour ago; Ready=False since 10 s after start (< 30 s readiness delay):
    // it never became ready → unready. Ready p1,p2: 400/2000 = 20% → ceil(0.4 * 2) = 1.
    let never = Case::cpu(&[900, 200, 200], 50).pod_mut(0, |p| {
        p.ready = Some(false);
        p.ready_transition_ms = Some(NOW - HOUR + 10 * SEC);
    });
    assert_eq!(never.desired(), 1);
    // Became unready 60 s after start (it had been ready): still counted, with its 900m.
    // 1300/3000 = 43% → 0.86 → ceil(2.58) = 3
    let later = never.pod_mut(0, |p| p.ready_transition_ms = Some(NOW - HOUR + 60 * SEC));
    assert_eq!(later.desired(), 3);
    // Exactly at the delay: start + 30 s > transition is false → counted.
    let exact = later.pod_mut(0, |p| p.ready_transition_ms = Some(NOW - HOUR + 30 * SEC));
    assert_eq!(exact.desired(), 3);
}

#[test]
fn terminating_and_failed_pods_are_ignored() {
    // p3 failed and p4 terminating with huge samples; ready p0..p2: 90% of 50% → ceil(1.8 * 3) = 6
    let case = Case::cpu(&[900, 900, 900, 5000, 5000], 50)
        .current(5)
        .pod_mut(3, |p| p.phase = Phase::Failed)
        .pod_mut(4, |p| p.terminating = true);
    assert_eq!(case.desired(), 6);
}

// §2.3 missing pods
#[test]
fn missing_pods_use_their_full_request_on_scale_down() {
    // p3 has no sample. First pass 300/3000 = 10% of 50% → 0.2.
    // p3 filled with max(100, 50)% of 1000m = 1000 → 1300*100/4000 = 32% → 0.64 → ceil(2.56) = 3
    let case = Case::cpu(&[100, 100, 100, 0], 50).drop_sample("p3");
    assert_eq!(case.desired(), 3);
}

#[test]
fn missing_pods_use_the_target_when_it_exceeds_100_percent() {
    // target 150%: fill = 1500 → 1800*100/4000 = 45% of 150 → 0.3 → ceil(1.2) = 2
    let case = Case::cpu(&[100, 100, 100, 0], 150).drop_sample("p3");
    assert_eq!(case.desired(), 2);
}

#[test]
fn missing_pods_count_as_zero_on_scale_up() {
    // first 90% of 50% → 1.8; p3 at 0 → 2700*100/4000 = 67% → 1.34 → ceil(5.36) = 6
    let case = Case::cpu(&[900, 900, 900, 0], 50).drop_sample("p3");
    assert_eq!(case.desired(), 6);
}

#[test]
fn direction_flip_after_filling_keeps_current() {
    // first 60% of 50% → 1.2 (up); p2, p3 at 0 → 1200*100/4000 = 30% → 0.6 (down) → keep 4
    let case = Case::cpu(&[600, 600, 0, 0], 50).drop_sample("p2").drop_sample("p3");
    assert_eq!(case.desired(), 4);
}

#[test]
fn ratio_exactly_one_with_missing_pods_keeps_current() {
    let case = Case::cpu(&[500, 500, 500, 0], 50).drop_sample("p3");
    assert_eq!(case.desired(), 4);
}

#[test]
fn second_pass_never_moves_against_its_direction() {
    // Up: ready p1..p3 at 660: 1980/3000 = 66% of 55 → 1.2. With p0 (pending) at 0:
    // 1980*100/4000 = 49% → 0.89 → flip → keep.
    let case = Case::cpu(&[0, 660, 660, 660], 55).pod_mut(0, |p| p.phase = Phase::Pending);
    assert_eq!(case.desired(), 4);
}

#[test]
fn second_pass_below_current_while_scaling_up_keeps_current() {
    // spec says 5 but only 2 pods exist; p1 has no sample.
    // first 1600/1000 = 160% of 50 → 3.2; p1 at 0 → 80% → 1.6 → ceil(3.2) = 4 < 5 → keep 5
    let case = Case::cpu(&[1600, 0], 50).current(5).drop_sample("p1");
    assert_eq!(case.run().metric_desired, Some(5));
}

#[test]
fn missing_request_is_an_error_and_blocks_scaling() {
    let case = Case::cpu(&[900, 900], 50).pod_mut(1, |p| p.cpu_request = None);
    let out = case.run();
    assert_eq!(out.desired_replicas, None);
    assert!(
        out.reason.contains("FailedGetResourceMetric") && out.reason.contains("missing request for cpu in pod p1"),
        "{}",
        out.reason
    );
}

#[test]
fn no_samples_at_all_is_an_error() {
    let out = Case::with_pods(2)
        .params(r#"{"metrics":[{"type":"Resource","resource":{"name":"cpu","target":{"type":"Utilization","averageUtilization":50}}}]}"#)
        .run();
    assert_eq!(out.desired_replicas, None);
    assert!(out.reason.contains("no metrics returned from resource metrics API"), "{}", out.reason);
}

#[test]
fn only_unready_samples_is_an_error() {
    let case = Case::cpu(&[900], 50).pod_mut(0, |p| p.phase = Phase::Pending);
    let out = case.run();
    assert!(out.reason.contains("did not receive metrics for targeted pods"), "{}", out.reason);
}

#[test]
fn samples_for_unlisted_pods_are_ignored() {
    // an index past the pod list (the host never sends one) must not count or panic
    let mut case = Case::cpu(&[900, 900], 50);
    case.input.metrics[0].pods.push(sample(7, 100_000));
    assert_eq!(case.desired(), 4, "90% of 50% → ceil(3.6)");
}

#[test]
fn memory_request_total_is_used_for_memory() {
    // 512 MiB used of the 1 GiB total → 50% of 25% → 2 × 2 = 4
    let case = Case::with_pods(2)
        .params(r#"{"metrics":[{"type":"Resource","resource":{"name":"memory","target":{"type":"Utilization","averageUtilization":25}}}]}"#)
        .per_pod_metric("memory", &[("p0", 536870912000), ("p1", 536870912000)]);
    assert_eq!(case.run().metric_desired, Some(4));
}

#[test]
fn container_resource_uses_the_container_request_and_metric() {
    let case = Case::with_pods(2)
        .params(r#"{"metrics":[{"type":"ContainerResource","containerResource":{"name":"cpu","container":"app","target":{"type":"Utilization","averageUtilization":50}}}]}"#)
        .per_pod_metric("app/cpu", &[("p0", 400), ("p1", 400)])
        .pod_mut(0, |p| p.requests.push(scalegate_hpa::Request { resource: "cpu".into(), container: Some("app".into()), amount: 0.5 }))
        .pod_mut(1, |p| p.requests.push(scalegate_hpa::Request { resource: "cpu".into(), container: Some("app".into()), amount: 0.5 }));
    // 800*100/1000 = 80% of 50% → 1.6 → ceil(3.2) = 4 (the pod total of 1 CPU would give 40%)
    assert_eq!(case.desired(), 4);
}

// §2.4 AverageValue and Pods metrics
#[test]
fn resource_average_value_target() {
    // avg (600+700+800)/3 = 700m of 500m → 1.4 → ceil(4.2) = 5
    let case = Case::cpu(&[600, 700, 800], 50)
        .params(r#"{"metrics":[{"type":"Resource","resource":{"name":"cpu","target":{"type":"AverageValue","averageValue":"500m"}}}]}"#);
    assert_eq!(case.desired(), 5);
}

#[test]
fn pods_metric_average_value() {
    let case = Case::with_pods(3)
        .params(r#"{"metrics":[{"type":"Pods","pods":{"metric":{"name":"qps"},"target":{"type":"AverageValue","averageValue":10}}}]}"#)
        .per_pod_metric("qps", &[("p0", 20_000), ("p1", 30_000), ("p2", 40_000)]);
    let out = case.run();
    assert_eq!(out.metric_desired, Some(9), "avg 30 of 10 → 3 × 3");
    assert_eq!(out.desired_replicas, Some(6), "legacy scale-up limit max(2 × 3, 4)");
    assert_eq!(out.proposals[0].current, 30.0);
}

#[test]
fn pods_metric_missing_pod_filled_with_target_on_scale_down() {
    // p0,p1 at 2 of target 10 → 0.2; p2 missing → filled with 10 → avg 14/3 = 4.666 → 4666m
    // → 0.4666 → ceil(1.4) = 2
    let case = Case::with_pods(3)
        .params(r#"{"metrics":[{"type":"Pods","pods":{"metric":{"name":"qps"},"target":{"type":"AverageValue","averageValue":10}}}]}"#)
        .per_pod_metric("qps", &[("p0", 2000), ("p1", 2000)]);
    assert_eq!(case.desired(), 2);
}

#[test]
fn pods_metric_ignores_cpu_readiness_rules() {
    // p0 never became ready but is Running: counted for a Pods metric
    let case = Case::with_pods(2)
        .params(r#"{"metrics":[{"type":"Pods","pods":{"metric":{"name":"qps"},"target":{"type":"AverageValue","averageValue":10}}}]}"#)
        .per_pod_metric("qps", &[("p0", 20_000), ("p1", 20_000)])
        .pod_mut(0, |p| p.ready = Some(false));
    assert_eq!(case.desired(), 4);
}

// §2.5–2.7 Object and External
#[test]
fn object_value_scales_with_ready_running_pods() {
    // 50 / 10 → ratio 5 × ready pods (p3 not ready) 3 = 15
    let case = Case::with_pods(4)
        .params(r#"{"metrics":[{"type":"Object","object":{"describedObject":{"kind":"Ingress","name":"main"},"metric":{"name":"rps"},"target":{"type":"Value","value":10}}}]}"#)
        .metric("rps", 50.0)
        .pod_mut(3, |p| p.ready = Some(false));
    assert_eq!(case.run().metric_desired, Some(15));
}

#[test]
fn object_value_within_tolerance_keeps_current() {
    let case = Case::with_pods(4)
        .params(r#"{"metrics":[{"type":"Object","object":{"metric":{"name":"rps"},"target":{"type":"Value","value":10}}}]}"#)
        .metric("rps", 10.5);
    assert_eq!(case.desired(), 4);
}

#[test]
fn object_average_value_uses_status_replicas() {
    // 100 / (10 × status 4) = 2.5 → ceil(100 / 10) = 10; reported average ceil(100/4) = 25
    let mut case = Case::with_pods(3)
        .params(r#"{"metrics":[{"type":"Object","object":{"metric":{"name":"rps"},"target":{"type":"AverageValue","averageValue":10}}}]}"#)
        .metric("rps", 100.0);
    case.input.status_replicas = 4;
    let out = case.run();
    assert_eq!(out.metric_desired, Some(10));
    assert_eq!(out.proposals[0].current, 25.0);
}

#[test]
fn external_average_value_within_tolerance_keeps_status_replicas() {
    // 41 / (10 × 4) = 1.025 → within → status replicas (4), even though spec is 3
    let mut case = Case::with_pods(3)
        .params(r#"{"metrics":[{"type":"External","external":{"metric":{"name":"lag"},"target":{"type":"AverageValue","averageValue":10}}}]}"#)
        .metric("lag", 41.0);
    case.input.status_replicas = 4;
    assert_eq!(case.run().metric_desired, Some(4));
}

#[test]
fn external_value_scales_from_zero_without_tolerance() {
    let case = Case::with_pods(0)
        .bounds(0, 10)
        .params(r#"{"metrics":[{"type":"External","external":{"metric":{"name":"lag"},"target":{"type":"Value","value":"10"}}}]}"#)
        .metric("lag", 10.5);
    // from zero: ceil(1.05) = 2 (no tolerance, no pod count)
    assert_eq!(case.desired(), 2);
}

#[test]
fn external_value_needs_pods_when_not_at_zero() {
    let case = Case::with_pods(0)
        .current(2)
        .params(r#"{"metrics":[{"type":"External","external":{"metric":{"name":"lag"},"target":{"type":"Value","value":"10"}}}]}"#)
        .metric("lag", 50.0);
    let out = case.run();
    assert_eq!(out.desired_replicas, None);
    assert!(out.reason.contains("unable to calculate ready pods"), "{}", out.reason);
}

#[test]
fn absent_external_metric_is_named_in_the_error() {
    let out = Case::with_pods(2)
        .params(r#"{"metrics":[{"type":"External","external":{"metric":{"name":"lag"},"target":{"type":"Value","value":"10"}}}]}"#)
        .run();
    assert!(out.reason.contains("FailedGetExternalMetric") && out.reason.contains("\"lag\""), "{}", out.reason);
}

// §3 combining metrics
const TWO_METRICS: &str = r#"{"metrics":[
    {"type":"Resource","resource":{"name":"cpu","target":{"type":"Utilization","averageUtilization":50}}},
    {"type":"External","external":{"metric":{"name":"lag"},"target":{"type":"AverageValue","averageValue":100}}}]}"#;

#[test]
fn several_metrics_take_the_maximum() {
    // cpu: 60% of 50 → 1.2 → ceil(3.6) = 4; lag 1000/100 → 10
    let case = Case::cpu(&[600, 600, 600], 50).params(TWO_METRICS).metric("lag", 1000.0);
    let out = case.run();
    assert_eq!(out.metric_desired, Some(10));
    assert_eq!(out.proposals.iter().map(|p| p.replicas).collect::<Vec<_>>(), vec![4, 10]);
}

#[test]
fn a_failed_metric_does_not_block_a_scale_up() {
    // lag missing; cpu alone proposes 4 ≥ current 3 → scale on it
    let out = Case::cpu(&[600, 600, 600], 50).params(TWO_METRICS).run();
    assert_eq!(out.desired_replicas, Some(4));
    assert_eq!(out.errors.len(), 1);
}

#[test]
fn a_failed_metric_blocks_a_scale_down() {
    // cpu proposes 1 < current 3 while lag failed → no scaling at all
    let out = Case::cpu(&[100, 100, 100], 50).params(TWO_METRICS).run();
    assert_eq!(out.desired_replicas, None);
    assert!(out.reason.starts_with("FailedGetExternalMetric"), "{}", out.reason);
}

#[test]
fn every_metric_failing_blocks_scaling() {
    let out = Case::with_pods(3).params(TWO_METRICS).run();
    assert_eq!(out.desired_replicas, None);
    assert_eq!(out.errors.len(), 2);
    assert!(out.reason.starts_with("FailedGetResourceMetric"), "first error is reported: {}", out.reason);
}

#[test]
fn wrong_target_kind_is_a_metric_error() {
    let out = Case::cpu(&[500], 50)
        .params(r#"{"metrics":[{"type":"Resource","resource":{"name":"cpu","target":{"type":"Value","value":1}}}]}"#)
        .run();
    assert_eq!(out.desired_replicas, None);
    assert!(out.reason.contains("Utilization or AverageValue"), "{}", out.reason);
}
