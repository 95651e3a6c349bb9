"""Frame sources addressed by URI, in the style of jetson-utils' videoSource.

``csi://0`` (Pi camera via picamera2), ``/dev/video0`` / ``v4l2:///dev/video0`` / ``usb://0``
(OpenCV V4L2), ``rtsp://...``, ``file://clip.mp4`` (optionally looping) and ``dir://photos``
(still images, one per person at a kiosk). Options may ride on the URI as a query
(``usb://0?width=640&mjpg=0``) and override the config. Every frame says its colour order:
picamera2's ``RGB888`` is BGR in memory, so nothing downstream has to guess.

``read()`` returns a frame, or None when nothing arrived within the poll interval (a dir
waiting for the next photo); it raises ``SourceEnded`` at the end of a finite source and
``SourceError`` when the device fails. Retrying is the capture thread's job, not ours.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import cv2
import numpy as np

from ..errors import SourceError
from .config import SourceConfig
from .frames import (
    FrameNeed,
    decode_jpeg,
    jpeg_size,
    reduction,
    smallest_mode,
    v4l2_modes,
)

log = logging.getLogger("mpox_edge.sources")


class SourceEnded(SourceError):
    """A finite source (a file without loop, a dir without watch) has no more frames."""


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # HxWx3 uint8
    color_order: str  # "BGR" or "RGB": the order in memory
    seq: int  # per-source counter from 0; gaps downstream are dropped frames
    t_capture: float  # time.monotonic() when it was read
    name: str = ""  # the file of a dir:// frame
    still: bool = False  # an independent photo: no temporal smoothing
    # called with True once the frame's outcome is in the event log (dir:// marks the photo
    # screened), with False when it could not be logged (the photo is screened again)
    ack: Callable[[bool], None] | None = field(default=None, compare=False, repr=False)
    # Full-resolution sources of a reduced ``image`` (frames.py), for a snapshot or the
    # kiosk view that wants every pixel: picamera2's main stream, or the camera's JPEG.
    full: np.ndarray | None = None
    jpeg: np.ndarray | None = None

    def full_image(self) -> np.ndarray:
        """The frame at the camera's resolution (decoded now if it came as a JPEG)."""
        if self.full is not None:
            return self.full
        if self.jpeg is not None:
            img = decode_jpeg(self.jpeg, 1)
            if img is not None:
                return img
        return self.image


