//! What a policy instance can touch: the per-store host state.
//!
//! Guest toolchains (Rust `wasm32-wasip2`, componentize-py, componentize-js)
//! import WASI whether or not the policy uses it, so WASI is linked — with a
//! context that grants nothing: no preopened directories, no environment or
//! arguments, sockets denied, clocks pinned to the snapshot's `now_ms`,
//! randomness from a fixed seed (so a replay is bit-for-bit the same), and
//! stdout/stderr captured into a capped buffer that ends up in the log.
//!
//! Time does not pass inside a call: both clocks read the snapshot's time,
//! and clock pollables resolve against it ([`PinnedClocks`] replaces WASI's
//! monotonic clock in the linker). One that is due (a zero duration, an
//! instant not after `now`) is ready; any other can never become ready, so a
//! call that waits on one — a sleep, a timer — ends at once as a `timeout`
//! fault instead of blocking a host thread. Memory is capped per instance:
//! the total of all its linear memories and tables ([`MemoryCap`]).

use bytes::Bytes;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Notify;
use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::{DynPollable, OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Granularity of deadlines: the ticker bumps the engine's epoch this often.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Epoch ticks for a budget.
pub(super) fn ticks(budget: Duration) -> u64 {
    // +1: the first tick may come at any moment after the deadline is set
    budget.as_micros().div_ceil(EPOCH_TICK.as_micros()) as u64 + 1
}

/// Severity of a policy's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    /// Captured stdout/stderr.
    Output,
}

/// Fixed seed for the guest's randomness: evaluations are replayable.
const RANDOM_SEED: &[u8] = b"scalegate: policies get deterministic randomness";

/// The store data of one policy instance.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limits: MemoryCap,
    pub(super) logs: Vec<(LogLevel, String)>,
    pub(super) dropped_logs: usize,
    max_log_lines: usize,
    max_line_bytes: usize,
    pub(super) output: CappedOutput,
    clock: PinnedClock,
    /// Signalled when the call waits on a clock pollable that can never fire.
    stuck: Arc<Notify>,
}

impl HostState {
    pub fn new(memory_limit_bytes: usize, max_log_lines: usize, max_output_bytes: usize) -> HostState {
        let clock = PinnedClock::default();
        let output = CappedOutput::new(max_output_bytes);
        let mut builder = WasiCtxBuilder::new();
        builder
            .stdout(output.clone())
            .stderr(output.clone())
            .wall_clock(clock.clone())
            .monotonic_clock(clock.clone())
            .secure_random(wasmtime_wasi::Deterministic::new(RANDOM_SEED.to_vec()))
            .insecure_random(wasmtime_wasi::Deterministic::new(RANDOM_SEED.to_vec()))
            .insecure_random_seed(0x5ca1_e6a7e)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        HostState {
            wasi: builder.build(),
            table: ResourceTable::new(),
            limits: MemoryCap::new(memory_limit_bytes),
            logs: Vec::new(),
            dropped_logs: 0,
            max_log_lines,
            max_line_bytes: 1024,
            output,
            clock,
            stuck: Arc::new(Notify::new()),
        }
    }

    /// What the driver watches to end a call that waits on time (see [`PinnedClocks`]).
    pub fn stuck(&self) -> Arc<Notify> {
        self.stuck.clone()
    }

    /// Prepares the state for one call: clock at the snapshot time, fresh log.
    pub fn begin_call(&mut self, now_ms: u64) {
        self.clock.set(now_ms);
        self.logs.clear();
        self.dropped_logs = 0;
        self.output.clear();
        self.limits.hit = false;
        self.stuck = Arc::new(Notify::new());
    }

