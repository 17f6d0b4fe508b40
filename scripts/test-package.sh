#!/usr/bin/env bash
# Tests the Debian package as a user meets it (run by .ci/run after scripts/package.sh):
#   1. lintian shows no errors; Depends: names only packages Debian's archive has.
#   2. dpkg --root installs it into an empty directory tree: every file in place, the binaries
#      need no Swift library, no libfuse and nothing under /usr/local, `wan --version` answers,
#      and dpkg --purge leaves nothing behind.
#   3. `mount -t wanfs` runs the installed /sbin/mount.wanfs: in a private mount namespace, the
#      package's /sbin and /usr/bin are laid over the host's (overlayfs), so mount(8) finds the
#      packaged helper without installing anything on this machine; a file is read through the
#      mount and checked against its source, `wan models status --mount` reports it present and
#      (on Linux >= 6.9) FUSE passthrough negotiated (libfuse 3.17 inside), umount ends it.
#
#   bash scripts/test-package.sh [PATH.deb]   (default: the one package.sh builds)
# Needs root (mount namespaces, FUSE), lintian, python3 with numpy + safetensors (make_model.py).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

deb=${1:-}
if [[ -z $deb ]]; then
    version=$(sed -n 's/^ *static let current = "\(.*\)"$/\1/p' Sources/wan/Main.swift)
    deb=.build/package/wanfs_${version}_$(dpkg --print-architecture).deb
fi
[[ -f $deb ]] || { echo "test-package.sh: $deb is missing (build it: bash scripts/package.sh)" >&2; exit 1; }
deb=$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")
[[ $(id -u) -eq 0 ]] || { echo "test-package.sh: run as root (dpkg --root, mount namespaces, FUSE)" >&2; exit 1; }

fail() { echo "test-package.sh: FAILED: $*" >&2; exit 1; }
work=$(mktemp -d /tmp/wan-package-test.XXXXXX)
cleanup() { rm -rf "$work"; }
trap cleanup EXIT

echo "== lintian" >&2
command -v lintian >/dev/null || fail "lintian is not installed (bash scripts/setup.sh --tests installs it)"
set +e
lintian --fail-on error "$deb" >"$work/lintian.log" 2>&1
status=$?
set -e
grep -v 'running with root privileges is not recommended' "$work/lintian.log" >&2 || true
((status == 0)) || fail "lintian exits $status (its errors are above)"

echo "== Depends" >&2
depends=$(dpkg-deb --field "$deb" Depends)
echo "Depends: $depends" >&2
for name in $(tr ',|' '\n\n' <<<"$depends" | sed 's/(.*)//; s/:any//; s/ //g' | grep -v '^$'); do
    apt-cache show --no-all-versions "$name" >/dev/null 2>&1 || fail "Depends names '$name', which no apt source of this machine has"
    grep -qiE '^(libswift|swift)' <<<"$name" && fail "Depends names a Swift package: $name"
done

echo "== dpkg --root install" >&2
target=$work/root
mkdir -p "$target/var/lib/dpkg/info" "$target/var/lib/dpkg/updates" "$target/var/log"
touch "$target/var/lib/dpkg/status" "$target/var/lib/dpkg/available"
# --force-depends: the empty tree has none of Debian's packages; the host provides them below.
dpkg --root="$target" --force-depends --force-script-chrootless -i "$deb" >&2
for path in usr/bin/wan sbin/mount.wanfs lib/systemd/system/wanfs-mount@.service lib/systemd/system/wan-serve.service \
    etc/wan/models.toml etc/wan/mount.env usr/share/man/man1/wan.1.gz usr/share/man/man8/mount.wanfs.8.gz \
    usr/share/bash-completion/completions/wan usr/share/zsh/vendor-completions/_wan usr/share/doc/wanfs/copyright; do
    [[ -e $target/$path ]] || fail "the package did not install /$path"
done
[[ $(stat -c %a "$target/etc/wan/mount.env") == 600 ]] || fail "/etc/wan/mount.env is not mode 0600"
grep -q '^ExecStart=/usr/bin/wan serve' "$target/lib/systemd/system/wan-serve.service" || fail "wan-serve.service does not run /usr/bin/wan"
for binary in usr/bin/wan sbin/mount.wanfs; do
    libraries=$(ldd "$target/$binary")
    echo "$binary: $(awk '{print $1}' <<<"$libraries" | tr '\n' ' ')" >&2
    grep -q 'not found' <<<"$libraries" && fail "$binary needs a library this machine lacks: $libraries"
    grep -qE 'libswift|libFoundation|lib_Foundation|libdispatch|libBlocksRuntime' <<<"$libraries" && fail "$binary needs a Swift library: $libraries"
    grep -q 'libfuse' <<<"$libraries" && fail "$binary needs a shared libfuse (it should carry 3.17 inside): $libraries"
    grep -q '/usr/local' <<<"$libraries" && fail "$binary loads something from /usr/local: $libraries"
