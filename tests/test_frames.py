"""Cheaper frames: reduced JPEG decode, picamera2 lores, V4L2 mode choice, CPU per decision."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
from edge_fakes import make_video, textured
from mpox_edge.edge.kiosk import pipeline
from mpox_edge.edge.kiosk.config import SourceConfig
from mpox_edge.edge.kiosk.frames import (
    QUALITY_SIDE,
    FrameNeed,
    decode_jpeg,
    jpeg_size,
    lores_size,
    reduction,
    smallest_mode,
)
from mpox_edge.edge.kiosk.sources import open_source

NEED = FrameNeed.for_model(224, roi=False)


def test_need_keeps_the_quality_check_and_roi_fed() -> None:
    assert QUALITY_SIDE == pipeline.QUALITY_SIDE
    assert NEED.short_side == 256  # quality side, above the 224 model input
    assert FrameNeed.for_model(224, roi=True).short_side == 448  # a half-frame ROI still 224
    assert FrameNeed.for_model(384, roi=False).short_side == 384


@pytest.mark.parametrize(
    "size,factor",
    [((1920, 1080), 4), ((1280, 720), 2), ((640, 480), 1), ((3840, 2160), 8), ((4096, 2048), 8)],
)
def test_reduction_keeps_enough_pixels(size: tuple[int, int], factor: int) -> None:
    f = reduction(*size, NEED)
    assert f == factor
    assert min(size) // f >= NEED.short_side
    assert f == 8 or min(size) // (2 * f) < NEED.short_side  # and is the largest such
    assert reduction(*size, FrameNeed()) == 1  # no need known: full decode


def test_reduced_decode_is_the_dct_downscale_and_size_parses() -> None:
    img = textured(1080, 1920)
    buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
    assert jpeg_size(buf) == (1920, 1080)
    assert jpeg_size(b"not a jpeg") is None
    small = decode_jpeg(buf, 4)
    assert small is not None and small.shape == (270, 480, 3)
    ref = cv2.resize(decode_jpeg(buf, 1), (480, 270), interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(int) - ref.astype(int)).mean() < 6  # same picture, smaller
    assert decode_jpeg(b"\xff\xd8garbage", 2) is None


def test_lores_and_v4l2_mode_choice() -> None:
    assert lores_size((1280, 720), NEED) == (456, 256)
    assert lores_size((640, 480), FrameNeed(480)) == (640, 480)  # no smaller than asked
    assert lores_size((640, 480), FrameNeed(448)) == (598, 448)
    w, h = lores_size((1920, 1080), FrameNeed(300))
    assert h >= 300 and w % 2 == 0 and h % 2 == 0 and abs(w / h - 16 / 9) < 0.02
    modes = [(1920, 1080), (1280, 720), (640, 480), (320, 240), (800, 600)]
    assert smallest_mode(modes, FrameNeed(448)) == (640, 480)
    assert smallest_mode(modes, FrameNeed(2000)) is None


def test_mjpg_file_is_decoded_reduced_with_the_full_frame_on_demand(tmp_path: Path) -> None:
    video = make_video(tmp_path / "hd.avi", frames=4, size=(1280, 720))
    src = open_source(f"file://{video}", SourceConfig(uri=str(video)), NEED)
    with src:
        f = src.read()
    assert f is not None and f.image.shape == (360, 640, 3) and f.jpeg is not None
    full = f.full_image()
    assert full.shape == (720, 1280, 3)
    assert (
        np.abs(
            cv2.resize(full, (640, 360), interpolation=cv2.INTER_AREA).astype(int)
            - f.image.astype(int)
        ).mean()
        < 6
    )
    # downscale off, or no need known: the full frame as before
    for cfg, need in (
        (SourceConfig(uri=str(video), downscale=False), NEED),
        (SourceConfig(uri=str(video)), None),
    ):
        with open_source(f"file://{video}", cfg, need) as s:
            g = s.read()
        assert g is not None and g.image.shape == (720, 1280, 3) and g.jpeg is None
    # looping keeps decoding reduced after the rewind
    with open_source(f"file://{video}?loop=1", SourceConfig(uri=str(video)), NEED) as s:
        shapes = {s.read().image.shape for _ in range(10)}
    assert shapes == {(360, 640, 3)}


class _Job:
    def __init__(self, result: object) -> None:
        self.result = result

    def get_result(self, timeout: float | None = None) -> object:
        return self.result


def fake_picamera2(monkeypatch: pytest.MonkeyPatch, asked: dict) -> None:
    """A picamera2 stand-in that records the configuration asked for and fills each stream."""

    class Picamera2:
        def __init__(self, camera_num: int = 0) -> None:
            self.cfg: dict = {}

        def create_video_configuration(self, **kw: object) -> dict:
            asked["create"] = kw
            return dict(kw)

        def configure(self, cfg: dict) -> None:
            asked["configured"] = cfg
            self.cfg = cfg

        def _array(self, name: str) -> np.ndarray:
            w, h = self.cfg[name]["size"]
            if self.cfg[name]["format"] == "YUV420":
                bgr = np.full((h, w, 3), (40, 90, 200), np.uint8)
                return cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
            return np.full((h, w, 4), (40, 90, 200, 255), np.uint8)  # XRGB8888-like padding

        def capture_array(self, name: str = "main", signal_function: object = None) -> _Job:
            asked.setdefault("captured", []).append(name)
            return _Job(self._array(name))

        def capture_arrays(self, names: list[str], signal_function: object = None) -> _Job:
            asked.setdefault("captured", []).append(tuple(names))
            return _Job(([self._array(n) for n in names], {}))

        def start(self) -> None: ...

        def stop(self) -> None: ...

        def close(self) -> None: ...

    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=Picamera2))


def test_picamera2_asks_the_isp_for_the_model_size(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: dict = {}
    fake_picamera2(monkeypatch, asked)
    with open_source("csi://0", SourceConfig(width=1280, height=720), NEED) as s:
        f = s.read()
    # nobody wants full frames: one main stream, scaled by the ISP to what the model needs
    assert asked["configured"]["main"] == {"size": (456, 256), "format": "RGB888"}
    assert "lores" not in asked["configured"] and asked["captured"] == ["main"]
    assert f.image.shape == (256, 456, 3) and f.full is None


def test_picamera2_lores_for_inference_beside_main_for_snapshots(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: dict = {}
    fake_picamera2(monkeypatch, asked)
    need = FrameNeed.for_model(224, roi=False, full_view=True)
    with open_source("csi://0", SourceConfig(width=1280, height=720), need) as s:
        f = s.read()
    conf = asked["configured"]
    assert conf["main"] == {"size": (1280, 720), "format": "RGB888"}
    assert conf["lores"] == {"size": (456, 256), "format": "YUV420"}  # Pi 4: lores is YUV only
    assert asked["captured"] == [("main", "lores")]
    assert f.image.shape == (256, 456, 3) and f.color_order == "BGR"
    assert np.abs(f.image[128, 228].astype(int) - (40, 90, 200)).max() <= 3  # I420 -> BGR
    assert f.full is not None and f.full.shape == (720, 1280, 3)
    assert f.full_image() is f.full
    # downscale off: the configured main stream only, as before
    asked.clear()
    with open_source("csi://0?downscale=0", SourceConfig(width=1280, height=720), need) as s:
        s.read()
    assert asked["configured"]["main"]["size"] == (1280, 720) and "lores" not in asked["configured"]


def test_daemon_downscales_and_reports_cpu_per_decision(tmp_path: Path) -> None:
    """The daemon hands the source its need; /status and /metrics show CPU ms per decision."""
    from edge_fakes import FakeClassifier
    from mpox_edge.edge.kiosk import config
    from mpox_edge.edge.kiosk.daemon import Daemon
    from mpox_edge.edge.kiosk.status import DaemonView

    clip = make_video(tmp_path / "hd.avi", frames=6, size=(1280, 720))
    shapes: list[tuple[int, ...]] = []

    class Sized(FakeClassifier):
        spec = types.SimpleNamespace(input_size=224)

        def predict(self, frame: np.ndarray, **kw: object) -> object:
            shapes.append(frame.shape)
            return super().predict(frame, **kw)  # type: ignore[arg-type]

    cfg = config.from_dict(
        {
            "state_dir": str(tmp_path / "state"),
            "model": {"warmup": 0},
            "http": {"enabled": False},
            "source": {"uri": f"file://{clip}", "loop": True},
        }
    )
    d = Daemon(cfg, classifier_factory=lambda c: Sized())
    d.start()
    try:
        assert DaemonView(d).status()["cpu_ms_per_decision"] is None  # no decision yet
        d.run(max_frames=12)
        view = DaemonView(d)
        st = view.status()
        metrics = view.metrics_text()
    finally:
        d.stop()
    assert set(shapes) == {(360, 640, 3)}, "the model saw 1/2-size decodes of the 720p MJPG"
    assert isinstance(st["cpu_ms_per_decision"], float) and st["cpu_ms_per_decision"] > 0
    line = next(ln for ln in metrics.splitlines() if ln.startswith("mpox_edge_cpu_ms_per_decision"))
    assert float(line.split()[1]) > 0


def test_v4l2_camera_is_asked_for_the_smallest_mode_over_twice_the_input(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The mode request, with the camera's mode list stubbed (no /dev/video here)."""
    from mpox_edge.edge.kiosk import sources

    modes = [(1920, 1080), (1280, 720), (800, 600), (640, 480), (320, 240)]
    monkeypatch.setattr(sources, "v4l2_modes", lambda dev, fmt="MJPG": modes)
    set_calls: list[tuple[int, float]] = []

    class Cap:
        def __init__(self, *a: object) -> None: ...

        def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
            return True

        def set(self, prop: int, v: float) -> bool:
            set_calls.append((prop, v))
            return True

        def get(self, prop: int) -> float:
            return 0.0

        def release(self) -> None: ...

    monkeypatch.setattr(sources.cv2, "VideoCapture", Cap)
    s = open_source("usb://0", SourceConfig(width=1280, height=720), NEED)
    s.open()
    assert s.mode == (640, 480)  # 480 >= 2 x 224; 320x240 is too small
    asked = dict(set_calls)
    assert (asked[cv2.CAP_PROP_FRAME_WIDTH], asked[cv2.CAP_PROP_FRAME_HEIGHT]) == (640, 480)
    assert asked[cv2.CAP_PROP_CONVERT_RGB] == 0  # MJPG bytes come to us for reduced decode
    # downscale off: the configured size, as before
    set_calls.clear()
    s = open_source("usb://0?downscale=0", SourceConfig(width=1280, height=720), NEED)
    s.open()
    assert s.mode == (1280, 720) and cv2.CAP_PROP_CONVERT_RGB not in dict(set_calls)
