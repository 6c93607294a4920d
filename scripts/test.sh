#!/usr/bin/env bash
# Every test: typecheck, unit tests on the mock backend, integration tests of the compiled
# binaries in fresh network namespaces (needs root). Ends with "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }

failed_typecheck=0
echo "== typecheck + lint (tsc, strict, no unused code)"
if ! bun run lint > /tmp/tscni-typecheck.log 2>&1; then
  grep -E "error" /tmp/tscni-typecheck.log | head -40
  failed_typecheck=1
fi

echo "== tests"
log=$(mktemp)
bun test --timeout 120000 2>&1 | tee "$log" | grep -E "^\(fail\)|^error:|^ *[0-9]+ (pass|fail)$" || true
status=${PIPESTATUS[0]}
passed=$(grep -E "^ *[0-9]+ pass$" "$log" | tail -1 | grep -oE "[0-9]+" || echo 0)
failed=$(grep -E "^ *[0-9]+ fail$" "$log" | tail -1 | grep -oE "[0-9]+" || echo 0)
rm -f "$log"

# A typecheck failure or a test runner that died counts as a failure too.
failed=$((failed + failed_typecheck))
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
