//! What a process uses, from `/proc` (Linux): CPU seconds and resident
//! memory. `process` is a pid or `self`. Shared by `scalegate bench --fleet`
//! (itself) and the benchmarks that watch a `scalegate run` process.

/// CPU seconds (user + system) `process` has used.
pub fn cpu_seconds(process: impl std::fmt::Display) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{process}/stat")).unwrap_or_default();
    // the fields after the command name (which may contain spaces and parentheses)
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 (1-based), i.e. 11 and 12 after the name; 100 ticks/s
    (ticks(11) + ticks(12)) / 100.0
}

/// (current, peak) resident set size of `process` in MiB.
pub fn rss_mib(process: impl std::fmt::Display) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{process}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let (rss, peak) = rss_mib("self");
        assert!(rss > 1.0 && peak >= rss, "{rss} {peak}");
        let before = cpu_seconds("self");
        let mut x = 0u64;
        while cpu_seconds("self") < before + 0.02 {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert_eq!(cpu_seconds(u32::MAX), 0.0, "a process that does not exist used nothing");
    }
}