class Source:
    """Base: open() acquires the device, read() gets one frame, close() releases it."""

    still = False
    lossless = False  # True: capture waits for the pipeline instead of dropping stale frames
    finite = False  # True: a file or folder that ends (serve --once checks it opens first)

    def __init__(self, uri: str, cfg: SourceConfig) -> None:
        self.uri = uri
        self.cfg = cfg
        self.need = FrameNeed()  # set by open_source: how many pixels the consumers need
        self._seq = itertools.count()

    def open(self) -> None: ...

    def read(self) -> Frame | None:
        raise NotImplementedError

    def close(self) -> None: ...

    def _frame(
        self,
        image: np.ndarray,
        order: str = "BGR",
        name: str = "",
        *,
        full: np.ndarray | None = None,
        jpeg: np.ndarray | None = None,
    ) -> Frame:
        t = time.monotonic()
        return Frame(image, order, next(self._seq), t, name, self.still, full=full, jpeg=jpeg)

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OpenCVSource(Source):
    """USB/V4L2 cameras, RTSP streams and video files through cv2.VideoCapture."""

    def __init__(
        self,
        uri: str,
        cfg: SourceConfig,
        target: str | int,
        api: int,
        *,
        camera: bool,
        finite: bool,
    ) -> None:
        super().__init__(uri, cfg)
        self.target, self.api, self.camera, self.finite = target, api, camera, finite
        # A file is not live: every frame is processed, unless it plays "in real time" as a
        # camera stand-in (then stale frames are dropped and counted like a camera's).
        self.lossless = finite and not cfg.realtime
        self.cap: cv2.VideoCapture | None = None
        self._period = 0.0
        self._due: float | None = None
        self._raw = False  # the capture hands over JPEG bytes; we decode (reduced) ourselves
        self.mode: tuple[int, int] | None = None  # the V4L2 mode asked for
        self.scale = 1  # the last frame's DCT reduction

    def _camera_size(self, cap: cv2.VideoCapture) -> tuple[int, int]:
        """Width x height to ask a camera for: the configured size, or with ``downscale``
        the smallest mode it offers with at least twice the model input on its shorter side."""
        size = (self.cfg.width, self.cfg.height)
        if self.cfg.downscale and self.need.short_side and self.api == cv2.CAP_V4L2:
            want = FrameNeed(max(self.need.short_side, 2 * self.need.input_size))
            fmt = "MJPG" if self.cfg.mjpg else "YUYV"
            mode = smallest_mode(v4l2_modes(self.target, fmt), want)
            if mode and (not all(size) or mode[0] * mode[1] < size[0] * size[1]):
                size = mode
        return size

    def _want_raw(self, cap: cv2.VideoCapture) -> bool:
        """MJPEG in, reduction possible: take the JPEG bytes and decode at reduced size."""
        if not (self.cfg.downscale and self.need.short_side):
            return False
        if self.camera:
            return bool(self.cfg.mjpg)
        code = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("latin-1")
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        return code.upper() in ("MJPG", "JPEG") and reduction(w, h, self.need) > 1

    def open(self) -> None:
        if self.finite and not Path(str(self.target)).is_file():
            raise SourceError(f"{self.uri}: no such video file {self.target}")
        params: list[int] = []
        if self.api == cv2.CAP_FFMPEG:  # network streams: never block forever on a dead peer
            ms = int(self.cfg.read_timeout_s * 1000)
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        cap = cv2.VideoCapture(self.target, self.api, params)
        if not cap.isOpened():
            cap.release()
            what = "video file" if self.finite else "camera" if self.camera else "stream"
            raise SourceError(f"cannot open {what} {self.uri}")
        if self.camera:  # set after opening: V4L2 rejects most of these as open() parameters
            if self.cfg.mjpg:
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
            self.mode = self._camera_size(cap)
            for prop, v in (
                (cv2.CAP_PROP_FRAME_WIDTH, self.mode[0]),
                (cv2.CAP_PROP_FRAME_HEIGHT, self.mode[1]),
                (cv2.CAP_PROP_FPS, self.cfg.fps),
            ):
                if v:
                    cap.set(prop, v)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not one from a queue
            # V4L2 hands over the MJPEG buffer itself instead of decoding it at full size
            self._raw = self._want_raw(cap) and bool(cap.set(cv2.CAP_PROP_CONVERT_RGB, 0))
        elif self.finite and self._want_raw(cap):
            # FFmpeg's raw mode: the demuxed packets, i.e. each frame's JPEG
            raw = cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, [cv2.CAP_PROP_FORMAT, -1])
            if raw.isOpened():
                cap.release()
                cap, self._raw = raw, True
            else:
                raw.release()
        if self.finite and self.cfg.realtime:
            fps = cap.get(cv2.CAP_PROP_FPS)
            self._period = 1.0 / (fps if 1.0 <= fps <= 1000.0 else 30.0)
        self.cap = cap

    def _pace(self) -> None:
        """Real-time file playback: hand frames out at the video's own rate, as a camera does."""
        now = time.monotonic()
        if self._due is None or now - self._due > 1.0:  # first frame, or far behind: resync
            self._due = now
        elif self._due > now:
            time.sleep(self._due - now)
        self._due += self._period

    def _decoded(self, img: np.ndarray) -> Frame | None:
        if self._raw and (img.ndim == 1 or img.shape[0] == 1):  # JPEG bytes
            buf = img.ravel()
            size = jpeg_size(buf)
            if size is None:  # the camera ignored MJPG (raw YUYV...): let OpenCV convert again
                self._raw = False
                if self.cap is not None:
                    self.cap.set(cv2.CAP_PROP_CONVERT_RGB, 1)
                return None
            self.scale = reduction(*size, self.need)
            out = decode_jpeg(buf, self.scale)
            if out is None:
                return None  # a corrupt frame: skipped, the next one comes
            return self._frame(out, jpeg=buf if self.scale > 1 else None)
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        return self._frame(img)

    def read(self) -> Frame | None:
        if self.cap is None:
            raise SourceError(f"{self.uri} is not open")
        if self._period:
            self._pace()
        ok, img = self.cap.read()
        if ok and img is not None:
            return self._decoded(img)
        if self.finite:
            if self.cfg.loop and self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
                ok, img = self.cap.read()
                if ok and img is not None:
                    return self._decoded(img)
            raise SourceEnded(f"{self.uri}: end of video")
        raise SourceError(f"{self.uri}: no frame (device gone or stream ended)")

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


