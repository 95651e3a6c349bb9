"""Accuracy figures the papers report, in numpy only, so the device computes the same numbers.

Used by ``mpox-edge eval``, ``mpox-edge bench`` and training-time validation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def wilson_interval(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a proportion k/n (sane at 0 and n, unlike Wald)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Binary ROC AUC by the rank (Mann-Whitney) formula, ties averaged."""
    y = np.asarray(y_true).astype(bool)
    npos, nneg = int(y.sum()), int((~y).sum())
    if npos == 0 or nneg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    s = np.asarray(score)[order]
    ranks = np.empty(len(s), dtype=np.float64)
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - npos * (npos + 1) / 2.0) / (npos * nneg))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def _div(a: float, b: float) -> float:
    return float(a / b) if b else float("nan")


def classification_report(
    y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    *,
    positive_class: str | None = None,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Every figure the project reports for one model on one labelled set."""
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    n = len(classes)
    pred = p.argmax(axis=1) if len(p) else np.zeros(0, np.int64)
    cm = confusion_matrix(y, pred, n)
    total = int(cm.sum())
    per_class: dict[str, dict[str, float]] = {}
    for i, c in enumerate(classes):
        tp = cm[i, i]
        fn = cm[i].sum() - tp
        fp = cm[:, i].sum() - tp
        tn = total - tp - fn - fp
        prec, rec = _div(tp, tp + fp), _div(tp, tp + fn)
        per_class[c] = {
            "support": int(cm[i].sum()),
            "precision": prec,
            "recall": rec,
            "specificity": _div(tn, tn + fp),
            "f1": _div(2 * prec * rec, prec + rec) if tp else 0.0,
            "auc": roc_auc(y == i, p[:, i]) if total else float("nan"),
        }
    onehot = np.eye(n, dtype=bool)[y] if total else np.zeros((0, n), bool)
    aucs = [v["auc"] for v in per_class.values() if not math.isnan(v["auc"])]
    report: dict[str, Any] = {
        "n": total,
        "accuracy": _div(np.trace(cm), total),
        "per_class": per_class,
        "macro_f1": float(np.mean([v["f1"] for v in per_class.values()])),
        "macro_auc": float(np.mean(aucs)) if aucs else float("nan"),
        "micro_auc": roc_auc(onehot.ravel(), p.ravel()) if total else float("nan"),
        "confusion_matrix": cm.tolist(),
        "classes": list(classes),
    }
    if positive_class is not None and positive_class in classes:
        pos = list(classes).index(positive_class)
        report["screening"] = screening_view(y, p, pos, positive_class, threshold)
        if threshold is not None:  # keep the plain argmax view beside the tuned one
            report["screening_argmax"] = screening_view(y, p, pos, positive_class)
    return report


def screening_view(
    y: np.ndarray, p: np.ndarray, pos: int, name: str, threshold: float | None = None
) -> dict[str, Any]:
    """Mpox vs everything else: sensitivity and specificity with 95% Wilson intervals.

    Without a threshold the decision is the 4-class argmax; with one it is
    ``p[pos] >= threshold`` (a threshold must be chosen on validation data, never on test).
    """
    is_pos = y == pos
    said_pos = (p.argmax(axis=1) == pos) if threshold is None else (p[:, pos] >= threshold)
    tp = int((is_pos & said_pos).sum())
    fn = int((is_pos & ~said_pos).sum())
    tn = int((~is_pos & ~said_pos).sum())
    fp = int((~is_pos & said_pos).sum())
    return {
        "positive_class": name,
        "threshold": threshold,
        "tp": tp,
        "fn": fn,
        "tn": tn,
        "fp": fp,
        "sensitivity": _div(tp, tp + fn),
        "sensitivity_ci95": wilson_interval(tp, tp + fn),
        "specificity": _div(tn, tn + fp),
        "specificity_ci95": wilson_interval(tn, tn + fp),
        "auc": roc_auc(is_pos, p[:, pos]),
    }


def average_fps(latencies_s: Sequence[float]) -> float:
    """Average FPS as the compared mpox edge-model papers define it: the mean over N images
    of 1/latency (not N / total time, which bench reports as throughput)."""
    lat = [t for t in latencies_s if t > 0]
    return float(np.mean([1.0 / t for t in lat])) if lat else float("nan")


def practicality_scores(rows: Sequence[dict[str, float]]) -> list[float]:
    """The Practicality Score of the compared papers: min-max normalise accuracy, FPS, mpox
    recall and mpox specificity across the compared models, weighted 0.15, 0.40, 0.35, 0.15.

    Each row needs keys ``accuracy``, ``fps``, ``recall``, ``specificity``. A column that
    is constant across models normalises to 1 for all of them.
    """
    weights = {"accuracy": 0.15, "fps": 0.40, "recall": 0.35, "specificity": 0.15}
    out = [0.0] * len(rows)
    for k, w in weights.items():
        vals = np.array([r[k] for r in rows], dtype=np.float64)
        lo, hi = vals.min(initial=np.inf), vals.max(initial=-np.inf)
        norm = np.ones_like(vals) if hi - lo == 0 else (vals - lo) / (hi - lo)
        for i, v in enumerate(norm):
            out[i] += w * float(v)
    return out


def threshold_for_sensitivity(y: np.ndarray, p_pos: np.ndarray, target: float) -> float:
    """The highest threshold on the positive probability whose sensitivity reaches ``target``.

    Choose it on validation data only; the test set then reports what it gives.
    """
    pos = np.sort(np.asarray(p_pos, dtype=np.float64)[np.asarray(y, dtype=bool)])
    if not len(pos):
        raise ValueError("no positive examples to choose a threshold on")
    k = int(np.floor((1.0 - target) * len(pos) + 1e-9))  # positives we may miss
    return float(pos[min(k, len(pos) - 1)])
