#!/usr/bin/env bash
# Issue 11's cross-collection candidate and its validation runs (docs/clinical.md).
# The candidate was NOT kept (it did not beat the shipped model on validation data); its
# leave-one-class-out runs (OUT/loco.*.npz) choose the kind of the shipped "unsure" score.
#
#   scripts/train_default_cv.sh [DATASETS_DIR] [OUT_DIR]
#
# Training data: MSID folds 0-3 + msld2-dev folds 0-3, the four shared classes (msld2-dev
# Cowpox/HFMD are never trained on). Fold 4 of both collections (the test folds) is never
# read by any step here.
# 1. find the msld2-dev originals of MSID photos (SIFT) -> models/msld2-msid-overlap.csv
# 2. one split file over both collections (overlap images join their MSID photo's fold;
#    dropped when that is fold 4)
# 3. EfficientNet-Lite0 (ImageNet), blocks 0-13 frozen, blocks 14-15 + head trained on
#    cached augmented views ('shift' preset: crop/scale, white balance, exposure, lighting,
#    resolution, JPEG, blur), label smoothing 0.1 + manifold mixup 0.2, Adam lr 5e-4,
#    6 epochs fixed up front (full fine-tuning of 4 CV models + a final one did not fit the
#    2 shared cores; see converters/trainfast.py)
# 4. 4 CV models (model k: folds {0..3}\{k}) -> out-of-fold logits/features; the final
#    model on all of folds 0-3; 4 leave-one-class-out models (folds 0-2, scored on fold 3)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/cli.sh" "$@"  # --help, unknown options, $here
datasets="${1:-$here/../shared/datasets}"
out="${2:-$here/runs/cv}"
if [[ ! -d "$datasets/msid" || ! -d "$datasets/msld2-dev" ]]; then
    echo "$(basename "$0"): $datasets must hold msid/ and msld2-dev/ (see --help)" >&2
    exit 2
fi
run=(nice -n 10 python3 "$here/scripts/cv_train.py" --datasets "$datasets" --dir "$out")
mkdir -p "$out"
python3 "$here/scripts/find_overlap.py" --msid "$datasets/msid" --msld2 "$datasets/msld2-dev" \
    --out "$here/models/msld2-msid-overlap.csv"
python3 "$here/scripts/combine_splits.py" --datasets "$datasets" --out "$out/combined.csv"
# two processes at a time, one torch thread each
"${run[@]}" cache --views 0,1 --out "$out/cache_a.npz" &
"${run[@]}" cache --views 2,3 --out "$out/cache_b.npz"
wait
"${run[@]}" cv --folds 0,1 --epochs 6 --lr 5e-4 &
"${run[@]}" cv --folds 2,3 --epochs 6 --lr 5e-4
wait
"${run[@]}" final --epochs 6 --lr 5e-4 &
"${run[@]}" loco --epochs 3 --lr 5e-4
wait
