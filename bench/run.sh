#!/usr/bin/env bash
# wanfs benchmarks. Every figure is a ratio against a baseline measured in the same run on the
# same origin (these machines are shared and noisy): curl to the same nginx URL, cat of the file.
#
#   bench/run.sh [engine] [ensure]      (default: all)
#
# engine  a 1 GiB object from nginx through the HTTP engine (1 stream, 8 parallel range
#         requests) vs `curl -o /dev/null` of the same URL.
# ensure  `wan models ensure` of a model of three 1 GiB files from nginx (download + sha256
#         verification + commit) vs `curl -o FILE` of the same files, one after the other.
#
# Prints a markdown table (copy it into docs/benchmarks.md). Runs on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${WAN_BENCH_RUNS:-3}
what=("$@")
[[ ${#what[@]} -eq 0 ]] && what=(engine ensure)

bash scripts/setup.sh >/dev/null
echo "== release build" >&2
swift build -c release --product wan >/dev/null
swift build -c release --product wan-bench >/dev/null
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

for w in "${what[@]}"; do "bench_$w"; done

echo
echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores, median of $runs runs, nginx on 127.0.0.1."
echo
echo "| what | wanfs | baseline (same run) | ratio | target |"
echo "| --- | --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
