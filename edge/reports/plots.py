"""``eval --plots DIR``: the figures people look at rather than read, as PNG.

Confusion matrix (labelled counts), reliability diagram (15 bins, with ECE), ROC of the
positive class against everything else with the shipped operating point marked, and the
coverage-risk curve with the model's own "unsure" point. matplotlib is imported here only
(``pip install 'mpox-edge[plots]'``); a device never needs it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MissingDependencyError
from .reliability import coverage_risk


def require() -> Any:
    """matplotlib with a file-only backend, or one clear error naming the extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError(
            "--plots needs matplotlib: pip install 'mpox-edge[plots]'"
        ) from None
    return plt


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).strip("_") or "eval"


def write_all(
    out: Path, stem: str, rep: dict[str, Any], arr: dict[str, np.ndarray], clf: Any
) -> list[str]:
    """Write the four PNGs for one model on one collection; returns their paths."""
    plt = require()
    out.mkdir(parents=True, exist_ok=True)
    stem = _slug(stem)
    title = f"{rep['name']} ({rep['n_images']} images)"
    files = []
    for kind, draw in (
        ("confusion", _confusion),
        ("reliability", _reliability),
        ("roc", _roc),
        ("coverage-risk", _coverage),
    ):
        fig = draw(plt, rep, arr, list(clf.classes), title)
        if fig is None:
            continue
        path = out / f"{stem}-{kind}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        files.append(str(path))
    return files


def _confusion(plt: Any, rep: dict[str, Any], arr: Any, classes: list[str], title: str) -> Any:
    cm = np.asarray(rep["confusion_matrix"])
    # Unseen classes get their own rows: what the model called a Cowpox photo.
    labels, y, pred = arr["labels"], arr["y"], arr["probs"].argmax(axis=1)
    unseen = sorted({str(x) for x, k in zip(labels, y, strict=True) if k < 0})
    rows = [list(r) for r in cm] + [
        [int(((labels == u) & (pred == j)).sum()) for j in range(len(classes))] for u in unseen
    ]
    m = np.asarray(rows, float)
    norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.3 * len(classes) + 2.4, 0.9 * len(rows) + 2.0))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(rows)):
        for j in range(len(classes)):
            ax.text(
                j,
                i,
                f"{int(m[i, j])}\n{norm[i, j]:.0%}",
                ha="center",
                va="center",
                color="white" if norm[i, j] > 0.55 else "black",
                fontsize=9,
            )
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), classes + [f"{u} (unseen)" for u in unseen])
    if unseen:
        ax.axhline(len(classes) - 0.5, color="black", lw=1.5)
    ax.set_xlabel("predicted (argmax)")
    ax.set_ylabel("true class")
    ax.set_title(f"Confusion matrix: {title}\naccuracy {rep['accuracy']:.1%} on known classes")
    return fig


def _reliability(plt: Any, rep: dict[str, Any], arr: Any, classes: list[str], title: str) -> Any:
    cal = rep.get("calibration") or {}
    table = [b for b in cal.get("reliability", []) if b["n"]]
    if not table:
        return None
    fig, ax = plt.subplots(figsize=(5.2, 5.2))
    w = 1.0 / cal["bins"]
    ax.bar(
        [b["lo"] for b in table],
        [b["accuracy"] for b in table],
        width=w,
        align="edge",
        color="#4C72B0",
        edgecolor="white",
        label="accuracy in bin",
    )
    ax.hlines(
        [b["confidence"] for b in table],
        [b["lo"] for b in table],
        [b["hi"] for b in table],
        colors="#C44E52",
        lw=2.5,
        label="mean confidence in bin",
    )
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    for b in table:
        dark = b["accuracy"] > 0.08  # white on the bar, black where there is none
        ax.text(
            b["lo"] + w / 2,
            0.02,
            str(b["n"]),
            ha="center",
            fontsize=7,
            color="white" if dark else "black",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(
        f"Reliability: {title}\nECE ({cal['bins']} bins) {cal['ece']:.3f}, "
        f"Brier {cal['brier']:.3f}; bar labels: images per bin"
    )
    ax.legend(loc="upper left", fontsize=8)
    return fig


def _roc(plt: Any, rep: dict[str, Any], arr: Any, classes: list[str], title: str) -> Any:
    s = rep.get("screening_all")
    pos_name = (rep.get("screening") or {}).get("positive_class")
    if not s or pos_name is None:
        return None
    pos = classes.index(pos_name)
    is_pos = arr["labels"] == pos_name
    score = arr["probs"][:, pos]
    if is_pos.all() or not is_pos.any():
        return None
    order = np.argsort(-score, kind="mergesort")
    tpr = np.concatenate([[0], np.cumsum(is_pos[order]) / is_pos.sum()])
    fpr = np.concatenate([[0], np.cumsum(~is_pos[order]) / (~is_pos).sum()])
    fig, ax = plt.subplots(figsize=(5.2, 5.2))
    ax.plot(
        fpr,
        tpr,
        color="#4C72B0",
        lw=2,
        label=f"ROC (AUC {s['auc']:.3f}; unseen classes count as negatives)",
    )
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    thr = s["threshold"]
    said = score >= thr if thr is not None else arr["probs"].argmax(axis=1) == pos
    op_t, op_f = said[is_pos].mean(), said[~is_pos].mean()
    how = f"p >= {thr:.3f}" if thr is not None else "argmax"
    ax.plot(
        op_f,
        op_t,
        "o",
        color="#C44E52",
        ms=9,
        label=f"operating point ({how}):\nsensitivity {op_t:.1%}, false positives {op_f:.1%}",
    )
    ax.set_xlabel("false positive rate (non-mpox referred, unseen classes included)")
    ax.set_ylabel("true positive rate (mpox referred)")
    ax.set_title(f"{pos_name} vs rest: {title}")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def _coverage(plt: Any, rep: dict[str, Any], arr: Any, classes: list[str], title: str) -> Any:
    known = arr["y"] >= 0
    p, y = arr["probs"][known], arr["y"][known]
    if not len(p):
        return None
    wrong = p.argmax(axis=1) != y
    fig, ax = plt.subplots(figsize=(5.6, 4.4))
    cov, risk = coverage_risk(p.max(axis=1), wrong)
    ax.plot(cov, risk, color="#4C72B0", lw=2, label="ranked by top probability")
    ood = arr["ood"][known]
    if np.isfinite(ood).all():
        c2, r2 = coverage_risk(-ood, wrong)
        ax.plot(c2, r2, color="#55A868", lw=2, label="ranked by OOD score")
    un = (rep.get("selective") or {}).get("unsure")
    if un and un["n_unsure"]:
        ax.plot(un["coverage"], un["risk"], "o", color="#C44E52", ms=9, label="model's unsure")
    ax.axhline(wrong.mean(), color="grey", ls=":", lw=1, label="no abstention")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, max(0.05, float(risk.max()) * 1.1))
    ax.set_xlabel("coverage (share of images answered, the rest 'unsure')")
    ax.set_ylabel("error rate on the answered images (4-class)")
    ax.set_title(f"Coverage vs risk: {title}")
    ax.legend(loc="upper left", fontsize=8)
    return fig
