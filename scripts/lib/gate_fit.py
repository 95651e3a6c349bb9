"""The quality gate's fitting machinery, a helper that scripts/fit_quality_gate.py runs: the
faults, the rules, the logistic scores, the threshold search and the figures (numpy)."""

from __future__ import annotations

import itertools
from typing import Any

import cv2
import numpy as np
from mpox_edge.edge.kiosk.qualityscore import SCORE_FEATURES, scores

# config key -> (measure, direction): "min" rejects below the threshold, "max" above. The
# learnt scores replace min_detail and max_saturated, which the fit leaves off.
RULES = {
    "min_sharpness": ("sharpness", "min"),
    "min_highlight": ("highlight", "min"),
    "max_brightness": ("brightness", "max"),
    "max_blur_score": ("blur_score", "max"),
    "max_glare_score": ("glare_score", "max"),
    "max_dark_score": ("dark_score", "max"),
    "min_skin": ("skin", "min"),
}
# min_skin is not searched: --skin-quantile sets it to that percentile of the real photos
# (no non-skin frame is used to fit it: they stay validation data for
# scripts/nonskin_kiosk.py); 0, the default, leaves it off (docs/eval.md: the trade-off).
OFF = {"min": 0.0, "max_brightness": 255.0, **{f"max_{n}_score": 100.0 for n in SCORE_FEATURES}}
FIXED_OFF = {
    "min_detail": 0.0,
    "max_saturated": 2.0,
    "min_contrast": 0.0,
    "min_brightness": 0.0,
    "max_clipped": 1.0,
}
ALL_RULES = {  # every rule of quality.py:assess_quality
    **RULES,
    "min_detail": ("detail", "min"),
    "max_saturated": ("saturated", "max"),
    "min_contrast": ("contrast", "min"),
    "min_brightness": ("brightness", "min"),
    "max_clipped": ("clipped", "max"),
}
QUANTILES = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)  # % of the real photos a single rule may reject


def exposure(img: np.ndarray, ev: float) -> np.ndarray:
    """Shift exposure by ``ev`` stops in (approximately) linear light, then clip."""
    lin = (img.astype(np.float32) / 255.0) ** 2.2 * (2.0**ev)
    return (255.0 * np.clip(lin, 0.0, 1.0) ** (1 / 2.2)).round().astype(np.uint8)


def motion(img: np.ndarray, frac: float, direction: int = 0) -> np.ndarray:
    """A straight smear of ``frac`` of the shorter side along 0, 90, 45 or 135 degrees."""
    n = max(3, int(round(frac * min(img.shape[:2]))) | 1)
    k = np.zeros((n, n), np.float32)
    if direction % 4 == 0:
        k[n // 2, :] = 1.0
    elif direction % 4 == 1:
        k[:, n // 2] = 1.0
    else:
        k = np.eye(n, dtype=np.float32) if direction % 4 == 2 else np.fliplr(np.eye(n))
    return cv2.filter2D(img, -1, np.ascontiguousarray(k / n, np.float32))


# Faults a kiosk camera produces, sized relative to the photo (so a 224 px crop and a 12 MP
# photo get the same fault): defocus, a person moving (the i-th photo along the i-th of four
# directions: a gate must not only catch one), auto-exposure 2.5 stops off.
FAULTS = {
    "blur": lambda im, i: cv2.GaussianBlur(im, (0, 0), 0.015 * min(im.shape[:2])),
    "motion": lambda im, i: motion(im, 0.05, i),
    "dark": lambda im, i: exposure(im, -2.5),
    "bright": lambda im, i: exposure(im, 2.5),
}
# which faulty copies each learnt score is fitted to catch
SCORES = {"blur": ("blur", "motion"), "glare": ("bright",), "dark": ("dark",)}


def logistic(x: np.ndarray, y: np.ndarray, lam: float = 1e-2) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by Newton's method, both classes weighted equally."""
    xb = np.c_[x, np.ones(len(x))]
    sw = np.where(y == 1, 0.5 / max(y.sum(), 1), 0.5 / max((1 - y).sum(), 1)) * len(y)
    w = np.zeros(xb.shape[1])
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -30, 30)))
        g = xb.T @ (sw * (p - y)) + lam * w
        h = (xb * (sw * p * (1 - p))[:, None]).T @ xb + lam * np.eye(len(w))
        step = np.linalg.solve(h, g)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[:-1], float(w[-1])


