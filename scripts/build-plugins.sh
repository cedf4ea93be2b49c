#!/usr/bin/env bash
# Builds every bundled policy into target/policies/ (test fixtures into
# target/policies/testdata/). Rust policies: cargo for wasm32-wasip2;
# Python: componentize-py; JavaScript: componentize-js. Python and JS are
# rebuilt only when their sources or the WIT changed.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/policies
mkdir -p "$out/testdata"

rust_policies=(hpa fixed target-tracking directive forecast thresholds vpa queue kpa urgency)
testdata=(infinite-loop memory-bomb panic huge-output bad-metadata wrong-world future-contract sneaky versioned hostile)
packages=()
for p in "${rust_policies[@]}"; do packages+=(-p "policy-$p"); done
for t in "${testdata[@]}"; do packages+=(-p "testdata-$t"); done
cargo build --quiet --target wasm32-wasip2 --profile release-wasm "${packages[@]}"
built=target/wasm32-wasip2/release-wasm
for p in "${rust_policies[@]}"; do cp "$built/policy_${p//-/_}.wasm" "$out/${p//-/_}.wasm"; done
for t in "${testdata[@]}"; do cp "$built/testdata_${t//-/_}.wasm" "$out/testdata/${t//-/_}.wasm"; done
# a second version of `fixed` for the versioning and hot-reload tests (own
# target dir, so the two builds do not invalidate each other)
SCALEGATE_POLICY_VERSION=0.2.0 cargo build --quiet --target wasm32-wasip2 --profile release-wasm -p policy-fixed -p testdata-versioned --target-dir target/wasm-variants
cp target/wasm-variants/wasm32-wasip2/release-wasm/policy_fixed.wasm "$out/testdata/fixed_v2.wasm"
cp target/wasm-variants/wasm32-wasip2/release-wasm/testdata_versioned.wasm "$out/testdata/versioned_v2.wasm"
# `hostile` attacking in metadata() (HOSTILE_METADATA is read at compile time)
for attack in sleep-3s sleep-hour pollable-forever huge-version huge-description; do
    HOSTILE_METADATA=$attack cargo build --quiet --target wasm32-wasip2 --profile release-wasm -p testdata-hostile --target-dir target/wasm-variants
    cp target/wasm-variants/wasm32-wasip2/release-wasm/testdata_hostile.wasm "$out/testdata/hostile_metadata_${attack//-/_}.wasm"
done
# `hostile` 0.2.0: passes the smoke evaluation, then waits on a timer in every evaluation
HOSTILE_VERSION=0.2.0 HOSTILE_EVALUATE=sleep-hour cargo build --quiet --target wasm32-wasip2 --profile release-wasm -p testdata-hostile --target-dir target/wasm-variants
cp target/wasm-variants/wasm32-wasip2/release-wasm/testdata_hostile.wasm "$out/testdata/hostile_v2_sleeps.wasm"

# newer_than TARGET SOURCES...: true when TARGET is missing or older than a source
stale() {
    local target=$1; shift
    [ ! -e "$target" ] || [ -n "$(find "$@" -newer "$target" -type f 2>/dev/null | head -n1)" ]
}

for dir in plugins/python/*/; do
    [ -f "$dir/app.py" ] || continue
    name=$(basename "$dir")
    target="$out/${name//-/_}_py.wasm"
    if stale "$target" "$dir" plugins/python/sdk wit; then
        echo "building Python policy $name"
        componentize-py -d wit -w policy componentize -p "$dir" -p plugins/python/sdk app -o "$target.tmp" >/dev/null
        mv "$target.tmp" "$target"
    fi
done

for dir in plugins/js/*/; do
    [ -f "$dir/policy.js" ] || continue
    name=$(basename "$dir")
    target="$out/${name//-/_}_js.wasm"
    if stale "$target" "$dir" plugins/js/sdk wit; then
        echo "building JavaScript policy $name"
        plugins/js/node_modules/.bin/componentize-js "$dir/policy.js" --wit wit -n policy -o "$target.tmp" -d http fetch-event >/dev/null
        mv "$target.tmp" "$target"
    fi
done
ls -1 "$out" "$out/testdata" | sed 's/^/  /'
