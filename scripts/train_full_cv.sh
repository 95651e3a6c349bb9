#!/usr/bin/env bash
# Issue 11: full fine-tunes of EfficientNet-Lite (ARCH, default efficientnet-lite0) on both collections, cross-validated, so
# that temperature, screening threshold and "unsure" score are fitted on pooled out-of-fold
# predictions of folds 0-3 (four times the data of one fold), and a final model on all of them.
#
#   scripts/train_full_cv.sh [DATASETS_DIR] [OUT_DIR]        (default ../shared/datasets runs/cvfull)
#
# Data: MSID + msld2-dev folds 0-3, the four shared classes (combine_splits.py: overlapping
# msld2-dev originals join their MSID photo's fold). Fold 4 of both (the test folds) is
# never read. Every model trains a fixed EPOCHS (default 15) with a cosine lr and keeps its
# last epoch: nothing is selected on the fold a CV model leaves out, so its predictions
# there are honest validation data (the epoch count and lr come from the fold-3 run in
# docs/clinical.md, best epoch 13 of 23 at a constant lr).
# 1. CV model k (k = 0..3): trained on folds {0..3}\{k}  -> OUT/liteN.fold{k}.pt (+ .json)
# 2. out-of-fold logits/features of the CV models         -> OUT/oof.npz (scripts/cv_oof.py)
# 3. final model on folds 0-3 (skipped with NO_FINAL=1)   -> OUT/liteN.final.pt (+ .json)
# Re-running skips checkpoints already written. About 15 min per Lite0 model on 2 idle cores.
# ARCH=efficientnet-lite1 (240 px) or -lite2 (260 px): same recipe, OUT default runs/cvfull-lite1.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/cli.sh" "$@"  # --help, unknown options, $here
datasets="${1:-$here/../shared/datasets}"
arch="${ARCH:-efficientnet-lite0}"
tag="${arch#efficientnet-}"  # lite0, lite1, lite2
case "$arch" in
    efficientnet-lite0) out="${2:-$here/runs/cvfull}" ;;  # where round two's Lite0 run lives
    efficientnet-lite[12]) out="${2:-$here/runs/cvfull-$tag}" ;;
    *) echo "$(basename "$0"): ARCH must be efficientnet-lite0, -lite1 or -lite2" >&2; exit 2 ;;
esac
epochs="${EPOCHS:-15}"
if [[ ! -d "$datasets/msid" || ! -d "$datasets/msld2-dev" ]]; then
    echo "$(basename "$0"): $datasets must hold msid/ and msld2-dev/ (see --help)" >&2
    exit 2
fi
mkdir -p "$out"
python3 "$here/scripts/combine_splits.py" --datasets "$datasets" --out "$out/combined.csv"
train() {  # NAME TRAIN_FOLDS
    [[ -f "$out/$1.pt" ]] && { echo "$out/$1.pt exists: kept"; return; }
    nice -n 10 mpox-edge train "$datasets" --arch "$arch" --pretrained \
        --splits "$out/combined.csv" --train-folds "$2" --val-folds none \
        --epochs "$epochs" --lr 2e-4 --lr-schedule cosine --label-smoothing 0.1 --mixup 0.2 \
        --augment shift --threads 2 --no-progress --out "$out/$1.pt" --json "$out/$1.json"
}
train "$tag.fold0" 1,2,3
train "$tag.fold1" 0,2,3
train "$tag.fold2" 0,1,3
train "$tag.fold3" 0,1,2
python3 "$here/scripts/cv_oof.py" "$out/$tag".fold{0,1,2,3}.pt --datasets "$datasets" \
    --splits "$out/combined.csv" --out "$out/oof.npz"
[[ -n "${NO_FINAL:-}" ]] || train "$tag.final" 0,1,2,3
