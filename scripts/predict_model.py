#!/usr/bin/env python3
"""Logits and pooled CAM features of an exported model over validation data (no test fold).

    python3 scripts/predict_model.py MODEL_DIR --splits runs/cv/combined.csv \
        --val msid:3,msld2-dev:0,1,2,3 --train msid:0,1,2 --out runs/eval/current.npz

Writes ``scripts/fit_trust.py --val-npz`` input: ``val_*`` (the chosen folds per
collection, 4 classes; msld2-dev images overlapping MSID are left out because a model trained
on MSID may have seen their crops), ``train_*`` (features for Mahalanobis statistics),
``unseen_*`` (msld2-dev Cowpox/HFMD of folds 0-3) and ``nonskin_*``. Refuses fold 4.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "scripts"))
from find_overlap import _default_shared, overlap_paths  # noqa: E402

CLASSES = ["Chickenpox", "Measles", "Monkeypox", "Normal"]


def _sel(spec: str) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for part in spec.split(";"):
        name, folds = part.split(":")
        out[name] = {int(f) for f in folds.split(",")}
    return out


def main(argv: list[str] | None = None) -> int:
    from mpox_edge.converters.nonskin import nonskin_frames
    from mpox_edge.edge.model.classifier import Classifier
    from mpox_edge.edge.model.dataset import read_image
    from mpox_edge.edge.model.trust import pool_features

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--datasets", type=Path, default=_default_shared())
    ap.add_argument("--splits", type=Path, required=True, help="combine_splits.py output")
    ap.add_argument("--val", required=True, help="e.g. 'msid:3;msld2-dev:0,1,2,3'")
    ap.add_argument("--train", required=True, help="e.g. 'msid:0,1,2'")
    ap.add_argument("--overlap", type=Path, default=HERE / "models" / "msld2-msid-overlap.csv")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    val, train = _sel(args.val), _sel(args.train)
    if any(4 in v for v in list(val.values()) + list(train.values())):
        print("predict_model: fold 4 is a test fold", file=sys.stderr)
        return 2
    overlap = overlap_paths(args.overlap)
    with args.splits.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with (args.datasets / "msld2-dev" / "splits.csv").open(newline="", encoding="utf-8") as f:
        unseen = [
            f"msld2-dev/{r['path']}"
            for r in csv.DictReader(f)
            if r["label"] in ("Cowpox", "HFMD") and r["fold"] != "4"
        ]
    c = Classifier.open(args.model_dir, backend="onnxruntime", threads=args.threads)

    def run(imgs):
        lo, fe = [], []
        for im in imgs:
            p = c.predict(im, with_features=True)
            lo.append(p.logits)
            fe.append(pool_features(p.features))
        return np.asarray(lo, np.float32), np.asarray(fe, np.float32)

    out = {}
    for part, sel in (("val", val), ("train", train)):
        rs = [
            r
            for r in rows
            if int(r["fold"]) in sel.get(r["collection"], set()) and r["path"] not in overlap
        ]
        out[f"{part}_logits"], out[f"{part}_features"] = run(
            read_image(args.datasets / r["path"]) for r in rs
        )
        out[f"{part}_label"] = np.asarray([CLASSES.index(r["label"]) for r in rs])
        out[f"{part}_collection"] = np.asarray([r["collection"] for r in rs])
        out[f"{part}_path"] = np.asarray([r["path"] for r in rs])
        print(f"{part}: {len(rs)} images", file=sys.stderr)
    us = [u for u in unseen if u not in overlap]
    out["unseen_logits"], out["unseen_features"] = run(read_image(args.datasets / u) for u in us)
    out["unseen_path"] = np.asarray(us)
    ns = nonskin_frames()
    out["nonskin_logits"], out["nonskin_features"] = run(im for _, im in ns)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
