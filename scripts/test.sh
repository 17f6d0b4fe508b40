#!/usr/bin/env bash
# Runs every test on a fresh machine: installs dependencies, builds, runs the Swift test
# suites (unit tests and end-to-end tests of the real `wan` binary), prints a summary.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --tests

echo "== swift build --build-tests" >&2
swift build --build-tests 2>&1 | grep -E "error|warning: " >&2 || true
swift build --build-tests >/dev/null

echo "== swift test" >&2
log=$(mktemp)
set +e
swift test --skip-build 2>&1 | tee "$log" | grep -E "✘|error:|recorded an issue" >&2
status=${PIPESTATUS[0]}
set -e

echo "== summary" >&2
grep -E "^✔ Test run|^✘ Test run|Executed [0-9]+ tests" "$log" | tail -2 >&2
if [[ $status -ne 0 ]]; then
    echo "TESTS FAILED (swift test exit $status); full log: $log" >&2
    exit "$status"
fi
echo "ALL TESTS PASSED" >&2
