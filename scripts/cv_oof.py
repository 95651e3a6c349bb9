#!/usr/bin/env python3
"""Out-of-fold logits and pooled CAM features of the cross-validation models.

    python3 scripts/cv_oof.py runs/cv/efficientnet-lite0.fold{0,1,2,3}.pt \
        --datasets ../shared/datasets --splits runs/cv/combined.csv --out runs/cv/oof.npz

Model k (trained on folds {0..3}\\{k}) predicts, without augmentation, through the one
``preprocess``:
- ``val``: fold k of the combined split file (both collections, the 4 trained classes);
- ``train``: its own training images (features only used: Mahalanobis statistics per model);
- ``unseen``: msld2-dev Cowpox/HFMD of fold k (classes no model was trained on);
- ``nonskin``: the wheel sample photos and synthetic frames (``converters.nonskin``).
Fold 4 (the test folds) is never read. Everything is written to one npz, arrays prefixed
``{part}_`` with ``{part}_model`` naming the CV model that produced each row.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "scripts"))
from find_overlap import _default_shared  # noqa: E402

UNSEEN = ("Cowpox", "HFMD")


def predict(model, images, spec, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(logits (N, K), pooled features (N, C)) in eval mode."""
    import torch
    from mpox_edge.edge.model.preprocess import preprocess

    lo, fe = [], []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = np.concatenate([preprocess(im, spec) for im in images[i : i + batch]])
            f = model.forward_features(torch.from_numpy(x))
            lo.append(model.forward_head(f).float().numpy())
            fe.append(f.mean(dim=(2, 3)).float().numpy())
    return np.concatenate(lo), np.concatenate(fe)


def main(argv: list[str] | None = None) -> int:
    import torch
    from mpox_edge.converters.checkpoint import build_from_checkpoint, preprocess_from_meta
    from mpox_edge.converters.nonskin import nonskin_frames
    from mpox_edge.edge.model.dataset import read_image

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--datasets", type=Path, default=_default_shared())
    ap.add_argument("--splits", type=Path, required=True, help="combine_splits.py output")
    ap.add_argument("--unseen-from", default="msld2-dev")
    ap.add_argument("--test-fold", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    with args.splits.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with (args.datasets / args.unseen_from / "splits.csv").open(newline="", encoding="utf-8") as f:
        unseen_rows = [r for r in csv.DictReader(f) if r["label"] in UNSEEN]
    nonskin = nonskin_frames()
    parts: dict[str, dict[str, list]] = {}

    def add(part: str, **cols) -> None:
        d = parts.setdefault(part, {})
        for k, v in cols.items():
            d.setdefault(k, []).extend(list(v))

    for ck in args.checkpoints:
        model, meta = build_from_checkpoint(ck)
        classes = list(meta["classes"])
        spec = preprocess_from_meta(meta)
        tc = meta.get("train_config") or {}
        train_folds = [int(v) for v in tc.get("train_folds") or []]
        # a fixed-epoch model (--val-folds none) left out the one fold of 0..3 it did not see
        val_folds = [int(v) for v in tc.get("val_folds") or []] or sorted(
            set(range(args.test_fold)) - set(train_folds)
        )
        if len(val_folds) != 1 or args.test_fold in val_folds + train_folds:
            print(f"cv_oof: {ck} is not a CV model (val folds {val_folds})", file=sys.stderr)
            return 2
        k = val_folds[0]
        for part, sel in (
            ("val", [r for r in rows if int(r["fold"]) == k]),
            ("train", [r for r in rows if int(r["fold"]) in train_folds]),
        ):
            imgs = [read_image(args.datasets / r["path"]) for r in sel]
            lo, fe = predict(model, imgs, spec)
            add(
                part,
                logits=lo,
                features=fe,
                label=[classes.index(r["label"]) for r in sel],
                path=[r["path"] for r in sel],
                collection=[r.get("collection", "") for r in sel],
                model=[k] * len(sel),
            )
        sel = [r for r in unseen_rows if int(r["fold"]) == k]
        imgs = [read_image(args.datasets / args.unseen_from / r["path"]) for r in sel]
        lo, fe = predict(model, imgs, spec)
        add(
            "unseen",
            logits=lo,
            features=fe,
            label=[-1] * len(sel),
            path=[f"{args.unseen_from}/{r['path']}" for r in sel],
            collection=[args.unseen_from] * len(sel),
            model=[k] * len(sel),
        )
        lo, fe = predict(model, [im for _, im in nonskin], spec)
        add(
            "nonskin",
            logits=lo,
            features=fe,
            label=[-1] * len(nonskin),
            path=[n for n, _ in nonskin],
            collection=["nonskin"] * len(nonskin),
            model=[k] * len(nonskin),
        )
        print(f"{ck}: fold {k} predicted", file=sys.stderr)
    out = {}
    for part, d in parts.items():
        for key, v in d.items():
            arr = np.asarray(v)
            out[f"{part}_{key}"] = arr.astype(np.float32) if arr.dtype.kind == "f" else arr
    out["classes"] = np.asarray(classes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **out)
    print(f"wrote {args.out}: " + ", ".join(f"{p} {len(d['label'])}" for p, d in parts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
