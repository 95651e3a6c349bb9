"""``mpox-edge train``: fine-tune or distil a zoo model on an image folder (host side, CPU).

The protocol is the papers' (seed 002 table 4; seed 003): Adam, lr 1e-4, batch 32,
cross-entropy, augmentation on training images only, early stopping on a validation fold.
Fast-MpoxNet's auxiliary heads add their cross-entropy to the main loss (seed 002 §3.7).
With ``--teacher`` the student also matches the teacher's softened outputs (Hinton KD).

Fold 4 of MSID's split file is the held-out test set; this command refuses to train or
validate on the ``--test-fold``, so no number it prints has seen test data.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mpox_edge.edge.cliopts import add_json, comma_list, ints, write_json
from mpox_edge.edge.errors import UsageError

from .trainconfig import DEFAULT_CLASSES, TrainConfig
from .traindata import resolve_splits
from .trainloop import fit


def _val_folds(s: str) -> list[int]:
    """``ints``, or ``none``: no validation, fixed epochs, the last epoch is kept."""
    return [] if s.strip().lower() == "none" else ints(s)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="ImageFolder-style directory (one sub-folder per class)")
    p.add_argument("--arch", required=True, help="zoo architecture (see `mpox-edge zoo`)")
    p.add_argument("--out", required=True, help="checkpoint to write (best validation epoch)")
    p.add_argument("--splits", help="path,label,group,fold CSV (default: a grouped split)")
    p.add_argument("--train-folds", type=ints, default=[0, 1, 2], help="default 0,1,2")
    p.add_argument(
        "--val-folds",
        type=_val_folds,
        default=[3],
        help="default 3; 'none': train --epochs epochs on the train folds, keep the last",
    )
    p.add_argument("--test-fold", type=int, default=4, help="never used; -1: none (default 4)")
    p.add_argument("--folds", type=int, help="K-fold cross-validation over folds 0..K-1")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--patience", type=int, default=15, help="early-stopping patience (epochs)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--mixup", type=float, default=0.0, help="mixup alpha (0: off)")
    p.add_argument("--aux-weight", type=float, default=1.0, help="weight of each aux-head CE")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pretrained", action="store_true", help="start from ImageNet weights")
    p.add_argument("--freeze-backbone", action="store_true", help="train the head only")
    p.add_argument("--teacher", help="teacher checkpoint for knowledge distillation")
    p.add_argument("--distill-alpha", type=float, default=0.5)
    p.add_argument("--distill-temp", type=float, default=4.0)
    p.add_argument("--input-size", type=int, help="override the zoo's input size")
    p.add_argument(
        "--classes",
        type=comma_list(what="class names"),
        help="comma-separated output classes (default: the MSID four)",
    )
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers (0 or 1 here)")
    p.add_argument(
        "--augment",
        choices=("default", "shift"),
        default="default",
        help="augmentation preset; shift: aimed at other collections (see augment.py)",
    )
    p.add_argument(
        "--lr-schedule",
        choices=("constant", "cosine"),
        default="constant",
        help="cosine: decay the lr to 0 over --epochs (for fixed-epoch runs) (default: constant)",
    )
    add_json(p, "the result")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _config(args: argparse.Namespace) -> TrainConfig:
    classes = list(args.classes) if args.classes else DEFAULT_CLASSES
    cfg = TrainConfig(
        data=str(args.data),
        arch=args.arch,
        out=str(args.out),
        classes=classes,
        splits=args.splits,
        train_folds=list(args.train_folds),
        val_folds=list(args.val_folds),
        test_fold=args.test_fold,
        epochs=args.epochs,
        patience=args.patience,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing,
        mixup=args.mixup,
        aux_weight=args.aux_weight,
        seed=args.seed,
        pretrained=args.pretrained,
        freeze_backbone=args.freeze_backbone,
        teacher=args.teacher,
        distill_alpha=args.distill_alpha,
        distill_temp=args.distill_temp,
        input_size=args.input_size,
        threads=args.threads,
        workers=args.workers,
        augment=args.augment,
        lr_schedule=args.lr_schedule,
    )
    cfg.validate()
    return cfg


def _fold_out(out: str, k: int) -> str:
    p = Path(out)
    return str(p.with_name(f"{p.stem}.fold{k}{p.suffix or '.pt'}"))


def run(args: argparse.Namespace) -> int:
    import torch

    cfg = _config(args)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    progress = not args.no_progress
    try:
        if args.folds:
            result = cross_validate(cfg, k=args.folds, progress=progress)
        else:
            result = fit(cfg, progress=progress)
    except KeyboardInterrupt:
        # fit() already printed where its best checkpoint is; nothing half-written remains.
        print("mpox-edge train: interrupted", file=sys.stderr)
        return 130
    write_json(args.json, result)
    if args.json != "-":
        for line in summary_lines(result):
            print(line)
    return 0


def cross_validate(cfg: TrainConfig, *, k: int, progress: bool) -> dict[str, Any]:
    """Train K models, fold i validating on fold i and training on the other K-1."""
    if k < 2:
        raise UsageError("--folds needs K >= 2")
    if 0 <= cfg.test_fold < k:
        raise UsageError(f"--folds {k} would use test fold {cfg.test_fold}; use K <= it")
    splits = resolve_splits(cfg.data, cfg.classes, out=cfg.out, splits=cfg.splits, seed=cfg.seed)
    runs = []
    for i in range(k):
        sub = TrainConfig(**{**asdict(cfg), "out": _fold_out(cfg.out, i), "splits": splits})
        sub.train_folds = [j for j in range(k) if j != i]
        sub.val_folds = [i]
        runs.append(fit(sub, progress=progress))
    accs = [r["val"]["accuracy"] for r in runs]
    mean = sum(accs) / len(accs)
    std = math.sqrt(sum((a - mean) ** 2 for a in accs) / len(accs))
    return {
        "folds": runs,
        "mean_accuracy": mean,
        "std_accuracy": std,
    }


def summary_lines(result: dict[str, Any]) -> list[str]:
    """The end-of-run table: best epoch, validation accuracy, per-class and screening view."""
    if "folds" in result:
        lines = [f"{'fold':>4}  {'best epoch':>10}  {'val acc':>8}  checkpoint"]
        for r in result["folds"]:
            v = r["val_folds"][0]
            lines.append(f"{v:>4}  {r['best_epoch']:>10}  {r['val']['accuracy']:>8.4f}  {r['out']}")
        lines.append(
            f"mean val accuracy {result['mean_accuracy']:.4f} +- {result['std_accuracy']:.4f} "
            f"over {len(result['folds'])} folds"
        )
        return lines
    v = result["val"]
    if v is None:
        return [
            f"{result['arch']}: trained {result['epochs_run']} epochs "
            f"({result['seconds_per_epoch']:.0f} s/epoch) on folds {result['train_folds']}, "
            "no validation fold: the last epoch is kept",
            f"checkpoint: {result['out']}",
        ]
    lines = [
        f"{result['arch']}: best epoch {result['best_epoch']} of {result['epochs_run']} "
        f"({result['seconds_per_epoch']:.0f} s/epoch), validation folds {result['val_folds']}",
        *report_lines(v),
    ]
    lines.append(f"best checkpoint: {result['out']}")
    return lines


def report_lines(v: dict[str, Any]) -> list[str]:
    """A ``metrics.classification_report`` as a small table (training summary, eval script)."""
    lines = [
        f"n={v['n']}: accuracy {v['accuracy']:.4f}, macro F1 {v['macro_f1']:.4f}, "
        f"macro AUC {v['macro_auc']:.4f}",
        f"{'class':<12} {'support':>7} {'precision':>9} {'recall':>7} {'specif.':>7} {'f1':>6}",
    ]
    for c, m in v["per_class"].items():
        lines.append(
            f"{c:<12} {m['support']:>7} {m['precision']:>9.3f} {m['recall']:>7.3f} "
            f"{m['specificity']:>7.3f} {m['f1']:>6.3f}"
        )
    s = v.get("screening")
    if s:
        lo, hi = s["sensitivity_ci95"]
        slo, shi = s["specificity_ci95"]
        rule = "argmax" if s.get("threshold") is None else f"p >= {s['threshold']:.3f}"
        lines.append(
            f"{s['positive_class']} vs rest ({rule}): sensitivity {s['sensitivity']:.3f} "
            f"[{lo:.3f}, {hi:.3f}] ({s['tp']}/{s['tp'] + s['fn']}), specificity "
            f"{s['specificity']:.3f} [{slo:.3f}, {shi:.3f}] ({s['tn']}/{s['tn'] + s['fp']})"
        )
    return lines
