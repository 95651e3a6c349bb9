"""One frame to one decision: quality check, optional ROI, the model, smoothing, thresholds.

The classifier is passed in (anything shaped like ``ClassifierLike``: ``Classifier`` or a
test's fake), so tests and the soak benchmark drive the real pipeline with a real or a fake
model. No threads here: the daemon's frame loop calls ``process`` on the newest frame.

A frame that is too blurred or badly exposed is not worth a model run: it becomes
``retake`` straight away (a kiosk asks the person to hold still or step into the light).
Video frames are averaged over the last N good frames so a single odd frame cannot flip the
decision; still photos (``dir://``) are each their own person and are never averaged.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from ..errors import ConfigError
from ..model.backends import Backend
from ..model.dataset import match_class
from ..model.manifest import Manifest, ModelDir
from .config import DecisionConfig, RoiConfig
from .sources import Frame

log = logging.getLogger("mpox_edge.pipeline")
QUALITY_SIDE = 256  # quality is measured on a grey copy 256-511 px (shorter side): stable, cheap
DEFAULT_REFER_THRESHOLD = 0.5  # when neither the config nor the model names one
SMOOTH_GAP_S = 2.0  # a pause longer than this (camera outage, new person) restarts smoothing


class ClassifierLike(Protocol):
    """What the daemon uses of ``model.classifier.Classifier`` (tests pass a fake)."""

    classes: list[str]
    selection: dict[str, Any]  # auto's decision, empty when a backend was named

    @property
    def model(self) -> ModelDir: ...

    @property
    def backend(self) -> Backend: ...

    @property
    def description(self) -> str: ...

    def predict(
        self, frame: np.ndarray, *, color_order: str = "BGR", with_features: bool = False
    ) -> Any: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Quality:
    sharpness: float  # variance of the Laplacian
    brightness: float  # mean grey level 0..255
    clipped: float  # fraction of nearly black or nearly white pixels
    ok: bool
    reason: str = ""


@dataclass(frozen=True)
class Decision:
    label: str  # refer | clear | retake
    p_positive: float  # smoothed probability of the positive class (NaN for a retake)
    top_class: str
    top_prob: float
    window: int  # frames averaged
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """The one JSON form (event log, /status, ``serve --once``); NaN becomes null."""
        return {
            "decision": self.label,
            "reason": self.reason,
            "p_positive": _finite(self.p_positive),
            "top_class": self.top_class,
            "top_prob": _finite(self.top_prob),
            "window": self.window,
        }


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 5)


@dataclass
class Result:
    frame: Frame
    decision: Decision
    quality: Quality
    prediction: Any = None  # runtime.Prediction, None for a retake
    roi: tuple[int, int, int, int] | None = None  # x, y, w, h in the frame
    timings_ms: dict[str, float] = field(default_factory=dict)


def assess_quality(image: np.ndarray, color_order: str, cfg: DecisionConfig) -> Quality:
    """Sharpness and exposure with OpenCV on a downscaled grey copy."""
    # Halve until the shorter side is QUALITY_SIDE..2*QUALITY_SIDE (exact 2x2 averaging is
    # OpenCV's fast path), then go grey: 0.6 ms for 720p here, 3x less than grey first.
    small = image
    while min(small.shape[:2]) >= 2 * QUALITY_SIDE:
        small = cv2.resize(
            small, (small.shape[1] // 2, small.shape[0] // 2), interpolation=cv2.INTER_AREA
        )
    grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY if color_order == "BGR" else cv2.COLOR_RGB2GRAY)
    _, sd = cv2.meanStdDev(cv2.Laplacian(grey, cv2.CV_16S))
    sharp = float(sd[0, 0]) ** 2
    hist = cv2.calcHist([grey], [0], None, [256], [0, 256]).ravel()
    total = float(hist.sum()) or 1.0
    bright = float(np.dot(hist, np.arange(256))) / total
    clipped = float(hist[:5].sum() + hist[251:].sum()) / total
    reason = ""
    if bright < cfg.min_brightness:
        reason = f"too dark (brightness {bright:.0f} < {cfg.min_brightness:g})"
    elif bright > cfg.max_brightness:
        reason = f"too bright (brightness {bright:.0f} > {cfg.max_brightness:g})"
    elif clipped > cfg.max_clipped:
        reason = f"badly exposed ({clipped:.0%} of pixels clipped)"
    elif sharp < cfg.min_sharpness:
        reason = f"blurred (sharpness {sharp:.0f} < {cfg.min_sharpness:g})"
    return Quality(sharp, bright, clipped, not reason, reason)


class RoiFinder:
    """Largest face/hand found by OpenCV's Haar cascades, grown by a margin; None: whole frame."""

    def __init__(self, cfg: RoiConfig) -> None:
        self.cfg = cfg
        self.cascades: list[Any] = []
        self.reason = ""
        if not cfg.enabled:
            self.reason = "disabled"
            return
        make = getattr(cv2, "CascadeClassifier", None)
        if make is None:
            self.reason = "this OpenCV build has no CascadeClassifier (OpenCV 5 dropped it)"
            return
        base = Path(getattr(getattr(cv2, "data", None), "haarcascades", "") or ".")
        for name in cfg.cascades:
            path = Path(name) if Path(name).is_absolute() else base / name
            c = make(str(path)) if path.is_file() else None
            if c is None or c.empty():
                self.reason = f"cascade {name} not found (looked in {path.parent})"
                continue
            self.cascades.append(c)
        if self.cascades:
            self.reason = ""
        if self.reason:
            log.warning("ROI: %s", self.reason)

    @property
    def available(self) -> bool:
        return bool(self.cascades)

    def find(self, image: np.ndarray, color_order: str) -> tuple[int, int, int, int] | None:
        if not self.cascades:
            return None
        code = cv2.COLOR_BGR2GRAY if color_order == "BGR" else cv2.COLOR_RGB2GRAY
        grey = cv2.cvtColor(image, code)
        h, w = grey.shape
        s = min(1.0, 480.0 / max(h, w))  # detect at <= 480 px: ~10 ms on a Pi 4
        small = cv2.equalizeHist(cv2.resize(grey, (round(w * s), round(h * s))) if s < 1 else grey)
        min_px = max(8, round(self.cfg.min_size * s))
        best = None
        for c in self.cascades:
            for x, y, bw, bh in c.detectMultiScale(small, 1.1, 5, minSize=(min_px, min_px)):
                if best is None or bw * bh > best[2] * best[3]:
                    best = (x, y, bw, bh)
        if best is None:
            return None
        x, y, bw, bh = (v / s for v in best)
        m = self.cfg.margin
        x0, y0 = max(0, int(x - m * bw)), max(0, int(y - m * bh))
        x1, y1 = min(w, int(x + bw * (1 + m))), min(h, int(y + bh * (1 + m)))
        return (x0, y0, x1 - x0, y1 - y0)


