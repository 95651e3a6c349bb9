#!/usr/bin/env python
"""Evaluate PyTorch checkpoints on folds of a split file (the host-side twin of ``eval``).

    python scripts/eval_checkpoint.py runs/default/*.pt \\
        --data ../shared/datasets/msid --splits ../shared/datasets/msid/splits.csv \\
        --folds 4 --threshold-folds 3 --json runs/default/fold4.json

Images go through ``edge.preprocess.preprocess`` with the checkpoint's recorded spec, and
figures come from ``edge.metrics.classification_report``, exactly as training validation.
``--threshold-folds`` picks an mpox operating threshold on *those* folds (validation, never
the evaluated folds) as the highest p(mpox) cut keeping sensitivity >= --min-sensitivity,
and reports the evaluated folds at that threshold beside the plain argmax decision.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from mpox_edge.converters.checkpoint import preprocess_from_meta
from mpox_edge.converters.train import report_lines
from mpox_edge.converters.traindata import load_images, preprocess_all
from mpox_edge.converters.trainloop import POSITIVE_CLASS, evaluate_logits
from mpox_edge.edge.model.dataset import read_splits, split_set
from mpox_edge.edge.reports.accuracy import classification_report, screening_view, softmax


def probs_on_folds(
    model: Any, meta: dict[str, Any], *, data: str, splits: str, folds: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """(labels, softmax probabilities) of the model on the given folds."""
    classes = meta["classes"]
    items = split_set(data, read_splits(splits), classes, folds).items
    imgs = load_images(items)
    if imgs.skipped:
        print(f"skipped {len(imgs.skipped)} unreadable images", file=sys.stderr)
    x = preprocess_all(imgs.images, preprocess_from_meta(meta))
    return imgs.labels, softmax(evaluate_logits(model, x))


def pick_threshold(y: np.ndarray, p_pos: np.ndarray, pos: int, *, min_sens: float) -> float:
    """Highest threshold whose sensitivity on (y, p_pos) is still >= min_sens."""
    cands = np.sort(np.unique(p_pos[y == pos]))[::-1]
    n_pos = int((y == pos).sum())
    for t in cands:
        if (p_pos[y == pos] >= t).sum() / n_pos >= min_sens:
            return float(t)
    return 0.0


def evaluate_checkpoint(
    path: str,
    *,
    data: str,
    splits: str,
    folds: list[int],
    threshold_folds: list[int] | None = None,
    min_sensitivity: float = 0.95,
) -> dict[str, Any]:
    """classification_report on ``folds`` (+ a threshold chosen on ``threshold_folds``)."""
    from mpox_edge.converters.checkpoint import build_from_checkpoint

    model, meta = build_from_checkpoint(path)
    classes = meta["classes"]
    y, p = probs_on_folds(model, meta, data=data, splits=splits, folds=folds)
    rep = classification_report(y, p, classes, positive_class=POSITIVE_CLASS)
    out: dict[str, Any] = {"checkpoint": path, "arch": meta["arch"], "folds": folds, **rep}
    if threshold_folds and POSITIVE_CLASS in classes:
        pos = classes.index(POSITIVE_CLASS)
        yv, pv = probs_on_folds(model, meta, data=data, splits=splits, folds=threshold_folds)
        t = pick_threshold(yv, pv[:, pos], pos, min_sens=min_sensitivity)
        out["threshold"] = {
            "chosen_on_folds": threshold_folds,
            "min_sensitivity": min_sensitivity,
            "value": t,
            "on_threshold_folds": screening_view(yv, pv, pos, POSITIVE_CLASS, t),
            "on_evaluated_folds": screening_view(y, p, pos, POSITIVE_CLASS, t),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--data", required=True)
    ap.add_argument("--splits", required=True)
    ap.add_argument("--folds", default="4", help="folds to evaluate (default 4, the test fold)")
    ap.add_argument("--threshold-folds", default="", help="folds to pick the mpox threshold on")
    ap.add_argument("--min-sensitivity", type=float, default=0.95)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    folds = [int(v) for v in a.folds.split(",")]
    tfolds = [int(v) for v in a.threshold_folds.split(",") if v]
    results = []
    for ck in a.checkpoints:
        r = evaluate_checkpoint(
            ck,
            data=a.data,
            splits=a.splits,
            folds=folds,
            threshold_folds=tfolds,
            min_sensitivity=a.min_sensitivity,
        )
        results.append(r)
        print(f"== {ck} ({r['arch']}) on folds {folds}")
        for line in report_lines(r):
            print(line)
        if "threshold" in r:
            th = r["threshold"]
            print(f"threshold chosen on folds {tfolds}: p(mpox) >= {th['value']:.4f}")
            for line in report_lines({**r, "screening": th["on_evaluated_folds"]})[-1:]:
                print(line)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
