"""The kiosk page's long-lived routes: Server-Sent Events, the MJPEG live view, the heatmap.

Mixed into webui.WebUI (which owns the state: the newest result, the condition the frame
loop notifies, the counters). Each stream holds one server thread, so at most MAX_CLIENTS of
each kind; the handler is flagged ``streaming`` so connection deadlines leave it alone.
"""

from __future__ import annotations

import json
import threading
import time
from functools import partial
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:
    from .daemon import Daemon
    from .pipeline import Result

STREAM_PATHS = frozenset({"/events", "/stream.mjpg"})  # long-lived: no request deadline
FLAGGED = ("refer", "unsure")  # the decisions that may show a heatmap
MAX_CLIENTS = 4  # per stream kind: each holds one server thread
KEEPALIVE_S = 10.0
PART_HEAD = b"Content-Type: image/jpeg\r\n\r\n"
# The pipeline's quality reasons -> what the page asks the person to do (a translation key).
RETAKE_HINTS = (
    ("dark", "more_light"),
    ("bright", "less_light"),
    ("exposed", "even_light"),
    ("clipped", "even_light"),
    ("blur", "hold_still"),
    ("motion", "hold_still"),
    ("shak", "hold_still"),
    ("small", "move_closer"),
    ("far", "move_closer"),
    ("closer", "move_closer"),
    ("no skin", "move_closer"),
    ("nothing in view", "move_closer"),
)


def retake_hint(reason: str) -> str:
    """The translation key of what to do about a retake reason ("generic" if unknown)."""
    low = reason.lower()
    return next((key for word, key in RETAKE_HINTS if word in low), "generic")


def scaled(image: np.ndarray, color_order: str, width: int) -> np.ndarray:
    """BGR, at most ``width`` wide: halved by 2x2 averaging (OpenCV's fast path) while at least
    twice too wide, then bilinear (INTER_AREA at a non-integer factor costs 10x more)."""
    img = image if color_order == "BGR" else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    while img.shape[1] >= 2 * width:
        h, w = img.shape[:2]
        img = cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    h, w = img.shape[:2]
    if w > width:
        img = cv2.resize(img, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_LINEAR)
    return img


