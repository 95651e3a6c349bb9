"""The kiosk page: what the person in front of the camera sees, served by the daemon itself.

Routes on the daemon's HTTP server (edge/kiosk/httpapi.py):

- ``/`` the page (edge/kiosk/web/, package data, no CDN, no build step), its strings filled
  in here so the first paint is complete; ``?lang=`` overrides ``[ui] language``;
- ``/static/...`` the page's CSS, JS and translation files;
- ``/events`` Server-Sent Events: one message per decision (and per camera change) pushed as
  the frame loop makes it, carrying the decision's wall-clock time so the page can measure
  how long it took to reach the screen;
- ``/stream.mjpg`` the live view (multipart/x-mixed-replace), encoded only while a browser
  watches, at most ``stream_fps`` frames a second, one encoding shared by every browser;
- ``/heatmap.jpg`` the class-activation map of the current decision, only while it is
  ``refer`` or ``unsure``;
- ``/operator`` (+ ``/operator/status.json``) what /status knows plus recent errors.

Access: the page and its streams are open to the kiosk's own browser (a loopback client);
any other client needs the API token when one is set, and ``/operator`` always does. The
frame loop pays only for ``publish`` (store a reference, wake waiting threads). Nothing here
writes a frame anywhere; every response is ``no-store``.
"""

from __future__ import annotations

import base64
import collections
import html
import ipaddress
import json
import logging
import re
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import cv2
import numpy as np

from .config import WEB_DIR, ui_languages
from .recorder import clean

if TYPE_CHECKING:
    from .daemon import Daemon
    from .pipeline import Result

log = logging.getLogger("mpox_edge.webui")
STREAM_PATHS = frozenset({"/events", "/stream.mjpg"})  # long-lived: no request deadline
FLAGGED = ("refer", "unsure")  # the decisions that may show a heatmap
MAX_CLIENTS = 4  # per stream kind: each holds one server thread
KEEPALIVE_S = 10.0
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
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
)
_T = re.compile(r"\{\{t:([a-z0-9_.]+)\}\}")


def retake_hint(reason: str) -> str:
    """The translation key of what to do about a retake reason ("generic" if unknown)."""
    low = reason.lower()
    return next((key for word, key in RETAKE_HINTS if word in low), "generic")


def load_strings(lang: str) -> dict[str, str]:
    """One language's strings over the English ones (a missing key never shows as a key)."""
    out: dict[str, str] = json.loads((WEB_DIR / "i18n" / "en.json").read_text("utf-8"))
    if lang != "en":
        out.update(json.loads((WEB_DIR / "i18n" / f"{lang}.json").read_text("utf-8")))
    return out


