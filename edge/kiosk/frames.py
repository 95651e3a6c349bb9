"""Cheaper frames: decode and capture no more pixels than the model and the checks need.

The model sees 224 px; a 1080p MJPEG frame costs more to decode (3.8 ms here) than the int8
model costs to run. Three ways to pay less, all chosen from one ``FrameNeed``:

* JPEG frames (MJPEG cameras, MJPEG files) are decoded at 1/2, 1/4 or 1/8 size in the DCT
  domain (``cv2.IMREAD_REDUCED_COLOR_*``: libjpeg skips the high frequencies, so it is both
  a decode and a good downscale) when the reduced frame still has ``short_side`` pixels;
* picamera2 gets a ``lores`` stream of that size from the Pi's ISP (free);
* a V4L2 camera is asked for its smallest mode with ``short_side`` on the shorter side.

``short_side`` is at least twice the model input when the face/hand ROI is on (the crop of a
region must still hold a model input), and never below the quality check's working size
(``pipeline.QUALITY_SIDE``), so sharpness is measured on the same number of pixels as before.
"""

from __future__ import annotations

import ctypes
import fcntl
import math
import os
from dataclasses import dataclass

import cv2
import numpy as np

REDUCED = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}
QUALITY_SIDE = 256  # = pipeline.QUALITY_SIDE (imported there from here would cycle)


@dataclass(frozen=True)
class FrameNeed:
    """What the consumers of a frame need: the shorter side in pixels, and full frames?"""

    short_side: int = 0  # 0: no reduction (full decode, the camera's configured mode)
    input_size: int = 0  # the model's input side
    full_view: bool = False  # a snapshot or the kiosk view wants full-resolution frames

    @classmethod
    def for_model(cls, input_size: int, *, roi: bool, full_view: bool = False) -> FrameNeed:
        return cls(max(input_size * (2 if roi else 1), QUALITY_SIDE), input_size, full_view)


def reduction(width: int, height: int, need: FrameNeed) -> int:
    """The largest DCT scale 1, 2, 4 or 8 that keeps ``need.short_side`` on the shorter side."""
    if need.short_side <= 0 or width <= 0 or height <= 0:
        return 1
    short = min(width, height)
    for f in (8, 4, 2):
        if short // f >= need.short_side:
            return f
    return 1


def decode_jpeg(buf: np.ndarray | bytes, factor: int) -> np.ndarray | None:
    """A JPEG (or any image OpenCV reads) at 1/factor size; None when it does not decode."""
    arr = np.frombuffer(buf, np.uint8) if isinstance(buf, bytes | bytearray) else buf.ravel()
    return cv2.imdecode(arr, REDUCED.get(factor, cv2.IMREAD_COLOR))


def jpeg_size(buf: np.ndarray | bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's SOF marker, without decoding; None if not a JPEG."""
    b = bytes(buf[:65536]) if not isinstance(buf, bytes) else buf[:65536]
    if b[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(b):
        if b[i] != 0xFF:
            return None
        marker = b[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        seg = int.from_bytes(b[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(b[i + 7 : i + 9], "big"), int.from_bytes(b[i + 5 : i + 7], "big")
        i += 2 + seg
    return None


def lores_size(main: tuple[int, int], need: FrameNeed) -> tuple[int, int]:
    """An even-sized stream of the main stream's aspect with ``short_side`` on its shorter side."""
    w, h = main
    if need.short_side <= 0 or min(w, h) <= need.short_side:
        return w, h
    s = need.short_side / min(w, h)
    return 2 * math.ceil(w * s / 2), 2 * math.ceil(h * s / 2)  # YUV420 wants even sizes


def smallest_mode(modes: list[tuple[int, int]], need: FrameNeed) -> tuple[int, int] | None:
    """The camera mode with the fewest pixels whose shorter side is >= ``need.short_side``."""
    ok = [m for m in modes if min(m) >= need.short_side]
    return min(ok, key=lambda m: (m[0] * m[1], m)) if ok else None


# -- V4L2: the frame sizes a camera offers (VIDIOC_ENUM_FRAMESIZES), without v4l2-ctl --------
class _FrmSizeEnum(ctypes.Structure):
    _fields_ = [
        ("index", ctypes.c_uint32),
        ("pixel_format", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("u", ctypes.c_uint32 * 6),  # discrete: width, height; stepwise: min/max/step w, h
        ("reserved", ctypes.c_uint32 * 2),
    ]


_VIDIOC_ENUM_FRAMESIZES = 0xC02C564A  # _IOWR('V', 74, struct v4l2_frmsizeenum)


def fourcc(code: str) -> int:
    return int.from_bytes(code.encode(), "little")


def v4l2_modes(device: str | int, pixfmt: str = "MJPG") -> list[tuple[int, int]]:
    """Discrete frame sizes of a V4L2 device for a pixel format; [] when it cannot tell."""
    path = f"/dev/video{device}" if isinstance(device, int) else device
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    except OSError:
        return []
    modes: list[tuple[int, int]] = []
    try:
        for i in range(64):
            e = _FrmSizeEnum(index=i, pixel_format=fourcc(pixfmt))
            try:
                fcntl.ioctl(fd, _VIDIOC_ENUM_FRAMESIZES, e)
            except OSError:
                break
            if e.type == 1:  # V4L2_FRMSIZE_TYPE_DISCRETE
                modes.append((int(e.u[0]), int(e.u[1])))
            else:  # continuous / stepwise: the range's ends
                modes += [(int(e.u[0]), int(e.u[3])), (int(e.u[1]), int(e.u[4]))]
                break
    finally:
        os.close(fd)
    return modes
