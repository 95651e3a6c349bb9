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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import cv2
import numpy as np

from ..errors import DataError, SourceError
from ..model.dataset import IMAGE_SUFFIXES, is_own_output, read_image
from .config import SourceConfig

PICAMERA_HELP = (
    "csi:// needs picamera2, which comes from Raspberry Pi OS, not PyPI: "
    "sudo apt install python3-picamera2, and create the venv with "
    "--system-site-packages so it can see it (deploy/install.sh does both)"
)


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


class Source:
    """Base: open() acquires the device, read() gets one frame, close() releases it."""

    still = False
    lossless = False  # True: capture waits for the pipeline instead of dropping stale frames
    finite = False  # True: a file or folder that ends (serve --once checks it opens first)

    def __init__(self, uri: str, cfg: SourceConfig) -> None:
        self.uri = uri
        self.cfg = cfg
        self._seq = itertools.count()

    def open(self) -> None: ...

    def read(self) -> Frame | None:
        raise NotImplementedError

    def close(self) -> None: ...

    def _frame(self, image: np.ndarray, order: str = "BGR", name: str = "") -> Frame:
        return Frame(image, order, next(self._seq), time.monotonic(), name, self.still)

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
            for prop, v in (
                (cv2.CAP_PROP_FRAME_WIDTH, self.cfg.width),
                (cv2.CAP_PROP_FRAME_HEIGHT, self.cfg.height),
                (cv2.CAP_PROP_FPS, self.cfg.fps),
            ):
                if v:
                    cap.set(prop, v)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not one from a queue
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

    def read(self) -> Frame | None:
        if self.cap is None:
            raise SourceError(f"{self.uri} is not open")
        if self._period:
            self._pace()
        ok, img = self.cap.read()
        if ok and img is not None:
            if img.ndim == 2:
                img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
            return self._frame(img)
        if self.finite:
            if self.cfg.loop and self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
                ok, img = self.cap.read()
                if ok and img is not None:
                    return self._frame(img)
            raise SourceEnded(f"{self.uri}: end of video")
        raise SourceError(f"{self.uri}: no frame (device gone or stream ended)")

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class DirSource(Source):
    """Still images in a folder, in name order; with ``watch`` it waits for new ones."""

    still = True
    lossless = True  # each photo is a person: never dropped
    poll_s = 0.25
    settle_s = 0.3

    def __init__(self, uri: str, cfg: SourceConfig, path: Path) -> None:
        super().__init__(uri, cfg)
        self.path = path
        self._seen: set[str] = set()
        self._queue: list[Path] = []

    finite = True

    def open(self) -> None:
        if not self.path.is_dir():
            raise SourceError(f"{self.uri}: {self.path} is not a directory")
        if not self.cfg.watch and not self._scan():
            _refuse_class_tree(self.uri, self.path)

    def _scan(self) -> list[Path]:
        try:
            files = sorted(
                p
                for p in self.path.iterdir()
                if p.suffix.lower() in IMAGE_SUFFIXES
                and not p.name.startswith(".")
                and not is_own_output(p)
            )
        except OSError as e:
            raise SourceError(f"{self.uri}: {e.strerror or e}") from None
        fresh = [p for p in files if p.name not in self._seen]
        if not self.cfg.watch:
            return fresh
        # A photo still being written is left for the next poll (kiosks: write, then rename).
        now = time.time()
        return [p for p in fresh if now - _mtime(p) >= self.settle_s]

    def read(self) -> Frame | None:
        if not self._queue:
            self._queue = self._scan()
        if not self._queue:
            if self.cfg.loop and self._seen:
                self._seen.clear()
                return None
            if not self.cfg.watch:
                raise SourceEnded(f"{self.uri}: no more images")
            time.sleep(self.poll_s)
            return None
        p = self._queue.pop(0)
        self._seen.add(p.name)
        try:
            return self._frame(read_image(p), "BGR", p.name)
        except DataError:
            return None  # still being written or corrupt: skipped (and seen) rather than fatal


def _refuse_class_tree(uri: str, path: Path) -> None:
    """dir:// reads one folder of photos; a tree of class folders (a labelled data set) would
    otherwise end at once with 0 photos and exit 0. Say what to do instead."""
    try:
        subs = sorted(
            d.name
            for d in path.iterdir()
            if d.is_dir() and any(f.suffix.lower() in IMAGE_SUFFIXES for f in d.iterdir())
        )
    except OSError:
        return
    if subs:
        raise SourceError(
            f"{uri}: no photos in {path} itself, only in its sub-folders "
            f"({', '.join(subs[:5])}{', ...' if len(subs) > 5 else ''}); dir:// reads one "
            "folder (not sub-folders): point it at one of them, or for a labelled set use "
            "`mpox-edge eval --data`"
        )


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return float("inf")  # vanished meanwhile: never ready


class PiCameraSource(Source):
    """The Raspberry Pi camera (CSI) through picamera2, imported only when used."""

    def __init__(self, uri: str, cfg: SourceConfig, index: int) -> None:
        super().__init__(uri, cfg)
        self.index = index
        self.cam = None

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise SourceError(PICAMERA_HELP) from None
        try:
            cam = Picamera2(camera_num=self.index)
            size = (self.cfg.width or 1280, self.cfg.height or 720)
            controls = {"FrameRate": float(self.cfg.fps)} if self.cfg.fps else {}
            cam.configure(
                cam.create_video_configuration(
                    main={"size": size, "format": "RGB888"}, controls=controls, buffer_count=2
                )
            )
            cam.start()
        except Exception as e:  # libcamera raises RuntimeError, IndexError, OSError...
            raise SourceError(f"cannot open Pi camera {self.index}: {e}") from None
        self.cam = cam

    def read(self) -> Frame | None:
        if self.cam is None:
            raise SourceError(f"{self.uri} is not open")
        try:
            # A signal_function makes the capture a job we can wait on with a timeout, so a
            # stalled dequeue becomes an error here instead of a hung thread.
            job = self.cam.capture_array("main", signal_function=lambda _job: None)
            img = job.get_result(timeout=self.cfg.read_timeout_s)
        except Exception as e:
            why = str(e) or type(e).__name__
            raise SourceError(f"{self.uri}: capture failed or stalled: {why}") from None
        # RGB888 is B,G,R byte order in memory (libcamera/DRM naming), i.e. what OpenCV calls BGR.
        return self._frame(np.ascontiguousarray(img[:, :, :3]), "BGR")

    def close(self) -> None:
        if self.cam is not None:
            try:
                self.cam.stop()
                self.cam.close()
            except Exception:  # noqa: BLE001 - releasing a dead camera must not raise
                pass
            self.cam = None


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


def open_source(uri: str, cfg: SourceConfig | None = None) -> Source:
    """Build (not open) the source a URI names."""
    cfg = cfg or SourceConfig()
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
