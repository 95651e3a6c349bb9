"""Counters, per-stage latency histograms and gauges, exposed with ``prometheus-client``.

The maintained library writes the exposition format (escaping, ``# HELP``/``# TYPE``,
OpenMetrics negotiation) and brings the standard ``process_*`` collector; each Telemetry has
its own registry so several daemons in one test process do not collide. Fixed buckets keep
memory flat for weeks: nothing here grows with the number of frames. Plain ``counters`` are
kept beside the library's objects because ``/status`` and the frame loop read them often.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric

from .config import DECISIONS

# Seconds. Covers a 1 ms preprocess on a Jetson up to a 2 s int8 model on a Pi Zero.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
PREFIX = "mpox_edge"
disable_created_metrics()  # no *_created series: the names stay exactly as before


class _Gauges:
    """A collector for values computed at scrape time (fps, camera, temperature, info)."""

    def __init__(self) -> None:
        self.gauges: dict[str, tuple[float | None, str]] = {}
        self.info: dict[str, str] = {}

    def collect(self) -> Iterator[Metric]:
        info = InfoMetricFamily(f"{PREFIX}", "model and backend in use")
        info.add_metric([], self.info)
        # InfoMetricFamily appends _info itself: mpox_edge_info{...} 1
        yield info
        for name, (value, text) in self.gauges.items():
            yield GaugeMetricFamily(
                f"{PREFIX}_{name}", text, value=float("nan") if value is None else value
            )


class Telemetry:
    """Thread-safe: the capture thread, the frame loop and HTTP readers all touch it."""

    COUNTERS = {
        "frames_captured_total": "frames read from the source",
        "frames_dropped_total": "frames replaced in the one-slot buffer before inference",
        "frames_processed_total": "frames that went through the pipeline",
        "frames_failed_total": "frames the pipeline raised on (logged, skipped)",
        "camera_failures_total": "source open/read failures",
        "camera_reconnects_total": "source re-opened after a failure",
        "events_written_total": "decision events appended to the event log",
        "events_failed_total": "decision events the log could not write",
        "reloads_failed_total": "SIGHUP reloads rejected (the running configuration kept)",
        "photos_unreadable_total": "dir:// photos refused or undecodable (an unreadable event)",
        "capture_restarts_total": "capture threads found dead and started again",
        "http_refused_total": "HTTP connections closed at the connection cap",
        "http_timeouts_total": "HTTP connections closed at the request deadline",
    }

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._render_lock = threading.Lock()
        self.counters = dict.fromkeys(self.COUNTERS, 0)
        self.decisions: dict[str, int] = dict.fromkeys(DECISIONS, 0)
        self._done: deque[float] = deque(maxlen=60)  # times of the last processed frames
        self._minutes: deque[list[float]] = deque(maxlen=61)  # [minute, decisions] pairs
        self.started = time.monotonic()
        self.registry = CollectorRegistry(auto_describe=True)
        self._c = {
            name: Counter(f"{PREFIX}_{name.removesuffix('_total')}", text, registry=self.registry)
            for name, text in self.COUNTERS.items()
        }
        self._dec = Counter(
            f"{PREFIX}_decisions", "decisions by label", ["label"], registry=self.registry
        )
        for label in self.decisions:
            self._dec.labels(label)
        self._hist = Histogram(
            f"{PREFIX}_stage_latency_seconds",
            "per-stage latency of processed frames",
            ["stage"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._stages: dict[str, Any] = {}  # label children, looked up once
        self._gauges = _Gauges()
        self.registry.register(self._gauges)
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, open fds...

    def inc(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n
        self._c[name].inc(n)

    def get(self, name: str) -> int:
        return self.counters[name]

    def observe_ms(self, timings_ms: dict[str, float]) -> None:
        for stage, ms in timings_ms.items():
            child = self._stages.get(stage)
            if child is None:
                child = self._stages.setdefault(stage, self._hist.labels(stage))
            child.observe(ms / 1e3)

    def decided(self, label: str) -> None:
        now = time.monotonic()
        minute = now // 60
        with self._lock:
            self.decisions[label] = self.decisions.get(label, 0) + 1
            self.counters["frames_processed_total"] += 1
            self._done.append(now)
            if self._minutes and self._minutes[-1][0] == minute:
                self._minutes[-1][1] += 1
            else:
                self._minutes.append([minute, 1])
        self._dec.labels(label).inc()
        self._c["frames_processed_total"].inc()

    def decisions_last_hour(self) -> int:
        """Decisions in the last 60 minutes (per-minute buckets: memory stays fixed)."""
        first = time.monotonic() // 60 - 59
        with self._lock:
            return int(sum(n for m, n in self._minutes if m >= first))

    def fps(self) -> float:
        """Processed frames per second over the last (up to) 60 frames and 10 seconds."""
        with self._lock:
            ts = list(self._done)
        now = time.monotonic()
        ts = [t for t in ts if now - t <= 10.0]
        if len(ts) < 2:
            return 0.0
        return (len(ts) - 1) / max(ts[-1] - ts[0], 1e-9)

    def uptime(self) -> float:
        return time.monotonic() - self.started

    def render(self, gauges: dict[str, tuple[float | None, str]], info: dict[str, str]) -> str:
        """The /metrics body: counters, decisions, stage histograms, ``gauges``, process."""
        with self._render_lock:  # one scrape at a time sees its own gauges
            self._gauges.gauges, self._gauges.info = gauges, info
            return generate_latest(self.registry).decode()
