#!/usr/bin/env bash
# Makes libfuse >= 3.17 available to the build (idempotent), so the mount can hand complete files
# to the kernel (FUSE passthrough: warm reads at the disk's speed, not through the daemon).
#
# Debian 12 ships libfuse 3.14. This builds Debian 13's libfuse 3.17.2 source (fetched from
# deb.debian.org, checked against a pinned sha256) with meson and ninja into /usr/local: a few
# seconds. Debian 12's libfuse3-dev is removed if present (its libfuse3.so in /usr/lib would be
# linked instead, libcrypto's pkg-config puts /usr/lib first); the runtime libfuse3-3 and the
# fuse3 package (fusermount3) stay.
#
# WAN_LIBFUSE=system skips all this and uses Debian's libfuse3-dev (3.14): everything works, but
# every read of a complete file goes through the daemon.
#
# libfuse.sh --static --prefix DIR builds a static libfuse into DIR instead, for the Debian
# package (scripts/package.sh): its binaries carry libfuse 3.17 inside, so passthrough works on
# a Debian 12 host that has only libfuse 3.14. Nothing outside DIR is touched.
set -euo pipefail

version=3.17.2
sha256=3d932431ad94e86179e5265cddde1d67aa3bb2fb09a5bd35c641f86f2b5ed06f
url=http://deb.debian.org/debian/pool/main/f/fuse3/fuse3_${version}.orig.tar.gz
prefix=/usr/local static=0
while (($#)); do
    case "$1" in
        --static) static=1 ;;
        --prefix) prefix=${2:?--prefix needs a directory}; shift ;;
        *) echo "libfuse.sh: unknown argument '$1' (use --static --prefix DIR, or no argument)" >&2; exit 2 ;;
    esac
    shift
done

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
apt_install() {
    local missing=() p
    for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
    ((${#missing[@]})) || return 0
    echo "libfuse: apt-get install ${missing[*]}" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

if ((static)); then
    # The static build's pkg-config entry, once built, says so; rebuild only when it is missing.
    pc=$(find "$prefix" -name fuse3.pc 2>/dev/null | head -1 || true)
    if [[ -n $pc && $(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --modversion fuse3) == "$version" ]] \
        && [[ -n $(find "$prefix" -name libfuse3.a 2>/dev/null | head -1 || true) ]]; then exit 0; fi
elif [[ ${WAN_LIBFUSE:-} == system ]]; then
    apt_install libfuse3-dev
    exit 0
fi

if ((!static)) && installed libfuse3-dev; then
    echo "libfuse: removing Debian's libfuse3-dev 3.14 (its libfuse3.so would shadow $version's at link time; WAN_LIBFUSE=system keeps it)" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq libfuse3-dev >/dev/null
fi

if ((!static)) && [[ $(pkg-config --modversion fuse3 2>/dev/null || true) == "$version" ]]; then exit 0; fi

apt_install meson ninja-build pkg-config gcc
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
library=shared install=as_root
if ((static)); then library=static install=; mkdir -p "$prefix"; prefix=$(cd "$prefix" && pwd); fi
echo "libfuse: building libfuse $version ($library) from Debian's source package into $prefix" >&2
curl -fsS --retry 3 --max-time 120 -o "$work/src.tar.gz" "$url" \
    || { echo "libfuse: cannot download $url (set WAN_LIBFUSE=system to build with Debian's libfuse 3.14, without passthrough)" >&2; exit 1; }
echo "$sha256  $work/src.tar.gz" | sha256sum -c --quiet - \
    || { echo "libfuse: $url does not have the expected sha256 $sha256" >&2; exit 1; }
tar -xzf "$work/src.tar.gz" -C "$work"
(
    cd "$work/fuse-$version"
    meson setup build --prefix="$prefix" --buildtype=release --default-library="$library" \
        -Dutils=false -Dexamples=false -Dtests=false >"$work/meson.log" 2>&1 \
        || { cat "$work/meson.log" >&2; exit 1; }
    ninja -C build >"$work/ninja.log" 2>&1 || { cat "$work/ninja.log" >&2; exit 1; }
    $install meson install -C build --quiet >/dev/null
)
((static)) && exit 0
as_root ldconfig
found=$(pkg-config --modversion fuse3 2>/dev/null || true)
[[ $found == "$version" ]] || { echo "libfuse: pkg-config finds fuse3 '$found' after the install, not $version" >&2; exit 1; }
