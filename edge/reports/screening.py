"""The screening view of a collection: where each true class ends up, the unseen ones too.

A screener's answer per person is refer, unsure (both: "see a health worker"), clear, or
(at the kiosk) retake. Classes the model was never trained on (Cowpox, HFMD) count as "not
the positive class": sending them to a health worker is the right outcome for them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .accuracy import roc_auc, wilson_interval
from .reliability import calibration_report, selective_report

ANSWERS = ("refer", "unsure", "clear", "retake")
TO_HEALTH_WORKER = ("refer", "unsure")


def model_decisions(
    probs: np.ndarray, unsure: np.ndarray, pos: int, threshold: float | None
) -> list[str]:
    """Ungated answers: unsure first, then refer at ``threshold`` (argmax when None)."""
    p = np.asarray(probs, np.float64)
    said = (p.argmax(axis=1) == pos) if threshold is None else (p[:, pos] >= threshold)
    return [
        "unsure" if u else ("refer" if s else "clear")
        for u, s in zip(np.asarray(unsure, bool), said, strict=True)
    ]


def _rate(k: int, n: int) -> dict[str, Any]:
    return {
        "k": k,
        "n": n,
        "rate": k / n if n else math.nan,
        "ci95": wilson_interval(k, n),
    }


def decision_table(
    labels: Sequence[str], answers: Sequence[str], positive: str, known: Sequence[str]
) -> dict[str, Any]:
    """Per true class: counts of each answer; headline rates with 95% Wilson intervals."""
    per: dict[str, dict[str, Any]] = {}
    for lab, ans in zip(labels, answers, strict=True):
        row = per.setdefault(lab, {"n": 0, **dict.fromkeys(ANSWERS, 0)})
        row["n"] += 1
        row[ans] += 1
    for row in per.values():
        hw = row["refer"] + row["unsure"]
        row["to_health_worker"] = hw / row["n"]
        row["retake_rate"] = row["retake"] / row["n"]

    def pool(names: Sequence[str], key: Sequence[str]) -> dict[str, Any]:
        rows = [per[c] for c in names if c in per]
        k = sum(r[a] for r in rows for a in key)
        n = sum(r["n"] for r in rows)
        return _rate(k, n)

    negatives = [c for c in known if c != positive]
    unseen = sorted(set(per) - set(known))
    out: dict[str, Any] = {"per_class": per}
    if positive in per:
        out["sensitivity"] = pool([positive], TO_HEALTH_WORKER)  # refer or unsure
        out["sensitivity_refer_only"] = pool([positive], ["refer"])
    if any(c in per for c in negatives):
        out["specificity"] = pool(negatives, ["clear"])  # known non-positive classes, cleared
    for c in negatives:
        if c in per:
            out.setdefault("known_negative_to_health_worker", {})[c] = pool([c], TO_HEALTH_WORKER)
    if unseen:
        out["unseen_classes"] = unseen
        out["unseen_to_health_worker"] = pool(unseen, TO_HEALTH_WORKER)
    if "retake" in answers:
        out["retake"] = pool(list(per), ["retake"])
    return out


def collection_report(
    arrays: dict[str, np.ndarray],
    labels: Sequence[str],
    classes: Sequence[str],
    positive: str | None,
    threshold: float | None,
    kiosk: Sequence[str] = (),
) -> dict[str, Any]:
    """Screening, unseen-class, calibration and selective figures of one collection."""
    y, p, ood, uns = arrays["y"], arrays["probs"], arrays["ood"], arrays["unsure"]
    known = y >= 0
    out: dict[str, Any] = {
        "calibration": calibration_report(p[known], y[known]),
        "selective": selective_report(
            p[known], y[known], uns[known], ood[known] if np.isfinite(ood).all() else None
        ),
    }
    if (~known).any() and known.any():
        unseen = {"n": int((~known).sum()), "auroc_max_prob": roc_auc(~known, -p.max(axis=1))}
        if np.isfinite(ood).all():
            unseen["auroc_ood_score"] = roc_auc(~known, ood)
        out["unseen"] = unseen
    if positive is None or positive not in classes:
        return out
    pos = list(classes).index(positive)
    answers = model_decisions(p, uns, pos, threshold)
    out["screening_all"] = {
        "threshold": threshold,
        "auc": roc_auc(np.asarray(labels) == positive, p[:, pos]) if len(p) else math.nan,
        **decision_table(labels, answers, positive, classes),
    }
    if kiosk:
        out["kiosk"] = kiosk_report(labels, y, p, list(kiosk), positive, classes, answers)
    return out


def kiosk_report(
    labels: Sequence[str],
    y: np.ndarray,
    p: np.ndarray,
    kiosk: list[str],
    positive: str,
    classes: Sequence[str],
    ungated: list[str],
) -> dict[str, Any]:
    """The daemon's answers beside the ungated ones; 4-class accuracy on what passed."""
    passed = np.array([a != "retake" for a in kiosk], bool)
    known = y >= 0
    right = p.argmax(axis=1) == y
    m = passed & known
    gated = decision_table(labels, kiosk, positive, classes)
    gated["retake"] = _rate(int((~passed).sum()), len(kiosk))
    return {
        "gated": gated,
        "ungated": decision_table(labels, ungated, positive, classes),
        "accuracy_ungated": _rate(int((right & known).sum()), int(known.sum())),
        "accuracy_passed": _rate(int((right & m).sum()), int(m.sum())),
        "accuracy_of_retakes": _rate(
            int((right & known & ~passed).sum()), int((known & ~passed).sum())
        ),
    }
