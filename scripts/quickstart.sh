#!/usr/bin/env bash
# `npm run quickstart`: from a fresh clone to a built image in one command.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/prepare.sh
echo "==> npm run build (dist/oci-build: the single executable, no Node needed to run it)"
npm run --silent build
echo "==> dist/oci-build build fixtures/sample-go-repo"
exec dist/oci-build build fixtures/sample-go-repo "$@"
