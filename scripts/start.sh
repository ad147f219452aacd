#!/usr/bin/env bash
# Starts Docxy on its embedded default: Docker Hub upstream, plain HTTP on 0.0.0.0:5000.
# Installs the npm dependencies and builds on first use; extra arguments go to `docxy serve`
# (e.g. ./scripts/start.sh --public-url http://mirror.example:5000).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run --silent build
exec node bin/docxy.js serve "$@"
