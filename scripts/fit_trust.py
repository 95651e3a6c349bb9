#!/usr/bin/env python3
"""Fit temperature, screening threshold and the "unsure" score on out-of-fold data only.

    python3 scripts/fit_trust.py --cv-dir runs/cv15 --loco-dir runs/cv \
        [--model-dir edge/data/default_model --final-train runs/cv15/final.train.npz] \
        --json models/trust-fit.json

Inputs are ``scripts/cv_train.py`` outputs: pooled out-of-fold (OOF) logits/features of the
4 CV models over folds 0-3 of MSID + msld2-dev, their scores of msld2-dev Cowpox/HFMD
(folds 0-3) and non-skin frames, and leave-one-class-out (LOCO) runs. No test fold is read.

1. temperature: minimises the NLL of the pooled OOF logits (ECE 15 bins, Brier before/after);
2. screening threshold: the largest calibrated p(mpox) keeping OOF sensitivity >= target,
   with Wilson 95% intervals of sensitivity and specificity there;
3. OOD kind: the one with the best mean LOCO unseen-class AUROC (each LOCO model never saw
   its held-out class; Mahalanobis statistics from that model's own training features);
   its threshold: the ``--unsure-rate`` quantile of OOF in-distribution scores (each CV
   model's statistics from its own training folds, as the shipped model's are).
With ``--model-dir`` the manifest gains ``temperature``, ``ood`` and the new
``screening_threshold``, and the final model's statistics file is written beside it.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent.parent
CLASSES = ["Chickenpox", "Measles", "Monkeypox", "Normal"]
POS = CLASSES.index("Monkeypox")
STATS_FILE = "ood_stats.npz"
# candidates compared on LOCO: name -> (trust.py kind, Mahalanobis fit parameters). PCA
# projections were tried first and dropped: on OOF data they discard exactly the directions
# where non-skin frames differ (non-skin AUROC 0.64 at 128 dims vs 0.96 in full, runs/cv)
CANDIDATES: dict[str, tuple[str, dict[str, Any] | None]] = {
    "energy": ("energy", None),
    "maxlogit": ("maxlogit", None),
    "msp": ("msp", None),
    "mahalanobis": ("mahalanobis", {"dims": None, "normalize": False, "shrinkage": 0.1}),
    "mahalanobis-l2": ("mahalanobis", {"dims": None, "normalize": True, "shrinkage": 0.1}),
}


def wilson(k: int, n: int, z: float = 1.959964) -> list[float]:
    if n == 0:
        return [float("nan"), float("nan")]
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return [max(0.0, c - h), min(1.0, c + h)]


def softmax_t(z: np.ndarray, t: float) -> np.ndarray:
    from mpox_edge.edge.model.trust import calibrated_probs

    return calibrated_probs(z, t)


def nll(z: np.ndarray, y: np.ndarray, t: float) -> float:
    p = softmax_t(z, t)
    return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1)).mean())


def ece(p: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    conf, pred = p.max(1), p.argmax(1)
    edges = np.linspace(0, 1, bins + 1)
    e = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            e += m.mean() * abs((pred[m] == y[m]).mean() - conf[m].mean())
    return float(e)


def brier(p: np.ndarray, y: np.ndarray) -> float:
    return float(((p - np.eye(p.shape[1])[y]) ** 2).sum(1).mean())


def fit_temperature(z: np.ndarray, y: np.ndarray) -> float:
    grid = np.exp(np.linspace(math.log(0.2), math.log(10), 200))
    t = float(grid[np.argmin([nll(z, y, g) for g in grid])])
    lo, hi = t / 1.1, t * 1.1  # golden-section refinement
    g = (math.sqrt(5) - 1) / 2
    for _ in range(40):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        if nll(z, y, a) < nll(z, y, b):
            hi = b
        else:
            lo = a
    return (lo + hi) / 2


def auroc(neg: np.ndarray, pos: np.ndarray) -> float:
    """P(score_pos > score_neg) (+ half ties): OOD should score higher."""
    s = np.concatenate([neg, pos])
    r = np.empty(len(s))
    order = np.argsort(s, kind="mergesort")
    r[order] = np.arange(1, len(s) + 1)
    for v in np.unique(s):  # average ranks of ties
        m = s == v
        if m.sum() > 1:
            r[m] = r[m].mean()
    return float((r[len(neg) :].sum() - len(pos) * (len(pos) + 1) / 2) / (len(neg) * len(pos)))


def scores(name: str, logits, feats, train_feats=None, train_labels=None, t: float = 1.0):
    from mpox_edge.edge.model.trust import OodStats, ood_scores

    kind, params = CANDIDATES[name]
    stats = None
    if params is not None:
        stats = OodStats.fit(train_feats, train_labels, **params)
    return ood_scores(logits, feats, kind, temperature=t, stats=stats)


def screening(p_pos: np.ndarray, is_pos: np.ndarray, target: float) -> dict[str, Any]:
    pos = np.sort(p_pos[is_pos])
    k = int(math.floor((1 - target) * len(pos) + 1e-9))  # may miss at most k positives
    thr = float(pos[k]) if k < len(pos) else float(pos[-1])
    ref = p_pos >= thr
    tp, fn = int((ref & is_pos).sum()), int((~ref & is_pos).sum())
    tn, fp = int((~ref & ~is_pos).sum()), int((ref & ~is_pos).sum())
    return {
        "value": thr,
        "target_sensitivity": target,
        "method": "pooled out-of-fold",
        "n": int(len(p_pos)),
        "sensitivity": tp / max(tp + fn, 1),
        "sensitivity_ci95": wilson(tp, tp + fn),
        "specificity": tn / max(tn + fp, 1),
        "specificity_ci95": wilson(tn, tn + fp),
        "tp": tp,
        "fn": fn,
        "tn": tn,
        "fp": fp,
    }


def load_oof(cv: Path, splits: Path) -> dict[str, Any]:
    with splits.open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if int(r["fold"]) != 4]
    parts: dict[str, list] = {}
    for k in range(4):
        z = np.load(cv / f"oof.fold{k}.npz")
        tr_y = np.asarray([CLASSES.index(rows[i]["label"]) for i in z["train_index"]])
        parts.setdefault("val_logits", []).append(z["val_logits"])
        parts.setdefault("val_features", []).append(z["val_features"])
        parts.setdefault("val_index", []).append(z["val_index"])
        parts.setdefault("model", []).append(np.full(len(z["val_index"]), k))
        for p in ("unseen", "nonskin"):
            parts.setdefault(f"{p}_logits", []).append(z[f"{p}_logits"])
            parts.setdefault(f"{p}_features", []).append(z[f"{p}_features"])
            parts.setdefault(f"{p}_model", []).append(np.full(len(z[f"{p}_logits"]), k))
        parts.setdefault("train", []).append((z["train_features"], tr_y))
    out = {k: (np.concatenate(v) if k != "train" else v) for k, v in parts.items()}
    idx = out["val_index"]
    out["y"] = np.asarray([CLASSES.index(rows[i]["label"]) for i in idx])
    out["collection"] = np.asarray([rows[i]["collection"] for i in idx])
    return out


def load_val_npz(path: Path) -> dict[str, Any]:
    """Validation predictions in OOF form: one model's (``scripts/predict_model.py``) or the
    pooled out-of-fold predictions of CV models (``scripts/cv_oof.py``, a ``*_model`` column
    naming the model of each row; each model's own training features for its statistics)."""
    z = np.load(path)

    def model_of(part: str) -> np.ndarray:
        key = f"{part}_model"
        return z[key].astype(int) if key in z.files else np.zeros(len(z[f"{part}_logits"]), int)

    ids = sorted(set(model_of("val").tolist()))
    remap = {k: i for i, k in enumerate(ids)}  # cv_scores indexes ``train`` by position
    tr_m = model_of("train")
    out: dict[str, Any] = {
        "val_logits": z["val_logits"],
        "val_features": z["val_features"],
        "y": z["val_label"],
        "collection": z["val_collection"],
        "model": np.asarray([remap[k] for k in model_of("val")], int),
        "train": [(z["train_features"][tr_m == k], z["train_label"][tr_m == k]) for k in ids],
    }
    for p in ("unseen", "nonskin"):
        out[f"{p}_logits"], out[f"{p}_features"] = z[f"{p}_logits"], z[f"{p}_features"]
        out[f"{p}_model"] = np.asarray([remap[k] for k in model_of(p)], int)
    return out


def cv_scores(kind: str, d: dict, part: str, t: float) -> np.ndarray:
    """Scores of a part, each row by its own CV model (Mahalanobis: that model's stats)."""
    models = d["model"] if part == "val" else d[f"{part}_model"]
    out = np.empty(len(models))
    for k in range(len(d["train"])):
        m = models == k
        trf, trl = d["train"][k]
        out[m] = scores(kind, d[f"{part}_logits"][m], d[f"{part}_features"][m], trf, trl, t)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cv-dir", type=Path, help="cv_train.py output (pooled OOF)")
    ap.add_argument(
        "--val-npz",
        type=Path,
        help="instead: predict_model.py (one model) or cv_oof.py (pooled CV models) output",
    )
    ap.add_argument("--val-desc", default="", help="what --val-npz holds (for the manifest)")
    ap.add_argument("--loco-dir", type=Path, help="default: --cv-dir")
    ap.add_argument("--splits", type=Path, help="default: CV_DIR/combined.csv")
    ap.add_argument("--target-sensitivity", type=float, default=0.95)
    ap.add_argument(
        "--unsure-rate",
        type=float,
        default=0.05,
        help="share of in-distribution OOF photos the threshold sends to unsure",
    )
    ap.add_argument("--kind", help="force an OOD kind (default: best mean LOCO AUROC)")
    ap.add_argument("--model-dir", type=Path, help="write the fitted fields into this manifest")
    ap.add_argument("--final-train", type=Path, help="final model's training features (npz)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.val_npz:
        d = load_val_npz(args.val_npz)
        source = f"validation predictions ({args.val_desc or args.val_npz.name})"
    elif args.cv_dir:
        d = load_oof(args.cv_dir, args.splits or args.cv_dir / "combined.csv")
        source = f"pooled out-of-fold logits of 4 CV models ({args.cv_dir}), folds 0-3"
    else:
        ap.error("give --cv-dir or --val-npz")
    args.source = source
    z, y, coll = d["val_logits"], d["y"], d["collection"]
    t = fit_temperature(z, y)
    rep: dict[str, Any] = {"n": int(len(y)), "source": source}
    cal = {}
    for name, m in [("all", np.ones(len(y), bool))] + [(c, coll == c) for c in np.unique(coll)]:
        p0, p1 = softmax_t(z[m], 1.0), softmax_t(z[m], t)
        cal[name] = {
            "n": int(m.sum()),
            "accuracy": float((p0.argmax(1) == y[m]).mean()),
            "ece_before": ece(p0, y[m]),
            "ece_after": ece(p1, y[m]),
            "brier_before": brier(p0, y[m]),
            "brier_after": brier(p1, y[m]),
            "nll_before": nll(z[m], y[m], 1.0),
            "nll_after": nll(z[m], y[m], t),
        }
    rep["temperature"] = {"value": t, "by_collection": cal}
    p = softmax_t(z, t)
    scr = screening(p[:, POS], y == POS, args.target_sensitivity)
    ref = p[:, POS] >= scr["value"]
    scr["by_collection"] = {
        c: {
            "sensitivity": float(ref[(coll == c) & (y == POS)].mean()),
            "normal_referred": float(ref[(coll == c) & (y == CLASSES.index("Normal"))].mean()),
            "n": int((coll == c).sum()),
        }
        for c in np.unique(coll)
    }
    pu = softmax_t(d["unseen_logits"], t)[:, POS]
    scr["unseen_referred"] = float((pu >= scr["value"]).mean())
    rep["screening_threshold"] = scr
    # OOD kinds: LOCO (choice), then OOF in-dist vs unseen diseases / non-skin (reported)
    loco_dir = args.loco_dir or args.cv_dir
    if loco_dir is None:
        ap.error("give --loco-dir")
    kinds: dict[str, Any] = {}
    for kind in CANDIDATES:
        per = {}
        for f in sorted(loco_dir.glob("loco.*.npz")):
            L = np.load(f)
            s = scores(
                kind, L["val_logits"], L["val_features"], L["train_features"], L["train_label"], t
            )
            u = L["val_unseen"].astype(bool)
            per[f.stem.split(".", 1)[1]] = auroc(s[~u], s[u])
        ind = cv_scores(kind, d, "val", t)
        uns = cv_scores(kind, d, "unseen", t)
        ns = cv_scores(kind, d, "nonskin", t)
        kinds[kind] = {
            "loco_auroc": per,
            "loco_auroc_mean": float(np.mean(list(per.values()))) if per else None,
            "cowpox_hfmd_auroc": auroc(ind, uns),
            "nonskin_auroc": auroc(ind, ns),
            "_ind": ind,
            "_uns": uns,
            "_ns": ns,
        }
    best = args.kind or max(kinds, key=lambda k: kinds[k]["loco_auroc_mean"] or 0)
    kb = kinds[best]
    thr = float(np.quantile(kb["_ind"], 1 - args.unsure_rate))
    uns_ref = (pu >= scr["value"]) | (kb["_uns"] > thr)
    ood = {
        "kind": CANDIDATES[best][0],
        "candidate": best,
        "threshold": thr,
        "fitted_on": source,
        "chosen_by": (
            "given (--kind)" if args.kind else "best mean leave-one-class-out unseen-class AUROC"
        ),
        "rule": f"{1 - args.unsure_rate:.2f} quantile of in-distribution validation scores",
        "in_distribution_unsure": float((kb["_ind"] > thr).mean()),
        "cowpox_hfmd_unsure": float((kb["_uns"] > thr).mean()),
        "cowpox_hfmd_unsure_or_refer": float(uns_ref.mean()),
        "nonskin_unsure": float((kb["_ns"] > thr).mean()),
        "n_in_distribution": int(len(kb["_ind"])),
        "n_cowpox_hfmd": int(len(kb["_uns"])),
        "n_nonskin": int(len(kb["_ns"])),
        "loco_auroc_mean": kb["loco_auroc_mean"],
    }
    if CANDIDATES[best][1] is not None:
        ood["params"] = CANDIDATES[best][1]
    rep["ood"] = ood
    rep["ood_kinds"] = {
        k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")} for k, v in kinds.items()
    }
    if args.val_npz:
        n_models = len(d["train"])
        scr["method"] = (
            f"pooled out-of-fold predictions of {n_models} cross-validation models"
            if n_models > 1
            else "validation folds the model never trained on"
        )
    if args.model_dir:
        write_manifest(args, rep, t, cal["all"], scr, ood)
    text = json.dumps(rep, indent=2, default=float)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(text)
    return 0


def write_manifest(args, rep, t, cal_all, scr, ood) -> None:
    from mpox_edge.edge.model.manifest import ModelDir, sha256_file
    from mpox_edge.edge.model.trust import OodStats

    md = ModelDir.load(args.model_dir)
    m = md.manifest
    fitted_on = args.source
    m.temperature = {
        "value": t,
        "fitted_on": fitted_on,
        "n": cal_all["n"],
        "ece_before": cal_all["ece_before"],
        "ece_after": cal_all["ece_after"],
        "brier_before": cal_all["brier_before"],
        "brier_after": cal_all["brier_after"],
    }
    m.screening_threshold = {k: v for k, v in scr.items() if k != "by_collection"} | {
        "chosen_on": fitted_on,
        "applies_to": "temperature-calibrated probability",
    }
    sec = {k: v for k, v in ood.items()}
    params = CANDIDATES[ood["candidate"]][1]
    if params is not None:
        src = args.final_train or args.val_npz  # both hold train_features/train_label
        if not src:
            raise SystemExit("fit_trust: a Mahalanobis score needs --final-train")
        f = np.load(src)
        OodStats.fit(f["train_features"], f["train_label"], **params).save(md.path / STATS_FILE)
        sec["stats_file"] = STATS_FILE
        sec["sha256"] = sha256_file(md.path / STATS_FILE)
        sec["stats_from"] = "the shipped model's features of its training images (folds 0-3)"
    m.ood = sec
    md.save()


if __name__ == "__main__":
    sys.exit(main())