def positive_index(classes: list[str], cfg: DecisionConfig, manifest_positive: str | None) -> int:
    """The class whose probability decides ``refer``: config, else manifest, else mpox."""
    for name in (cfg.positive_class, manifest_positive):
        if name:
            if name in classes:
                return classes.index(name)
            if name == cfg.positive_class:
                raise ConfigError(
                    f"[decision] positive_class {name!r} is not a class of the "
                    f"model ({', '.join(classes)})"
                )
    i = match_class("mpox", classes)
    if i is None:
        raise ConfigError(
            "the model names no positive class and has no mpox class: set "
            f"[decision] positive_class to one of {', '.join(classes)}"
        )
    return i


def refer_threshold(cfg: DecisionConfig, manifest: Manifest, same_class: bool) -> tuple[float, str]:
    """The threshold in force and where it came from (config, model or default).

    The model's threshold was chosen for its own positive class on validation data: it
    applies only when the config asks for none and refers on that same class.
    """
    if cfg.refer_threshold > 0:
        return cfg.refer_threshold, "config"
    rec = manifest.screening_threshold or {}
    if same_class and isinstance(rec.get("value"), (int, float)) and 0 < rec["value"] < 1:
        return float(rec["value"]), "model"
    return DEFAULT_REFER_THRESHOLD, "default"


