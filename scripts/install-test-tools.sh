#!/usr/bin/env bash
# Installs what only the tests need, idempotently (`just test` runs it):
# kubernetes-validate (manifest schemas), the servers the signal tests start
# themselves — prometheus, nats-server, redis-server, docker-registry from
# Debian's packages —
# and the tansu Kafka-API broker (cargo install, ~25 min once, then reused
# from ~/.cargo/bin). kubectl must be present (it renders deploy/ offline).
set -euo pipefail
cd "$(dirname "$0")/.."

# Kubernetes manifest validation (the deploy tests render deploy/ with
# `kubectl kustomize` and check it against the API schemas)
KUBERNETES_VALIDATE_VERSION=1.37.0
installed_kv=$(python3 -m pip show kubernetes-validate 2>/dev/null | sed -n 's/^Version: //p' || true)
if [ "${installed_kv}" != "${KUBERNETES_VALIDATE_VERSION}" ]; then
    echo "test-tools: installing kubernetes-validate ${KUBERNETES_VALIDATE_VERSION}"
    python3 -m pip install --quiet --disable-pip-version-check "kubernetes-validate==${KUBERNETES_VALIDATE_VERSION}"
fi
if ! command -v kubectl >/dev/null 2>&1; then
    echo "test-tools: kubectl is missing; the deploy tests need it to render deploy/ (kubectl kustomize)" >&2
    exit 1
fi

# Real servers for the signal-source integration tests (Debian packages;
# the tests start and stop them themselves, on free loopback ports)
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# an OCI registry (the CNCF distribution registry) for the oci:// policy tests
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
if [ ${#missing[@]} -gt 0 ]; then
    echo "test-tools: installing ${missing[*]} (apt)"
    ${SUDO} apt-get update -qq
    DEBIAN_FRONTEND=noninteractive ${SUDO} apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# A Kafka-API broker for the Kafka tests (a Rust binary; ~25 min to build
# once on 2 cores, then reused from ~/.cargo/bin)
TANSU_VERSION=0.6.0
if [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ]; then
    echo "test-tools: installing tansu ${TANSU_VERSION} (cargo install, ~25 min once)"
    cargo install tansu --version "${TANSU_VERSION}" --locked --features dynostore --quiet
fi
