#!/usr/bin/env bash
# Runs every test on a fresh machine: installs dependencies, builds, starts the local test
# servers (testenv/servers.sh: nginx, SeaweedFS, moto, rclone, olah, the HF fixture, the
# fault server; all on 127.0.0.1), runs the Swift test suites, prints a summary, stops the
# servers (set WAN_KEEP_SERVERS=1 to leave them running).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --tests

echo "== swift build --build-tests" >&2
swift build --build-tests 2>&1 | grep -E "error|warning: " >&2 || true
swift build --build-tests >/dev/null

echo "== test servers" >&2
env_file=$(mktemp)
if ! bash testenv/servers.sh start >"$env_file"; then
    echo "TEST SERVERS FAILED TO START (see above)" >&2
    exit 1
fi
# shellcheck disable=SC1090
source "$env_file"
if [[ "${WAN_KEEP_SERVERS:-0}" != 1 ]]; then trap 'bash testenv/servers.sh stop >/dev/null 2>&1 || true' EXIT; fi

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
