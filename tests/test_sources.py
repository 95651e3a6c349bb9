"""Sources by URI with real decoding, the capture thread, drops, failures and recovery."""

from __future__ import annotations

import re
import sys
import threading
import time
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
from edge_fakes import make_images, make_video, textured
from mpox_edge.edge.errors import SourceError
from mpox_edge.edge.kiosk.capture import Backoff, Capture, LatestFrame
from mpox_edge.edge.kiosk.config import SourceConfig
from mpox_edge.edge.kiosk.sources import (
    DirSource,
    Frame,
    OpenCVSource,
    PiCameraSource,
    Source,
    SourceEnded,
    open_source,
)
from mpox_edge.edge.kiosk.telemetry import Telemetry


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("vid") / "clip.avi", frames=12)


def test_uris_pick_the_right_source(tmp_path: Path, video: Path) -> None:
    cases = {
        "usb://1": (OpenCVSource, 1, cv2.CAP_V4L2),
        "/dev/video2": (OpenCVSource, 2, cv2.CAP_V4L2),
        "v4l2:///dev/video3": (OpenCVSource, 3, cv2.CAP_V4L2),
        "rtsp://cam.local:554/stream1": (
            OpenCVSource,
            "rtsp://cam.local:554/stream1",
            cv2.CAP_FFMPEG,
        ),
        f"file://{video}": (OpenCVSource, str(video), cv2.CAP_ANY),
        str(video): (OpenCVSource, str(video), cv2.CAP_ANY),
    }
    for uri, (cls, target, api) in cases.items():
        s = open_source(uri)
        assert isinstance(s, cls) and s.target == target and s.api == api, uri
    assert open_source("usb://0").camera and not open_source(f"file://{video}").camera
    assert isinstance(open_source("csi://0"), PiCameraSource)
    d = open_source(f"dir://{tmp_path}")
    assert isinstance(d, DirSource) and d.path == tmp_path and d.still
    s = open_source("usb://0?width=640&height=480&fps=15&mjpg=0", SourceConfig(width=1280))
    assert (s.cfg.width, s.cfg.height, s.cfg.fps, s.cfg.mjpg) == (640, 480, 15, False)
    assert open_source(f"file://{video}?loop=1").cfg.loop
    for bad in (
        "csi://front",
        "usb://x",
        "ftp://x/y",
        "nonexistent-thing",
        "usb://0?colour=red",
        "usb://0?width=wide",
    ):
        with pytest.raises(SourceError, match=re.escape(bad)):  # the message names the URI
            open_source(bad)


def test_relative_file_uri(video: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(video.parent)
    with open_source("file://clip.avi") as s:
        assert s.read() is not None


def test_file_source_decodes_every_frame_then_ends(video: Path) -> None:
    with open_source(f"file://{video}") as s:
        frames = []
        with pytest.raises(SourceEnded):
            while True:
                f = s.read()
                frames.append(f)
    assert len(frames) == 12
    assert [f.seq for f in frames] == list(range(12))
    f0 = frames[0]
    assert f0.image.shape == (240, 320, 3) and f0.image.dtype == np.uint8
    assert f0.color_order == "BGR" and not f0.still
    assert abs(float(f0.image.mean()) - float(textured().mean())) < 10  # MJPG is lossy


def test_file_source_loops(video: Path) -> None:
    with open_source(f"file://{video}", SourceConfig(loop=True)) as s:
        seqs = [s.read().seq for _ in range(30)]
    assert seqs == list(range(30))


def test_files_give_every_frame_or_play_in_real_time(tmp_path: Path) -> None:
    clip = make_video(tmp_path / "c.avi", frames=10, fps=50)
    assert open_source(f"file://{clip}").lossless and open_source(f"dir://{tmp_path}").lossless
    assert not open_source("usb://0").lossless and not open_source("rtsp://x/y").lossless
    s = open_source(f"file://{clip}?realtime=1")
    assert not s.lossless  # a camera stand-in: stale frames are dropped like a camera's
    with s:
        t0 = time.monotonic()
        for _ in range(10):
            s.read()
        assert time.monotonic() - t0 >= 0.17  # 10 frames at 50 fps


def test_lossless_capture_waits_for_a_slow_pipeline(video: Path) -> None:
    t = Telemetry()
    buf = LatestFrame()
    cap = Capture(
        lambda: open_source(f"file://{video}"),
        buf,
        t,
        backoff=Backoff(0.01, 0.05),
        stop_at_end=True,
    )
    cap.start()
    got = []
    while not (cap.ended and buf.pending == 0):
        f = buf.get(0.05)
        if f is not None:
            got.append(f.seq)
            time.sleep(0.01)  # slower than decoding
    cap.stop()
    assert got == list(range(12)) and t.get("frames_dropped_total") == 0


def test_missing_file_fails_on_open_not_on_parse(tmp_path: Path) -> None:
    s = open_source(f"file://{tmp_path}/gone.mp4")
    with pytest.raises(SourceError, match="no such video file"):
        s.open()


def test_dir_source_stills_in_order_skipping_corrupt(tmp_path: Path) -> None:
    names = make_images(tmp_path, [20, 200, 90])
    (tmp_path / "zz-broken.jpg").write_bytes(b"\xff\xd8 not really")
    (tmp_path / "notes.txt").write_text("ignored")
    with open_source(f"dir://{tmp_path}", SourceConfig(watch=False)) as s:
        got = []
        with pytest.raises(SourceEnded):
            while True:
                f = s.read()
                if f is not None:
                    got.append(f)
    assert [f.name for f in got] == names
    assert all(f.still and f.color_order == "BGR" for f in got)


def test_dir_source_watches_for_new_photos(tmp_path: Path) -> None:
    make_images(tmp_path, [100])
    s = open_source(f"dir://{tmp_path}", SourceConfig(watch=True))
    s.settle_s = 0.0
    s.poll_s = 0.01
    s.open()
    assert s.read().name == "person000.jpg"
    assert s.read() is None  # nothing new: waits instead of ending
    cv2.imwrite(str(tmp_path / "person001.jpg"), textured())
    assert s.read().name == "person001.jpg"


def test_csi_without_picamera2_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import fails as on a PC
    with pytest.raises(SourceError, match="python3-picamera2.*system-site-packages"):
        open_source("csi://0").open()


class _Job:
    def __init__(self, img: np.ndarray | None) -> None:
        self.img = img

    def get_result(self, timeout: float | None = None) -> np.ndarray:
        if self.img is None:
            raise TimeoutError("dequeue timed out")
        return self.img


def test_csi_frames_are_bgr_and_stalls_are_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    img = textured()
    state: dict[str, object] = {}

    class Picamera2:
        def __init__(self, camera_num: int = 0) -> None:
            state["num"] = camera_num
            self.stall = False

        def create_video_configuration(self, **kw: object) -> dict:
            return kw

        def configure(self, cfg: dict) -> None:
            state["cfg"] = cfg

        def start(self) -> None: ...

        def capture_array(self, name: str = "main", signal_function: object = None) -> _Job:
            assert signal_function is not None  # asynchronous, so a timeout is possible
            return _Job(None if self.stall else img)

        def stop(self) -> None: ...

        def close(self) -> None:
            state["closed"] = True

    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=Picamera2))
    s = open_source("csi://1?width=640&height=480")
    s.open()
    assert state["num"] == 1 and state["cfg"]["main"] == {"size": (640, 480), "format": "RGB888"}
    f = s.read()
    assert f.color_order == "BGR" and np.array_equal(f.image, img)
    s.cam.stall = True
    with pytest.raises(SourceError, match="stalled"):
        s.read()
    s.close()
    assert state["closed"]


