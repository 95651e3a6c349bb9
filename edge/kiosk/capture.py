"""The capture thread and the one-slot "latest frame" buffer between it and inference.

A camera produces frames at its own pace; a slow model must never build a backlog (the
kiosk would show a decision about a person who left seconds ago). So capture overwrites a
single slot and counts each frame it replaces as dropped: captured = processed + dropped
(+ at most one still in the slot), which the soak benchmark checks. Sources that are not
live (photos, a video file not played in real time) wait for the slot instead: nothing of
theirs is dropped.

Failures never escape: open/read errors and stalls become the "unavailable" state, retried
with capped exponential backoff, and a successful re-open counts as a reconnect.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

from ..errors import SourceError
from .sources import Frame, Source, SourceEnded
from .telemetry import Telemetry

log = logging.getLogger("mpox_edge.capture")


class LatestFrame:
    """One slot; ``put`` replaces (and reports a drop), ``get`` takes the newest or times out."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None

    def put(self, frame: Frame) -> bool:
        """Store ``frame``; True if an unconsumed frame was replaced (a drop)."""
        with self._cond:
            dropped = self._frame is not None
            self._frame = frame
            self._cond.notify_all()
        return dropped

    def put_wait(self, frame: Frame, stop: threading.Event) -> bool:
        """Wait for the slot instead of replacing (photos, files); True if dropped at stop."""
        with self._cond:
            while self._frame is not None and not stop.is_set():
                self._cond.wait(0.1)
            if self._frame is not None:
                return True  # shutting down with the slot still full: this one is dropped
            self._frame = frame
            self._cond.notify_all()
        return False

    def get(self, timeout: float) -> Frame | None:
        with self._cond:
            if self._frame is None:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            self._cond.notify_all()
        return frame

    @property
    def pending(self) -> int:
        return int(self._frame is not None)


