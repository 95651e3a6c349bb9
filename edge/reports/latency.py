"""bench's latency passes: camera-sized frames through ``predict()``, and the runtime alone.

Anything with ``Classifier``'s ``predict(frame)`` (the device's backends, or the host's
PyTorch reference in ``converters.torchref``) is timed by the same code, so two models are
compared on the same frames and the same stages.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import cv2
import numpy as np

from ..errors import UsageError
from ..progress import progress

STAGES = ("decode", "preprocess", "inference", "postprocess", "end_to_end")


class Predictor(Protocol):
    def predict(
        self, frame: np.ndarray, *, color_order: str = "BGR", with_features: bool = False
    ) -> Any:
        """A prediction whose ``timings_ms`` has preprocess/inference/postprocess/end_to_end."""
        ...


def stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms, dtype=np.float64)
    if not len(a):
        return {}
    q = np.percentile(a, [50, 90, 99])
    return {
        "min": float(a.min()),
        "p50": float(q[0]),
        "p90": float(q[1]),
        "p99": float(q[2]),
        "max": float(a.max()),
        "mean": float(a.mean()),
    }


def make_frame(img: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Scale an image to the frame height and edge-pad it to the frame width (or crop)."""
    if size is None:
        return img
    w, h = size
    s = min(w, h)
    sq = cv2.resize(img, (s, s), interpolation=cv2.INTER_LINEAR)
    canvas = cv2.copyMakeBorder(
        sq,
        (h - s) // 2,
        h - s - (h - s) // 2,
        (w - s) // 2,
        w - s - (w - s) // 2,
        cv2.BORDER_REPLICATE,
    )
    return np.asarray(canvas)


def parse_size(s: str) -> tuple[int, int] | None:
    if s == "native":
        return None
    try:
        w, h = (int(v) for v in s.lower().split("x"))
        if w < 16 or h < 16:
            raise ValueError
        return w, h
    except ValueError:
        raise UsageError(
            f"--frame-size takes WxH (e.g. 1920x1080) or 'native', not {s!r}"
        ) from None


def decode(jpeg: bytes) -> np.ndarray:
    """A JPEG made by bench itself (never None: cv2.imencode wrote it)."""
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return np.asarray(img)


def latency_pass(
    model: Predictor, jpegs: list[bytes], *, runs: int, warmup: int, desc: str = "latency"
) -> dict[str, list[float]]:
    """Per-stage times (ms) of ``runs`` frames after ``warmup``: decode, then ``predict``."""
    t: dict[str, list[float]] = {k: [] for k in STAGES}
    for i in progress(range(warmup + runs), desc=desc, total=warmup + runs):
        t0 = time.perf_counter()
        frame = decode(jpegs[i % len(jpegs)])
        dt = (time.perf_counter() - t0) * 1e3
        times = model.predict(frame).timings_ms
        if i >= warmup:
            t["decode"].append(dt)
            for k, v in times.items():
                t[k].append(v)
    return t


class Runtime(Protocol):
    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]: ...


def back_to_back(backend: Runtime, tensors: list[np.ndarray], *, runs: int) -> list[float]:
    """Inference only, one call after another (benchmark_app's view of the runtime)."""
    for x in tensors[:5]:
        backend.infer(x)
    out = []
    for i in range(runs):
        x = tensors[i % len(tensors)]
        t0 = time.perf_counter()
        backend.infer(x)
        out.append((time.perf_counter() - t0) * 1e3)
    return out
