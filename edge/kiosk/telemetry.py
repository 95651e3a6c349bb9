"""Counters, per-stage latency histograms and process gauges, rendered as Prometheus text.

No prometheus_client on the device: the text format is a few lines, and fixed buckets keep
memory flat for weeks (nothing here grows with the number of frames).
"""

from __future__ import annotations

import threading
import time
from collections import deque

from .config import DECISIONS

# Seconds. Covers a 1 ms preprocess on a Jetson up to a 2 s int8 model on a Pi Zero.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
PREFIX = "mpox_edge"


class Histogram:
    """A Prometheus histogram with fixed buckets (cumulative at render time)."""

    def __init__(self, buckets: tuple[float, ...] = BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # last: +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        i = 0
        while i < len(self.buckets) and seconds > self.buckets[i]:
            i += 1
        self.counts[i] += 1
        self.sum += seconds
        self.count += 1

    def lines(self, name: str, labels: str) -> list[str]:
        out, acc = [], 0
        sep = "," if labels else ""
        for le, n in zip((*(f"{b:g}" for b in self.buckets), "+Inf"), self.counts, strict=True):
            acc += n
            out.append(f'{name}_bucket{{{labels}{sep}le="{le}"}} {acc}')
        lab = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{lab} {self.sum:.6f}", f"{name}_count{lab} {self.count}"]
        return out


def _escape(v: str) -> str:
    return v.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")


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
    }

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters = dict.fromkeys(self.COUNTERS, 0)
        self.decisions: dict[str, int] = dict.fromkeys(DECISIONS, 0)
        self.stages: dict[str, Histogram] = {}
        self._done: deque[float] = deque(maxlen=60)  # times of the last processed frames
        self.started = time.monotonic()

    def inc(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n

    def get(self, name: str) -> int:
        return self.counters[name]

    def observe_ms(self, timings_ms: dict[str, float]) -> None:
        with self._lock:
            for stage, ms in timings_ms.items():
                self.stages.setdefault(stage, Histogram()).observe(ms / 1e3)

    def decided(self, label: str) -> None:
        with self._lock:
            self.decisions[label] = self.decisions.get(label, 0) + 1
            self.counters["frames_processed_total"] += 1
            self._done.append(time.monotonic())

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
        """The /metrics body: counters, decisions, stage histograms, then ``gauges``."""
        p = PREFIX
        out = []
        labels = ",".join(f'{k}="{_escape(v)}"' for k, v in info.items())
        out += [
            f"# HELP {p}_info model and backend in use",
            f"# TYPE {p}_info gauge",
            f"{p}_info{{{labels}}} 1",
        ]
        with self._lock:
            for name, text in self.COUNTERS.items():
                out += [
                    f"# HELP {p}_{name} {text}",
                    f"# TYPE {p}_{name} counter",
                    f"{p}_{name} {self.counters[name]}",
                ]
            out += [
                f"# HELP {p}_decisions_total decisions by label",
                f"# TYPE {p}_decisions_total counter",
            ]
            out += [f'{p}_decisions_total{{label="{k}"}} {v}' for k, v in self.decisions.items()]
            out += [
                f"# HELP {p}_stage_latency_seconds per-stage latency of processed frames",
                f"# TYPE {p}_stage_latency_seconds histogram",
            ]
            for stage, h in self.stages.items():
                out += h.lines(f"{p}_stage_latency_seconds", f'stage="{_escape(stage)}"')
        for name, (value, text) in gauges.items():
            out += [f"# HELP {p}_{name} {text}", f"# TYPE {p}_{name} gauge"]
            out.append(f"{p}_{name} {'NaN' if value is None else f'{value:g}'}")
        return "\n".join(out) + "\n"