def jpeg(img: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError("JPEG encoding failed")
    return buf.tobytes()


class StreamRoutes:
    d: Daemon
    _cond: threading.Condition
    _seq: int
    _result: Result | None
    _flagged: tuple[int, Result] | None
    _closed: bool
    _enc_lock: threading.Lock
    _live: tuple[int, bytes] | None
    _heat: tuple[int, bytes] | None
    _clients: dict[str, int]
    counts: dict[str, int]

    def _camera(self) -> str:
        cap = self.d.capture
        return cap.state if cap else "-"

    def message(self) -> dict[str, Any]:
        raise NotImplementedError

    def _open_stream(self, h: Any, kind: str, ctype: str) -> bool:
        with self._cond:
            if self._clients[kind] >= MAX_CLIENTS:
                busy = True
            else:
                busy = False
                self._clients[kind] += 1
        if busy:
            h._send(503, f"too many {kind} clients\n".encode(), "text/plain", {"Retry-After": "5"})
            return False
        h.streaming = True  # held open: connection deadlines must not cut it (httpapi)
        h.lift_deadline()
        h.close_connection = True
        h.send_response(200)
        for k, v in (
            ("Content-Type", ctype),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
        ):
            h.send_header(k, v)
        h.end_headers()
        if h.command == "HEAD":
            self._close_stream(kind)
            return False
        return True

    def _close_stream(self, kind: str) -> None:
        with self._cond:
            self._clients[kind] -= 1

    def _wait(self, last: int, timeout: float) -> int:
        with self._cond:
            self._cond.wait_for(lambda: self._seq != last or self._closed, timeout)
            return self._seq

    def _key(self) -> tuple[str, str]:
        """What changes the card: a decision with the same key may wait for the next slot."""
        r = self._result
        if r is None:
            return ("", "")
        d = r.decision
        return (d.label, retake_hint(d.reason) if d.label == "retake" else "")

    def _moved(self, seq: int) -> bool:
        return self._seq != seq or self._closed

    def _changed(self, key: tuple[str, str]) -> bool:
        return self._key() != key or self._closed

    def _events(self, h: Any) -> None:
        """A new card is pushed at once; the same card again at most stream_fps times a second
        (a daemon deciding 300 frames a second must not make the browser render 300)."""
        if not self._open_stream(h, "events", "text/event-stream; charset=utf-8"):
            return
        try:
            h.wfile.write(b"retry: 1000\n\n")
            last, sent_key, sent_cam, idle, due = -1, ("?", ""), "", time.monotonic(), 0.0
            while not self._closed:
                with self._cond:
                    self._cond.wait_for(partial(self._moved, last), 1.0)
                    if self._seq != last and self._key() == sent_key:
                        # same card: wait for the slot, unless the card changes meanwhile
                        self._cond.wait_for(
                            partial(self._changed, sent_key), max(0.0, due - time.monotonic())
                        )
                    seq, key = self._seq, self._key()
                cam = self._camera()  # a camera change is noticed within a second
                if seq != last or cam != sent_cam:
                    data = json.dumps(self.message(), allow_nan=False)
                    h.wfile.write(f"id: {seq}\ndata: {data}\n\n".encode())
                    self.counts["events_sent"] += 1
                    last, sent_key, sent_cam = seq, key, cam
                    idle = time.monotonic()
                    due = idle + 1.0 / self.d.cfg.ui.stream_fps
                elif time.monotonic() - idle > KEEPALIVE_S:
                    h.wfile.write(b": keepalive\n\n")
                    idle = time.monotonic()
        except OSError:
            pass  # the browser went away
        finally:
            self._close_stream("events")

    def _live_jpeg(self) -> tuple[int, bytes | None]:
        """The newest frame for the live view, encoded once however many browsers watch."""
        with self._enc_lock:
            with self._cond:
                seq, r = self._seq, self._result
            if r is None:
                return seq, None
            if self._live is None or self._live[0] != seq:
                ui = self.d.cfg.ui
                f = r.frame  # the full frame only where the reduced one is narrower than the view
                src = f.image if f.image.shape[1] >= ui.stream_width else f.full_image()
                img = scaled(src, f.color_order, ui.stream_width)
                self._live = (seq, jpeg(img, ui.stream_quality))
                self.counts["frames_encoded"] += 1
            return self._live

    def _stream(self, h: Any) -> None:
        if not self._open_stream(h, "stream", "multipart/x-mixed-replace; boundary=frame"):
            return
        try:
            h.wfile.write(b"--frame\r\n" + PART_HEAD)
            last, due = -1, 0.0
            while not self._closed:
                if self._wait(last, KEEPALIVE_S) == last and last >= 0:
                    last = -1  # idle (a folder of photos): resend, which also finds a dead peer
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)  # at most stream_fps; the newest frame is sent after it
                seq, jpg = self._live_jpeg()
                if jpg is None:
                    last = seq
                    continue
                # the next part's boundary and headers right after this one: Chromium shows a
                # part only once the next one has begun (else the screen lags one frame behind)
                h.wfile.write(jpg + b"\r\n--frame\r\n" + PART_HEAD)
                last = seq
                due = max(time.monotonic(), due + 1.0 / self.d.cfg.ui.stream_fps)
        except OSError:
            pass
        finally:
            self._close_stream("stream")

    def _heatmap(self, h: Any) -> None:
        """The CAM of the current decision, only while it is refer/unsure (rendered on demand)."""
        with self._cond:
            flagged = self._flagged
            current = self._result
        overlay = self.d.explainer.overlay_fn(self.d.cfg, self.d.classifier)
        if (
            flagged is None
            or current is None
            or current.decision.label not in FLAGGED
            or overlay is None
            or not self.d.cfg.ui.heatmap
        ):
            h._send(404, b"no heatmap: only a refer or unsure decision has one\n", "text/plain")
            return
        seq, r = flagged
        with self._enc_lock:
            if self._heat is None or self._heat[0] != seq:
                f = r.frame
                img = (
                    f.image if f.color_order == "BGR" else cv2.cvtColor(f.image, cv2.COLOR_RGB2BGR)
                )
                img = img.copy()
                if r.roi:
                    x, y, w, bh = r.roi
                    img[y : y + bh, x : x + w] = overlay(
                        np.ascontiguousarray(img[y : y + bh, x : x + w]), r
                    )
                else:
                    img = overlay(img, r)
                ui = self.d.cfg.ui
                self._heat = (seq, jpeg(scaled(img, "BGR", ui.stream_width), 85))
                self.counts["heatmaps_rendered"] += 1
            body = self._heat[1]
        h._send(200, body, "image/jpeg")
