#!/usr/bin/env bash
# The main job, end to end on a fresh machine: install and build; generate a small
# multi-file safetensors model into a local source folder served over HTTP by nginx on
# 127.0.0.1; write its manifest (sizes, sha256, chunk digests); mount it with mount.wanfs;
# show that listing costs nothing, `wan models status --mount`, a lazy header read, a full
# load with Python's safetensors through the mount (checked against the original folder),
# the bytes the origin served at each step; unmount.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
bin=$(swift build --show-bin-path)
wan=$bin/wan

work=${WAN_DEMO_DIR:-$(mktemp -d /tmp/wan-demo.XXXXXX)}
mkdir -p "$work/models" "$work/mnt"

echo "== starting nginx on 127.0.0.1 (testenv/servers.sh start nginx)" >&2
was_running=0
bash testenv/servers.sh status 2>/dev/null | grep -q '^nginx .*up' && was_running=1
eval "$(bash testenv/servers.sh start nginx)"
cleanup() {
    if mountpoint -q "$work/mnt"; then umount "$work/mnt" || true; fi
    # Stop nginx only if this demo started it (and WAN_KEEP_SERVERS is not 1).
    if [[ $was_running == 0 && "${WAN_KEEP_SERVERS:-0}" != 1 ]]; then bash testenv/servers.sh stop >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

name="demo-$(date +%s)"
source_dir="$WAN_TEST_HTTP_ROOT/$name"
echo "== generating a 3-shard safetensors model in $source_dir, served at $WAN_TEST_HTTP/$name" >&2
python3 scripts/make_model.py "$source_dir" --shards 3 --shard-mib 24 --manifest "$work/models.toml" \
    --model-id demo-t2v@1.0.0 --source "$WAN_TEST_HTTP/$name"
served() {  # bytes nginx has served for this model so far
    awk -v p="/$name/" 'index($1, p) { s += $3 } END { printf "%.0f\n", s }' "$WAN_TEST_HTTP_LOG"
}
"$wan" models validate-manifest --manifest "$work/models.toml"

echo "== mount.wanfs $work/models $work/mnt -o manifest=$work/models.toml" >&2
"$bin/mount.wanfs" "$work/models" "$work/mnt" -o "manifest=$work/models.toml"
model="$work/mnt/demo-t2v@1.0.0"

echo "== ls -lR through the mount (sizes from the manifest)" >&2
ls -lR "$work/mnt"
echo "origin bytes served after ls -lR: $(served)" >&2

echo "== wan models status --mount $work/mnt" >&2
"$wan" models status --mount "$work/mnt"

echo "== reading only the safetensors headers (lazy: a few KiB of each shard)" >&2
python3 - "$model" <<'EOF'
import glob, os, sys
from safetensors import safe_open
for path in sorted(glob.glob(os.path.join(sys.argv[1], "transformer", "*.safetensors"))):
    with safe_open(path, "np") as f:
        print(f"{os.path.basename(path)}: {len(list(f.keys()))} tensors")
EOF
sleep 1
echo "origin bytes served after the header reads: $(served)" >&2

echo "== loading every tensor and config through the mount, compared with the original folder" >&2
python3 - "$model" "$source_dir" <<'EOF'
import json, os, sys
import numpy as np
from safetensors.numpy import load_file
mounted, original = sys.argv[1], sys.argv[2]
tensors = 0
for dirpath, _, names in os.walk(original):
    for name in sorted(names):
        rel = os.path.relpath(os.path.join(dirpath, name), original)
        if name.endswith(".safetensors"):
            a, b = load_file(os.path.join(mounted, rel)), load_file(os.path.join(original, rel))
            assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a), rel
            tensors += len(a)
        else:
            assert json.load(open(os.path.join(mounted, rel))) == json.load(open(os.path.join(original, rel))), rel
print(f"loaded {tensors} tensors through the mount: identical to the original")
EOF
echo "origin bytes served after the full load: $(served) (model size: $(find "$source_dir" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s }'))" >&2

# The whole-file sha256 of what the load fetched runs once the mount stops fetching (every byte
# served was verified by its chunk already): the model turns COMPLETE a moment after the load.
for _ in $(seq 75); do
    [[ $(python3 -c 'import os, sys; print(os.getxattr(sys.argv[1], "user.wan.state").decode())' "$model") == COMPLETE ]] && break
    sleep 0.2
done
echo "== wan models status --mount $work/mnt --verbose" >&2
"$wan" models status --mount "$work/mnt" --verbose
echo "== extended attributes of a shard" >&2
python3 -c 'import os, sys; p = sys.argv[1]; [print(f"{a}={os.getxattr(p, a).decode()}") for a in os.listxattr(p)]' \
    "$model/transformer/diffusion_pytorch_model-00001-of-00003.safetensors"

echo "== umount $work/mnt (the cache stays in $work/models)" >&2
umount "$work/mnt"
"$wan" models status --models-root "$work/models" --manifest "$work/models.toml"
echo "demo: done (files in $work)" >&2
