#!/usr/bin/env bash
# Builds {{name}}.wasm with componentize-js: `npm install` brings it, or
# point COMPONENTIZE_JS at an installed one.
set -euo pipefail
cd "$(dirname "$0")"
componentize=${COMPONENTIZE_JS:-node_modules/.bin/componentize-js}
if [ ! -x "$componentize" ]; then
    echo "componentize-js not found: run npm install, or set COMPONENTIZE_JS" >&2
    exit 1
fi
"$componentize" policy.js --wit wit -n policy -o {{name}}.wasm -d http fetch-event >/dev/null
echo "built {{name}}.wasm"
