"""What /latest.jpg and snapshots show: the frame, the ROI box, the decision, a heatmap.

The heatmap comes from edge/explain/cam.py: when ``explain = true`` and that module provides
``annotate(classifier, prediction, image)``, the JPEG carries the overlay. It is computed
when an image is requested, never in the frame loop, so the only per-frame cost is keeping
the model's feature output (``with_features``); scripts/bench_explain.py measures both.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any

import cv2
import numpy as np

log = logging.getLogger("mpox_edge.visual")
EXPLAIN_MODULE = "mpox_edge.edge.explain.cam"
Overlay = Callable[[np.ndarray, Any], np.ndarray]  # (BGR image the model saw, Result) -> BGR
COLORS = {"refer": (0, 0, 255), "clear": (0, 170, 0), "retake": (0, 200, 255)}


class Explainer:
    """Finds edge/explain/cam.py once; absent or incomplete means: no overlay, no error."""

    def __init__(self) -> None:
        self._mod: ModuleType | None = None
        self._checked = False
        self._warned = False

    def module(self) -> ModuleType | None:
        if not self._checked:
            self._checked = True
            try:
                if importlib.util.find_spec(EXPLAIN_MODULE) is not None:
                    mod = importlib.import_module(EXPLAIN_MODULE)
                    if callable(getattr(mod, "annotate", None)):
                        self._mod = mod
            except Exception as e:  # noqa: BLE001 - an optional feature must not stop serving
                log.warning("explain: %s cannot be imported: %s", EXPLAIN_MODULE, e)
        return self._mod

    def wanted(self, cfg: Any) -> bool:
        return bool(getattr(cfg, "explain", False)) and self.module() is not None

    def overlay_fn(self, cfg: Any, classifier: Any) -> Overlay | None:
        mod = self.module() if self.wanted(cfg) else None
        if mod is None:
            return None

        def apply(img: np.ndarray, result: Any) -> np.ndarray:
            pred = result.prediction
            if pred is None or getattr(pred, "features", None) is None:
                return img
            try:
                out = mod.annotate(classifier, pred, img)
                return img if out is None else out
            except Exception as e:  # noqa: BLE001
                if not self._warned:
                    self._warned = True
                    log.warning("explain: overlay failed, serving plain frames: %s", e)
                return img

        return apply


def render_jpeg(result: Any, overlay: Overlay | None, quality: int = 85) -> bytes:
    """Encode the frame of a pipeline Result as JPEG, annotated; never modifies the frame."""
    frame = result.frame
    # The camera's full resolution where the model saw a reduced frame (frames.py); the ROI
    # found on the reduced frame is scaled up with it.
    full = frame.full_image() if hasattr(frame, "full_image") else frame.image
    img = full if frame.color_order == "BGR" else cv2.cvtColor(full, cv2.COLOR_RGB2BGR)
    img = img.copy()
    box = result.roi
    k = full.shape[1] / frame.image.shape[1]
    if box and k != 1:
        box = tuple(int(round(v * k)) for v in box)
    if overlay is not None:
        if box:
            x, y, w, h = box
            img[y : y + h, x : x + w] = overlay(
                np.ascontiguousarray(img[y : y + h, x : x + w]), result
            )
        else:
            img = overlay(img, result)
    d = result.decision
    color = COLORS.get(d.label, (255, 255, 255))
    if box:
        x, y, w, h = box
        cv2.rectangle(img, (x, y), (x + w, y + h), color, 2)
    text = d.label if d.label == "retake" else f"{d.label} {d.p_positive:.2f}"
    scale = max(0.5, img.shape[0] / 720)
    cv2.putText(
        img,
        text,
        (10, int(30 * scale)),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        color,
        max(1, int(2 * scale)),
        cv2.LINE_AA,
    )
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError("JPEG encoding failed")
    return buf.tobytes()