def scaled(image: np.ndarray, color_order: str, width: int) -> np.ndarray:
    img = image if color_order == "BGR" else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    h, w = img.shape[:2]
    if w > width:
        img = cv2.resize(img, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    return img


def jpeg(img: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError("JPEG encoding failed")
    return buf.tobytes()


class _RecentErrors(logging.Handler):
    """The last warnings and errors of the daemon, for the operator view."""

    def __init__(self, keep: int = 20) -> None:
        super().__init__(logging.WARNING)
        self.items: collections.deque[dict[str, str]] = collections.deque(maxlen=keep)

    def emit(self, record: logging.LogRecord) -> None:
        t = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        self.items.append({"time": t, "level": record.levelname, "message": record.getMessage()})


class WebUI:
    """The ``httpapi.Routes`` of a daemon, and the frame loop's ``publish`` hook."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self._cond = threading.Condition()
        self._seq = 0
        self._result: Result | None = None
        self._t_ms = 0.0
        self._flagged: tuple[int, Result] | None = None
        self._closed = False
        self._enc_lock = threading.Lock()
        self._live: tuple[int, bytes] | None = None
        self._heat: tuple[int, bytes] | None = None
        self._clients = {"events": 0, "stream": 0}
        self.counts = {"frames_encoded": 0, "events_sent": 0, "heatmaps_rendered": 0}
        self.errors = _RecentErrors()
        logging.getLogger("mpox_edge").addHandler(self.errors)

    # -- the frame loop's side --------------------------------------------------------------
    def publish(self, r: Result) -> None:
        with self._cond:
            self._seq += 1
            self._result = r
            self._t_ms = time.time() * 1e3
            if r.decision.label in FLAGGED:
                self._flagged = (self._seq, r)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        logging.getLogger("mpox_edge").removeHandler(self.errors)

    def stats(self) -> dict[str, int]:
        return {f"{k}_clients": v for k, v in self._clients.items()} | self.counts

    # -- what the page is told --------------------------------------------------------------
    def _camera(self) -> str:
        cap = self.d.capture
        return cap.state if cap else "-"

    def heatmap_offered(self) -> bool:
        cfg = self.d.cfg
        return cfg.ui.heatmap and self.d.explainer.wanted(cfg)

    def message(self) -> dict[str, Any]:
        with self._cond:
            seq, r, t_ms = self._seq, self._result, self._t_ms
        msg: dict[str, Any] = {"seq": seq, "t_ms": round(t_ms, 3), "camera": self._camera()}
        if r is not None:
            d = r.decision
            msg["decision"] = {
                "label": d.label,
                "hint": retake_hint(d.reason) if d.label == "retake" else "",
                "reason": d.reason,
                "p_positive": clean(d.p_positive),
                "top_class": d.top_class,
                "frame": r.frame.seq,
                "name": r.frame.name,
            }
            feats = getattr(r.prediction, "features", None) is not None
            msg["heatmap"] = d.label in FLAGGED and feats and self.heatmap_offered()
        return msg

    # -- routing ----------------------------------------------------------------------------
    def handle(self, h: Any, path: str, query: str) -> bool:
        ui = self.d.cfg.ui
        if not ui.enabled or not (
            path in ("/", "/index.html", "/heatmap.jpg", "/operator", "/operator/status.json")
            or path in STREAM_PATHS
            or path.startswith("/static/")
        ):
            return False
        if path.startswith("/operator"):
            if not h._authorized():
                h._send(
                    401,
                    b"unauthorized: the operator view wants the API token as password\n",
                    "text/plain",
                    {"WWW-Authenticate": 'Basic realm="mpox-edge operator", charset="UTF-8"'},
                )
                return True
        elif not (_loopback(h.client_address[0]) or h._authorized()):
            h._send(401, b"unauthorized\n", "text/plain", {"WWW-Authenticate": "Bearer"})
            return True
        q = {k: v[-1] for k, v in parse_qs(query).items()}
        if path in ("/", "/index.html"):
            self._page(h, "index.html", q.get("lang", ""))
        elif path == "/operator":
            self._page(h, "operator.html", q.get("lang", ""))
        elif path == "/operator/status.json":
            body = {**h.server.provider.status(), "errors": list(self.errors.items)}
            h._send(200, json.dumps(body, default=str).encode(), "application/json")
        elif path == "/events":
            self._events(h)
        elif path == "/stream.mjpg":
            self._stream(h) if ui.stream else h._send(404, b"stream off\n", "text/plain")
        elif path == "/heatmap.jpg":
            self._heatmap(h)
        else:
            self._static(h, path.removeprefix("/static/"))
        return True

    def _page(self, h: Any, name: str, lang: str) -> None:
        langs = ui_languages()
        lang = lang if lang in langs else self.d.cfg.ui.language
        strings = load_strings(lang)
        boot = {
            "lang": lang,
            "languages": langs,
            "strings": strings,
            "fallback": load_strings("en"),
            "stream": self.d.cfg.ui.stream,
            "heatmap": self.heatmap_offered(),
        }
        text = (WEB_DIR / name).read_text("utf-8")
        text = text.replace("{{LANG}}", lang).replace(
            "{{BOOT}}", json.dumps(boot, ensure_ascii=False).replace("</", "<\\/")
        )
        text = _T.sub(lambda m: html.escape(strings.get(m.group(1), m.group(1))), text)
        h._send(200, text.encode(), TYPES[".html"], {"Content-Security-Policy": CSP})

    def _static(self, h: Any, rel: str) -> None:
        path = (WEB_DIR / rel).resolve()
        ctype = TYPES.get(path.suffix)
        if ctype is None or not path.is_relative_to(WEB_DIR) or not path.is_file():
            h._send(404, b"not found\n", "text/plain")
            return
        h._send(200, path.read_bytes(), ctype)

    # -- streams ----------------------------------------------------------------------------
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

    def _events(self, h: Any) -> None:
        if not self._open_stream(h, "events", "text/event-stream; charset=utf-8"):
            return
        try:
            h.wfile.write(b"retry: 1000\n\n")
            last, last_cam, idle = -1, "", time.monotonic()
            while not self._closed:
                seq = self._wait(last, 1.0)  # camera changes are noticed within a second
                cam = self._camera()
                if seq != last or cam != last_cam:
                    data = json.dumps(self.message(), allow_nan=False)
                    h.wfile.write(f"id: {seq}\ndata: {data}\n\n".encode())
                    self.counts["events_sent"] += 1
                    last, last_cam, idle = seq, cam, time.monotonic()
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
                img = scaled(r.frame.image, r.frame.color_order, ui.stream_width)
                self._live = (seq, jpeg(img, ui.stream_quality))
                self.counts["frames_encoded"] += 1
            return self._live

    def _stream(self, h: Any) -> None:
        if not self._open_stream(h, "stream", "multipart/x-mixed-replace; boundary=frame"):
            return
        try:
            h.wfile.write(b"--frame\r\n")
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
                head = f"Content-Type: image/jpeg\r\nContent-Length: {len(jpg)}\r\n\r\n"
                # the boundary right after the part: browsers show a part once it is closed
                h.wfile.write(head.encode() + jpg + b"\r\n--frame\r\n")
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


def _loopback(addr: str) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def basic_auth(token: str, user: str = "operator") -> str:
    """The Authorization header a browser sends after the operator's login prompt (tests)."""
    return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()
