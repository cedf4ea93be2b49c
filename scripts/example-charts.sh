#!/usr/bin/env bash
# Simulates each seed example's day (its scalegate.yaml over its trace.csv)
# and copies the charts next to it (examples/<folder>/<workload>.svg), as
# each example's README shows them. Summaries and PNGs stay in target/simulate/.
# Needs the host and the policies built (`just build plugins`).
set -euo pipefail
cd "$(dirname "$0")/.."
for example in kafka-scale-signal lb-urgency forecast-lead-time prometheus-ema hpa-keda-vpa; do
    dir="examples/$example"
    out="target/simulate/$example"
    compare=()
    if [[ $example == prometheus-ema ]]; then compare=(--compare "$dir/hybrid.yaml"); fi
    rm -rf "$out"
    target/release/scalegate simulate --config "$dir/scalegate.yaml" --trace "$dir/trace.csv" "${compare[@]}" --out "$out" >/dev/null
    for chart in "$out"/*.svg; do
        name=$(basename "$chart")
        cp "$chart" "$dir/${name#*_}"     # default_frontend.svg -> frontend.svg
    done
    echo "$example: $(cd "$out" && ls ./*.svg | tr '\n' ' ')"
done
