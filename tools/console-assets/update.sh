#!/usr/bin/env bash
# Brings the web console's browser libraries up to date, at development time only: installs the
# versions package-lock.json pins and copies their built files into the package, where the wheel
# carries them (the console works offline, no CDN). Commit package.json, package-lock.json and
# the copied files together. Run: tools/console-assets/update.sh (needs Node.js and npm).
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --ignore-scripts
vendor=../../connector/console/static/vendor
mkdir -p "$vendor"
src=node_modules/@json-editor/json-editor
cp "$src/dist/jsoneditor.js" "$vendor/jsoneditor.js"
cp "$src/dist/jsoneditor.js.LICENSE.txt" "$vendor/jsoneditor.js.LICENSE.txt"
cp "$src/LICENSE" "$vendor/jsoneditor.LICENSE"
node -e 'const p = require("./'"$src"'/package.json"); console.log(`${p.name} ${p.version}`)' > "$vendor/VERSIONS"
echo "copied into $vendor: $(cat "$vendor/VERSIONS")"