done
version=$(dpkg-deb --field "$deb" Version)
[[ $("$target/usr/bin/wan" --version) == "$version" ]] || fail "wan --version does not say $version"
MODELS_ROOT=$work/unused "$target/usr/bin/wan" models validate-manifest --manifest "$target/etc/wan/models.toml" >/dev/null \
    || fail "the example manifest /etc/wan/models.toml does not validate"
man -l "$target/usr/share/man/man8/mount.wanfs.8.gz" >/dev/null 2>&1 || fail "mount.wanfs(8) does not render"

echo "== mount -t wanfs with the installed helper" >&2
source_dir=$work/source
python3 scripts/make_model.py "$source_dir/pkg" --shards 2 --shard-mib 2 --manifest "$work/models.toml" \
    --model-id pkg@1.0.0 --source "local://$source_dir/pkg" >/dev/null
mkdir -p "$work/models" "$work/mnt"
file=$(cd "$source_dir/pkg" && find . -name '*.safetensors' | sort | head -1)
file=${file#./}
sbin=$(readlink -f /sbin) usrbin=$(readlink -f /usr/bin)
# Everything below runs in a private mount namespace: the overlays and the FUSE mount end with it.
unshare --mount --propagation private bash -euo pipefail -c '
    target=$1 work=$2 sbin=$3 usrbin=$4 file=$5
    # A failed check must not leave the daemon running in this namespace.
    trap "umount -l \"$work/mnt\" 2>/dev/null || true" EXIT
    mount -t overlay overlay -o "lowerdir=$target/sbin:$sbin" "$sbin"
    mount -t overlay overlay -o "lowerdir=$target/usr/bin:$usrbin" "$usrbin"
    cmp -s /usr/bin/wan "$target/usr/bin/wan" || { echo "/usr/bin/wan is not the packaged one" >&2; exit 1; }
    cmp -s /sbin/mount.wanfs "$target/sbin/mount.wanfs" || { echo "/sbin/mount.wanfs is not the packaged helper" >&2; exit 1; }
    mount -t wanfs "$work/models" "$work/mnt" -o "manifest=$work/models.toml,noatime"
    grep -q " $work/mnt fuse.wanfs " /proc/self/mounts || { echo "no fuse.wanfs mount at $work/mnt" >&2; exit 1; }
    cmp "$work/mnt/pkg@1.0.0/$file" "$work/source/pkg/$file" || { echo "the file read through the mount differs from its source" >&2; exit 1; }
    # The file read is complete once its whole-file digest is checked, a moment after the read
    # (the hash threads may be busy with what the load fetched besides: small files, headers).
    for _ in $(seq 80); do
        /usr/bin/wan models status --mount "$work/mnt" --json >"$work/status.json"
        python3 -c "import json, sys
m = next(m for m in json.load(open(sys.argv[1]))[\"models\"] if m[\"model_id\"] == \"pkg@1.0.0\")
sys.exit(sys.argv[2] in m[\"missing_files\"])" "$work/status.json" "$file" && break
        sleep 0.25
    done
    umount "$work/mnt"
    ! grep -q " $work/mnt " /proc/self/mounts || { echo "still mounted after umount" >&2; exit 1; }
' _ "$target" "$work" "$sbin" "$usrbin" "$file" || fail "mount -t wanfs through the packaged helper (above)"
# FUSE passthrough needs Linux 6.9 or later (Debian 12's own kernel is 6.1: reads then go through
# the daemon); where the kernel has it, the helper's libfuse 3.17 must negotiate it.
kernel_has_passthrough=$(uname -r | awk -F'[.-]' '{print ($1 > 6 || ($1 == 6 && $2 >= 9)) ? 1 : 0}')
python3 - "$work/status.json" "$file" "$(stat -c %s "$source_dir/pkg/$file")" "$kernel_has_passthrough" <<'EOF' \
    || fail "wan models status --mount did not report the file read through the mount as present"
import json, sys
status, path, size = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3])
model = next(m for m in status["models"] if m["model_id"] == "pkg@1.0.0")
assert path not in model["missing_files"], model
assert model["bytes_present"] >= size, model
# libfuse 3.17 is inside the helper: the kernel serves complete files from the cache directly.
if sys.argv[4] == "1":
    assert status["mount"].get("passthrough") is True, status["mount"]
EOF

echo "== dpkg --purge" >&2
dpkg --root="$target" --force-script-chrootless --purge wanfs >&2
left=$(cd "$target" && find . -mindepth 1 ! -path './var/lib/dpkg*' ! -path './var/log*' ! -type d | head -5)
[[ -z $left ]] || fail "dpkg --purge left files behind: $left"
echo "test-package.sh: PASSED ($deb)" >&2
