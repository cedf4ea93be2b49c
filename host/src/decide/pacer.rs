//! The evaluation budget: at most `rate` evaluations per second across all
//! workloads, with a burst of one second's worth. Below it (a fleet on its
//! intervals, a signal now and then) every evaluation starts at once; above
//! it (a flood of directives spread over thousands of workloads) evaluations
//! wait their turn, and the signals queued meanwhile are decided together
//! in one evaluation per workload instead of one each — so ingest is not
//! starved by evaluations and API writes, and memory stays bounded by the
//! per-workload signal queues.

use parking_lot::Mutex;
use std::time::Duration;
use tokio::time::Instant;

pub struct Pacer {
    /// Time between two evaluations at the full rate.
    gap: Duration,
    /// How far ahead of now turns may be handed out without waiting.
    burst: Duration,
    /// The virtual time of the next turn.
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    /// `rate` evaluations per second (at least 1).
    pub fn new(rate: u32) -> Pacer {
        Pacer { gap: Duration::from_secs(1) / rate.max(1), burst: Duration::from_secs(1), next: Mutex::new(None) }
    }

    /// Waits for this evaluation's turn.
    pub async fn turn(&self) {
        let at = {
            let now = Instant::now();
            let mut next = self.next.lock();
            // unused turns of the last second may be used now (the burst)
            let earliest = now.checked_sub(self.burst).unwrap_or(now);
            let at = next.map_or(earliest, |next| next.max(earliest));
            *next = Some(at + self.gap);
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_passes_then_turns_come_at_the_rate() {
        let pacer = Pacer::new(100);
        let start = Instant::now();
        for _ in 0..100 {
            pacer.turn().await;
        }
        assert!(start.elapsed() < Duration::from_millis(1), "one second's worth at once");
        for _ in 0..50 {
            pacer.turn().await;
        }
        let paced = start.elapsed();
        assert!(paced >= Duration::from_millis(490) && paced <= Duration::from_millis(510), "{paced:?}");
        // after a quiet second the burst is back
        tokio::time::sleep(Duration::from_secs(2)).await;
        let again = Instant::now();
        for _ in 0..100 {
            pacer.turn().await;
        }
        assert!(again.elapsed() < Duration::from_millis(1));
    }
}
