#!/usr/bin/env bash
# Installs what building scalegate and running the demo needs, idempotently:
# OpenSSL's headers (librdkafka is built with TLS and SASL/SCRAM), the
# wasm32-wasip2 Rust target, `just`, componentize-py (Python policies)
# and componentize-js (JavaScript policies). What only the tests need (the
# servers they start, manifest validation) is installed by
# scripts/install-test-tools.sh, which `just test` runs. Safe to run any
# number of times.
set -euo pipefail
cd "$(dirname "$0")/.."

COMPONENTIZE_PY_VERSION=0.25.1

if ! pkg-config --exists openssl 2>/dev/null; then
    echo "bootstrap: installing OpenSSL headers (apt: libssl-dev pkg-config)"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    ${SUDO} apt-get update -qq
    DEBIAN_FRONTEND=noninteractive ${SUDO} apt-get install -y -qq --no-install-recommends libssl-dev pkg-config >/dev/null
fi

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
