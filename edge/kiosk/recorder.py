"""Which decisions reach the event log, in what shape, and with which snapshot.

Video: an event when the decision changes (a kiosk at 30 fps must not fsync 30 times a
second for the same person), or every frame if asked. Photos (``dir://``): every one, since
each is a different person. A full disk is counted and logged, never fatal.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from ..explain.overlay import render_jpeg
from .config import Config
from .eventlog import EventLog, write_snapshot
from .pipeline import Result
from .telemetry import Telemetry

log = logging.getLogger("mpox_edge.recorder")


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
        except OSError as e:
            self.telemetry.inc("events_failed_total")
            log.error("event log %s: %s", self.cfg.events_path, e.strerror or e)
        return ev

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
            name = f"{time.strftime('%Y%m%dT%H%M%S')}-{r.frame.seq:08d}-{d.label}.jpg"
            try:
                path = write_snapshot(
                    self.cfg.snapshot_dir, name, render_jpeg(r, None), keep=ec.max_snapshots
                )
                ev["snapshot"] = str(path)
            except OSError as e:
                log.error("snapshot %s: %s", name, e.strerror or e)
        ev.update(model)
        self.last_event = self.event(ev)

    def close(self) -> None:
        self.log.close()
