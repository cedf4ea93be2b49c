#!/usr/bin/env bash
# Installs what building and testing scalegate needs, idempotently: the
# wasm32-wasip2 Rust target, `just`, componentize-py (Python policies),
# componentize-js (JavaScript policies) and kubernetes-validate (manifest
# schemas). Safe to run any number of times.
set -euo pipefail
cd "$(dirname "$0")/.."

COMPONENTIZE_PY_VERSION=0.25.1

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "bootstrap: adding the wasm32-wasip2 target"
    rustup target add wasm32-wasip2
fi

if ! command -v just >/dev/null 2>&1; then
    echo "bootstrap: installing just (cargo install, ~2 min once)"
    cargo install just --locked --quiet
fi

# (read pip's whole output: `grep -q` would close the pipe early and, under
# pipefail, make an installed package look missing)
installed_py=$(python3 -m pip show componentize-py 2>/dev/null | sed -n 's/^Version: //p' || true)
if [ "${installed_py}" != "${COMPONENTIZE_PY_VERSION}" ]; then
    echo "bootstrap: installing componentize-py ${COMPONENTIZE_PY_VERSION}"
    python3 -m pip install --quiet --disable-pip-version-check "componentize-py==${COMPONENTIZE_PY_VERSION}"
fi

if [ ! -x plugins/js/node_modules/.bin/componentize-js ] || [ ! -d plugins/js/node_modules/@bytecodealliance/preview2-shim ]; then
    echo "bootstrap: installing componentize-js (npm)"
    (cd plugins/js && npm install --no-audit --no-fund --loglevel=error)
fi

# Kubernetes manifest validation (the deploy tests render deploy/ with
# `kubectl kustomize` and check it against the API schemas)
KUBERNETES_VALIDATE_VERSION=1.37.0
installed_kv=$(python3 -m pip show kubernetes-validate 2>/dev/null | sed -n 's/^Version: //p' || true)
if [ "${installed_kv}" != "${KUBERNETES_VALIDATE_VERSION}" ]; then
    echo "bootstrap: installing kubernetes-validate ${KUBERNETES_VALIDATE_VERSION}"
    python3 -m pip install --quiet --disable-pip-version-check "kubernetes-validate==${KUBERNETES_VALIDATE_VERSION}"
fi
if ! command -v kubectl >/dev/null 2>&1; then
    echo "bootstrap: kubectl is missing; the deploy tests need it to render deploy/ (kubectl kustomize)" >&2
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
if [ ${#missing[@]} -gt 0 ]; then
    echo "bootstrap: installing ${missing[*]} (apt)"
    ${SUDO} apt-get update -qq
    DEBIAN_FRONTEND=noninteractive ${SUDO} apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# A Kafka-API broker for the Kafka tests (a Rust binary; ~25 min to build
# once on 2 cores, then reused from ~/.cargo/bin)
TANSU_VERSION=0.6.0
if [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ]; then
    echo "bootstrap: installing tansu ${TANSU_VERSION} (cargo install, ~25 min once)"
    cargo install tansu --version "${TANSU_VERSION}" --locked --features dynostore --quiet
fi
