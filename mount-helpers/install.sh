#!/usr/bin/env bash
# Installs wanfs so that `mount -t wanfs`, /etc/fstab and systemd can use it:
#   mount.wanfs -> /sbin/mount.wanfs   (mount(8) runs /sbin/mount.<type>)
#   wan         -> /usr/local/bin/wan
#   systemd units and the fstab example -> /etc/systemd/system, /usr/local/share/wanfs (with --systemd)
#
# Usage: install.sh [--bin-dir DIR] [--link] [--systemd] [--prefix /usr/local]
#   --bin-dir DIR  where the built binaries are (default: `swift build -c release --show-bin-path`)
#   --link         symlink instead of copying (for a development checkout)
#   --systemd      also install wanfs-mount@.service and wan-serve.service (not enabled)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin_dir="" link=0 systemd=0 prefix=/usr/local
while (($#)); do
    case "$1" in
        --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift ;;
        --link) link=1 ;;
        --systemd) systemd=1 ;;
        --prefix) prefix=${2:?--prefix needs a directory}; shift ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [[ -z "$bin_dir" ]]; then
    bin_dir=$(cd "$here/.." && swift build -c release --show-bin-path)
fi
for binary in mount.wanfs wan; do
    [[ -x "$bin_dir/$binary" ]] || { echo "install.sh: $bin_dir/$binary is missing (build first: swift build -c release)" >&2; exit 1; }
done
[[ $(id -u) -eq 0 ]] || { echo "install.sh: run as root (it writes /sbin and $prefix)" >&2; exit 1; }

place() {  # place SOURCE TARGET
    mkdir -p "$(dirname "$2")"
    if ((link)); then ln -sfn "$1" "$2"; else install -m 0755 "$1" "$2"; fi
    echo "install.sh: $2" >&2
}
place "$bin_dir/mount.wanfs" /sbin/mount.wanfs
place "$bin_dir/wan" "$prefix/bin/wan"
mkdir -p "$prefix/share/wanfs"
install -m 0644 "$here/fstab.example" "$prefix/share/wanfs/fstab.example"
if ((systemd)); then
    install -m 0644 "$here/wanfs-mount@.service" "$here/wan-serve.service" /etc/systemd/system/
    echo "install.sh: /etc/systemd/system/wanfs-mount@.service, wan-serve.service (run: systemctl daemon-reload)" >&2
fi
# FUSE's allow_other needs user_allow_other in /etc/fuse.conf for non-root mounts.
if [[ -f /etc/fuse.conf ]] && ! grep -q '^user_allow_other' /etc/fuse.conf; then
    echo "install.sh: note: add 'user_allow_other' to /etc/fuse.conf if non-root users mount with allow_other" >&2
fi
