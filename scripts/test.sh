#!/usr/bin/env bash
# Every test: typecheck + lint, unit tests on the mock backend, contract tests on both
# backends, integration tests of the compiled binaries in fresh network namespaces, and the
# podman end-to-end run (needs root). Ends with "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }

passed=0
failed=0

echo "== typecheck + lint (tsc, strict, no unused code)"
if ! bun run lint > /tmp/tscni-typecheck.log 2>&1; then
  grep -E "error" /tmp/tscni-typecheck.log | head -40
  failed=$((failed + 1))
fi

# Runs `bun test` with the given arguments and adds its counts; a runner that dies counts
# as a failure even when it printed none.
run_tests() {
  local log status p f
  log=$(mktemp)
  bun test --timeout 120000 "$@" 2>&1 | tee "$log" | grep -E "^\(fail\)|^error:|^ *[0-9]+ (pass|fail)$" || true
  status=${PIPESTATUS[0]}
  p=$(grep -E "^ *[0-9]+ pass$" "$log" | tail -1 | grep -oE "[0-9]+" || echo 0)
  f=$(grep -E "^ *[0-9]+ fail$" "$log" | tail -1 | grep -oE "[0-9]+" || echo 0)
  rm -f "$log"
  if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  passed=$((passed + p))
  failed=$((failed + f))
}

echo "== unit, contract and integration tests"
run_tests

echo "== end to end: podman with tscni's plugins"
if bash tests/e2e/setup.sh > /tmp/tscni-e2e-setup.log 2>&1; then
  export TSCNI_E2E=1
  run_tests tests/e2e
  bash tests/e2e/cleanup.sh > /dev/null 2>&1 || true
  echo "== end to end again, with tscni daemon serving podman's calls"
  export TSCNI_E2E_RESIDENT=1
  run_tests tests/e2e
  unset TSCNI_E2E_RESIDENT
  unset TSCNI_E2E
  bash tests/e2e/cleanup.sh > /dev/null 2>&1 || true
else
  tail -20 /tmp/tscni-e2e-setup.log
  failed=$((failed + 1))
fi

echo "== end to end: containerd's CRI running tscni (tests/e2e/containerd/run.sh)"
containerd_summary=$(bash tests/e2e/containerd/run.sh 2>&1 | tee /tmp/tscni-containerd.log | tail -1)
if [[ "$containerd_summary" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
  passed=$((passed + BASH_REMATCH[1]))
  failed=$((failed + BASH_REMATCH[2]))
  grep -E "^\(fail\)" /tmp/tscni-containerd.log || true
else
  tail -20 /tmp/tscni-containerd.log
  failed=$((failed + 1))
fi

echo "== the demo (README's first command) runs to the end"
if bash scripts/demo.sh > /tmp/tscni-demo.log 2>&1; then
  passed=$((passed + 1))
else
  tail -30 /tmp/tscni-demo.log
  failed=$((failed + 1))
fi

echo "== the cluster demo (README's second command) runs to the end"
if bash scripts/demo-cluster.sh > /tmp/tscni-demo-cluster.log 2>&1; then
  passed=$((passed + 1))
else
  tail -30 /tmp/tscni-demo-cluster.log
  failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
