"""Which decisions reach the event log, in what shape, and with which snapshot.

Video: an event when the decision changes (a kiosk at 30 fps must not fsync 30 times a
second for the same person), or every frame if asked. Photos (``dir://``): every one, since
each is a different person. A full disk is counted and logged, never fatal. Snapshots are
written only when ``[events] snapshots`` asks, and then with faces pixelated (privacy.py)
unless ``blur_faces = false``; without a face finder they are not written at all.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Any

from ..explain.overlay import render_jpeg
from .config import Config
from .eventlog import EventLog, write_snapshot
from .pipeline import Result
from .privacy import FaceBlur
from .telemetry import Telemetry

log = logging.getLogger("mpox_edge.recorder")
ERROR_EVERY_S = 60.0


def clean(x: float) -> float | None:
    """Rounded for the log; None for NaN (JSON has no NaN)."""
    return round(x, 5) if math.isfinite(x) else None


class Recorder:
    def __init__(self, cfg: Config, telemetry: Telemetry) -> None:
        self.telemetry = telemetry
        self.cfg = cfg
        self.log = self._open(cfg)
        self.last_label = ""
        self.last_event: dict[str, Any] | None = None
        self._fail_since = self._last_error_at = 0.0  # disk-full messages, rate-limited
        self._fail_count = self._suppressed = 0
        self.last_ok = True  # the last event reached the log (dir:// acks depend on it)
        self._faces: FaceBlur | None = None

    @staticmethod
    def _open(cfg: Config) -> EventLog:
        ev = cfg.events
        return EventLog(cfg.events_path, max_bytes=ev.max_bytes, backups=ev.backups)

    def reconfigure(self, cfg: Config) -> None:
        """SIGHUP: reopen the log only if where or how it is written changed."""
        if cfg.events_path != self.cfg.events_path or (
            (cfg.events.max_bytes, cfg.events.backups)
            != (self.cfg.events.max_bytes, self.cfg.events.backups)
        ):
            try:
                fresh = self._open(cfg)
            except OSError as e:
                log.error(
                    "reload: cannot open %s (%s); logging to %s still",
                    cfg.events_path,
                    e.strerror or e,
                    self.cfg.events_path,
                )
                return
            self.log.close()
            self.log = fresh
        self.cfg = cfg

    def event(self, ev: dict[str, Any]) -> dict[str, Any]:
        try:
            ev = self.log.append(ev)
            self.telemetry.inc("events_written_total")
            self.last_ok = True
        except OSError as e:
            self.telemetry.inc("events_failed_total")
            self.last_ok = False
            self._failed(e)
            return ev
        if self._suppressed or self._fail_since:
            log.warning(
                "event log %s writable again after %d failed event(s)",
                self.cfg.events_path,
                self._fail_count,
            )
            self._suppressed = self._fail_count = 0
            self._fail_since = 0.0
        return ev

    def _failed(self, e: OSError) -> None:
        """One ERROR line at the first failure, then at most one a minute (not one a frame)."""
        now = time.monotonic()
        self._fail_count += 1
        if self._fail_since and now - self._last_error_at < ERROR_EVERY_S:
            self._suppressed += 1
            return
        more = (
            f" ({self._suppressed} more failures since the last message)"
            if self._suppressed
            else ""
        )
        log.error("event log %s: %s%s", self.cfg.events_path, e.strerror or e, more)
        self._fail_since = self._fail_since or now
        self._last_error_at, self._suppressed = now, 0

    def decision(
        self, r: Result, classes: list[str], positive_class: str, model: dict[str, str]
    ) -> None:
        d = r.decision
        changed = d.label != self.last_label
        self.last_label = d.label
        ec = self.cfg.events
        if not (ec.every_frame or r.frame.still or changed):
            return
        q = r.quality
        ev: dict[str, Any] = {
            "event": "decision",
            **d.to_dict(),
            "positive_class": positive_class,
            "source": self.cfg.source.uri,
            "frame": r.frame.seq,
            "quality": {
                "sharpness": round(q.sharpness, 1),
                "brightness": round(q.brightness, 1),
                "clipped": round(q.clipped, 4),
                "detail": clean(q.detail),
                "highlight": clean(q.highlight),
                "saturated": clean(q.saturated),
            },
            "latency_ms": round(r.timings_ms.get("capture_to_decision", 0.0), 2),
        }
        if r.frame.name:
            ev["name"] = r.frame.name
        if r.prediction is not None:
            ev["probs"] = {
                c: round(float(p), 5) for c, p in zip(classes, r.prediction.probs, strict=False)
            }
        if r.roi:
            ev["roi"] = list(r.roi)
        if ec.snapshots and d.label in ec.snapshot_labels:
            self._snapshot(r, ev)
        ev.update(model)
        self.last_event = self.event(ev)

    def _snapshot(self, r: Result, ev: dict[str, Any]) -> None:
        ec = self.cfg.events
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{r.frame.seq:08d}-{r.decision.label}.jpg"
        if ec.blur_faces:
            if self._faces is None:
                self._faces = FaceBlur()
            if not self._faces.available:
                self.telemetry.inc("snapshots_skipped_total")
                log.error("snapshot %s not written: no face finder (%s)", name, self._faces.reason)
                return
            # the snapshot is drawn at the camera's full resolution (render_jpeg): blur that,
            # and drop the unblurred full-size sources from the copy it is drawn from
            f = r.frame
            full = f.full_image()
            image, n = self._faces.apply(full, f.color_order)
            k = full.shape[1] / f.image.shape[1]
            roi = tuple(int(round(v * k)) for v in r.roi) if r.roi and k != 1 else r.roi
            frame = dataclasses.replace(f, image=image, full=None, jpeg=None)
            r = dataclasses.replace(r, frame=frame, roi=roi)  # type: ignore[arg-type]
            ev["faces_blurred"] = n
        try:
            path = write_snapshot(
                self.cfg.snapshot_dir, name, render_jpeg(r, None), keep=ec.max_snapshots
            )
            ev["snapshot"] = str(path)
        except OSError as e:
            log.error("snapshot %s: %s", name, e.strerror or e)

    def close(self) -> None:
        self.log.close()
