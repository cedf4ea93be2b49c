# scalegate developer recipes. `just` alone lists them.
# Fresh machine: run `scripts/bootstrap.sh` once (the README's commands do).

set shell := ["bash", "-euo", "pipefail", "-c"]

# the bundled Rust policies' own tests, run natively through the SDK's harness
native_policy_tests := "-p policy-fixed -p policy-target-tracking -p policy-directive -p policy-forecast -p policy-thresholds -p policy-vpa -p policy-hpa -p policy-queue -p policy-kpa -p policy-urgency"

# List the recipes
default:
    @just --list

# Install the toolchain pieces (wasm32-wasip2, componentize-py, componentize-js); idempotent
bootstrap:
    scripts/bootstrap.sh

# Build every bundled policy into target/policies/ (Rust, Python, JavaScript, test fixtures)
plugins:
    scripts/build-plugins.sh

# Build the host (release: wasmtime compiles policies far faster optimised)
build:
    cargo build --release -p scalegate

# Run the daemon on a simulated cluster with the bundled policies (admin API on :9090; Ctrl-C stops)
demo: plugins build
    target/release/scalegate demo

# Simulate seed 003's day (thresholds, and the hybrid beside it) on the real daemon: charts and summary in target/simulate
simulate: plugins build
    target/release/scalegate simulate --config examples/prometheus-ema/scalegate.yaml --trace examples/prometheus-ema/trace.csv --compare examples/prometheus-ema/hybrid.yaml --out target/simulate

# Simulate every seed example's day and refresh the charts in examples/ (each example's README shows them)
charts: plugins build
    scripts/example-charts.sh

# Run every test: unit, policy runtime, HPA reference, CLI, fake API server, manifests, and the signal tests against the servers they start themselves
test: plugins test-tools
    cargo test --release
    cargo test --release -p scalegate-policy-sdk {{native_policy_tests}}

# What only the tests need: kubernetes-validate, prometheus, nats-server, redis-server, tansu
test-tools:
    scripts/install-test-tools.sh

# Benchmarks: policy call latency (Wasm vs native) and cold vs cached loading
bench: plugins build
    target/release/scalegate bench

# Reaction time ScaleSignal (Kafka) → /scale, through the whole daemon (starts tansu and the fake API server)
bench-signals: plugins test-tools
    cargo bench -p scalegate --bench signal_latency

# Sustained Kafka ingest: 1.5 million ScaleSignals for 10,000 workloads through `scalegate run` (rate, CPU, memory)
bench-ingest: plugins test-tools
    cargo bench -p scalegate --bench kafka_ingest

# 10,000 workloads through the Kubernetes path (fake API server in its own process): CPU, RSS, API requests by verb
bench-fleet: plugins
    cargo bench -p scalegate --bench fleet_kube

# KEDA External Scaler: GetMetrics + IsActive pairs from 100 concurrent requests over 1,000 workloads (p50/p99, pairs/s)
bench-keda:
    cargo bench -p scalegate --bench keda_rpc

# Lints: formatting and clippy (host and policies), warnings are errors
lint:
    cargo fmt --all --check
    cargo clippy --release -p scalegate -p scalegate-hpa -p scalegate-vpa -p scalegate-snapshot -p scalegate-policy-sdk -p fake-apiserver {{native_policy_tests}} --all-targets -- -D warnings
    cargo clippy --target wasm32-wasip2 --profile release-wasm -p scalegate-policy-sdk -p policy-hpa -p policy-fixed -p policy-target-tracking -p policy-directive -p policy-forecast -p policy-thresholds -p policy-vpa -p policy-queue -p policy-kpa -p policy-urgency -- -D warnings

# Evaluate a snapshot with a policy, e.g. `just eval target/policies/hpa.wasm examples/snapshots/hpa-scale-up.json`
eval policy snapshot: build
    target/release/scalegate eval --policy {{policy}} --snapshot {{snapshot}}
