#!/usr/bin/env bash
# Runs everything CI runs: installs what the tests need (Debian packages for the real upstream
# registry and real clients; Node 22 and 24 binaries from the npm registry; npm packages), then the
# type-check, lint, the unit tests on Node 22 and 24, and the integration tests on Node 22 (the
# lowest supported version; they include the smoke suite against the packed, installed artifact).
# Each step prints how long it took: the Debian packages (Redis and Ceph's RADOS Gateway for the
# fleet tests are among them), and the tests (each RGW start prints its own time too).
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(docker.io containerd runc podman skopeo docker-registry crun uidmap iptables openssl apache2-utils nginx pebble curl systemd chromium debootstrap)
# The fleet tests' Redis and S3-compatible store (a one-node Ceph with its RADOS Gateway), timed apart.
fleet_debs=(redis-server ceph-mon ceph-osd radosgw ceph-common)
step() { echo "== $1 took $((SECONDS - t0)) s"; t0=$SECONDS; }
if [ "$(id -u)" -eq 0 ]; then SUDO=(); else SUDO=(sudo); fi
updated=no
install_debs() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]}"
    if [ "$updated" = no ]; then "${SUDO[@]}" apt-get update -qq; updated=yes; fi
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  installed=${#missing[@]}
}
t0=$SECONDS
install_debs "${debs[@]}"
step "Debian packages for the clients and the upstream ($installed installed)"
install_debs "${fleet_debs[@]}"
step "Debian packages for the fleet tests: Redis and Ceph RGW ($installed installed)"

# The machine's own node may be older than the supported 22 (it only bootstraps node-bin.mjs).
node22=$(node scripts/node-bin.mjs 22)
node24=$(node scripts/node-bin.mjs 24)
# Everything below (npm, tsc, eslint, the test runner and what the tests start) runs on Node 22.
export PATH="$(dirname "$node22"):$PATH"

npm ci --no-audit --no-fund
step "Node binaries and npm ci"

echo "== type-check"; npm run --silent typecheck
echo "== lint"; npm run --silent lint
echo "== build"; npm run --silent build
echo "== unit tests, Node $("$node22" --version)"; DOCXY_TEST_NODE="$node22" node scripts/run-tests.mjs unit
echo "== unit tests, Node $("$node24" --version)"; DOCXY_TEST_NODE="$node24" node scripts/run-tests.mjs unit
step "type-check, lint, build and unit tests"
echo "== integration tests, Node $("$node22" --version)"; DOCXY_TEST_NODE="$node22" node scripts/run-tests.mjs integration
step "integration tests"
