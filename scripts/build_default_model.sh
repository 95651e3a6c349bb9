#!/usr/bin/env bash
# Package a trained checkpoint as the shipped default model (edge/data/default_model).
#
#   scripts/build_default_model.sh CHECKPOINT [MSID_DIR]
#
# 1. export to ONNX (opset 17) with parity checked on real fold-0 images; no separate fp32
#    OpenVINO IR is shipped (OpenVINO reads the .onnx directly);
# 2. choose the mpox screening threshold for 95% sensitivity on fold 3 (validation);
# 3. int8 for ONNX Runtime: calibrate on folds 0-2, accuracy guard on fold 3, fold 4
#    reported only. OpenVINO int8 passed the fold-3 guard but lost 1.3 points with 97.4%
#    agreement on fold 4 (issue 3's targets: <= 1 point, >= 98%), so it is not shipped;
#    `mpox-edge calibrate DIR --backend openvino` makes it for anyone who wants it;
# 4. the checkpoint is kept in models/ (git) for `bench --against torch` and Grad-CAM checks.
# Fold 4 is never used for a choice.
set -euo pipefail
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    exit 0
fi
if [[ "${1:-}" == -* ]]; then
    echo "$(basename "$0"): unknown option $1 (try --help)" >&2
    exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ $# -lt 1 || ! -f "$1" ]]; then
    echo "$(basename "$0"): ${1:-CHECKPOINT}: no such checkpoint file (usage: see --help)" >&2
    exit 2
fi
ckpt="$1"
msid="${2:-$here/../shared/datasets/msid}"
out="$here/edge/data/default_model"
arch="$(python3 -c "import sys; from mpox_edge.converters.checkpoint import load_checkpoint; print(load_checkpoint(sys.argv[1])[0])" "$ckpt")"

mkdir -p "$here/models"
cp "$ckpt" "$here/models/default.pt"
mpox-edge export "$here/models/default.pt" --arch "$arch" --out "$out" --to onnx \
    --parity-data "$msid" --force
mpox-edge eval "$out" --data "$msid" --splits "$msid/splits.csv" --folds 3 \
    --choose-threshold 0.95
mpox-edge calibrate "$out" --data "$msid" --backend onnxruntime --calib-folds 0,1,2 --val-folds 3 --test-folds 4 \
    --json "$here/models/default-calibration.json" || echo "int8: see the report above"
mpox-edge eval "$out" --data "$msid" --splits "$msid/splits.csv" --folds 4 \
    --json "$here/models/default-fold4.json"
du -sh "$out" "$here/edge/data/heldout"
