//! The reference's test vectors (docs/reference/vpa-recommender.md §7):
//! defaults, one sample per 60 s of a constant value, the recommendation
//! read after the last sample.

use scalegate_vpa::{Allowed, Amounts, Config, Model};

const START: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const MINUTE: i64 = 60_000;
const MIB: f64 = 1024.0 * 1024.0;

fn feed(model: &mut Model, config: &Config, container: &str, samples: i64, cores: f64, bytes: Option<f64>) {
    for i in 0..samples {
        let at = START + i * MINUTE;
        assert!(model.add_cpu(config, "pod-0", container, cores, at));
        if let Some(bytes) = bytes {
            assert!(model.add_memory(config, "pod-0", container, bytes, at));
        }
    }
}

fn amounts(cpu_millicores: i64, memory_bytes: i64) -> Amounts {
    Amounts { cpu_millicores, memory_bytes }
}

fn one(samples: i64) -> (f64, Amounts, Amounts, Amounts) {
    let config = Config::default();
    let mut model = Model::default();
    feed(&mut model, &config, "app", samples, 0.5, Some(5e8));
    let e = model.estimate(&config, &["app"])["app"];
    (e.confidence_days, e.target, e.lower_bound, e.upper_bound)
}

#[test]
fn t1_one_day() {
    let (c, target, lower, upper) = one(1441);
    assert_eq!(c, 1.0);
    assert_eq!(target, amounts(587, 587_804_717));
    assert_eq!(lower, amounts(585, 586_630_868));
    assert_eq!(upper, amounts(1174, 1_175_609_434));
}

#[test]
fn t2_half_a_day() {
    let (c, target, lower, upper) = one(721);
    assert_eq!(c, 0.5);
    assert_eq!(target, amounts(587, 587_804_717));
    assert_eq!(lower, amounts(584, 585_460_533));
    assert_eq!(upper, amounts(1761, 1_763_414_151));
}

#[test]
fn t3_a_week() {
    let (c, target, lower, upper) = one(10_081);
    assert_eq!(c, 7.0);
    assert_eq!(target, amounts(587, 587_804_717));
    assert_eq!(lower, amounts(586, 587_636_808));
    assert_eq!(upper, amounts(670, 671_776_819));
}

#[test]
fn t4_two_small_containers_share_the_pod_minimum() {
    let config = Config::default();
    let mut model = Model::default();
    feed(&mut model, &config, "app", 1441, 0.001, Some(1e6));
    feed(&mut model, &config, "sidecar", 1441, 0.001, Some(1e6));
    let estimates = model.estimate(&config, &["app", "sidecar"]);
    for name in ["app", "sidecar"] {
        let e = estimates[name];
        assert_eq!(e.confidence_days, 1.0);
        assert_eq!(e.target, amounts(12, 131_072_000), "{name}");
        assert_eq!(e.lower_bound, amounts(12, 131_072_000), "{name}");
        assert_eq!(e.upper_bound, amounts(22, 131_072_000), "{name}");
    }
}

#[test]
fn t5_an_oom_bumps_memory_above_the_request() {
    let config = Config::default();
    let mut model = Model::default();
    // memory 200 MiB for 10 h, then an OOM kill with a 256 MiB request; CPU for the whole day
    for i in 0..1441 {
        let at = START + i * MINUTE;
        model.add_cpu(&config, "pod-0", "app", 0.5, at);
        if i <= 600 {
            model.add_memory(&config, "pod-0", "app", 200.0 * MIB, at);
        }
        if i == 600 {
            assert!(model.record_oom(&config, "pod-0", "app", at, 256.0 * MIB));
        }
    }
    let e = model.estimate(&config, &["app"])["app"];
    assert_eq!(e.confidence_days, 1.0);
    assert_eq!(e.target, amounts(587, 442_809_964));
    assert_eq!(e.lower_bound, amounts(585, 441_925_670));
    assert_eq!(e.upper_bound, amounts(1174, 885_619_928));
}

#[test]
fn no_history_leaves_the_bounds_wide_open() {
    let config = Config::default();
    let e = Model::default().estimate(&config, &["app"])["app"];
    // no samples: 0 + margin → the pod minimums; upper ∞ (capped), lower 0 → minimum
    assert_eq!(e.target, amounts(25, 262_144_000));
    assert_eq!(e.lower_bound, amounts(25, 262_144_000));
    assert_eq!(e.upper_bound, amounts(25, 262_144_000));
    let mut model = Model::default();
    feed(&mut model, &config, "app", 1, 0.5, Some(5e8));
    let e = model.estimate(&config, &["app"])["app"];
    assert_eq!(e.upper_bound, amounts(scalegate_vpa::MAX_AMOUNT, scalegate_vpa::MAX_AMOUNT));
    assert_eq!(e.lower_bound, amounts(25, 262_144_000));
}

#[test]
fn capping_raises_to_min_then_cuts_to_max_and_keeps_the_uncapped_target() {
    let (_, _, _, _) = one(1441);
    let config = Config::default();
    let mut model = Model::default();
    feed(&mut model, &config, "app", 1441, 0.5, Some(5e8));
    let e = model.estimate(&config, &["app"])["app"];
    let min = Allowed { cpu_millicores: Some(600), memory_bytes: None };
    let max = Allowed { cpu_millicores: Some(1000), memory_bytes: Some(550_000_000) };
    let r = e.capped(&min, &max);
    assert_eq!(r.target, amounts(600, 550_000_000));
    assert_eq!(r.lower_bound, amounts(600, 550_000_000));
    assert_eq!(r.upper_bound, amounts(1000, 550_000_000));
    assert_eq!(r.uncapped_target, amounts(587, 587_804_717));
}

#[test]
fn the_model_round_trips_through_its_state_form() {
    let config = Config::default();
    let mut model = Model::default();
    feed(&mut model, &config, "app", 1441, 0.5, Some(5e8));
    let json = serde_json::to_vec(&model).unwrap();
    let back: Model = serde_json::from_slice(&json).unwrap();
    assert_eq!(back.estimate(&config, &["app"]), model.estimate(&config, &["app"]));
    assert!(json.len() < 1024, "{} bytes for one container", json.len());
}