class Backoff:
    """Capped exponential backoff with +-20 % jitter (cameras on one hub must not sync up)."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial, self.maximum = initial, maximum
        self.delay = initial

    def next(self) -> float:
        d = self.delay
        self.delay = min(self.delay * 2.0, self.maximum)
        return d * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self.delay = self.initial


class Capture:
    """Owns the source in a daemon thread; the frame loop calls ``poll()`` to catch stalls."""

    def __init__(
        self,
        opener: Callable[[], Source],
        buffer: LatestFrame,
        telemetry: Telemetry,
        *,
        backoff: Backoff,
        read_timeout_s: float = 5.0,
        stop_at_end: bool = False,
        uri: str = "",
    ) -> None:
        self.opener = opener
        self.buffer = buffer
        self.telemetry = telemetry
        self.backoff = backoff
        self.read_timeout_s = read_timeout_s
        self.stop_at_end = stop_at_end  # --once: a finite source's end ends the service
        self.uri = uri
        self.state = "starting"  # starting | streaming | unavailable | ended | stopped
        self.last_error = ""
        self.state_since = time.time()
        self._stop = threading.Event()
        self._gen = 0  # bumped to abandon a thread stuck in a driver call
        self._alive_at = time.monotonic()
        self._busy = False  # inside read(): only then can a stall be declared
        self._source: Source | None = None
        self._thread: threading.Thread | None = None
        self._died_at = 0.0

    # -- control ------------------------------------------------------------------------------
    def start(self) -> None:
        self._spawn()

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        t = self._thread
        if t is not None:
            t.join(timeout)  # a driver stuck in read() keeps a daemon thread; we do not wait
        self._close_source()
        self._set_state("stopped")

    @property
    def ended(self) -> bool:
        return self.state == "ended"

    @property
    def alive(self) -> bool:
        """False when the capture thread has died (a bug): /healthz then fails."""
        t = self._thread
        return self.state in ("ended", "stopped") or (t is not None and t.is_alive())

    def poll(self) -> None:
        """Declare a stall when a read has not returned for ``read_timeout_s``, and restart;
        start a dead capture thread again (at most every 5 s: /healthz shows it meanwhile)."""
        if not self.alive and not self._stop.is_set():
            now = time.monotonic()
            if now - self._died_at > 5.0:
                if self._died_at:
                    log.error("capture thread died (%s); starting it again", self.last_error)
                    self.telemetry.inc("capture_restarts_total")
                    self._died_at = now
                    self._spawn()
                else:
                    self._died_at = now
            return
        if self._busy and time.monotonic() - self._alive_at > self.read_timeout_s:
            self._fail(f"read stalled for more than {self.read_timeout_s:g} s")
            stuck, self._source = self._source, None
            if stuck is not None:  # closing may block in the driver too: not on this thread
                threading.Thread(target=_close_quietly, args=(stuck,), daemon=True).start()
            self._spawn()

    # -- thread -----------------------------------------------------------------------------
    def _spawn(self) -> None:
        self._gen += 1
        self._busy = False
        self._thread = threading.Thread(
            target=self._run, args=(self._gen,), name=f"capture-{self._gen}", daemon=True
        )
        self._thread.start()

    def _set_state(self, state: str, error: str = "") -> None:
        if state != self.state:
            self.state, self.state_since = state, time.time()
        self.last_error = error or (self.last_error if state == "unavailable" else "")

    def _fail(self, msg: str) -> None:
        self.telemetry.inc("camera_failures_total")
        if self.state != "unavailable":
            log.warning("camera unavailable: %s", msg)
        self._set_state("unavailable", msg)

    def _close_source(self) -> None:
        src, self._source = self._source, None
        if src is not None:
            _close_quietly(src)

    def _run(self, gen: int) -> None:
        try:
            self._run_loop(gen)
        except Exception as e:  # noqa: BLE001 - a bug here: recorded; poll() restarts us
            log.exception("capture thread for %s died", self.uri)
            self.last_error = f"{type(e).__name__}: {e}"

    def _run_loop(self, gen: int) -> None:
        failed_before = self.state == "unavailable"
        while not self._stop.is_set() and gen == self._gen:
            try:
                src = self.opener()
                src.open()
            except Exception as e:  # noqa: BLE001 - SourceError, or a driver's own exception
                self._fail(str(e) if isinstance(e, SourceError) else f"{type(e).__name__}: {e}")
                failed_before = True
                self._stop.wait(self.backoff.next())
                continue
            self._source = src
            if failed_before:
                self.telemetry.inc("camera_reconnects_total")
                log.warning("camera reconnected: %s", self.uri)
            try:
                self._pump(src, gen)
                return  # stopped, superseded, or ended with stop_at_end
            except SourceError as e:  # SourceEnded too: in service mode an end is a failure
                error = str(e)
            except Exception as e:  # noqa: BLE001 - a driver bug must not kill capture
                log.exception("unexpected error reading %s", self.uri)
                error = f"{type(e).__name__}: {e}"
            if gen != self._gen:
                _close_quietly(src)  # declared stalled meanwhile; a new thread took over
                return
            self._fail(error)
            failed_before = True
            self._close_source()
            self._stop.wait(self.backoff.next())

    def _pump(self, src: Source, gen: int) -> None:
        first = True
        while not self._stop.is_set():
            self._alive_at, self._busy = time.monotonic(), True
            try:
                frame = src.read()
            except SourceEnded as e:
                # A finite source (a file without loop, a dir without watch) has ended: it
                # stays ended, and says so in /status, instead of being replayed for ever.
                if gen != self._gen:
                    raise
                self._set_state("ended", str(e))
                self.last_error = str(e)
                log.info("source ended: %s", e)
                return
            finally:
                self._busy = False
            if gen != self._gen:
                return  # this thread was declared stalled and replaced
            self._alive_at = time.monotonic()
            if first:
                self._set_state("streaming")
                self.backoff.reset()
                first = False
            if frame is None:
                continue
            self.telemetry.inc("frames_captured_total")
            if src.lossless:
                if self.buffer.put_wait(frame, self._stop):
                    self.telemetry.inc("frames_dropped_total")
            elif self.buffer.put(frame):
                self.telemetry.inc("frames_dropped_total")


def _close_quietly(src: Source) -> None:
    try:
        src.close()
    except Exception as e:  # noqa: BLE001 - a dead device may fail to close too
        log.debug("closing %s failed: %s", src.uri, e)
