#!/usr/bin/env bash
# Checks that the test environment picks its tools by what they can do, not by their names: with
# an rclone that has no `serve s3` first on PATH (as Debian 12's rclone 1.60), `servers.sh start
# rclone` must still start an S3 server from another copy (or a private one it installs), and
# leave the user's copy as it was. Run by .ci/run before the tests, with no server running; stops
# the one it started.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${WAN_TEST_STATE:-/tmp/wan-testenv}"

# A server already running would be reused, not started with the stub first on PATH: the check
# would prove nothing. Ask for a stopped environment instead of stopping someone's servers.
running=$(bash "$HERE/servers.sh" status 2>/dev/null || true)   # exit 1 while any is down
if grep -qv ' down$' <<<"$running"; then
    echo "check_tools: test servers are running under $STATE; stop them first (testenv/servers.sh stop)" >&2
    exit 1
fi
stub=$(mktemp -d)
env_file=$(mktemp)
trap 'bash "$HERE/servers.sh" stop rclone >/dev/null 2>&1 || true; rm -rf "$stub" "$env_file"' EXIT
cat >"$stub/rclone" <<'STUB'
#!/bin/sh
# A stand-in for Debian 12's rclone 1.60: it has no `serve s3`.
if [ "$1" = version ]; then echo "rclone v1.60.1-DEV"; exit 0; fi
if [ "$1" = serve ] && [ "$2" = s3 ]; then echo 'Error: unknown command "s3" for "rclone serve"' >&2; exit 1; fi
echo "Error: unknown flag: --addr" >&2
exit 1
STUB
chmod 755 "$stub/rclone"
before=$(sha256sum "$stub/rclone")

if ! PATH="$stub:$PATH" bash "$HERE/servers.sh" start rclone >"$env_file"; then
    echo "check_tools: servers.sh could not start rclone with an rclone lacking 'serve s3' first on PATH" >&2
    exit 1
fi
read -r pid _ <"$STATE/run/rclone.pid"
used=$(tr '\0' ' ' <"/proc/$pid/cmdline")
[[ $used != *"$stub"* ]] || { echo "check_tools: the server runs the stub: $used" >&2; exit 1; }
# shellcheck disable=SC1090
source "$env_file"
code=$(curl -s -o /dev/null -m 5 -w '%{http_code}' --aws-sigv4 "aws:amz:us-east-1:s3" \
    -I --user "$WAN_TEST_RCLONE_ACCESS_KEY:$WAN_TEST_RCLONE_SECRET_KEY" "$WAN_TEST_RCLONE_S3/models" || true)
[[ $code == 200 ]] || { echo "check_tools: the S3 server started does not answer a signed HEAD of its bucket (HTTP $code)" >&2; exit 1; }
[[ $(sha256sum "$stub/rclone") == "$before" ]] || { echo "check_tools: the user's rclone was changed" >&2; exit 1; }
echo "check_tools: with an rclone lacking 'serve s3' first on PATH, the test environment used ${used%% serve*}" >&2