def fit_scores(real: list[dict[str, float]], fake: dict[str, list]) -> dict[str, Any]:
    """The coefficients of qualityscore.py's blur, glare and dark scores (its JSON form)."""
    out: dict[str, Any] = {}
    for name, feats in SCORE_FEATURES.items():
        bad = [m for k in SCORES[name] for m in fake[k]]
        x = np.array([[m[f] for f in feats] for m in real + bad], np.float64)
        y = np.r_[np.zeros(len(real)), np.ones(len(bad))]
        mean, scale = x.mean(0), x.std(0) + 1e-9
        w, b = logistic((x - mean) / scale, y)
        out[name] = {
            "features": feats,
            "mean": mean.tolist(),
            "scale": scale.tolist(),
            "weights": w.tolist(),
            "bias": b,
            "fitted_to_catch": list(SCORES[name]),
        }
    return out


def add_scores(data: list[dict[str, Any]], model: dict[str, Any]) -> None:
    for d in data:
        for m in d["real"] + [m for ms in d["fake"].values() for m in ms]:
            m.update(scores(model, m))


def _arr(ms: list[dict[str, float]], key: str) -> np.ndarray:
    return np.array([m[key] for m in ms], np.float64)


def rejects(ms: list[dict[str, float]], th: dict[str, float]) -> np.ndarray:
    out = np.zeros(len(ms), bool)
    for key, (m, d) in ALL_RULES.items():
        if key not in th:
            continue
        v = _arr(ms, m)
        out |= v < th[key] if d == "min" else v > th[key]
    return out


def fit(
    real: list[dict[str, float]], fake: dict[str, list], budget: float, skin_q: float = 0.0
) -> dict[str, float]:
    """Exhaustive search within the real budget: the highest mean catch rate over the fault
    types (each type weighs the same), then the fewest real photos sent to retake. Returns
    every rule's threshold (the unsearched ones off, FIXED_OFF)."""
    options: dict[str, list[tuple[float, np.ndarray, dict[str, np.ndarray]]]] = {}
    for key, (m, d) in RULES.items():
        v = _arr(real, m)
        off = OFF.get(key, OFF["min"])
        cands = [off] + [float(np.percentile(v, q if d == "min" else 100 - q)) for q in QUANTILES]
        if key == "min_skin":
            cands = [float(np.percentile(v, skin_q)) if skin_q > 0 else 0.0]
        opts = []
        for t in sorted(set(cands)):
            rej = v < t if d == "min" else v > t
            caught = {
                k: (_arr(f, m) < t if d == "min" else _arr(f, m) > t) for k, f in fake.items()
            }
            opts.append((t, rej, caught))
        options[key] = opts
    best: tuple[float, float, dict[str, float]] | None = None
    keys = list(RULES)
    for combo in itertools.product(*(options[k] for k in keys)):
        rej = np.logical_or.reduce([c[1] for c in combo])
        rate = float(rej.mean())
        if rate > budget:
            continue
        worst = float(
            np.mean([np.logical_or.reduce([c[2][k] for c in combo]).mean() for k in fake])
        )
        if best is None or (worst, -rate) > (best[0], -best[1]):
            best = (worst, rate, {k: c[0] for k, c in zip(keys, combo, strict=True)})
    if best is None:  # not even min_skin alone fits: everything else off
        off = {k: options[k][0][0] if k == "min_skin" else OFF.get(k, OFF["min"]) for k in keys}
        return {**off, **FIXED_OFF}
    return {**best[2], **FIXED_OFF}


def figures(data: list[dict[str, Any]], th: dict[str, float]) -> dict[str, Any]:
    """Real photos sent to retake (all, per class) and faulty copies caught, per fault."""
    real = [m for d in data for m in d["real"]]
    labels = [c for d in data for c in d["labels"]]
    rej = rejects(real, th)
    per_class = {
        c: {
            "n": int(sum(1 for x in labels if x == c)),
            "retake": int(rej[[x == c for x in labels]].sum()),
        }
        for c in sorted(set(labels))
    }
    out: dict[str, Any] = {
        "real_n": len(real),
        "real_retake": int(rej.sum()),
        "real_retake_rate": float(rej.mean()) if len(rej) else float("nan"),
        "real_per_class": per_class,
    }
    if data and data[0]["fake"]["blur"]:
        out["caught"] = {
            k: float(rejects([m for d in data for m in d["fake"][k]], th).mean()) for k in FAULTS
        }
        every = [m for d in data for k in FAULTS for m in d["fake"][k]]
        out["caught_all"] = float(rejects(every, th).mean())
    return out


def pooled(figs: list[dict[str, Any]]) -> dict[str, Any]:
    """Figures of several folds as one: counts summed, catch rates weighted by photos."""
    n = sum(f["real_n"] for f in figs)
    out: dict[str, Any] = {"real_n": n, "real_retake": sum(f["real_retake"] for f in figs)}
    out["real_retake_rate"] = out["real_retake"] / max(n, 1)
    out["caught"] = {k: sum(f["caught"][k] * f["real_n"] for f in figs) / max(n, 1) for k in FAULTS}
    out["caught_all"] = sum(f["caught_all"] * f["real_n"] for f in figs) / max(n, 1)
    return out