class Pipeline:
    def __init__(
        self,
        classifier: ClassifierLike,
        cfg: DecisionConfig,
        roi: RoiConfig,
        *,
        with_features: bool = False,
    ) -> None:
        self.classifier = classifier
        self.with_features = with_features
        self._window: deque[np.ndarray] = deque(maxlen=cfg.smoothing)
        self._last_t = -math.inf
        self.configure(cfg, roi)

    def configure(self, cfg: DecisionConfig, roi: RoiConfig) -> None:
        """Apply new thresholds (SIGHUP) without losing the smoothing window."""
        manifest = self.classifier.model.manifest
        manifest_pos = manifest.positive_class
        self.pos = positive_index(list(self.classifier.classes), cfg, manifest_pos)
        self.threshold, self.threshold_source = refer_threshold(
            cfg, manifest, self.positive_class == manifest_pos
        )
        self.cfg = cfg
        if getattr(self, "roi_cfg", None) != roi:
            self.roi_cfg, self.roi = roi, RoiFinder(roi)
        if self._window.maxlen != cfg.smoothing:
            self._window = deque(self._window, maxlen=cfg.smoothing)

    @property
    def positive_class(self) -> str:
        return self.classifier.classes[self.pos]

    def process(self, frame: Frame) -> Result:
        t0 = time.perf_counter()
        img, order = frame.image, frame.color_order
        q = assess_quality(img, order, self.cfg)
        t1 = time.perf_counter()
        timings = {"quality": (t1 - t0) * 1e3}
        if not q.ok:
            d = Decision("retake", math.nan, "", 0.0, 0, q.reason)
            timings["end_to_end"] = timings["quality"]
            return Result(frame, d, q, None, None, self._with_age(timings, frame))
        box = self.roi.find(img, order) if self.roi.available else None
        if self.roi.available:
            timings["roi"] = (time.perf_counter() - t1) * 1e3
        crop = img[box[1] : box[1] + box[3], box[0] : box[0] + box[2]] if box else img
        pred = self.classifier.predict(
            np.ascontiguousarray(crop), color_order=order, with_features=self.with_features
        )
        for k in ("preprocess", "inference", "postprocess"):
            if k in pred.timings_ms:
                timings[k] = pred.timings_ms[k]
        d = self._decide(np.asarray(pred.probs, np.float64), frame)
        timings["end_to_end"] = (time.perf_counter() - t0) * 1e3
        return Result(frame, d, q, pred, box, self._with_age(timings, frame))

    def _decide(self, probs: np.ndarray, frame: Frame) -> Decision:
        if frame.still or frame.t_capture - self._last_t > SMOOTH_GAP_S:
            self._window.clear()
        self._last_t = frame.t_capture
        self._window.append(probs)
        avg = np.mean(self._window, axis=0) if len(self._window) > 1 else probs
        p = float(avg[self.pos])
        top = int(avg.argmax())
        thr = self.threshold
        label = "refer" if p >= thr else "clear"
        why = f"p({self.positive_class}) {p:.2f} {'>=' if p >= thr else '<'} {thr:g}"
        return Decision(
            label, p, self.classifier.classes[top], float(avg[top]), len(self._window), why
        )

    @staticmethod
    def _with_age(timings: dict[str, float], frame: Frame) -> dict[str, float]:
        """Add ``capture_to_decision``: what the person in front of the camera waits."""
        timings["capture_to_decision"] = (time.monotonic() - frame.t_capture) * 1e3
        return timings
