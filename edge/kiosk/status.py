"""What the HTTP API shows of a running daemon: health, status JSON, metrics, latest frame.

Read-only views of state the frame loop publishes; nothing here blocks or touches the loop.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..explain.overlay import render_jpeg
from ..system import cpu_temp_c, rss_bytes
from .httpapi import NotReady
from .pipeline import Result

if TYPE_CHECKING:
    from .daemon import Daemon

STALL_S = 10.0  # /healthz fails when the frame loop has not turned for this long


def tampered(d: Daemon) -> list[str]:
    """sha256 problems of the model being served (only with [model] allow_tampered)."""
    return list(getattr(d.classifier, "tampered", None) or [])


class DaemonView:
    """The ``httpapi.Provider`` of a Daemon."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self._jpeg: tuple[Result, bytes] | None = None

    def health(self) -> tuple[bool, str]:
        d = self.d
        age = time.monotonic() - d.heartbeat
        cam = d.capture.state if d.capture else "-"
        if age > STALL_S:
            return False, f"frame loop stalled for {age:.0f} s"
        if d.capture is not None and not d.capture.alive:
            return False, f"capture thread is dead ({d.capture.last_error or 'no error recorded'})"
        return True, f"ok; camera {cam}"

    def status(self) -> dict[str, Any]:
        d = self.d
        cap = d.capture
        clf = d.classifier
        return {
            "version": __version__,
            "uptime_s": round(d.telemetry.uptime(), 1),
            **d.model_info(),
            "architecture": clf.model.manifest.architecture if clf else "",
            "classes": list(clf.classes) if clf else [],
            "selection": {
                k: v for k, v in (clf.selection if clf else {}).items() if k != "candidates"
            },
            "fps": round(d.telemetry.fps(), 2),
            "cpu_ms_per_decision": _round(d.cpu_ms_per_decision(), 3),
            "camera": {
                "state": cap.state if cap else "-",
                "uri": d.cfg.source.uri,
                "error": cap.last_error if cap else "",
                "since": cap.state_since if cap else None,
            },
            "last_decision": self._last_decision(),
            "frames": d.counts(),
            "roi": d.pipeline.roi.reason or "on" if d.pipeline else "-",
            "refer_threshold": (
                {"value": d.pipeline.threshold, "source": d.pipeline.threshold_source}
                if d.pipeline
                else None
            ),
            "unsure": (
                {"enabled": d.pipeline.cfg.unsure, "ood_threshold": d.pipeline.ood_threshold}
                if d.pipeline
                else None
            ),
            "explain": d.explainer.wanted(d.cfg),
            "model_version": d.rollout.serving(),
            "rollout": d.rollout.state,
            "ui": d.webui.stats() if d.cfg.ui.enabled else None,
            "config": d.cfg.origin,
            "integrity": {"ok": not tampered(d), "problems": tampered(d)},
            "reload": d.last_reload,  # None until the first SIGHUP; ok false: kept the old one
        }

    def _last_decision(self) -> dict[str, Any] | None:
        r = self.d.latest
        if r is None:
            return None
        return {
            **r.decision.to_dict(),
            "frame": r.frame.seq,
            "name": r.frame.name,
            "age_s": round(time.monotonic() - r.frame.t_capture, 3),
        }

    def metrics_text(self) -> str:
        d = self.d
        cap = d.capture
        gauges = {
            "camera_up": (
                float(cap is not None and cap.state == "streaming"),
                "1 while the source delivers frames",
            ),
            "fps": (d.telemetry.fps(), "processed frames per second (last 10 s)"),
            "cpu_ms_per_decision": (
                d.cpu_ms_per_decision(),
                "process CPU milliseconds (all threads) per decision since ready",
            ),
            "uptime_seconds": (d.telemetry.uptime(), "seconds since start"),
            "process_resident_memory_bytes": (float(rss_bytes()), "resident set size"),
            "cpu_temperature_celsius": (cpu_temp_c(), "SoC temperature (NaN: no sensor)"),
            "model_integrity_ok": (
                float(not tampered(d)),
                "0 while a model with sha256 mismatches is served (allow_tampered)",
            ),
        }
        return d.telemetry.render(gauges, d.model_info(short=True))

    def latest_jpeg(self) -> bytes | None:
        d = self.d
        r = d.latest
        if not d.cfg.http.latest_jpg:
            return None
        if r is None:
            raise NotReady(
                "no frame processed yet (the model is loading or the camera has not "
                "delivered one); retry shortly"
            )
        cached = self._jpeg
        if cached is not None and cached[0] is r:
            return cached[1]
        jpg = render_jpeg(r, d.explainer.overlay_fn(d.cfg, d.classifier))
        self._jpeg = (r, jpg)
        return jpg


def _round(v: float | None, n: int) -> float | None:
    return None if v is None else round(v, n)
