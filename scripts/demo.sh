#!/usr/bin/env bash
# The main job, end to end on a fresh machine: install and build, generate a small model
# into a local source folder, write its manifest (sizes, sha256 and chunk digests measured
# from the files), validate it, fetch it into MODELS_ROOT with verification, and show status.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
wan=$(swift build --show-bin-path)/wan

work=${WAN_DEMO_DIR:-$(mktemp -d /tmp/wan-demo.XXXXXX)}
mkdir -p "$work/source/demo-model" "$work/models"
echo "== generating a small model in $work/source/demo-model" >&2
python3 scripts/make_model.py "$work/source/demo-model" --manifest "$work/models.toml" \
    --model-id demo-t2v@1.0.0 --source "local://source/demo-model"

export MODELS_ROOT="$work/models" WAN_MODELS_MANIFEST="$work/models.toml"
echo "== wan models validate-manifest" >&2
"$wan" models validate-manifest
echo "== wan models status (nothing fetched yet)" >&2
"$wan" models status
echo "== wan models ensure --only demo-t2v@1.0.0" >&2
"$wan" models ensure --only demo-t2v@1.0.0
echo "== wan models status --json" >&2
"$wan" models status --json
echo "== wan models verify --all" >&2
"$wan" models verify --all
echo "== wan models disk-usage" >&2
"$wan" models disk-usage
echo "demo: done (files in $work)" >&2
