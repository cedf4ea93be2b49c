//! Host tests that need no server: the built policies (sandbox, bundled
//! policies, Rust/Python/JS agreement), the policy store, the decision loop
//! on the simulated cluster, the admin API and the command line.

#[path = "../support/mod.rs"]
mod support;

mod admin;
mod cli;
mod contracts;
mod decide;
mod keda;
mod layering;
mod new_project;
mod policies;
mod policy_store;
mod sandbox;
mod schemas;
mod simulate;
mod takeover;
mod vpa;