    pub fn push_log(&mut self, level: LogLevel, mut message: String) {
        if self.logs.len() >= self.max_log_lines {
            self.dropped_logs += 1;
            return;
        }
        if message.len() > self.max_line_bytes {
            let mut cut = self.max_line_bytes;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        self.logs.push((level, message));
    }
}

impl HostState {
    /// The monotonic clock as the sandbox serves it (see [`PinnedClocks`]).
    pub(super) fn pinned_clocks(&mut self) -> PinnedClocks<'_> {
        PinnedClocks { table: &mut self.table, clock: self.clock.clone(), stuck: self.stuck.clone() }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Memory cap per instance: the sum of every linear memory (and every table,
/// at 8 bytes an element) of the store, which holds all the core instances of
/// one component instance — so a component with four memories gets the cap
/// once, not four times. Going over it stops the call (an error from the
/// limiter traps the guest) and is remembered so the fault is classified as
/// `MemoryLimit` rather than a generic trap. Memory is never given back
/// while the instance lives, so a recycled instance keeps its total.
pub struct MemoryCap {
    inner: StoreLimits,
    pub(super) limit: usize,
    pub(super) hit: bool,
    /// Bytes of memories and tables granted so far.
    used: usize,
    /// The last growth granted, taken back if wasmtime then fails it.
    pending: usize,
}

/// Bytes one table element is counted as.
const TABLE_ELEMENT_BYTES: usize = 8;

impl MemoryCap {
    fn new(limit: usize) -> MemoryCap {
        MemoryCap {
            inner: StoreLimitsBuilder::new().table_elements(1 << 20).instances(10_000).build(),
            limit,
            hit: false,
            used: 0,
            pending: 0,
        }
    }

    /// Bytes of memories and tables the instance holds.
    #[cfg(test)]
    fn used(&self) -> usize {
        self.used
    }

    fn grant(&mut self, growth: usize) -> wasmtime::Result<bool> {
        if self.used.saturating_add(growth) > self.limit {
            self.hit = true;
            return Err(wasmtime::Error::new(MemoryLimitExceeded));
        }
        self.used += growth;
        self.pending = growth;
        Ok(true)
    }

    fn take_back(&mut self) {
        self.used -= self.pending.min(self.used);
        self.pending = 0;
    }
}

#[derive(Debug)]
pub struct MemoryLimitExceeded;

impl std::fmt::Display for MemoryLimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("memory limit exceeded")
    }
}

impl std::error::Error for MemoryLimitExceeded {}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if !self.inner.memory_growing(current, desired, maximum)? {
            return Ok(false);
        }
        self.grant(desired.saturating_sub(current))
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.take_back();
        Ok(())
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if !self.inner.table_growing(current, desired, maximum)? {
            return Ok(false);
        }
        self.grant(desired.saturating_sub(current).saturating_mul(TABLE_ELEMENT_BYTES))
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.take_back();
        Ok(())
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }
    fn tables(&self) -> usize {
        self.inner.tables()
    }
    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// Wall and monotonic clock, both reading the snapshot's `now_ms`.
#[derive(Clone, Default)]
struct PinnedClock(Arc<AtomicU64>);

impl PinnedClock {
    fn set(&self, now_ms: u64) {
        self.0.store(now_ms, Ordering::Relaxed);
    }
}

impl wasmtime_wasi::HostWallClock for PinnedClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::Relaxed))
    }
}

impl wasmtime_wasi::HostMonotonicClock for PinnedClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        self.0.load(Ordering::Relaxed).saturating_mul(1_000_000)
    }
}

/// WASI's monotonic clock as a policy sees it: `now` is the snapshot's
/// time, which does not advance during a call, so a pollable is ready if it
/// is due now and never otherwise.
pub(super) struct PinnedClocks<'a> {
    table: &'a mut ResourceTable,
    clock: PinnedClock,
    stuck: Arc<Notify>,
}

/// [`HasData`] marker for adding [`PinnedClocks`] to the linker.
pub(super) struct PinnedClocksView;

impl HasData for PinnedClocksView {
    type Data<'a> = PinnedClocks<'a>;
}

