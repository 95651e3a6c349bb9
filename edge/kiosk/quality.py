"""The kiosk's quality gate: is a frame sharp and well exposed enough to run the model on?

Measured with OpenCV on a downscaled copy; the thresholds live in ``[decision]`` of the
config, and their defaults were fitted on real photos and synthetic faults by
``scripts/fit_quality_gate.py`` (docs/eval.md). A frame that fails becomes ``retake``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .config import DecisionConfig
from .qualityscore import blur_features, load_model, scores

QUALITY_SIDE = 256  # quality is measured on a grey copy 256-511 px (shorter side): stable, cheap


@dataclass(frozen=True)
class Quality:
    sharpness: float  # variance of the Laplacian
    brightness: float  # mean grey level 0..255
    clipped: float  # fraction of nearly black or nearly white pixels
    ok: bool
    reason: str = ""
    detail: float = math.nan  # fine detail along the weaker axis (see quality_measures)
    highlight: float = math.nan  # 99th-percentile grey: low when even the brightest is dark
    saturated: float = math.nan  # blown-out pixels (a channel >= 250), tinted ones twice: 0..2
    contrast: float = math.nan  # standard deviation of the grey levels (blank frame: ~0)
    blur_score: float = math.nan  # log-odds of blur or motion (qualityscore.py)
    glare_score: float = math.nan  # log-odds of over-exposure (qualityscore.py)
    dark_score: float = math.nan  # log-odds of under-exposure (qualityscore.py)
    skin: float = math.nan  # share of skin-coloured pixels (YCrCb box)


def quality_copy(image: np.ndarray) -> np.ndarray:
    """The frame halved until its shorter side is QUALITY_SIDE..2*QUALITY_SIDE (what the
    gate measures; exact 2x2 averaging is OpenCV's fast path)."""
    small = image
    while min(small.shape[:2]) >= 2 * QUALITY_SIDE:
        small = cv2.resize(
            small, (small.shape[1] // 2, small.shape[0] // 2), interpolation=cv2.INTER_AREA
        )
    return small


def quality_measures(image: np.ndarray, color_order: str) -> dict[str, float]:
    """The gate's measures, on a downscaled copy (what ``scripts/fit_quality_gate.py`` fits)."""
    # Halve until the shorter side is QUALITY_SIDE..2*QUALITY_SIDE (exact 2x2 averaging is
    # OpenCV's fast path), then go grey: 3x less than grey first. The whole gate: about 3 ms
    # per 720p frame here (scripts/bench_quality.py).
    small = quality_copy(image)
    grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY if color_order == "BGR" else cv2.COLOR_RGB2GRAY)
    _, sd = cv2.meanStdDev(cv2.Laplacian(grey, cv2.CV_16S))
    sharp = float(sd[0, 0]) ** 2
    # Fine detail: second-derivative energy along the weaker axis (motion blur flattens one
    # direction), relative to the contrast and to the same energy two octaves coarser (a
    # sharp photo keeps both; blur removes the fine scale only).
    coarse = cv2.pyrDown(cv2.pyrDown(grey)) if min(grey.shape) >= 16 else grey
    fine, ratio = math.inf, math.inf
    for dx in (0, 1):
        e0 = float(cv2.meanStdDev(cv2.Sobel(grey, cv2.CV_16S, 2 * dx, 2 - 2 * dx))[1][0, 0]) ** 2
        e2 = float(cv2.meanStdDev(cv2.Sobel(coarse, cv2.CV_16S, 2 * dx, 2 - 2 * dx))[1][0, 0]) ** 2
        fine, ratio = min(fine, e0), min(ratio, e0 / (e2 + 1e-3))
    hist = cv2.calcHist([grey], [0], None, [256], [0, 256]).ravel()
    total = float(hist.sum()) or 1.0
    levels = np.arange(256)
    bright = float(np.dot(hist, levels)) / total
    var = float(np.dot(hist, (levels - bright) ** 2)) / total
    cum = np.cumsum(hist) / total
    # Colour clipping on every other pixel and row (nearest: clipped values stay exact).
    half = np.ascontiguousarray(small[::2, ::2] if min(small.shape[:2]) >= 64 else small)
    b, g, r = cv2.split(half)
    top, low = cv2.max(cv2.max(b, g), r), cv2.min(cv2.min(b, g), r)
    blown = np.asarray(top) >= 250
    tinted_blown = blown & (np.asarray(low) < 230)
    p1, p5, p50 = (float(np.searchsorted(cum, q)) for q in (0.01, 0.05, 0.5))
    # skin-coloured share: the classic YCrCb box (Cr 133-173, Cb 77-127), every skin tone
    ycc = cv2.cvtColor(half, cv2.COLOR_BGR2YCrCb if color_order == "BGR" else cv2.COLOR_RGB2YCrCb)
    skin = cv2.inRange(ycc, (0, 133, 77), (255, 173, 127))
    return {
        **blur_features(grey, sharp, var),
        "p1": p1,
        "p5": p5,
        "p50": p50,
        "blown_any": float(np.count_nonzero(blown)) / b.size,
        "blown_all": float(np.count_nonzero(np.asarray(low) >= 250)) / b.size,
        "log_contrast": math.log(math.sqrt(var) + 1.0),
        "skin": float(np.count_nonzero(skin)) / b.size,
        "sharpness": sharp,
        "brightness": bright,
        "clipped": float(hist[:5].sum() + hist[251:].sum()) / total,
        "contrast": math.sqrt(var),
        "detail": fine / (var + 1.0) * ratio,
        "highlight": float(np.searchsorted(cum, 0.99)),
        # blown-out pixels; counted twice where only some channels clipped (skin clips red
        # first, while a white background clips all three)
        "saturated": float(np.count_nonzero(blown) + np.count_nonzero(tinted_blown)) / b.size,
    }


def assess_quality(image: np.ndarray, color_order: str, cfg: DecisionConfig) -> Quality:
    """Sharpness and exposure with OpenCV on a downscaled grey copy; thresholds from ``cfg``.

    The default thresholds were fitted on real training photos and synthetic blur and
    exposure faults (``scripts/fit_quality_gate.py``, docs/eval.md).
    """
    m = quality_measures(image, color_order)
    m.update(scores(load_model(cfg.quality_model), m))
    bright, clipped, sharp = m["brightness"], m["clipped"], m["sharpness"]
    reason = ""
    if bright < cfg.min_brightness:
        reason = f"too dark (brightness {bright:.0f} < {cfg.min_brightness:g})"
    elif m["dark_score"] > cfg.max_dark_score:
        reason = f"too dark (dark score {m['dark_score']:.1f} > {cfg.max_dark_score:g})"
    elif m["highlight"] < cfg.min_highlight:
        reason = f"too dark (brightest 1% at {m['highlight']:.0f} < {cfg.min_highlight:g})"
    elif bright > cfg.max_brightness:
        reason = f"too bright (brightness {bright:.0f} > {cfg.max_brightness:g})"
    elif m["glare_score"] > cfg.max_glare_score:
        reason = f"too bright (glare score {m['glare_score']:.1f} > {cfg.max_glare_score:g})"
    elif m["saturated"] > cfg.max_saturated:
        reason = f"too bright ({m['saturated']:.0%} of pixels blown out)"
    elif clipped > cfg.max_clipped:
        reason = f"badly exposed ({clipped:.0%} of pixels clipped)"
    elif m["contrast"] < cfg.min_contrast:
        reason = f"nothing in view (contrast {m['contrast']:.1f} < {cfg.min_contrast:g})"
    elif sharp < cfg.min_sharpness:
        reason = f"blurred (sharpness {sharp:.0f} < {cfg.min_sharpness:g})"
    elif m["detail"] < cfg.min_detail:
        reason = f"blurred (detail {m['detail']:.4f} < {cfg.min_detail:g})"
    elif m["blur_score"] > cfg.max_blur_score:
        reason = f"blurred (blur score {m['blur_score']:.1f} > {cfg.max_blur_score:g})"
    elif m["skin"] < cfg.min_skin:  # last: a dark or blurred frame gets that reason first
        reason = f"no skin in view (skin-coloured share {m['skin']:.1%} < {cfg.min_skin:.1%})"
    return Quality(
        sharp,
        bright,
        clipped,
        not reason,
        reason,
        m["detail"],
        m["highlight"],
        m["saturated"],
        m["contrast"],
        m["blur_score"],
        m["glare_score"],
        m["dark_score"],
        m["skin"],
    )
