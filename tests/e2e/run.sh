#!/usr/bin/env bash
# The podman e2e in one command (as root, after scripts/setup.sh): setup, tests, then
# cleanup.sh as a safety net (it finds nothing when the tests cleaned up after themselves).
set -uo pipefail
cd "$(dirname "$0")/../.."
bash tests/e2e/setup.sh || exit 1
TSCNI_E2E=1 bun test tests/e2e
status=$?
bash tests/e2e/cleanup.sh
exit $status
