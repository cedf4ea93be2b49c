//! Host tests against the strict fake Kubernetes API server (in process,
//! driven by the real `kube` client, and by `scalegate run` processes), and
//! of the manifests in `deploy/` (`kubectl kustomize` + `kubernetes-validate`,
//! installed by `scripts/install-test-tools.sh`).

#[path = "../support/mod.rs"]
mod support;

mod deploy;
mod kube;
mod reload;
mod run;
mod sandbox;
