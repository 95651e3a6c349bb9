#!/usr/bin/env python3
"""Cross-validation, final and leave-one-class-out models by partial fine-tuning.

    python3 scripts/cv_train.py cache --views 0,1,2 --out runs/cv/cache_a.npz  # shard A
    python3 scripts/cv_train.py cache --views 3,4 --out runs/cv/cache_b.npz    # shard B
    python3 scripts/cv_train.py cv --folds 0,1        # CV models k: train {0..3}\\{k}
    python3 scripts/cv_train.py final                  # all of folds 0-3
    python3 scripts/cv_train.py loco --hold-out Measles

(see ``converters/trainfast.py`` for why the backbone below the cut is frozen). The split
file is ``combine_splits.py``'s (MSID + msld2-dev, 4 classes, folds 0-3 only are read);
``unseen`` = msld2-dev Cowpox/HFMD of folds 0-3 and ``nonskin`` = ``converters.nonskin``
are cached too, so every CV model scores them. The epoch count is fixed up front (the last
epoch is kept: nothing is selected on the CV fold), so pooled out-of-fold predictions are
honest validation data. Outputs under ``--dir``: ``{arch}.fold{k}.pt`` + ``oof.fold{k}.npz``,
``{arch}.final.pt``, ``loco.{class}.npz``, each with a JSON log beside it.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "scripts"))
from find_overlap import _default_shared  # noqa: E402

CLASSES = ["Chickenpox", "Measles", "Monkeypox", "Normal"]
UNSEEN = ("Cowpox", "HFMD")
ARCH = "efficientnet-lite0"


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _rows(args: argparse.Namespace) -> tuple[list[dict], list[dict]]:
    with args.splits.open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if int(r["fold"]) != args.test_fold]
    with (args.datasets / "msld2-dev" / "splits.csv").open(newline="", encoding="utf-8") as f:
        unseen = [
            {**r, "path": f"msld2-dev/{r['path']}", "collection": "msld2-dev"}
            for r in csv.DictReader(f)
            if r["label"] in UNSEEN and int(r["fold"]) != args.test_fold
        ]
    return rows, unseen


def cmd_cache(args: argparse.Namespace) -> int:
    import torch
    from mpox_edge.converters.augment import AugmentConfig
    from mpox_edge.converters.checkpoint import zoo_preprocess
    from mpox_edge.converters.nonskin import nonskin_frames
    from mpox_edge.converters.trainfast import cache_views
    from mpox_edge.converters.zoo import create_model
    from mpox_edge.edge.model.dataset import read_image

    torch.set_num_threads(args.threads)
    views = [int(v) for v in args.views.split(",")]
    spec = zoo_preprocess(ARCH)
    model = create_model(ARCH, num_classes=len(CLASSES), pretrained=True)
    rows, unseen = _rows(args)
    imgs = [read_image(args.datasets / r["path"]) for r in rows]
    aug = AugmentConfig.preset(args.augment)
    out = {
        "train_maps": cache_views(
            model, imgs, spec, views=views, cut=args.cut, config=aug, seed=args.seed, log=_log
        ),
        "train_path": np.asarray([r["path"] for r in rows]),
        "views": np.asarray(views),
    }
    if 0 in views:
        uimgs = [read_image(args.datasets / r["path"]) for r in unseen]
        ns = nonskin_frames()
        out["unseen_maps"] = cache_views(model, uimgs, spec, views=[0], cut=args.cut)[:, 0]
        out["unseen_path"] = np.asarray([r["path"] for r in unseen])
        out["nonskin_maps"] = cache_views(
            model, [im for _, im in ns], spec, views=[0], cut=args.cut
        )[:, 0]
        out["nonskin_path"] = np.asarray([n for n, _ in ns])
    np.savez(args.out, **out)
    _log(f"wrote {args.out}")
    return 0


def _load_cache(args: argparse.Namespace) -> dict[str, np.ndarray]:
    shards = [np.load(p) for p in sorted(args.dir.glob("cache_*.npz"))]
    if not shards:
        raise SystemExit(f"cv_train: no cache_*.npz under {args.dir}: run the cache step")
    order = np.concatenate([s["views"] for s in shards])
    maps = np.concatenate([s["train_maps"] for s in shards], axis=1)[:, np.argsort(order)]
    out = {"train_maps": maps, "train_path": shards[0]["train_path"]}
    for s in shards:
        for k in ("unseen_maps", "unseen_path", "nonskin_maps", "nonskin_path"):
            if k in s:
                out[k] = s[k]
    return out


def _train_one(args, cache, rows, train_idx, classes, val_idx=None, out=None):
    import torch
    from mpox_edge.converters.checkpoint import save_checkpoint, zoo_preprocess
    from mpox_edge.converters.trainfast import fit_top
    from mpox_edge.converters.zoo import create_model

    torch.set_num_threads(args.threads)
    y = np.asarray([classes.index(r["label"]) if r["label"] in classes else -1 for r in rows])
    model = create_model(ARCH, num_classes=len(classes), pretrained=True)
    maps = cache["train_maps"]
    val = None
    if val_idx is not None and len(val_idx):
        val = (maps[val_idx, 0], y[val_idx])
    hist = fit_top(
        model,
        maps[train_idx],
        y[train_idx],
        epochs=args.epochs,
        cut=args.cut,
        lr=args.lr,
        seed=args.seed,
        val=val,
        log=_log,
    )
    if out is not None:
        cfg = {
            "data": str(args.datasets),
            "arch": ARCH,
            "classes": classes,
            "splits": str(args.splits),
            "train_folds": sorted({int(rows[i]["fold"]) for i in train_idx}),
            "val_folds": sorted(
                {int(rows[i]["fold"]) for i in (val_idx if val_idx is not None else [])}
            ),
            "test_fold": args.test_fold,
            "epochs": args.epochs,
            "lr": args.lr,
            "label_smoothing": 0.1,
            "mixup": 0.2,
            "seed": args.seed,
            "pretrained": True,
            "augment_preset": args.augment,
            "partial_fine_tune": {
                "frozen_blocks": args.cut,
                "views": int(maps.shape[1]) - 1,
                "script": "scripts/cv_train.py",
            },
            "n_train": int(len(train_idx)),
            "torch": torch.__version__,
        }
        save_checkpoint(
            out,
            arch=ARCH,
            classes=classes,
            state_dict=model.state_dict(),
            epoch=args.epochs,
            val=None,
            train_config=cfg,
            preprocess={**asdict(zoo_preprocess(ARCH))},
        )
    return model, hist


def cmd_cv(args: argparse.Namespace) -> int:
    from mpox_edge.converters.trainfast import predict_top

    cache = _load_cache(args)
    rows, unseen = _rows(args)
    assert [r["path"] for r in rows] == list(cache["train_path"]), "cache is stale"
    fold = np.asarray([int(r["fold"]) for r in rows])
    for k in [int(v) for v in args.folds.split(",")]:
        tr, va = np.nonzero(fold != k)[0], np.nonzero(fold == k)[0]
        model, hist = _train_one(
            args, cache, rows, tr, CLASSES, va, out=args.dir / f"{ARCH}.fold{k}.pt"
        )
        maps0 = cache["train_maps"][:, 0]
        res = {}
        for part, m in (("val", maps0[va]), ("train", maps0[tr])):
            res[f"{part}_logits"], res[f"{part}_features"] = predict_top(model, m, args.cut)
        res["val_index"], res["train_index"] = va, tr
        uf = np.asarray([int(r["fold"]) for r in unseen])
        ui = np.nonzero(uf == k)[0]
        res["unseen_logits"], res["unseen_features"] = predict_top(
            model, cache["unseen_maps"][ui], args.cut
        )
        res["unseen_index"] = ui
        res["nonskin_logits"], res["nonskin_features"] = predict_top(
            model, cache["nonskin_maps"], args.cut
        )
        np.savez(args.dir / f"oof.fold{k}.npz", **res)
        (args.dir / f"{ARCH}.fold{k}.json").write_text(
            json.dumps({"fold": k, "history": hist}, indent=2) + "\n"
        )
        _log(f"fold {k}: val acc {hist[-1].get('val_accuracy')}")
    return 0


def cmd_final(args: argparse.Namespace) -> int:
    from mpox_edge.converters.trainfast import predict_top

    cache = _load_cache(args)
    rows, _ = _rows(args)
    tr = np.arange(len(rows))
    model, hist = _train_one(args, cache, rows, tr, CLASSES, out=args.dir / f"{ARCH}.final.pt")
    lo, fe = predict_top(model, cache["train_maps"][:, 0], args.cut)
    np.savez(
        args.dir / "final.train.npz",
        train_logits=lo,
        train_features=fe,
        train_label=np.asarray([CLASSES.index(r["label"]) for r in rows]),
    )
    (args.dir / f"{ARCH}.final.json").write_text(json.dumps({"history": hist}, indent=2) + "\n")
    return 0


def cmd_loco(args: argparse.Namespace) -> int:
    """Train on folds 0-2 without one class; score fold 3 (seen classes vs the held-out one)."""
    from mpox_edge.converters.trainfast import predict_top

    cache = _load_cache(args)
    rows, _ = _rows(args)
    for held in args.hold_out.split(","):
        classes = [c for c in CLASSES if c != held]
        fold = np.asarray([int(r["fold"]) for r in rows])
        lab = np.asarray([r["label"] for r in rows])
        tr = np.nonzero((fold != args.loco_val_fold) & (lab != held))[0]
        va = np.nonzero(fold == args.loco_val_fold)[0]
        model, hist = _train_one(args, cache, rows, tr, classes)
        maps0 = cache["train_maps"][:, 0]
        lo_tr, fe_tr = predict_top(model, maps0[tr], args.cut)
        lo, fe = predict_top(model, maps0[va], args.cut)
        ns_lo, ns_fe = predict_top(model, cache["nonskin_maps"], args.cut)
        np.savez(
            args.dir / f"loco.{held}.npz",
            classes=np.asarray(classes),
            train_features=fe_tr,
            train_label=np.asarray([classes.index(x) for x in lab[tr]]),
            val_logits=lo,
            val_features=fe,
            val_unseen=(lab[va] == held),
            val_label=np.asarray([classes.index(x) if x != held else -1 for x in lab[va]]),
            nonskin_logits=ns_lo,
            nonskin_features=ns_fe,
        )
        (args.dir / f"loco.{held}.json").write_text(json.dumps({"history": hist}, indent=2))
        _log(f"loco {held}: done")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("step", choices=("cache", "cv", "final", "loco"))
    ap.add_argument("--datasets", type=Path, default=_default_shared())
    ap.add_argument("--dir", type=Path, default=HERE / "runs" / "cv")
    ap.add_argument("--splits", type=Path, help="default: DIR/combined.csv")
    ap.add_argument("--views", default="0,1,2,3,4", help="cache: which views (0 = plain)")
    ap.add_argument("--out", type=Path, help="cache: output npz")
    ap.add_argument("--folds", default="0,1,2,3", help="cv: which CV models")
    ap.add_argument("--hold-out", default=",".join(CLASSES), help="loco: classes to hold out")
    ap.add_argument("--loco-val-fold", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--cut", type=int, default=14)
    ap.add_argument("--augment", default="shift")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--test-fold", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    args.splits = args.splits or args.dir / "combined.csv"
    args.dir.mkdir(parents=True, exist_ok=True)
    return {"cache": cmd_cache, "cv": cmd_cv, "final": cmd_final, "loco": cmd_loco}[args.step](args)


if __name__ == "__main__":
    sys.exit(main())
