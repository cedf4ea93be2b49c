//! Time on the host's side of a call: the epoch ticker that stops Wasm code
//! running past its deadline, and the wall-clock bound that drops a call
//! stuck anywhere else (inside a host function, whatever the guest imports).
//!
//! Calls are asynchronous wasmtime calls (each runs on a fiber) driven to
//! completion on the calling thread by [`Driver::run`] under a timeout.
//! When the timeout fires the call's future is dropped, which unwinds the
//! fiber; the caller then discards the instance, so its pooling slot is
//! freed. Timers and the ticker live on one small runtime of their own
//! ("policy-timer"), so a call works the same from the decision loop's
//! blocking threads, the CLI, or a test, and never depends on the daemon's
//! runtime still running (shutdown with calls in flight is clean).

use super::sandbox::EPOCH_TICK;
use std::future::Future;
use std::time::Duration;
use tokio::sync::Notify;
use wasmtime::Engine;

/// Owns the timer runtime; shared by the runtime and every loaded policy.
pub struct Driver {
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // never blocks, so the last policy may be dropped anywhere
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Driver {
    /// Starts the timer thread and the epoch ticker for `engine`.
    pub fn start(engine: &Engine) -> std::io::Result<Driver> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("policy-timer")
            .enable_time()
            .build()?;
        let engine = engine.clone();
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(EPOCH_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                engine.increment_epoch();
            }
        });
        Ok(Driver { runtime: Some(runtime) })
    }

    /// Runs `call` on this thread; `None` when it was still running after
    /// `bound`, or waited on time that cannot pass (`stuck`, see
    /// `sandbox::PinnedClocks`) — it has been dropped then.
    ///
    /// Blocks the calling thread until then: call it from a blocking thread
    /// or outside any async runtime — or, where nothing else may run
    /// meanwhile (the simulator's single-threaded loop), on the runtime's
    /// own thread. The call is polled by a plain thread-parking executor,
    /// not a tokio runtime, so it may run inside one; only its bound is a
    /// timer on the driver's runtime.
    pub fn run<F: Future>(&self, bound: Duration, stuck: &Notify, call: F) -> Result<F::Output, Overstay> {
        let runtime = self.runtime.as_ref().expect("driver runs until dropped");
        // the bound's timer registers with the driver's runtime, whatever
        // runtime (if any) this thread belongs to
        let _timers = runtime.handle().enter();
        futures::executor::block_on(async {
            tokio::select! {
                biased;
                output = call => Ok(output),
                () = stuck.notified() => Err(Overstay::WaitedOnTime),
                () = tokio::time::sleep(bound) => Err(Overstay::Bound),
            }
        })
    }
}

/// Why a call was dropped before it returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overstay {
    /// It was still running at its wall-clock bound.
    Bound,
    /// It waited on a clock pollable that cannot become ready.
    WaitedOnTime,
}

impl Overstay {
    /// A line for the call's log saying what happened.
    pub fn explain(self) -> &'static str {
        match self {
            Overstay::Bound => "the host dropped the call at its wall-clock bound",
            Overstay::WaitedOnTime => {
                "the policy waited on a clock (a sleep or timer) that cannot fire: time does not pass inside a call"
            }
        }
    }
}

/// The wall-clock bound of a call with `deadline`: the epoch deadline stops
/// running Wasm at `deadline` (one tick late at most); this catches the rest
/// a quarter later.
pub fn wall_bound(deadline: Duration) -> Duration {
    deadline + deadline / 4 + EPOCH_TICK * 2
}