def _frame(seq: int) -> Frame:
    return Frame(np.zeros((2, 2, 3), np.uint8), "BGR", seq, time.monotonic())


def test_latest_frame_drops_and_counts() -> None:
    b = LatestFrame()
    assert b.put(_frame(0)) is False
    assert b.put(_frame(1)) is True  # frame 0 was never consumed: dropped
    assert b.get(0.01).seq == 1 and b.get(0.01) is None and b.pending == 0


class Flaky(Source):
    """Opens fail ``fail_opens`` times, then serves ``n`` frames and dies (device unplugged)."""

    opens = 0

    def __init__(self, fail_opens: int, n: int = 5, hang: threading.Event | None = None) -> None:
        super().__init__("test://flaky", SourceConfig())
        self.fail_opens, self.n, self.hang = fail_opens, n, hang

    def open(self) -> None:
        Flaky.opens += 1
        if Flaky.opens <= self.fail_opens:
            raise SourceError("no such device")

    def read(self) -> Frame | None:
        if self.hang is not None and self.n == 3:
            self.hang.wait(5)  # a driver call that does not return
        if self.n == 0:
            raise SourceError("device gone")
        self.n -= 1
        time.sleep(0.002)
        return self._frame(np.zeros((4, 4, 3), np.uint8))


def test_capture_survives_failures_and_counts_reconnects() -> None:
    Flaky.opens = 0
    t = Telemetry()
    buf = LatestFrame()
    cap = Capture(lambda: Flaky(fail_opens=2), buf, t, backoff=Backoff(0.01, 0.05))
    cap.start()
    got = 0
    end = time.monotonic() + 5
    while time.monotonic() < end and t.get("camera_reconnects_total") < 2:
        got += buf.get(0.01) is not None
    cap.stop()
    assert t.get("camera_failures_total") >= 3  # two failed opens, then "device gone"
    assert t.get("camera_reconnects_total") >= 2
    assert got > 0 and cap.state == "stopped"
    c = t.counters
    assert c["frames_captured_total"] == got + c["frames_dropped_total"] + buf.pending


def test_capture_declares_a_stalled_read_and_restarts() -> None:
    Flaky.opens = 0
    hang = threading.Event()
    t = Telemetry()
    buf = LatestFrame()
    cap = Capture(
        lambda: Flaky(0, n=100, hang=hang), buf, t, backoff=Backoff(0.01, 0.05), read_timeout_s=0.2
    )
    cap.start()
    end = time.monotonic() + 5
    while time.monotonic() < end and t.get("camera_reconnects_total") < 1:
        buf.get(0.01)
        cap.poll()
    hang.set()
    cap.stop()
    assert t.get("camera_reconnects_total") >= 1 and Flaky.opens >= 2


def test_backoff_is_capped_exponential() -> None:
    b = Backoff(0.5, 4.0)
    delays = [b.next() for _ in range(6)]
    assert 0.4 <= delays[0] <= 0.6 and 3.2 <= delays[-1] <= 4.8
    assert all(d2 >= d1 * 0.66 for d1, d2 in zip(delays, delays[1:], strict=False))
    b.reset()
    assert b.next() <= 0.6
