"""Training-time augmentation on uint8 BGR images, in numpy and OpenCV only.

The papers augment for the conditions a kiosk camera meets: angle, distance, framing,
lighting, colour cast, focus and sensor noise (seed 002, table 3). Everything here runs on
the decoded ``HxWx3`` uint8 image *before* ``edge.preprocess.preprocess``, so training sees
exactly the same resize/normalise arithmetic as the device. Randomness comes only from the
``numpy.random.Generator`` passed in, so a fixed seed gives the same image bit for bit.
Geometry (zoom/crop, rotation, translation, flips) is folded into one affine warp: one
resample instead of four keeps the image sharp and costs about a millisecond.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of each transform; probabilities are per image."""

    scale: tuple[float, float] = (0.65, 1.0)  # crop area fraction (zoom in up to ~1.25x)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # crop aspect ratio
    rotate_deg: float = 25.0
    translate: float = 0.08  # fraction of the side, on top of the crop position
    hflip: float = 0.5
    vflip: float = 0.2
    brightness: float = 0.25  # additive, fraction of 255
    contrast: float = 0.25  # multiplicative around the mean
    saturation: float = 0.25
    hue_deg: float = 8.0
    color_p: float = 0.8  # probability of the photometric jitter as a whole
    blur_p: float = 0.15
    blur_sigma: tuple[float, float] = (0.3, 1.5)
    noise_p: float = 0.15
    noise_std: tuple[float, float] = (2.0, 10.0)  # in 0-255 units
    # collection shift (all off by default, so the shipped recipe's views are unchanged):
    white_balance: float = 0.0  # per-channel gain in [1 - wb, 1 + wb] (colour cast)
    gamma: float = 0.0  # exposure curve: gamma in [1 - g, 1 + g]
    light_p: float = 0.0  # a linear illumination gradient across the frame
    light_strength: float = 0.35  # max relative brightness change at the far edge
    downscale_p: float = 0.0  # lower resolution then back up (other cameras, zoom)
    downscale: tuple[float, float] = (0.35, 0.8)
    jpeg_p: float = 0.0  # JPEG re-compression (web re-uploads, phone cameras)
    jpeg_quality: tuple[int, int] = (25, 90)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def preset(cls, name: str) -> AugmentConfig:
        """``default``: the shipped recipe; ``shift``: aimed at the change of collection
        (wider scale/crop, white balance, exposure, lighting, resolution, JPEG, blur)."""
        if name == "default":
            return cls()
        if name == "shift":
            return cls(
                scale=(0.35, 1.0),
                blur_p=0.25,
                blur_sigma=(0.3, 2.0),
                white_balance=0.15,
                gamma=0.3,
                light_p=0.3,
                downscale_p=0.25,
                jpeg_p=0.4,
            )
        raise ValueError(f"unknown augmentation preset {name!r} (default, shift)")


PRESETS = ("default", "shift")


def _affine(h: int, w: int, out: int, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """2x3 matrix mapping a random crop (rotated, shifted, flipped) onto an out x out image."""
    area = h * w * rng.uniform(*cfg.scale)
    log_r = rng.uniform(math.log(cfg.ratio[0]), math.log(cfg.ratio[1]))
    ratio = math.exp(log_r)
    cw = min(w, math.sqrt(area * ratio))
    ch = min(h, math.sqrt(area / ratio))
    cx = rng.uniform(cw / 2, w - cw / 2) + rng.uniform(-cfg.translate, cfg.translate) * w
    cy = rng.uniform(ch / 2, h - ch / 2) + rng.uniform(-cfg.translate, cfg.translate) * h
    angle = math.radians(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg))
    fx = -1.0 if rng.random() < cfg.hflip else 1.0
    fy = -1.0 if rng.random() < cfg.vflip else 1.0
    sx, sy = out / cw * fx, out / ch * fy
    c, s = math.cos(angle), math.sin(angle)
    # dst = S * R * (src - centre) + out/2
    a = np.array([[sx * c, sx * s], [-sy * s, sy * c]], dtype=np.float64)
    t = np.array([out / 2, out / 2]) - a @ np.array([cx, cy])
    return np.hstack([a, t[:, None]])


