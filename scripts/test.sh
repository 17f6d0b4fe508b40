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
# What earlier runs uploaded is removed first (a full run leaves a few GB behind it); servers
# left running with WAN_KEEP_SERVERS=1 keep theirs.
if ! bash testenv/servers.sh status 2>/dev/null | grep -qv ' down$'; then
    bash testenv/servers.sh clean
fi
# The suite writes origins, caches and mounts under /tmp; a disk that fills makes dozens of
# unrelated tests fail with ENOSPC, so say so before they start.
free_gib() { df -P -k "$1" | awk 'NR == 2 { printf "%d", $4 / 1048576 }'; }
need_gib=${WAN_TEST_NEED_GIB:-10}
tmp_free=$(free_gib "${TMPDIR:-/tmp}")
echo "free space under ${TMPDIR:-/tmp}: ${tmp_free} GiB (the suite needs about ${need_gib} GiB)" >&2
if ((tmp_free < need_gib)); then
    echo "NOT ENOUGH DISK SPACE: ${tmp_free} GiB free under ${TMPDIR:-/tmp}, the tests need about ${need_gib} GiB" >&2
    exit 1
fi
env_file=$(mktemp)
if ! bash testenv/servers.sh start >"$env_file"; then
    echo "TEST SERVERS FAILED TO START (see above)" >&2
    exit 1
fi
# shellcheck disable=SC1090
source "$env_file"
if [[ "${WAN_KEEP_SERVERS:-0}" != 1 ]]; then
    trap 'bash testenv/servers.sh stop >/dev/null 2>&1 || true; bash testenv/servers.sh clean >/dev/null 2>&1 || true' EXIT
fi

echo "== swift test" >&2
log=$(mktemp)
set +e
swift test --skip-build 2>&1 | tee "$log" | grep -E "✘|error:|recorded an issue" >&2
status=${PIPESTATUS[0]}
set -e

echo "== summary" >&2
grep -E "^✔ Test run|^✘ Test run|Executed [0-9]+ tests" "$log" | tail -2 >&2
if [[ $status -ne 0 ]]; then
    echo "free space under ${TMPDIR:-/tmp} now: $(free_gib "${TMPDIR:-/tmp}") GiB" >&2
    echo "TESTS FAILED (swift test exit $status); full log: $log" >&2
    exit "$status"
fi
echo "ALL TESTS PASSED" >&2
