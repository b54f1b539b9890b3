#!/usr/bin/env bash
# The README's test command (`npm test`): installs what the tests need on a fresh Debian machine,
# builds, then runs every test. The servers the tests use (registry, nats-server, Git over HTTP)
# are started by the test helpers on free loopback ports with temp directories.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/prepare.sh

echo "==> typecheck (sources, tests, benchmarks)"
npm run --silent typecheck

echo "==> tests"
exec npx vitest run "$@"