def _color(img: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, saturation and hue jitter (one float pass, one HSV pass)."""
    x: np.ndarray = img.astype(np.float32)
    b = rng.uniform(-cfg.brightness, cfg.brightness) * 255.0
    k = rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)
    mu = float(x.mean())
    x = (x - mu) * k + mu + b
    x = np.clip(x, 0, 255).astype(np.uint8)
    sat = rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)
    hue = rng.uniform(-cfg.hue_deg, cfg.hue_deg)
    if sat != 1.0 or hue != 0.0:
        hsv = cv2.cvtColor(x, cv2.COLOR_BGR2HSV).astype(np.float32)
        hsv[..., 0] = np.mod(hsv[..., 0] + hue / 2.0, 180.0)  # OpenCV hue is 0-179
        hsv[..., 1] = np.clip(hsv[..., 1] * sat, 0, 255)
        x = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)
    return x


def _shift(x: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """White balance, exposure curve and an illumination gradient (one float pass)."""
    f = x.astype(np.float32) / 255.0
    if cfg.white_balance > 0:
        f *= rng.uniform(1 - cfg.white_balance, 1 + cfg.white_balance, size=3).astype(np.float32)
    if cfg.gamma > 0:
        f = np.clip(f, 0, 1) ** np.float32(rng.uniform(1 - cfg.gamma, 1 + cfg.gamma))
    if rng.random() < cfg.light_p:
        h, w = f.shape[:2]
        a = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ramp = (np.cos(a) * (xx / w - 0.5) + np.sin(a) * (yy / h - 0.5)) * 2
        f *= (1 + rng.uniform(0, cfg.light_strength) * ramp)[..., None]
    return np.clip(f * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _degrade(x: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Resolution loss and JPEG re-compression, as another camera or a re-upload does."""
    if rng.random() < cfg.downscale_p:
        n = x.shape[0]
        m = max(8, int(round(n * rng.uniform(*cfg.downscale))))
        x = cv2.resize(cv2.resize(x, (m, m), interpolation=cv2.INTER_AREA), (n, n))
    if rng.random() < cfg.jpeg_p:
        q = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        ok, buf = cv2.imencode(".jpg", x, [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:  # a JPEG just encoded from x decodes (None would keep x)
            dec = cv2.imdecode(buf, cv2.IMREAD_COLOR)
            x = x if dec is None else dec
    return x


def augment(
    img: np.ndarray,
    *,
    rng: np.random.Generator,
    out_size: int,
    config: AugmentConfig | None = None,
) -> np.ndarray:
    """One random training view of ``img`` as an ``out_size`` square uint8 BGR image.

    The square output then goes through ``preprocess`` like any frame (its resize is a
    no-op at the model's input size), so augmentation never bypasses the one pipeline.
    """
    cfg = config or AugmentConfig()
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got {img.shape} {img.dtype}")
    h, w = img.shape[:2]
    m = _affine(h, w, out_size, cfg, rng)
    x: np.ndarray = cv2.warpAffine(
        img, m, (out_size, out_size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )
    if rng.random() < cfg.color_p:
        x = _color(x, cfg, rng)
    if cfg.white_balance > 0 or cfg.gamma > 0 or cfg.light_p > 0:
        x = _shift(x, cfg, rng)
    if rng.random() < cfg.blur_p:
        x = cv2.GaussianBlur(x, (0, 0), sigmaX=rng.uniform(*cfg.blur_sigma))
    if rng.random() < cfg.noise_p:
        std = rng.uniform(*cfg.noise_std)
        noise = rng.normal(0.0, std, size=x.shape).astype(np.float32)
        x = np.clip(x.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if cfg.downscale_p > 0 or cfg.jpeg_p > 0:
        x = _degrade(x, cfg, rng)
    return np.ascontiguousarray(x)
