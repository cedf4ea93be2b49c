//! Host tests against the strict fake Kubernetes API server (in process,
//! driven by the real `kube` client, and by `scalegate run` processes), and
//! of the manifests in `deploy/` and `examples/` (`kubectl kustomize` +
//! `scripts/validate-manifests.py`), the dashboard and alerts (`promtool`).
//! The tools come from `scripts/install-test-tools.sh`.

#[path = "../support/mod.rs"]
mod support;

mod deploy;
mod kube;
mod monitoring;
mod oci;
mod reload;
mod run;
mod sandbox;
mod vertical;
