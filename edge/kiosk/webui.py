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

from .config import WEB_DIR, ui_languages
from .recorder import clean
from .webstreams import (  # noqa: F401 - re-exported: the page's one place for these
    FLAGGED,
    MAX_CLIENTS,
    STREAM_PATHS,
    StreamRoutes,
    jpeg,
    retake_hint,
    scaled,
)

if TYPE_CHECKING:
    from .daemon import Daemon
    from .pipeline import Result

log = logging.getLogger("mpox_edge.webui")
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
_T = re.compile(r"\{\{t:([a-z0-9_.]+)\}\}")


def load_strings(lang: str) -> dict[str, str]:
    """One language's strings over the English ones (a missing key never shows as a key)."""
    out: dict[str, str] = json.loads((WEB_DIR / "i18n" / "en.json").read_text("utf-8"))
    if lang != "en":
        out.update(json.loads((WEB_DIR / "i18n" / f"{lang}.json").read_text("utf-8")))
    return out


class _RecentErrors(logging.Handler):
    """The last warnings and errors of the daemon, for the operator view."""

    def __init__(self, keep: int = 20) -> None:
        super().__init__(logging.WARNING)
        self.items: collections.deque[dict[str, str]] = collections.deque(maxlen=keep)

    def emit(self, record: logging.LogRecord) -> None:
        t = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        self.items.append({"time": t, "level": record.levelname, "message": record.getMessage()})


class WebUI(StreamRoutes):
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
