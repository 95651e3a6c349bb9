"""Faces out of stored images: a snapshot is pixelated wherever the Haar face finder sees a face.

Uses the daemon's own ROI face finder (pipeline.RoiFinder, OpenCV's frontal-face cascade), but
keeps every face, not only the largest, and grows each box so hair line and chin go too. When
OpenCV has no face finder the snapshot is not written at all (``available`` is False): a
stored image with a face left in it is worse than a missing one.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from .config import RoiConfig
from .pipeline import RoiFinder

FACE_CASCADE = "haarcascade_frontalface_default.xml"
DETECT_SIDE = 640.0  # faces are looked for on a copy at most this large
BLOCKS = 8  # a face becomes at most 8x8 flat blocks: not recognisable, not reversible


class FaceBlur:
    def __init__(self, margin: float = 0.3, min_size: int = 24) -> None:
        self.margin = margin
        self.finder = RoiFinder(
            RoiConfig(enabled=True, cascades=[FACE_CASCADE], margin=margin, min_size=min_size)
        )

    @property
    def available(self) -> bool:
        return self.finder.available

    @property
    def reason(self) -> str:
        return self.finder.reason

    def faces(self, image: np.ndarray, color_order: str = "BGR") -> list[tuple[int, int, int, int]]:
        """Every face as (x, y, w, h) in ``image``, grown by the margin and clipped to it."""
        code = cv2.COLOR_BGR2GRAY if color_order == "BGR" else cv2.COLOR_RGB2GRAY
        grey = cv2.cvtColor(image, code)
        h, w = grey.shape
        s = min(1.0, DETECT_SIDE / max(h, w))
        small = cv2.equalizeHist(cv2.resize(grey, (round(w * s), round(h * s))) if s < 1 else grey)
        min_px = max(8, round(self.finder.cfg.min_size * s))
        out = []
        for c in self.finder.cascades:
            found: Any = c.detectMultiScale(small, 1.1, 4, minSize=(min_px, min_px))
            for x, y, bw, bh in found:
                x, y, bw, bh = (v / s for v in (x, y, bw, bh))
                m = self.margin
                x0, y0 = max(0, int(x - m * bw)), max(0, int(y - m * bh))
                x1, y1 = min(w, int(x + bw * (1 + m))), min(h, int(y + bh * (1 + m)))
                out.append((x0, y0, x1 - x0, y1 - y0))
        return out

    def apply(self, image: np.ndarray, color_order: str = "BGR") -> tuple[np.ndarray, int]:
        """A copy of ``image`` with every face pixelated, and how many faces there were."""
        boxes = self.faces(image, color_order)
        out = image.copy()
        for x, y, w, h in boxes:
            roi = out[y : y + h, x : x + w]
            tiny = cv2.resize(roi, (BLOCKS, BLOCKS), interpolation=cv2.INTER_AREA)
            roi[:] = cv2.resize(tiny, (w, h), interpolation=cv2.INTER_NEAREST)
        return out, len(boxes)