_BOOL = {
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
}


def _apply_query(cfg: SourceConfig, query: str, uri: str) -> SourceConfig:
    """URI query options (``?loop=1&width=640``) override the config for this source."""
    if not query:
        return cfg
    hints = {f.name: f.type for f in dataclasses.fields(SourceConfig)}
    changes: dict[str, Any] = {}  # values checked against the field's type below
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in hints or key == "uri":
            raise SourceError(f"{uri}: unknown option {key!r}")
        kind = hints[key]
        try:
            if kind == "bool":
                changes[key] = _BOOL[value.lower()]
            else:
                changes[key] = int(value) if kind == "int" else float(value)
        except (KeyError, ValueError):
            raise SourceError(f"{uri}: bad value {value!r} for {key}") from None
    return dataclasses.replace(cfg, **changes)


def _v4l2_target(dev: str) -> str | int:
    """/dev/video3 -> 3 (OpenCV's V4L2 index form is the most portable); else the path."""
    tail = dev.removeprefix("/dev/video")
    return int(tail) if tail.isdigit() else dev


def open_source(uri: str, cfg: SourceConfig | None = None, need: FrameNeed | None = None) -> Source:
    """Build (not open) the source a URI names; ``need``: the pixels its consumers need."""
    src = _build_source(uri, cfg or SourceConfig())
    src.need = need or FrameNeed()
    return src


def _build_source(uri: str, cfg: SourceConfig) -> Source:
    u = urlsplit(uri)
    cfg = _apply_query(cfg, u.query, uri)
    scheme = u.scheme.lower()
    rest = (u.netloc + u.path) if scheme else uri.split("?", 1)[0]  # file://rel/x -> rel/x
    if scheme == "csi":
        if not rest.isdigit():
            raise SourceError(f"{uri}: expected csi://N (camera number)")
        return PiCameraSource(uri, cfg, int(rest))
    if scheme == "usb":
        if not rest.isdigit():
            raise SourceError(f"{uri}: expected usb://N (camera index)")
        return OpenCVSource(uri, cfg, int(rest), cv2.CAP_V4L2, camera=True, finite=False)
    if scheme == "v4l2" or (not scheme and rest.startswith("/dev/video")):
        return OpenCVSource(uri, cfg, _v4l2_target(rest), cv2.CAP_V4L2, camera=True, finite=False)
    if scheme in ("rtsp", "rtsps", "rtmp", "http", "https"):
        return OpenCVSource(uri, cfg, uri, cv2.CAP_FFMPEG, camera=False, finite=False)
    if scheme == "dir" or (not scheme and Path(rest).is_dir()):
        return DirSource(uri, cfg, Path(rest))
    if scheme == "file" or (not scheme and Path(rest).is_file()):
        return OpenCVSource(uri, cfg, rest, cv2.CAP_ANY, camera=False, finite=True)
    raise SourceError(
        f"cannot tell what source {uri!r} is: use csi://N, usb://N, "
        "/dev/videoN, v4l2:///dev/videoN, rtsp://..., file://PATH or dir://PATH"
    )


# Last: picam and dirsource build on Source and Frame above (and are re-exported from here).
from .dirsource import DirSource  # noqa: E402
from .picam import PICAMERA_HELP, PiCameraSource  # noqa: E402

__all__ = ["PICAMERA_HELP", "DirSource", "PiCameraSource", "Frame", "Source", "open_source"]
