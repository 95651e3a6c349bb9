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
from ..model.manifest import Manifest, ModelDir, Preprocess
from .config import DecisionConfig, RoiConfig
from .quality import (  # noqa: F401 - the gate lived here; its names stay importable
    QUALITY_SIDE,
    Quality,
    assess_quality,
    quality_measures,
)
from .sources import Frame

log = logging.getLogger("mpox_edge.pipeline")
DEFAULT_REFER_THRESHOLD = 0.5  # when neither the config nor the model names one
SMOOTH_GAP_S = 2.0  # a pause longer than this (camera outage, new person) restarts smoothing


class ClassifierLike(Protocol):
    """What the daemon uses of ``model.classifier.Classifier`` (tests pass a fake)."""

    classes: list[str]
    selection: dict[str, Any]  # auto's decision, empty when a backend was named

    @property
    def model(self) -> ModelDir: ...

    @property
    def spec(self) -> Preprocess | None:
        """The model's input (None: a fake that takes frames of any size)."""
        ...

    @property
    def backend(self) -> Backend: ...

    @property
    def description(self) -> str: ...

    def predict(
        self, frame: np.ndarray, *, color_order: str = "BGR", with_features: bool = False
    ) -> Any: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Decision:
    label: str  # refer | clear | retake | unsure
    p_positive: float  # smoothed probability of the positive class (NaN for a retake)
    top_class: str
    top_prob: float
    window: int  # frames averaged
    reason: str
    ood_score: float = math.nan  # smoothed out-of-distribution score (NaN: the model has none)

    def to_dict(self) -> dict[str, Any]:
        """The one JSON form (event log, /status, ``serve --once``); NaN becomes null."""
        return {
            "decision": self.label,
            "reason": self.reason,
            "p_positive": _finite(self.p_positive),
            "top_class": self.top_class,
            "top_prob": _finite(self.top_prob),
            "window": self.window,
            "ood_score": _finite(self.ood_score),
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


def ood_threshold(manifest: Any) -> float | None:
    """The OOD score at or above which the model is "unsure" (its manifest's ``ood``)."""
    rec = getattr(manifest, "ood", None)
    v = rec.get("threshold", rec.get("value")) if isinstance(rec, dict) else None
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


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
        self._ood: deque[tuple[float, bool]] = deque(maxlen=cfg.smoothing)  # score, unsure
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
        self.ood_threshold = ood_threshold(manifest)
        self.cfg = cfg
        if getattr(self, "roi_cfg", None) != roi:
            self.roi_cfg, self.roi = roi, RoiFinder(roi)
        if self._window.maxlen != cfg.smoothing:
            self._window = deque(self._window, maxlen=cfg.smoothing)
            self._ood = deque(self._ood, maxlen=cfg.smoothing)

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
        d = self._decide(pred, frame)
        timings["end_to_end"] = (time.perf_counter() - t0) * 1e3
        return Result(frame, d, q, pred, box, self._with_age(timings, frame))

    def _decide(self, pred: Any, frame: Frame) -> Decision:
        """Smooth, then: unsure (see a health worker) before refer/clear at the threshold."""
        if frame.still or frame.t_capture - self._last_t > SMOOTH_GAP_S:
            self._window.clear()
            self._ood.clear()
        self._last_t = frame.t_capture
        probs = np.asarray(pred.probs, np.float64)
        self._window.append(probs)
        score = getattr(pred, "ood_score", None)
        self._ood.append(
            (math.nan if score is None else float(score), bool(getattr(pred, "unsure", False)))
        )
        avg = np.mean(self._window, axis=0) if len(self._window) > 1 else probs
        p = float(avg[self.pos])
        top = int(avg.argmax())
        unsure, ood, why_unsure = self._unsure()
        thr = self.threshold
        label = "refer" if p >= thr else "clear"
        why = f"p({self.positive_class}) {p:.2f} {'>=' if p >= thr else '<'} {thr:g}"
        if unsure:
            label, why = "unsure", f"{why_unsure}; {why}"
        return Decision(
            label, p, self.classifier.classes[top], float(avg[top]), len(self._window), why, ood
        )

    def _unsure(self) -> tuple[bool, float, str]:
        """Is the model unsure over the window? (decision, smoothed score, reason).

        One frame: the model's own ``unsure``. Several: the mean OOD score against the
        manifest's threshold, so one odd frame neither raises nor clears it; a model
        without a score or threshold: the majority of its ``unsure`` answers.
        """
        scores = [s for s, _ in self._ood if math.isfinite(s)]
        ood = float(np.mean(scores)) if scores else math.nan
        if not self.cfg.unsure:
            return False, ood, ""
        thr = self.ood_threshold
        if len(self._ood) > 1 and thr is not None and len(scores) == len(self._ood):
            if ood > thr:  # as Prediction.unsure: score > threshold
                return True, ood, f"unsure: OOD score {ood:.3g} > {thr:g}, see a health worker"
            return False, ood, ""
        flags = [u for _, u in self._ood]
        if flags and 2 * sum(flags) > len(flags) or (len(flags) == 1 and flags[0]):
            return True, ood, "unsure: unlike what the model was trained on, see a health worker"
        return False, ood, ""

    @staticmethod
    def _with_age(timings: dict[str, float], frame: Frame) -> dict[str, float]:
        """Add ``capture_to_decision``: what the person in front of the camera waits."""
        timings["capture_to_decision"] = (time.monotonic() - frame.t_capture) * 1e3
        return timings
