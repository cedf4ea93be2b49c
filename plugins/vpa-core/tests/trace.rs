//! A synthetic week through the recommender: diurnal CPU (0.1–0.5 cores), a
//! memory plateau (ramping to 400 MiB in the first 6 h), one OOM kill on day
//! 3 with a 512 MiB request. The recommendations track it: CPU target above
//! the daily p90 with its margin, memory jumps after the OOM and settles back
//! towards the plateau as the OOM peak decays, and the bounds narrow as the
//! history grows.

use scalegate_vpa::{Config, Model};

const START: i64 = 1_767_225_600_000;
const MINUTE: i64 = 60_000;
const DAY: i64 = 86_400_000;
const MIB: f64 = 1024.0 * 1024.0;

fn cpu(at: i64) -> f64 {
    let phase = (at - START) as f64 / DAY as f64 * std::f64::consts::TAU;
    0.3 + 0.2 * phase.sin()
}

fn memory(at: i64) -> f64 {
    let hours = (at - START) as f64 / 3.6e6;
    400.0 * MIB * (hours / 6.0).clamp(0.25, 1.0)
}

#[test]
fn a_week_of_diurnal_cpu_a_memory_plateau_and_one_oom() {
    let config = Config::default();
    let mut model = Model::default();
    let mut daily = vec![];
    let mut after_oom = None;
    for minute in 0..=7 * 1440 {
        let at = START + minute * MINUTE;
        model.add_cpu(&config, "redis-0", "redis", cpu(at), at);
        model.add_memory(&config, "redis-0", "redis", memory(at), at);
        if minute == 3 * 1440 + 120 {
            assert!(model.record_oom(&config, "redis-0", "redis", at, 512.0 * MIB));
            after_oom = Some(model.estimate(&config, &["redis"])["redis"]);
        }
        if minute > 0 && minute % 1440 == 0 {
            daily.push(model.estimate(&config, &["redis"])["redis"]);
        }
    }
    assert_eq!(daily.len(), 7);
    for (day, e) in daily.iter().enumerate() {
        println!(
            "day {}: c={:.2} cpu {}m [{}, {}]  memory {} MiB [{}, {}]",
            day + 1,
            e.confidence_days,
            e.target.cpu_millicores,
            e.lower_bound.cpu_millicores,
            e.upper_bound.cpu_millicores,
            e.target.memory_bytes >> 20,
            e.lower_bound.memory_bytes >> 20,
            e.upper_bound.memory_bytes >> 20
        );
        // the daily p90 of the curve is 0.49 cores; with the bucket's end and the 15 % margin
        assert!((560..=620).contains(&e.target.cpu_millicores), "day {}: {e:?}", day + 1);
        assert!(e.lower_bound.cpu_millicores <= e.target.cpu_millicores);
        assert!(e.target.cpu_millicores <= e.upper_bound.cpu_millicores);
        assert!(e.target.memory_bytes as f64 >= 400.0 * MIB, "day {}: {e:?}", day + 1);
    }
    // bounds narrow as history grows
    for pair in daily.windows(2) {
        let width = |e: &scalegate_vpa::Estimate| e.upper_bound.cpu_millicores - e.lower_bound.cpu_millicores;
        assert!(width(&pair[1]) < width(&pair[0]), "{pair:?}");
        assert!(pair[1].confidence_days > pair[0].confidence_days);
    }
    // the OOM: memory up to at least max(512 MiB + 100 MiB, 512 MiB × 1.2) plus the margin
    let oom = after_oom.unwrap();
    assert!(oom.target.memory_bytes as f64 >= 614.4 * MIB * 1.15, "{oom:?}");
    // and, four days of 400 MiB peaks later, back near the plateau
    let last = daily[6];
    assert!((last.target.memory_bytes as f64) < 614.4 * MIB, "{last:?}");
    assert!((last.target.memory_bytes as f64) < oom.target.memory_bytes as f64);
    // the state stays small: one container, a week
    let bytes = serde_json::to_vec(&model).unwrap().len();
    assert!(bytes < 8 << 10, "{bytes} bytes of state");
}
