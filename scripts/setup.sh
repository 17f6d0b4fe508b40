#!/usr/bin/env bash
# Installs what wanfs needs on a fresh Debian 12 machine (idempotent), then builds.
#   apt: libcurl4-openssl-dev libssl-dev fuse3 pkg-config (+ test servers)
#   libfuse 3.17 built from Debian 13's source into /usr/local (scripts/libfuse.sh: FUSE
#   passthrough; WAN_LIBFUSE=system uses Debian 12's libfuse3-dev 3.14 instead)
#   pip: the Python packages the tests and the demo use
# Usage: scripts/setup.sh [--tests] [--deps-only]
#   --tests      also the test-only packages: Python's, and lintian + dpkg-dev for the Debian
#                package's test (the test servers install themselves)
#   --deps-only  install and check the dependencies, do not build
set -euo pipefail
cd "$(dirname "$0")/.."

want_tests=0 build=1
for arg in "$@"; do
    case "$arg" in
        --tests) want_tests=1 ;;
        --deps-only) build=0 ;;
        *) echo "setup: unknown argument '$arg' (use --tests, --deps-only)" >&2; exit 2 ;;
    esac
done

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

apt_packages=(libcurl4-openssl-dev libssl-dev libsqlite3-dev libxml2-dev fuse3 pkg-config python3-pip)
# scripts/package.sh and test-package.sh: dpkg-shlibdeps, lintian, man (renders the man pages).
((want_tests)) && apt_packages+=(dpkg-dev lintian man-db meson ninja-build)
missing=()
for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: apt-get install ${missing[*]}" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
bash scripts/libfuse.sh
# The C libraries the Swift targets link (CFuse, CCurl, COpenSSL) must now be visible.
for module in fuse3 libcurl libcrypto sqlite3; do
    pkg-config --exists "$module" || { echo "setup: pkg-config cannot find $module after apt-get install" >&2; exit 1; }
done

pip_packages=(numpy safetensors)
imports="numpy, safetensors"
# The tests also drive the sidecar with real clients: requests (seed 002's SDK), websockets,
# prometheus_client's parser, schemathesis (fuzzing against docs/openapi.yaml), and
# kubernetes-validate (deploy/kubernetes/ against the Kubernetes schemas), transformers (the mount's
# Hugging Face cache view, read by the real library; no torch needed for configs).
if ((want_tests)); then
    pip_packages+=(pytest requests websockets prometheus_client schemathesis kubernetes-validate transformers)
    imports+=", requests, websockets, prometheus_client, schemathesis, kubernetes_validate, transformers"
fi
python3 -m pip install -q --disable-pip-version-check "${pip_packages[@]}" 2>&1 | grep -v "WARNING: Running pip as the 'root'" >&2 || true
python3 -c "import $imports" || { echo "setup: pip could not install ${pip_packages[*]}" >&2; exit 1; }
((build)) || exit 0

command -v swift >/dev/null || { echo "setup: swift is not on PATH (expected /opt/swift/usr/bin)" >&2; exit 1; }
echo "setup: swift build" >&2
swift build ${WAN_BUILD_FLAGS:-} 2>&1 | grep -E "error|warning: |Compiling|Build complete" | grep -v "^\[" >&2 || true
swift build ${WAN_BUILD_FLAGS:-} >/dev/null   # fails the script if the build failed
