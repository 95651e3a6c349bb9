"""Helpers for the daemon tests: a fake classifier, media made with OpenCV, a serve process."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np

CLASSES = ["Chickenpox", "Measles", "Monkeypox", "Normal"]


class FakeClassifier:
    """Stands in for model.classifier.Classifier (the daemon's ``ClassifierLike``):
    p(Monkeypox) follows the frame's red channel. Its model names no positive class and no
    threshold, so the pipeline's own defaults apply."""

    classes = CLASSES
    description = "FakeClassifier"
    model = SimpleNamespace(
        path="",
        manifest=SimpleNamespace(architecture="", positive_class=None, screening_threshold=None),
    )
    backend = SimpleNamespace(artifact=SimpleNamespace(sha256=""))
    spec = None  # any frame size (the daemon decodes frames at full size)

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.calls = 0
        self.closed = False
        self.seen_features: list[bool] = []
        self.selection: dict[str, object] = {}

    def predict(
        self, frame: np.ndarray, *, color_order: str = "BGR", with_features: bool = False
    ) -> SimpleNamespace:
        self.calls += 1
        self.seen_features.append(with_features)
        if self.delay_s:
            time.sleep(self.delay_s)
        red = frame[..., 2 if color_order == "BGR" else 0].mean() / 255.0
        p = np.array([0.1, 0.1, 0.0, 0.1]) * (1 - red)
        p[2] = red
        p = p / p.sum()
        i = int(p.argmax())
        feats = np.ones((4, 7, 7), np.float32) if with_features else None
        return SimpleNamespace(
            probs=p,
            index=i,
            label=CLASSES[i],
            features=feats,
            timings_ms={
                "preprocess": 0.1,
                "inference": 0.2,
                "postprocess": 0.01,
                "end_to_end": 0.31,
            },
        )

    def close(self) -> None:
        self.closed = True


def textured(h: int = 240, w: int = 320, red: int = 128, seed: int = 0) -> np.ndarray:
    """A sharp, well exposed BGR frame whose mean red level is about ``red``."""
    rng = np.random.default_rng(seed)
    img = rng.integers(60, 190, (h, w, 3), dtype=np.uint8)
    img[..., 2] = np.clip(img[..., 2].astype(int) - 125 + red, 5, 250).astype(np.uint8)
    return img


def make_video(
    path: Path, frames: int = 30, size: tuple[int, int] = (320, 240), fps: int = 30
) -> Path:
    """An MJPG .avi (works headless, no codec packs needed)."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert w.isOpened(), "OpenCV cannot write MJPG here"
    base = textured(size[1], size[0])
    for i in range(frames):
        w.write(np.roll(base, 3 * i, axis=1))
    w.release()
    return path


def make_images(d: Path, reds: list[int]) -> list[str]:
    d.mkdir(parents=True, exist_ok=True)
    names = []
    for i, red in enumerate(reds):
        name = f"person{i:03d}.jpg"
        cv2.imwrite(str(d / name), textured(red=red, seed=i))
        names.append(name)
    return names


class ServeProcess:
    """``python -m mpox_edge.edge.cli serve ...`` with its stderr collected by a thread."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mpox_edge.edge.cli", "serve", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: list[str] = []
        self._q: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            self._q.put(line)

    def wait_for(self, needle: str, timeout: float = 60.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self._q.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None and self._q.empty():
                    break
                continue
            if needle in line:
                return line
        raise AssertionError(f"{needle!r} not seen; output:\n{''.join(self.lines)}")

    def url(self, timeout: float = 60.0) -> str:
        return self.wait_for("listening on", timeout).split("listening on", 1)[1].strip()

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


class UnsureFakeClassifier(FakeClassifier):
    """A FakeClassifier with the trust fields of ``Prediction``: the OOD score is the
    frame's mean blue level in [0, 1], and ``unsure`` is that score > ``threshold``;
    its manifest records the same threshold, as a model with an ``ood`` record does."""

    def __init__(self, threshold: float = 0.5, delay_s: float = 0.0) -> None:
        super().__init__(delay_s)
        manifest = SimpleNamespace(
            architecture="",
            positive_class="Monkeypox",
            screening_threshold=None,
            ood={"threshold": threshold},
        )
        self.model = SimpleNamespace(path="", manifest=manifest)
        self.threshold = threshold

    def predict(
        self, frame: np.ndarray, *, color_order: str = "BGR", with_features: bool = False
    ) -> SimpleNamespace:
        pred = super().predict(frame, color_order=color_order, with_features=with_features)
        pred.ood_score = float(frame[..., 0 if color_order == "BGR" else 2].mean() / 255.0)
        pred.unsure = pred.ood_score > self.threshold
        return pred


def tinted(blue: int, red: int = 128, seed: int = 0, h: int = 240, w: int = 320) -> np.ndarray:
    """A sharp, well exposed frame with mean blue about ``blue`` (the fake OOD score)."""
    img = textured(h, w, red=red, seed=seed)
    img[..., 0] = np.clip(img[..., 0].astype(int) - 125 + blue, 5, 245).astype(np.uint8)
    return img
