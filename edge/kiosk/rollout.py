"""Model hot swap in the running daemon: the old model serves until the new one is proven.

A request (SIGHUP with a new ``current`` in the store, or the MQTT ``set/model`` command)
starts a worker thread that loads and warms up the new version and runs the health check on
the sample bundled with it: it loads, its classes match the config (or the running model),
and its accuracy on the sample is within the manifest's record. Only then does the frame
loop swap it in, between two frames. On failure ``current`` goes back to the serving
version and the reason reaches the log, ``/status`` and (through the event log) MQTT.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MpoxEdgeError
from ..model.bundle import sample_accuracy
from ..model.manifest import MANIFEST_NAME
from ..model.store import Store

if TYPE_CHECKING:
    from .daemon import Daemon

log = logging.getLogger("mpox_edge.rollout")


def health_check(clf: Any, version_dir: Path, classes: list[str]) -> str:
    """'' if the loaded model passes, else the reason (one line)."""
    if list(clf.classes) != list(classes):
        return f"classes {list(clf.classes)} do not match the expected {list(classes)}"
    rec = json.loads((version_dir / MANIFEST_NAME).read_text()).get("bundle", {}).get("sample")
    if not rec:
        return "the bundle records no health-check sample"
    files = sorted(p for p in (version_dir / "sample").rglob("*") if p.is_file())
    picked = [(str(p.relative_to(version_dir)), p) for p in files]
    correct, n = sample_accuracy(clf, picked)
    floor = float(rec["accuracy"]) - float(rec.get("tolerance", 0.0))
    if n != int(rec["n"]) or correct / max(n, 1) < floor - 1e-9:
        return (
            f"accuracy on the bundled sample {correct}/{n} is below the recorded "
            f"{rec['correct']}/{rec['n']} minus tolerance {rec.get('tolerance', 0)}"
        )
    return ""


class Rollout:
    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self.state: dict[str, Any] = {"state": "idle"}
        self._ready: tuple[Any, str, float] | None = None
        self._busy = threading.Lock()

    def store(self) -> Store:
        c = self.d.cfg
        return Store(c.models_dir, c.models.trusted_keys, c.models.keep)

    def serving(self) -> str:
        """The store version the running model came from ('' for a plain directory)."""
        p = Path(str(getattr(getattr(self.d.classifier, "model", None), "path", "")))
        return p.name if p.parent == self.d.cfg.models_dir else ""

    def on_reload(self) -> None:
        """SIGHUP: roll out if the store's ``current`` is not what serves (model.dir unset)."""
        cur = self.store().current()
        if not self.d.cfg.model.dir and cur is not None and cur.name != self.serving():
            self.begin(None)

    def command(self, payload: bytes) -> None:
        """MQTT set/model: ``{"version": PREFIX}`` or ``{"action": "rollback"}``."""
        try:
            body = json.loads(payload or b"{}")
            action = "rollback" if body.get("action") == "rollback" else str(body["version"])
        except (ValueError, KeyError, TypeError, AttributeError):
            why = 'set/model wants {"version": "<sha256 prefix>"} or {"action": "rollback"}'
            self._fail("", why, self.serving(), release=False)
            return
        self.begin(action)

    def begin(self, target: str | None) -> None:
        if not self._busy.acquire(blocking=False):
            log.warning("model rollout already in progress: request ignored")
            return
        t0 = time.monotonic()
        threading.Thread(target=self._work, args=(target, t0), name="rollout", daemon=True).start()

    def _work(self, target: str | None, t0: float) -> None:
        store, old = self.store(), self.serving()
        version = ""
        try:
            if target == "rollback":
                version = store.rollback()
            elif target:
                version = store.activate(target)
            cur = store.current()
            if cur is None:
                raise MpoxEdgeError("the model store has no current version")
            version = cur.name
            self.state = {"state": "loading", "version": version}
            cfg = dataclasses.replace(
                self.d.cfg, model=dataclasses.replace(self.d.cfg.model, dir=str(cur))
            )
            clf = self.d._load_model(cfg)
            running = self.d.classifier
            assert running is not None  # a swap replaces a model that is serving
            classes = self.d.cfg.models.classes or list(running.classes)
            why = health_check(clf, cur, classes)
            if why:
                clf.close()
                raise MpoxEdgeError(f"health check failed: {why}")
        except Exception as e:  # noqa: BLE001 - any failure: keep serving the old model
            cur = store.current()
            if old and (cur is None or cur.name != old):
                store.point(old)  # roll back: current is what serves
            self._fail(version, str(e), old)
            return
        self._ready = (clf, version, t0)

    def _fail(self, version: str, why: str, old: str, release: bool = True) -> None:
        log.error(
            "model rollout of %s refused, still serving %s: %s",
            version[:12] or "?",
            old[:12] or "the current model",
            why,
        )
        self.state = {"state": "failed", "version": version, "serving": old, "error": why}
        self.d._event({"event": "model", "ok": False, **self.state})
        if release:
            self._busy.release()

    def poll(self) -> None:
        """Frame loop, between frames: swap in a model that passed."""
        ready, self._ready = self._ready, None
        if ready is None:
            return
        clf, version, t0 = ready
        pipe = self.d.pipeline
        assert pipe is not None
        prev: Any = pipe.classifier
        pipe.classifier = clf
        try:
            pipe.configure(self.d.cfg.decision, self.d.cfg.roi)
        except MpoxEdgeError as e:
            pipe.classifier = prev
            clf.close()
            self._fail(version, str(e), self.serving())
            return
        self.d.classifier = clf
        prev.close()
        ms = (time.monotonic() - t0) * 1e3
        self.state = {"state": "serving", "version": version, "swap_ms": round(ms, 1)}
        self.d._event({"event": "model", "ok": True, **self.state})
        log.info("model %s serving, %.0f ms after the request", version[:12], ms)
        self._busy.release()
