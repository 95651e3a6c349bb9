"""Learnt scores for the quality gate: "blurred", "blown out", "too dark"; logistic models.

Single thresholds on sharpness cannot tell a soft, upscaled web photo (which must pass)
from a frame smeared by motion (which must not): both have little fine detail. What
differs is *how* detail falls off: motion removes it along one direction and only at fine
scales, defocus at fine scales in every direction, a soft photo a little everywhere. So
the blur score reads second-derivative energy along four directions (0, 45, 90, 135
degrees) at three scales and takes direction-free statistics of it (the weakest and the
strongest direction, fine-to-coarse ratios); the glare and dark scores read the grey-level
distribution and the share of blown-out pixels. Each score is the log-odds of a logistic
model fitted by ``scripts/fit_quality_gate.py`` on real training photos against the same
photos with synthetic faults; the coefficients live in ``edge/data/quality/gate.json``
(or the file ``[decision] quality_model`` names), the thresholds in ``[decision]``.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import ConfigError

BUNDLED = Path(__file__).resolve().parents[1] / "data" / "quality" / "gate.json"
# 3-tap second differences along 0, 90, 45 and 135 degrees (diagonals: step sqrt(2), so
# their energy is divided by 4 to be on the axes' scale).
_KERNELS = [
    np.array([[1, -2, 1]], np.float32),
    np.array([[1], [-2], [1]], np.float32),
    np.array([[1, 0, 0], [0, -2, 0], [0, 0, 1]], np.float32),
    np.array([[0, 0, 1], [0, -2, 0], [1, 0, 0]], np.float32),
]
_DIAG = np.array([1.0, 1.0, 0.25, 0.25])
BLUR_FEATURES = [
    "e0_min", "e0_max", "e1_min", "e1_max", "r02_min", "r02_max", "r01_min", "r01_max",
    "r12_min", "r12_max", "aniso0", "aniso1", "log_sharpness",
]  # fmt: skip
EXPOSURE_FEATURES = [
    "brightness", "clipped", "log_contrast", "highlight", "saturated", "p1", "p5", "p50",
    "blown_any", "blown_all",
]  # fmt: skip

# the three scores and what each reads: blur (defocus, motion), glare (over-), dark (under-exposure)
SCORE_FEATURES = {"blur": BLUR_FEATURES, "glare": EXPOSURE_FEATURES, "dark": EXPOSURE_FEATURES}


def blur_features(grey: np.ndarray, sharpness: float, var: float) -> dict[str, float]:
    """Directional fine/coarse detail of a grey uint8 image (log scale, contrast-free;
    ``var``: its grey-level variance). Integer filters on uint8: about 0.5 ms at 640x360."""
    g = grey
    e = np.empty((3, 4))
    for s in range(3):
        for j, k in enumerate(_KERNELS):
            _, sd = cv2.meanStdDev(cv2.filter2D(g, cv2.CV_16S, k, borderType=cv2.BORDER_REPLICATE))
            e[s, j] = float(sd[0, 0]) ** 2 * _DIAG[j] / (var + 1.0) + 1e-9
        if min(g.shape) >= 16:
            g = cv2.pyrDown(g)
    le = np.log(e)
    r02, r01, r12 = le[0] - le[2], le[0] - le[1], le[1] - le[2]
    return {
        "e0_min": float(le[0].min()),
        "e0_max": float(le[0].max()),
        "e1_min": float(le[1].min()),
        "e1_max": float(le[1].max()),
        "r02_min": float(r02.min()),
        "r02_max": float(r02.max()),
        "r01_min": float(r01.min()),
        "r01_max": float(r01.max()),
        "r12_min": float(r12.min()),
        "r12_max": float(r12.max()),
        "aniso0": float(le[0].min() - le[0].max()),
        "aniso1": float(le[1].min() - le[1].max()),
        "log_sharpness": math.log(sharpness + 1e-3),
    }


def load_model(path: str = "") -> dict[str, Any]:
    """The scores' coefficients (``path`` empty: the bundled fit); ConfigError if unusable.

    Read once per file version (path and mtime): a refit file takes effect on reload."""
    p = Path(path) if path else BUNDLED
    try:
        mtime = p.stat().st_mtime_ns
    except OSError as e:
        raise ConfigError(f"quality model {p}: {e.strerror or e}") from None
    return _load(p, mtime)


@functools.lru_cache(maxsize=4)
def _load(p: Path, _mtime: int) -> dict[str, Any]:
    try:
        m = json.loads(p.read_text())
        for name, feats in SCORE_FEATURES.items():
            part = m[name]
            if list(part["features"]) != feats:
                raise ValueError(f"{name} features {part['features']} are not {feats}")
            for key in ("mean", "scale", "weights"):
                if len(part[key]) != len(feats):
                    raise ValueError(f"{name}.{key} has {len(part[key])} values, not {len(feats)}")
            float(part["bias"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"quality model {p}: {getattr(e, 'strerror', None) or e}") from None
    return m


def scores(model: dict[str, Any], feats: dict[str, float]) -> dict[str, float]:
    """``{"blur_score": ..., "glare_score": ..., "dark_score": ...}`` of one frame."""
    return {f"{name}_score": score(model[name], feats) for name in SCORE_FEATURES}


def score(part: dict[str, Any], feats: dict[str, float]) -> float:
    """Log-odds of the fault (``part``: one model of ``load_model``)."""
    x = np.array([feats[n] for n in part["features"]], np.float64)
    z = (x - np.asarray(part["mean"])) / np.asarray(part["scale"])
    return float(z @ np.asarray(part["weights"]) + float(part["bias"]))
