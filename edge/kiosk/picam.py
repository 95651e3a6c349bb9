"""The Raspberry Pi camera (CSI) through picamera2, asking the ISP for the pixels needed.

picamera2 comes from Raspberry Pi OS (apt), never from PyPI, and is imported only when a
``csi://`` source opens.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ..errors import SourceError
from .config import SourceConfig
from .frames import lores_size
from .sources import Frame, Source

PICAMERA_HELP = (
    "csi:// needs picamera2, which comes from Raspberry Pi OS, not PyPI: "
    "sudo apt install python3-picamera2, and create the venv with "
    "--system-site-packages so it can see it (deploy/install.sh does both)"
)


def _no_signal(_job: object) -> None:
    """picamera2 signal_function: makes capture_* return a job we can wait on."""


class PiCameraSource(Source):
    """The Raspberry Pi camera (CSI) through picamera2, imported only when used."""

    def __init__(self, uri: str, cfg: SourceConfig, index: int) -> None:
        super().__init__(uri, cfg)
        self.index = index
        self.cam: Any = None
        self.lores = False

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise SourceError(PICAMERA_HELP) from None
        try:
            cam = Picamera2(camera_num=self.index)
            cam.configure(cam.create_video_configuration(**self.configuration()))
            cam.start()
        except Exception as e:  # libcamera raises RuntimeError, IndexError, OSError...
            raise SourceError(f"cannot open Pi camera {self.index}: {e}") from None
        self.cam = cam

    def configuration(self) -> dict[str, Any]:
        """Streams to ask for: what the model needs, scaled by the Pi's ISP (free).

        Nobody wants full frames: one ``main`` stream at the needed size. A snapshot or the
        kiosk view wants them: ``main`` at the configured size beside a ``lores`` YUV420
        stream at the needed size (lores is YUV420-only on a Pi 4) for inference.
        """
        size = (self.cfg.width or 1280, self.cfg.height or 720)
        controls = {"FrameRate": float(self.cfg.fps)} if self.cfg.fps else {}
        small = lores_size(size, self.need) if self.cfg.downscale else size
        conf: dict[str, Any] = {"controls": controls, "buffer_count": 2}
        self.lores = small != size and self.need.full_view
        if self.lores:
            conf["main"] = {"size": size, "format": "RGB888"}
            conf["lores"] = {"size": small, "format": "YUV420"}
        else:
            conf["main"] = {"size": small, "format": "RGB888"}
        return conf

    def read(self) -> Frame | None:
        if self.cam is None:
            raise SourceError(f"{self.uri} is not open")
        try:
            # A signal_function makes the capture a job we can wait on with a timeout, so a
            # stalled dequeue becomes an error here instead of a hung thread.
            if self.lores:
                job = self.cam.capture_arrays(["main", "lores"], signal_function=_no_signal)
                (img, yuv), _meta = job.get_result(timeout=self.cfg.read_timeout_s)
            else:
                job = self.cam.capture_array("main", signal_function=_no_signal)
                img = job.get_result(timeout=self.cfg.read_timeout_s)
        except Exception as e:
            why = str(e) or type(e).__name__
            raise SourceError(f"{self.uri}: capture failed or stalled: {why}") from None
        # RGB888 is B,G,R byte order in memory (libcamera/DRM naming), i.e. what OpenCV calls BGR.
        main = np.ascontiguousarray(img[:, :, :3])
        if self.lores:  # I420 planes, (h * 3/2) x w
            return self._frame(cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420), "BGR", full=main)
        return self._frame(main, "BGR")

    def close(self) -> None:
        if self.cam is not None:
            try:
                self.cam.stop()
                self.cam.close()
            except Exception:  # noqa: BLE001 - releasing a dead camera must not raise
                pass
            self.cam = None
