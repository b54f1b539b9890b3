#!/usr/bin/env bash
# `npm run quickstart`: from a fresh clone to a built image in one command.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/prepare.sh
echo "==> npm run build"
npm run --silent build
echo "==> oci-build build fixtures/sample-go-repo"
exec node bin/oci-build.js build fixtures/sample-go-repo "$@"
