"""Can the probabilities be trusted? Calibration and selective-prediction figures, numpy only.

Calibration: does "90% sure" mean right 9 times in 10? Expected calibration error (ECE,
top-label, equal-width bins, 15 by default as in Guo et al. 2017), the multi-class Brier
score and the reliability-diagram data behind them.

Selective prediction: if the screener may say "unsure" on the cases it ranks least
confident, how often is it wrong on the rest? The coverage-risk curve, its area (AURC,
lower is better), and the point the model's own ``unsure`` decision gives.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ECE_BINS = 15


def reliability_bins(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> dict[str, Any]:
    """Top-label confidence vs accuracy in ``bins`` equal-width bins; ECE and MCE."""
    p = np.asarray(probs, np.float64)
    y = np.asarray(y, np.int64)
    n = len(y)
    if n == 0:
        return {"bins": bins, "ece": float("nan"), "mce": float("nan"), "table": []}
    conf = p.max(axis=1)
    right = p.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)  # (lo, hi]
    table = []
    ece = mce = 0.0
    for b in range(bins):
        m = idx == b
        k = int(m.sum())
        row: dict[str, Any] = {"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": k}
        if k:
            c, a = float(conf[m].mean()), float(right[m].mean())
            row.update(confidence=c, accuracy=a)
            ece += k / n * abs(a - c)
            mce = max(mce, abs(a - c))
        table.append(row)
    return {"bins": bins, "ece": float(ece), "mce": float(mce), "table": table}


def brier_score(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean over images of the squared distance to the one-hot truth (0 best, 2 worst)."""
    p = np.asarray(probs, np.float64)
    if not len(p):
        return float("nan")
    onehot = np.eye(p.shape[1])[np.asarray(y, np.int64)]
    return float(((p - onehot) ** 2).sum(axis=1).mean())


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    p = np.asarray(probs, np.float64)
    if not len(p):
        return float("nan")
    return float(-np.log(np.clip(p[np.arange(len(p)), np.asarray(y, np.int64)], 1e-12, 1)).mean())


def calibration_report(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> dict[str, Any]:
    rel = reliability_bins(probs, y, bins)
    return {
        "n": len(y),
        "ece": rel["ece"],
        "mce": rel["mce"],
        "brier": brier_score(probs, y),
        "nll": nll(probs, y),
        "reliability": rel["table"],
        "bins": bins,
    }


def coverage_risk(confidence: np.ndarray, wrong: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Answer the k most confident (k = 1..n): coverage k/n and error rate among them."""
    c = np.asarray(confidence, np.float64)
    w = np.asarray(wrong, bool)
    if not len(c):
        return np.zeros(0), np.zeros(0)
    order = np.argsort(-c, kind="mergesort")
    k = np.arange(1, len(c) + 1)
    return k / len(c), np.cumsum(w[order]) / k


def selective_report(
    probs: np.ndarray,
    y: np.ndarray,
    unsure: np.ndarray | None = None,
    ood_score: np.ndarray | None = None,
) -> dict[str, Any]:
    """Coverage vs 4-class error when the least confident answers become "unsure".

    Ranked by the top probability, and by the OOD score (higher = less sure) when the
    model has one; ``unsure`` (the model's own decision) gives one operating point.
    """
    p = np.asarray(probs, np.float64)
    y = np.asarray(y, np.int64)
    if not len(p):
        return {"n": 0}
    wrong = p.argmax(axis=1) != y
    out: dict[str, Any] = {"n": len(y), "risk_at_full_coverage": float(wrong.mean())}
    rankings = {"max_prob": p.max(axis=1)}
    if ood_score is not None and np.isfinite(ood_score).all():
        rankings["ood_score"] = -np.asarray(ood_score, np.float64)
    for name, conf in rankings.items():
        cov, risk = coverage_risk(conf, wrong)
        grid = {}
        for target in (0.5, 0.8, 0.9, 0.95):
            i = int(np.searchsorted(cov, target - 1e-9))
            grid[f"{target:g}"] = float(risk[min(i, len(risk) - 1)])
        out[name] = {"aurc": float(risk.mean()), "risk_at_coverage": grid}
    if unsure is not None:
        u = np.asarray(unsure, bool)
        kept = ~u
        out["unsure"] = {
            "n_unsure": int(u.sum()),
            "coverage": float(kept.mean()),
            "risk": float(wrong[kept].mean()) if kept.any() else float("nan"),
            "errors_caught": int((wrong & u).sum()),
            "errors": int(wrong.sum()),
        }
    return out


def manifest_temperature(manifest: Any) -> float | None:
    """The manifest's fitted temperature (None: probabilities are a plain softmax)."""
    rec = getattr(manifest, "temperature", None)
    v = rec.get("value") if isinstance(rec, dict) else rec
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
