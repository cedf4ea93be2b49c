//! scalegate: a Kubernetes autoscaling gateway whose scaling logic runs in
//! sandboxed, hot-reloadable WebAssembly policies.
//!
//! Module map, in data-flow order:
//!
//! - [`snapshot`] — what a policy sees (`Snapshot`) and answers (`Decision`),
//!   and their stable JSON form.
//! - [`policy`] — the wasmtime runtime: loading, validating, caching and
//!   calling policy components on a budget.
//! - [`admin`] — the admin HTTP API (route table in its module doc).
//! - [`telemetry`] — Prometheus metrics recorded by the loop and the store.
//! - [`cli`] — the `scalegate` command line (`policy inspect`, `eval`, `bench`).
//! - [`config`] — the daemon's YAML configuration, validated into typed
//!   workload bindings (errors name the field path).
//! - [`guardrails`] — min/max, step limits, cooldowns, stale-data holds and
//!   dry-run, enforced on every decision whatever the policy said.
//! - [`policy_store`] — the directory of versioned policies: validation before
//!   activation, hot reload (ConfigMap symlink swaps), pinning and rollback.
//! - [`decide`] — the per-workload decision loop: observe, snapshot, call the
//!   policies (and shadow), combine by max, guardrails, actuate, record.
//! - [`sim`] — a simulated workload (pods with start-up delay, daily load curve).
//! - [`bench`] — the built-in benchmarks behind `scalegate bench`.
//! - [`daemon`] — assembles store, loop and admin API; phased shutdown.
//! - [`demo`] — `scalegate demo`: the daemon on an in-process simulated cluster.
//! - [`simulate`] — `scalegate simulate`: a fast, deterministic replay of a day.
//!
//! Later stages (signals, decision loop, guardrails, actuators, admin API)
//! join this map as they land; `docs/ARCHITECTURE.md` has the full picture.

pub mod admin;
pub mod bench;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod decide;
pub mod demo;
pub mod guardrails;
pub mod k8s;
pub mod policy;
pub mod policy_store;
pub mod run;
pub mod signals;
pub mod sim;
pub mod simulate;
pub mod snapshot;
pub mod telemetry;
