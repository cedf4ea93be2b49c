//! scalegate: a Kubernetes autoscaling gateway whose scaling logic runs in
//! sandboxed, hot-reloadable WebAssembly policies.
//!
//! Module map, in data-flow order (each module imports only modules listed
//! above it, `daemon` and `cli` excepted, which assemble the rest):
//!
//! - [`clock`] — the injected clock.
//! - [`telemetry`] — Prometheus metrics; every stage counts here.
//! - [`snapshot`] — what a policy sees (`Snapshot`) and answers (`Decision`),
//!   their stable JSON form, and `snapshot::assemble` (observation + past →
//!   snapshot), the one place snapshots are built.
//! - [`cluster`] — the cluster port: observe a target, scale it, deletion
//!   costs, cache readiness; the resource metrics API.
//! - [`leadership`] — whether this replica may write (leases, terms).
//! - [`sink`] — where applied decisions go besides the cluster (audit).
//! - [`signals`] — inputs from outside the cluster: the hub and one file per
//!   source (Prometheus, Kafka, forecasts, Redis, NATS, pod metrics, push),
//!   behind a registry.
//! - [`guardrails`] — min/max, step limits, cooldowns, stale-data holds and
//!   dry-run, enforced on every decision whatever the policy said.
//! - [`vertical`] — per-container recommendations bounded by the vertical
//!   guardrails, and the next in-place resize (VPA's updater rules).
//! - [`policy`] — the wasmtime runtime: loading, validating, caching and
//!   calling policy components on a budget; `PolicyRef` and the `Evaluator`
//!   port.
//! - [`watch`] — following a directory that may be a mounted ConfigMap.
//! - [`policy_store`] — the directory of versioned policies: validation before
//!   activation, hot reload (ConfigMap symlink swaps), pinning and rollback.
//! - [`config`] — the YAML configuration, validated into typed workload
//!   bindings (errors name the field path); sources parse their own blocks.
//! - [`decide`] — the per-workload decision loop: observe, snapshot, call the
//!   policies (and shadow), combine (max, min, first, prefer), guardrails, actuate, record.
//! - [`k8s`] — the cluster port over the Kubernetes API, and leader election.
//! - [`sim`] — the cluster port over a simulated cluster (pods with start-up
//!   delay, daily load curve), and `scalegate simulate`'s trace, engine (the
//!   daemon assembly on a paused clock) and charts.
//! - [`admin`] — the admin HTTP API (route table in its module doc).
//! - [`keda`] — KEDA's External Scaler (gRPC), serving the decisions of
//!   workloads whose actuator is `keda`.
//! - [`daemon`] — assembles hub, sources, loop, election and admin API for
//!   any cluster; phased shutdown.
//! - [`cli`] — the `scalegate` commands, one file each.
//!
//! `docs/ARCHITECTURE.md` has the picture and the reasons.

pub mod admin;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod decide;
pub mod guardrails;
pub mod k8s;
pub mod keda;
pub mod leadership;
pub mod policy;
pub mod policy_store;
pub mod signals;
pub mod sim;
pub mod sink;
pub mod snapshot;
pub mod telemetry;
pub mod vertical;
pub mod watch;