/// A clock pollable against a clock that does not move: due or never.
enum Deadline {
    Due,
    /// Waiting on it ends the call: on the second poll (the first yields,
    /// so a `poll` over a list that also holds a due pollable returns that
    /// one instead), it signals `stuck` and stays pending.
    Never(Arc<Notify>),
}

#[wasmtime_wasi::async_trait]
impl Pollable for Deadline {
    async fn ready(&mut self) {
        if let Deadline::Never(stuck) = self {
            tokio::task::yield_now().await;
            stuck.notify_one();
            std::future::pending::<()>().await;
        }
    }
}

impl PinnedClocks<'_> {
    fn subscribe(&mut self, due: bool) -> wasmtime::Result<Resource<DynPollable>> {
        let deadline = self.table.push(if due { Deadline::Due } else { Deadline::Never(self.stuck.clone()) })?;
        wasmtime_wasi::p2::subscribe(self.table, deadline)
    }
}

impl monotonic_clock::Host for PinnedClocks<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        Ok(wasmtime_wasi::HostMonotonicClock::now(&self.clock))
    }
    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        Ok(wasmtime_wasi::HostMonotonicClock::resolution(&self.clock))
    }
    fn subscribe_instant(&mut self, when: monotonic_clock::Instant) -> wasmtime::Result<Resource<DynPollable>> {
        let now = wasmtime_wasi::HostMonotonicClock::now(&self.clock);
        self.subscribe(when <= now)
    }
    fn subscribe_duration(&mut self, duration: monotonic_clock::Duration) -> wasmtime::Result<Resource<DynPollable>> {
        self.subscribe(duration == 0)
    }
}

/// stdout/stderr sink that keeps the first `capacity` bytes of a call and
/// silently drops the rest (a chatty policy must not fail because of it).
#[derive(Clone)]
pub struct CappedOutput {
    buffer: Arc<Mutex<Vec<u8>>>,
    capacity: usize,
}

impl CappedOutput {
    fn new(capacity: usize) -> CappedOutput {
        CappedOutput { buffer: Arc::new(Mutex::new(Vec::new())), capacity }
    }

    fn append(&self, bytes: &[u8]) {
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        let room = self.capacity.saturating_sub(buffer.len());
        buffer.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn clear(&self) {
        self.buffer.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The captured text of the current call.
    pub fn take(&self) -> String {
        let bytes = std::mem::take(&mut *self.buffer.lock().unwrap_or_else(|e| e.into_inner()));
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl IsTerminal for CappedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for CappedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        // always writable: excess bytes are dropped, not refused
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CappedOutput {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_cap_counts_every_memory_and_table_of_the_instance() {
        let mib = 1 << 20;
        let mut cap = MemoryCap::new(256 * mib);
        // four memories of 60 MiB fit (240 MiB) ...
        for _ in 0..4 {
            assert!(cap.memory_growing(0, 60 * mib, None).unwrap());
        }
        assert_eq!(cap.used(), 240 * mib);
        // ... a fifth growth past the total does not, though each memory is far below the cap
        assert!(cap.memory_growing(60 * mib, 80 * mib, None).is_err());
        assert!(cap.hit);
        // tables count too, at 8 bytes an element
        let mut cap = MemoryCap::new(mib);
        assert!(cap.table_growing(0, 100_000, None).unwrap());
        assert_eq!(cap.used(), 800_000);
        assert!(cap.memory_growing(0, mib / 2, None).is_err());
        // a growth wasmtime then fails is given back
        let mut cap = MemoryCap::new(10 * mib);
        assert!(cap.memory_growing(0, 8 * mib, None).unwrap());
        cap.memory_grow_failed(wasmtime::Error::msg("no slot")).unwrap();
        assert_eq!(cap.used(), 0);
    }

    #[test]
    fn deadline_ticks_round_up() {
        assert_eq!(ticks(Duration::from_millis(100)), 51);
        assert_eq!(ticks(Duration::from_millis(1)), 2);
    }
}
