#!/usr/bin/env bash
# Builds {{name}}.wasm with componentize-py (`pip install componentize-py==0.25.1`).
set -euo pipefail
cd "$(dirname "$0")"
componentize-py -d wit -w policy componentize app -o {{name}}.wasm >/dev/null
echo "built {{name}}.wasm"
