#!/usr/bin/env bash
# The containerd e2e on its own: bash tests/e2e/containerd/run.sh (root). Installs what it
# needs (setup.sh), runs the suite against a private containerd per run, and ends with
# "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/../../.."
if ! bash tests/e2e/containerd/setup.sh > /tmp/tscni-containerd-setup.log 2>&1; then
  tail -20 /tmp/tscni-containerd-setup.log
  echo "0 passed, 1 failed"
  exit 1
fi
log=$(mktemp)
TSCNI_CONTAINERD=1 bun test --timeout 180000 tests/e2e/containerd 2>&1 | tee "$log" | grep -E "^\(fail\)|^error:|^ *[0-9]+ (pass|fail)$" || true
status=${PIPESTATUS[0]}
p=$(grep -E "^ *[0-9]+ pass$" "$log" | tail -1 | grep -oE "[0-9]+" || echo 0)
f=$(grep -E "^ *[0-9]+ fail$" "$log" | tail -1 | grep -oE "[0-9]+" || echo 0)
rm -f "$log"
if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
echo "$p passed, $f failed"
[ "$f" -eq 0 ]
