#!/usr/bin/env bash
# wanfs benchmarks. Every figure is a ratio against a baseline measured in the same run on the
# same origin (these machines are shared and noisy): curl to the same nginx URL, cat of the file.
#
#   bench/run.sh [engine] [ensure] [mount] [trace] [stripe] [peers] [shaped] [sidecar]   (default: all)
#
# engine  a 1 GiB object from nginx through the HTTP engine (1 stream, 8 parallel range
#         requests) vs `curl -o /dev/null` of the same URL.
# ensure  `wan models ensure` of a model of three 1 GiB files from nginx (download + sha256
#         verification + commit) vs `curl -o FILE` of the same files, one after the other.
#
# mount   a 2 GiB two-shard safetensors model (scripts/make_model.py: the tensors of
#         Wan2.1-T2V-1.3B's transformer, 2 MiB chunk digests) from nginx through a cold
#         mount.wanfs: sequential cat, dd bs=16M and Python read(1 MiB) vs curl -o /dev/null (and, for context, vs
#         curl -o FILE); first byte (open + read of 1 byte timed inside a Python process) vs
#         curl -r 0-0's own time_total; a full safe_open + get_tensor load, and a half load (every
#         other tensor in key order), vs curl to disk then the same load; bytes the origin
#         served; warm reads vs cat of the blob; the daemon's peak RSS.
# trace   the mount's model loaded on "a second host" (a fresh MODELS_ROOT) with the access
#         trace the first host recorded imported (`wan models trace import`), replayed as the
#         load starts: full and half load vs the same cold load without a trace, and vs curl
#         to disk then the load; bytes the origin served.
# stripe  a 1 GiB safetensors file (4 MiB chunk digests) read cold through the mount (dd bs=16M)
#         from one origin and from two, each origin's link limited to WAN_BENCH_STRIPE_LINK
#         (default 1250mbit) by its own tc htb class on lo (nginx on two ports); curl -o
#         /dev/null of one origin for the link's speed.
# peers   one 1 GiB object on SeaweedFS S3, read cold and warm through wanfs (s3:// source),
#         s3fs and rclone mount --vfs-cache-mode full (Debian packages, installed if missing).
# sidecar /health/models' p99 idle and under 64 clients on the heavy endpoints (every answer a 200).
# shaped  the mount's cold rows again with nginx's responses limited to WAN_BENCH_LINK (default
#         2500mbit) by a tc htb class on lo that matches nginx's port only: a network that is
#         slower than the CPU, as every real one is here (loopback on 2 cores is a memcpy).
#
# Prints a markdown table (copy it into docs/benchmarks.md). Runs on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${WAN_BENCH_RUNS:-3}
what=("$@")
[[ ${#what[@]} -eq 0 ]] && what=(engine ensure mount trace stripe peers shaped sidecar)

bash scripts/setup.sh >/dev/null
echo "== release build" >&2
swift build -c release --product wan >/dev/null
swift build -c release --product wan-bench >/dev/null
swift build -c release --product mount.wanfs >/dev/null
bin=$(swift build -c release --show-bin-path)
eval "$(bash testenv/servers.sh start 2>/dev/null)"

data="$WAN_TEST_HTTP_ROOT/bench"
work=${WAN_BENCH_DIR:-/tmp/wan-bench}
mkdir -p "$data" "$work"

# make_file NAME MIB: random content, made once.
make_file() {
    local file="$data/$1" bytes=$(($2 * 1024 * 1024))
    if [[ ! -f "$file" || $(stat -c %s "$file") -ne $bytes ]]; then
        echo "== generating $1 ($2 MiB)" >&2
        head -c "$bytes" /dev/urandom >"$file"
    fi
}

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {print b - a}'; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || echo "bench: cannot drop the page cache (not root?)" >&2; }
# median of the arguments
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
mbps() { awk -v bytes="$1" -v s="$2" 'BEGIN {printf "%.0f", bytes / s / 1e6}'; }

rows=()

bench_engine() {
    make_file engine-1g.bin 1024
    local url="$WAN_TEST_HTTP/bench/engine-1g.bin" bytes=$((1024 * 1024 * 1024))
    cat "$data/engine-1g.bin" >/dev/null   # the origin serves from page cache in every run
    local curl_t=() one_t=() par_t=()
    for _ in $(seq "$runs"); do
        local t0; t0=$(now); curl -s -o /dev/null "$url"; curl_t+=("$(awk -v a="$t0" -v b="$(now)" 'BEGIN {print b - a}')")
        one_t+=("$("$bin/wan-bench" read "$url" --connections 1 | sed 's/.*"seconds": \([0-9.]*\).*/\1/')")
        par_t+=("$("$bin/wan-bench" read "$url" --connections 8 --request-mib 16 | sed 's/.*"seconds": \([0-9.]*\).*/\1/')")
    done
    local c o p
    c=$(median "${curl_t[@]}"); o=$(median "${one_t[@]}"); p=$(median "${par_t[@]}")
    rows+=("| engine, 1 GiB from nginx, 1 stream | $(mbps $bytes "$o") MB/s | curl -o /dev/null: $(mbps $bytes "$c") MB/s | **$(ratio "$c" "$o")×** | ≥ 0.9× |")
    rows+=("| engine, 1 GiB from nginx, 8 range requests × 16 MiB | $(mbps $bytes "$p") MB/s | curl -o /dev/null: $(mbps $bytes "$c") MB/s | **$(ratio "$c" "$p")×** | ≥ 1.0× |")
}

bench_ensure() {
    local files=(ensure-a.bin ensure-b.bin ensure-c.bin) bytes=0
    for f in "${files[@]}"; do make_file "$f" 1024; bytes=$((bytes + 1024 * 1024 * 1024)); done
    local dir="$work/ensure"
    rm -rf "$dir"; mkdir -p "$dir"
    # The manifest: sizes and sha256 measured here (no chunk digests: whole-file verification).
    {
        echo 'schema_version = 1'
        echo '[models."bench@1.0"]'
        for f in "${files[@]}"; do
            printf '[[models."bench@1.0".files]]\npath = "%s"\nsize = %s\nsha256 = "%s"\n' \
                "$f" "$(stat -c %s "$data/$f")" "$(sha256sum "$data/$f" | cut -d' ' -f1)"
        done
        printf '[models."bench@1.0".sources]\npriority = ["%s/bench"]\n' "$WAN_TEST_HTTP"
    } >"$dir/models.toml"
    local curl_t=() wan_t=()
    for _ in $(seq "$runs"); do
        rm -rf "$dir/curl" "$dir/root"; mkdir -p "$dir/curl"; sync
        local t0; t0=$(now)
        for f in "${files[@]}"; do curl -s -o "$dir/curl/$f" "$WAN_TEST_HTTP/bench/$f"; done
        curl_t+=("$(awk -v a="$t0" -v b="$(now)" 'BEGIN {print b - a}')")
        rm -rf "$dir/curl"; sync
        t0=$(now)
        MODELS_ROOT="$dir/root" WAN_MODELS_MANIFEST="$dir/models.toml" "$bin/wan" models ensure --only bench@1.0 2>/dev/null
        wan_t+=("$(awk -v a="$t0" -v b="$(now)" 'BEGIN {print b - a}')")
        rm -rf "$dir/root"; sync
    done
    local c w
    c=$(median "${curl_t[@]}"); w=$(median "${wan_t[@]}")
    rows+=("| ensure, 3 × 1 GiB from nginx, verified (sha256) and committed | $(mbps $bytes "$w") MB/s | curl -o FILE, one by one: $(mbps $bytes "$c") MB/s | **$(ratio "$c" "$w")×** | ≥ 0.9× |")
}

# The 2 GiB two-shard safetensors model of the mount rows (made once) and its helpers; sets
# model, dir, id, shards, rels, bytes, name (its folder under bench/). mountit [keep] mounts it cold (or over the kept cache).
model_setup() {
    # The model: by default the tensors of Wan2.1-T2V-1.3B's transformer (its names and
    # shapes, 22 of its 30 blocks: 4.5 MiB attention weights, 26 MiB feed-forward weights,
    # small biases and norms between them); with WAN_BENCH_TENSOR_MIB, tensors all of that
    # size (4: as large as 4 MiB chunks, where a half load needs every chunk). Chunk digests
    # of WAN_BENCH_CHUNK_MIB (default 2, what `wan models manifest` writes).
    local tensor_mib=${WAN_BENCH_TENSOR_MIB:-} chunk_mib=${WAN_BENCH_CHUNK_MIB:-2}
    local shape=(--layout wan) what="Wan2.1-T2V-1.3B's tensors"
    name=mountmodel-wan-c$chunk_mib
    if [[ -n $tensor_mib ]]; then
        shape=(--tensor-mib "$tensor_mib") what="$tensor_mib MiB tensors"
        name=mountmodel-t$tensor_mib-c$chunk_mib
    fi
    model="$data/$name" dir="$work/mount" id=bench-st@1.0
    if [[ ! -f "$model/models.toml" ]]; then
        echo "== generating a 2 GiB safetensors model ($what, $chunk_mib MiB chunks)" >&2
        rm -rf "$model"
        python3 scripts/make_model.py "$model/files" --shards 2 --shard-mib 1024 "${shape[@]}" --chunk-mib "$chunk_mib" --manifest "$model/models.toml.tmp" \
            --model-id "$id" --source "$WAN_TEST_HTTP/bench/$name/files" >&2
        mv "$model/models.toml.tmp" "$model/models.toml"
    fi
    shards=("$model"/files/transformer/*.safetensors)
    bytes=$(du -cb "$model/files" | tail -1 | cut -f1)
    cat "${shards[@]}" >/dev/null   # the origin serves from page cache in every run
    mkdir -p "$dir/mnt"
    rels=()
    local r
    for r in "${shards[@]}"; do rels+=("${r#"$model/files/"}"); done
}
mountit() {
    umount "$dir/mnt" 2>/dev/null || true
    # The daemon exits after umount returns, once the files it completed (and its access
    # traces) are written.
    while pgrep -f "mount.wanfs $dir/root " >/dev/null; do sleep 0.1; done
    [[ "${1:-}" == keep ]] || rm -rf "$dir/root"
    "$bin/mount.wanfs" "$dir/root" "$dir/mnt" -o "manifest=$model/models.toml${mount_options:-}"
}
served() { awk -v p="/bench/$name/" 'index($1, p) { s += $3 } END { printf "%.0f\n", s }' "$WAN_TEST_HTTP_LOG"; }
load_py='
import sys
from safetensors import safe_open
n = 0
for path in sys.argv[1:]:
    with safe_open(path, "np") as f:
        for k in f.keys():
            n += f.get_tensor(k).nbytes
print(n)'
# A half load, as a tensor-parallel rank or a partial pipeline does: every other tensor, in the
# order safe_open lists them (sorted by name, as transformers and diffusers load).
half_py='
import sys
from safetensors import safe_open
n = 0
for path in sys.argv[1:]:
    with safe_open(path, "np") as f:
        for k in list(f.keys())[::2]:
            n += f.get_tensor(k).nbytes
print(n)'
# Time to the first byte of a file, timed inside this process (open + read of 1 byte): no
# process start-up in the figure.
ttfb_py='
import os, sys, time
t = time.perf_counter()
fd = os.open(sys.argv[1], os.O_RDONLY)
os.read(fd, 1)
print(time.perf_counter() - t)
os.close(fd)'
# A sequential read as a Python program reads: read(1 MiB) until the end of each file (unbuffered,
# so each is one read call of 1 MiB); prints the seconds, timed inside the process.
read_py='
import sys, time
t = time.perf_counter()
for path in sys.argv[1:]:
    with open(path, "rb", buffering=0) as f:
        while f.read(1 << 20):
            pass
print(time.perf_counter() - t)'
# cold_pair: one run of the cold sequential read and of the full load, mount vs curl; appends
# seconds to curl_seq, mnt_seq, curl_file (the download to disk of the load's baseline),
# base_load, mnt_load, the daemon's peak RSS (KiB) to rss and the bytes nginx served for the
# load to fetched.
cold_pair() {
    local t0 r before
    t0=$(now)
    for r in "${rels[@]}"; do curl -s -o /dev/null "$WAN_TEST_HTTP/bench/$name/files/$r"; done
    curl_seq+=("$(since "$t0")")
    mountit; t0=$(now)
    for r in "${rels[@]}"; do cat "$dir/mnt/$id/$r" >/dev/null; done
    mnt_seq+=("$(since "$t0")")
    rss+=("$(awk '/VmHWM/ {print $2}' "/proc/$(pgrep -n -f "mount.wanfs $dir/root")/status")")
    # The same cold read with the read size of a user's `dd bs=16M`.
    mountit; t0=$(now)
    for r in "${rels[@]}"; do dd if="$dir/mnt/$id/$r" of=/dev/null bs=16M status=none; done
    mnt_dd+=("$(since "$t0")")
    # And with the read size of a Python program's read(1 MiB).
    mountit
    mnt_py+=("$(python3 -c "$read_py" "${shards[@]/#"$model/files"/"$dir/mnt/$id"}")")
    rm -rf "$dir/local"; mkdir -p "$dir/local"; t0=$(now)
    local locals=()
    for r in "${rels[@]}"; do curl -s -o "$dir/local/${r##*/}" "$WAN_TEST_HTTP/bench/$name/files/$r"; locals+=("$dir/local/${r##*/}"); done
    curl_file+=("$(since "$t0")")
    python3 -c "$load_py" "${locals[@]}" >/dev/null
    base_load+=("$(since "$t0")")
    local t1; t1=$(now)
    python3 -c "$half_py" "${locals[@]}" >/dev/null
    base_half+=("$(awk -v d="${curl_file[-1]}" -v h="$(since "$t1")" 'BEGIN {print d + h}')")   # download, then half load
    rm -rf "$dir/local"
    mountit; before=$(served); t0=$(now)
    python3 -c "$half_py" "${shards[@]/#"$model/files"/"$dir/mnt/$id"}" >/dev/null
    mnt_half+=("$(since "$t0")")
    sleep 1; fetched_half+=("$(( $(served) - before ))")
    # The full load last: its complete cache stays for the warm rows (a half load leaves
    # files partial).
    mountit; before=$(served); t0=$(now)
    python3 -c "$load_py" "${shards[@]/#"$model/files"/"$dir/mnt/$id"}" >/dev/null
    mnt_load+=("$(since "$t0")")
    sleep 1; fetched+=("$(( $(served) - before ))")
}
# cold_rows LABEL TARGET-SEQ TARGET-LOAD: the rows of the cold_pair medians.
cold_rows() {
    local a b
    a=$(median "${curl_seq[@]}"); b=$(median "${mnt_seq[@]}")
    rows+=("| mount$1, cold sequential read of 2 GiB (cat) | $(mbps $bytes "$b") MB/s | curl -o /dev/null: $(mbps $bytes "$a") MB/s | **$(ratio "$a" "$b")×** | $2 |")
    # The mount keeps what it reads: the same read against a download that keeps it too.
    a=$(median "${curl_file[@]}")
    rows+=("| mount$1, same cold read, vs a download to disk | $(mbps $bytes "$b") MB/s | curl -o FILE: $(mbps $bytes "$a") MB/s | **$(ratio "$a" "$b")×** | (context) |")
    a=$(median "${curl_seq[@]}"); b=$(median "${mnt_dd[@]}")
    rows+=("| mount$1, cold sequential read of 2 GiB (dd bs=16M) | $(mbps $bytes "$b") MB/s | curl -o /dev/null: $(mbps $bytes "$a") MB/s | **$(ratio "$a" "$b")×** | $2 |")
    b=$(median "${mnt_py[@]}")
    rows+=("| mount$1, cold sequential read of 2 GiB (Python read(1 MiB), timed in process) | $(mbps $bytes "$b") MB/s | curl -o /dev/null: $(mbps $bytes "$a") MB/s | **$(ratio "$a" "$b")×** | $2 |")
    a=$(median "${base_load[@]}"); b=$(median "${mnt_load[@]}")
    rows+=("| mount$1, full safetensors load (safe_open + get_tensor of all), cold | $(awk -v s="$b" 'BEGIN {printf "%.2f s", s}') | curl to disk, then load: $(awk -v s="$a" 'BEGIN {printf "%.2f s", s}') | **$(ratio "$b" "$a")×** (time) | $3 |")
    b=$(median "${fetched[@]}")
    rows+=("| mount$1, bytes the origin served for that load | $b | model size: $bytes | **$(ratio "$b" "$bytes")×** | ≤ 1.02× |")
    a=$(median "${base_half[@]}"); b=$(median "${mnt_half[@]}")
    rows+=("| mount$1, half load (every other tensor in key order), cold | $(awk -v s="$b" 'BEGIN {printf "%.2f s", s}') | curl to disk, then half load: $(awk -v s="$a" 'BEGIN {printf "%.2f s", s}') | **$(ratio "$b" "$a")×** (time) | ≤ 0.6× |")
    b=$(median "${fetched_half[@]}")
    rows+=("| mount$1, bytes the origin served for the half load | $b | model size: $bytes | **$(ratio "$b" "$bytes")×** | (context) |")
}

bench_mount() {
    local model dir id bytes shards rels name
    model_setup
    local curl_seq=() mnt_seq=() mnt_dd=() mnt_py=() curl_file=() curl_ttfb=() mnt_ttfb=() base_load=() mnt_load=() fetched=() warm=() cat_cold=() rewarm=() cat_warm=() rss=()
    local base_half=() mnt_half=() fetched_half=()
    for _ in $(seq "$runs"); do
        # Time to first byte of a cold file, each timed inside its own process: curl's own
        # time_total for a 1-byte range, and open + read(1) in Python through a fresh mount.
        local t0
        # On a quiet machine: the previous run's 2 GiB of written cache still going to disk
        # slowed both sides (curl's time_total measured 1.5-3.5 ms instead of 0.3-0.5).
        sync; sleep 1
        curl_ttfb+=("$(curl -s -r 0-0 -o /dev/null -w '%{time_total}' "$WAN_TEST_HTTP/bench/$name/files/${rels[1]}")")
        mountit; mnt_ttfb+=("$(python3 -c "$ttfb_py" "$dir/mnt/$id/${rels[1]}")")
        # Cold sequential read and full safetensors load: cold mount vs curl (to disk, then load
        # from disk). The load's cache stays for the warm rows.
        cold_pair
        # Warm: complete files, page cache dropped, vs cat of the blobs; then re-read from page cache.
        mountit keep
        local blobs=() target="${rels[0]}"
        drop_caches; t0=$(now); cat "$dir/mnt/$id/$target" >/dev/null; warm+=("$(since "$t0")")
        t0=$(now); cat "$dir/mnt/$id/$target" >/dev/null; rewarm+=("$(since "$t0")")
        local blob; blob=$(readlink -f "$dir/root/wan22/$id/$target")
        drop_caches; t0=$(now); cat "$blob" >/dev/null; cat_cold+=("$(since "$t0")")
        t0=$(now); cat "$blob" >/dev/null; cat_warm+=("$(since "$t0")")
    done
    umount "$dir/mnt" 2>/dev/null || true
    local one; one=$(stat -c %s "${shards[0]}")
    cold_rows "" "≥ 0.8×" "≤ 1.0×, never > 1.25×"
    local a b
    a=$(median "${curl_ttfb[@]}"); b=$(median "${mnt_ttfb[@]}")
    rows+=("| mount, first byte of a cold file (open + read 1 byte, timed in process) | $(awk -v s="$b" 'BEGIN {printf "%.2f ms", s * 1000}') | curl -r 0-0, its time_total: $(awk -v s="$a" 'BEGIN {printf "%.2f ms", s * 1000}') | **$(ratio "$b" "$a")×** (time) | ≤ 5× |")
    a=$(median "${cat_cold[@]}"); b=$(median "${warm[@]}")
    rows+=("| mount, warm read of a complete 1 GiB file, page cache dropped | $(mbps "$one" "$b") MB/s | cat of the blob: $(mbps "$one" "$a") MB/s | **$(ratio "$a" "$b")×** | ≥ 0.7× |")
    a=$(median "${cat_warm[@]}"); b=$(median "${rewarm[@]}")
    rows+=("| mount, re-read of that file (page cache warm) | $(mbps "$one" "$b") MB/s | cat of the blob: $(mbps "$one" "$a") MB/s | **$(ratio "$a" "$b")×** | ≥ 0.9× |")
    b=$(printf '%s\n' "${rss[@]}" | sort -g | tail -1)
    rows+=("| mount.wanfs peak RSS streaming the 2 GiB model | $((b / 1024)) MiB | | | < 256 MiB |")
}

# A load on a second host replaying the first host's access trace. Per run: the baseline (curl
# each shard to disk, then the load from disk), then for the full load and the half load: the
# cold load through a fresh mount (which records the trace; the "without" figure), and the same
# load through another fresh MODELS_ROOT into which that trace was imported.
bench_trace() {
    local model dir id bytes shards rels name
    model_setup
    local base_load=() base_half=() cold_load=() traced_load=() cold_half=() traced_half=() fetched_traced=() fetched_traced_half=()
    local wan_env=(env MODELS_ROOT="$dir/root" WAN_MODELS_MANIFEST="$model/models.toml")
    # load_twice PY COLD TRACED FETCHED: the cold load (recording), then the traced one; appends
    # their seconds and the traced load's origin bytes to the arrays named.
    load_twice() {
        local py=$1 t0 before
        local -n _cold=$2 _traced=$3 _fetched=$4
        mountit; t0=$(now)
        python3 -c "$py" "${shards[@]/#"$model/files"/"$dir/mnt/$id"}" >/dev/null
        _cold+=("$(since "$t0")")
        umount "$dir/mnt"; while pgrep -f "mount.wanfs $dir/root " >/dev/null; do sleep 0.1; done
        "${wan_env[@]}" "$bin/wan" models trace export "$id" --output "$work/trace.json" >/dev/null
        rm -rf "$dir/root"
        "${wan_env[@]}" "$bin/wan" models trace import "$work/trace.json" >/dev/null
        mountit keep; before=$(served); t0=$(now)
        python3 -c "$py" "${shards[@]/#"$model/files"/"$dir/mnt/$id"}" >/dev/null
        _traced+=("$(since "$t0")")
        sleep 1; _fetched+=("$(( $(served) - before ))")
    }
    for _ in $(seq "$runs"); do
        rm -rf "$dir/local"; mkdir -p "$dir/local"
        local t0 t1 r locals=()
        t0=$(now)
        for r in "${rels[@]}"; do curl -s -o "$dir/local/${r##*/}" "$WAN_TEST_HTTP/bench/$name/files/$r"; locals+=("$dir/local/${r##*/}"); done
        local download; download=$(since "$t0")
        python3 -c "$load_py" "${locals[@]}" >/dev/null
        base_load+=("$(since "$t0")")
        t1=$(now); python3 -c "$half_py" "${locals[@]}" >/dev/null
        base_half+=("$(awk -v d="$download" -v h="$(since "$t1")" 'BEGIN {print d + h}')")
        rm -rf "$dir/local"
        load_twice "$load_py" cold_load traced_load fetched_traced
        load_twice "$half_py" cold_half traced_half fetched_traced_half
    done
    umount "$dir/mnt" 2>/dev/null || true
    local a b c
    a=$(median "${base_load[@]}"); b=$(median "${traced_load[@]}"); c=$(median "${cold_load[@]}")
    rows+=("| mount, full load on a second host with the first host's trace replayed | $(awk -v s="$b" 'BEGIN {printf "%.2f s", s}') | curl to disk, then load: $(awk -v s="$a" 'BEGIN {printf "%.2f s", s}'); without a trace: $(awk -v s="$c" 'BEGIN {printf "%.2f s", s}') | **$(ratio "$b" "$a")×** ($(ratio "$b" "$c")× of without) | ≤ 1.0× |")
    b=$(median "${fetched_traced[@]}")
    rows+=("| mount, bytes the origin served for that load (replay included) | $b | model size: $bytes | **$(ratio "$b" "$bytes")×** | ≤ 1.02× |")
    a=$(median "${base_half[@]}"); b=$(median "${traced_half[@]}"); c=$(median "${cold_half[@]}")
    rows+=("| mount, half load on a second host with the first host's trace replayed | $(awk -v s="$b" 'BEGIN {printf "%.2f s", s}') | curl to disk, then half load: $(awk -v s="$a" 'BEGIN {printf "%.2f s", s}'); without a trace: $(awk -v s="$c" 'BEGIN {printf "%.2f s", s}') | **$(ratio "$b" "$a")×** ($(ratio "$b" "$c")× of without) | ≤ 0.6× |")
    b=$(median "${fetched_traced_half[@]}")
    rows+=("| mount, bytes the origin served for that half load (replay included) | $b | model size: $bytes | **$(ratio "$b" "$bytes")×** | (context) |")
}

# Two origins at once, each behind its own shaped link.
bench_stripe() {
    local link=${WAN_BENCH_STRIPE_LINK:-1250mbit} p1=${WAN_TEST_HTTP##*:} p2=${WAN_TEST_HTTP2##*:}
    command -v tc >/dev/null || { echo "== apt-get install iproute2" >&2; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null; }
    if tc qdisc show dev lo | grep -qv "noqueue"; then
        echo "bench: lo already has a qdisc; not shaping it (skipping 'stripe')" >&2
        return
    fi
    local model="$data/stripemodel" dir="$work/stripe" id=stripe@1.0 rel
    if [[ ! -f "$model/one.toml" ]]; then
        echo "== generating a 1 GiB safetensors file with 4 MiB chunk digests" >&2
        rm -rf "$model"
        python3 scripts/make_model.py "$model/files" --shards 1 --shard-mib 1024 --chunk-mib 4 --manifest "$model/one.toml.tmp" \
            --model-id "$id" --source "$WAN_TEST_HTTP/bench/stripemodel/files" >&2
        mv "$model/one.toml.tmp" "$model/one.toml"
    fi
    sed "s#^priority = .*#priority = [\"$WAN_TEST_HTTP/bench/stripemodel/files\", \"$WAN_TEST_HTTP2/bench/stripemodel/files\"]#" "$model/one.toml" >"$model/two.toml"
    rel=$(cd "$model/files" && ls transformer/*.safetensors | head -1)
    local bytes; bytes=$(stat -c %s "$model/files/$rel")
    cat "$model/files/$rel" >/dev/null
    tc qdisc add dev lo root handle 1: htb default 10 r2q 1000 2>/dev/null
    trap 'tc qdisc del dev lo root 2>/dev/null || true' EXIT
    tc class add dev lo parent 1: classid 1:10 htb rate 100gbit 2>/dev/null
    tc class add dev lo parent 1: classid 1:21 htb rate "$link" ceil "$link" burst 4m cburst 4m 2>/dev/null
    tc class add dev lo parent 1: classid 1:22 htb rate "$link" ceil "$link" burst 4m cburst 4m 2>/dev/null
    tc filter add dev lo parent 1: protocol ip prio 1 u32 match ip sport "$p1" 0xffff flowid 1:21
    tc filter add dev lo parent 1: protocol ip prio 1 u32 match ip sport "$p2" 0xffff flowid 1:22
    mkdir -p "$dir/mnt"
    # read_with MANIFEST: one cold dd bs=16M of the file through a fresh mount; prints seconds.
    read_with() {
        umount "$dir/mnt" 2>/dev/null || true
        while pgrep -f "mount.wanfs $dir/root " >/dev/null; do sleep 0.1; done
        rm -rf "$dir/root"
        "$bin/mount.wanfs" "$dir/root" "$dir/mnt" -o "manifest=$1"
        local t0; t0=$(now)
        dd if="$dir/mnt/$id/$rel" of=/dev/null bs=16M status=none
        since "$t0"
    }
    local curl_one=() one=() two=() t0
    for _ in $(seq "$runs"); do
        t0=$(now); curl -s -o /dev/null "$WAN_TEST_HTTP/bench/stripemodel/files/$rel"; curl_one+=("$(since "$t0")")
        one+=("$(read_with "$model/one.toml")")
        two+=("$(read_with "$model/two.toml")")
    done
    umount "$dir/mnt" 2>/dev/null || true
    tc qdisc del dev lo root
    trap - EXIT
    local a b c
    a=$(median "${curl_one[@]}"); b=$(median "${one[@]}"); c=$(median "${two[@]}")
    rows+=("| mount, cold read of 1 GiB (dd bs=16M) from one origin over a $link link | $(mbps "$bytes" "$b") MB/s | curl -o /dev/null, same link: $(mbps "$bytes" "$a") MB/s | **$(ratio "$a" "$b")×** | ≥ 0.8× |")
    rows+=("| mount, the same read striped over two origins, each over its own $link link | $(mbps "$bytes" "$c") MB/s | one origin: $(mbps "$bytes" "$b") MB/s | **$(ratio "$b" "$c")×** | ≥ 1.6× |")
}

# The cold rows through a link slower than the CPU: a tc htb class on lo for packets from
# nginx's port (nothing else on loopback is touched), removed on exit.
bench_shaped() {
    local link=${WAN_BENCH_LINK:-2500mbit} port=${WAN_TEST_HTTP##*:}
    command -v tc >/dev/null || { echo "== apt-get install iproute2" >&2; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null; }
    if tc qdisc show dev lo | grep -qv "noqueue"; then
        echo "bench: lo already has a qdisc; not shaping it (skipping 'shaped')" >&2
        return
    fi
    tc qdisc add dev lo root handle 1: htb default 10 r2q 1000 2>/dev/null
    trap 'tc qdisc del dev lo root 2>/dev/null || true' EXIT
    tc class add dev lo parent 1: classid 1:10 htb rate 100gbit 2>/dev/null
    tc class add dev lo parent 1: classid 1:20 htb rate "$link" ceil "$link" burst 4m cburst 4m 2>/dev/null
    tc filter add dev lo parent 1: protocol ip prio 1 u32 match ip sport "$port" 0xffff flowid 1:20
    local model dir id bytes shards rels name
    model_setup
    local curl_seq=() mnt_seq=() mnt_dd=() mnt_py=() curl_file=() base_load=() mnt_load=() fetched=() rss=() base_half=() mnt_half=() fetched_half=()
    for _ in $(seq "$runs"); do cold_pair; done
    umount "$dir/mnt" 2>/dev/null || true
    tc qdisc del dev lo root
    trap - EXIT
    cold_rows " over a $link link" "≥ 0.8×" "≤ 1.0×"
}

bench_peers() {
    command -v s3fs >/dev/null || { echo "== apt-get install s3fs" >&2; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq s3fs >/dev/null; }
    [[ -x /usr/bin/rclone ]] || { echo "== apt-get install rclone" >&2; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rclone >/dev/null; }
    make_file peers-1g.bin 1024
    local key=bench/peers-1g.bin file="$data/peers-1g.bin" dir="$work/peers" bytes
    bytes=$(stat -c %s "$file")
    local s3=$WAN_TEST_S3_ENDPOINT ak=$WAN_TEST_S3_ACCESS_KEY sk=$WAN_TEST_S3_SECRET_KEY
    curl -sS --fail --max-time 120 --aws-sigv4 aws:amz:us-east-1:s3 --user "$ak:$sk" -T "$file" "$s3/models/$key" >/dev/null
    mkdir -p "$dir"
    printf 'schema_version = 1\n[models."peer@1.0"]\n[[models."peer@1.0".files]]\npath = "peers-1g.bin"\nsize = %s\nsha256 = "%s"\n[models."peer@1.0".sources]\npriority = ["s3://models/bench"]\n' \
        "$bytes" "$(sha256sum "$file" | cut -d' ' -f1)" >"$dir/models.toml"
    printf '%s:%s\n' "$ak" "$sk" >"$dir/s3fs.passwd"; chmod 600 "$dir/s3fs.passwd"
    local -A cold warm
    local t0 m
    for _ in $(seq "$runs"); do
        for m in wanfs s3fs rclone; do
            umount "$dir/mnt" 2>/dev/null || true
            rm -rf "$dir/mnt" "$dir/cache"; mkdir -p "$dir/mnt" "$dir/cache"
            case $m in
                wanfs) AWS_ENDPOINT_URL=$s3 AWS_ACCESS_KEY_ID=$ak AWS_SECRET_ACCESS_KEY=$sk \
                           "$bin/mount.wanfs" "$dir/cache" "$dir/mnt" -o "manifest=$dir/models.toml"
                       path="$dir/mnt/peer@1.0/peers-1g.bin" ;;
                s3fs) s3fs models "$dir/mnt" -o "url=$s3,use_path_request_style,passwd_file=$dir/s3fs.passwd,use_cache=$dir/cache,parallel_count=8,multipart_size=16"
                      path="$dir/mnt/$key" ;;
                rclone) env -u AWS_CA_BUNDLE RCLONE_CONFIG_SW_TYPE=s3 RCLONE_CONFIG_SW_PROVIDER=Other RCLONE_CONFIG_SW_ENDPOINT=$s3 \
                            RCLONE_CONFIG_SW_ACCESS_KEY_ID=$ak RCLONE_CONFIG_SW_SECRET_ACCESS_KEY=$sk \
                            /usr/bin/rclone mount sw:models "$dir/mnt" --vfs-cache-mode full --cache-dir "$dir/cache" --daemon
                        path="$dir/mnt/$key" ;;
            esac
            for _ in $(seq 50); do [[ -e "$path" ]] && break; sleep 0.1; done
            t0=$(now); cat "$path" >/dev/null; cold[$m]+="$(since "$t0") "
            drop_caches; t0=$(now); cat "$path" >/dev/null; warm[$m]+="$(since "$t0") "
        done
    done
    umount "$dir/mnt" 2>/dev/null || true
    local wc ww
    # shellcheck disable=SC2086
    wc=$(median ${cold[wanfs]}); ww=$(median ${warm[wanfs]})
    for m in s3fs rclone; do
        local c w
        # shellcheck disable=SC2086
        c=$(median ${cold[$m]}); w=$(median ${warm[$m]})
        rows+=("| peers, 1 GiB object on SeaweedFS, cold read: wanfs vs $m | $(mbps "$bytes" "$wc") MB/s | $m: $(mbps "$bytes" "$c") MB/s | **$(ratio "$c" "$wc")×** | ahead (> 1×) |")
        rows+=("| peers, same object, warm read (page cache dropped): wanfs vs $m | $(mbps "$bytes" "$ww") MB/s | $m: $(mbps "$bytes" "$w") MB/s | **$(ratio "$w" "$ww")×** | ahead (> 1×) |")
    done
}

# The sidecar under load (Tests/WanCLITests/SidecarLoadTests.swift with the release `wan`): 200
# models of 20 files, 64 clients on the heavy endpoints for 20 s, /health/models probed every 50 ms.
bench_sidecar() {
    local idle=() loaded=() rate=()
    for i in $(seq "$runs"); do
        local report="$work/sidecar-load-$i.json"
        rm -f "$report"
        WAN_BIN="$bin/wan" WAN_LOAD_REPORT="$report" swift test --filter SidecarLoadTests >/dev/null 2>&1 \
            || echo "bench: sidecar load run $i missed its target (figures kept)" >&2
        [[ -s "$report" ]] || { echo "bench: sidecar load run $i left no report" >&2; continue; }
        idle+=("$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["idle_p99_ms"])' "$report")")
        loaded+=("$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["loaded_p99_ms"])' "$report")")
        rate+=("$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["requests_per_second"])' "$report")")
    done
    [[ ${#idle[@]} -gt 0 ]] || return 0
    local i l
    i=$(median "${idle[@]}"); l=$(median "${loaded[@]}")
    rows+=("| sidecar, /health/models p99 under 64 clients on status/storage/metrics/analytics (200 models × 20 files; $(awk -v r="$(median "${rate[@]}")" 'BEGIN {printf "%.0f", r}') heavy req/s served) | $(awk -v v="$l" 'BEGIN {printf "%.1f", v}') ms | idle p99: $(awk -v v="$i" 'BEGIN {printf "%.1f", v}') ms | **$(ratio "$l" "$i")×** | ≤ 20× |")
}

for w in "${what[@]}"; do "bench_$w"; done

echo
echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores, median of $runs runs, nginx on 127.0.0.1."
echo
echo "| what | wanfs | baseline (same run) | ratio | target |"
echo "| --- | --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
