"""The kiosk daemon: model, capture thread, frame loop, event log and HTTP API together.

Start-up order is what systemd's ``Type=notify`` promises: the model is loaded and warmed up
*before* READY=1. The frame loop pings WATCHDOG=1 itself, so a hung model trips WatchdogSec,
while a missing camera does not (the loop keeps turning and reports "camera unavailable").
Signals only set flags; the loop acts on them between frames, so a SIGTERM finishes the
current frame, and a SIGHUP reload that does not validate leaves the running config alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import one_line
from ..explain.overlay import Explainer
from ..model.store import Store
from ..system import cpu_temp_c, rss_bytes
from . import config
from .capture import Backoff, Capture, LatestFrame
from .frames import FrameNeed
from .httpapi import ApiServer
from .inbox import InboxRecord
from .pipeline import ClassifierLike, Pipeline, Result
from .recorder import Recorder
from .reload import reload_daemon
from .rollout import Rollout
from .sdnotify import Notifier
from .sources import DirSource, Source, open_source
from .status import DaemonView
from .telemetry import Telemetry
from .webui import WebUI

log = logging.getLogger("mpox_edge.daemon")


ClassifierFactory = Callable[[config.Config], ClassifierLike]


def open_classifier(cfg: config.Config) -> ClassifierLike:
    """The real model, through the same ``Classifier`` as bench and eval."""
    from ..model.classifier import Classifier
    from ..model.selection import cache_dir_default

    m = cfg.model
    return Classifier.open(
        m.dir or store_current(cfg),
        backend=m.backend,
        device=m.device,
        precision=m.precision,
        threads=m.threads or None,
        cache_dir=cache_dir_default(cfg.state_dir),  # the cache bench uses too
        log=log.info,
        allow_tampered=m.allow_tampered,
        # the capture thread shares the cores: ONNX Runtime must not spin-wait between frames;
        # a TensorRT engine cache must live in the writable state directory (ProtectSystem)
        spin=False,
        trt_cache_dir=str(Path(cfg.state_dir) / "trt-cache") if cfg.state_dir else None,
    )


def store_current(cfg: config.Config) -> str | None:
    """With no [model] dir: the signed store's current version, else the shipped model."""
    cur = Store(cfg.models_dir, cfg.models.trusted_keys).current()
    return str(cur) if cur else None


class Daemon:
    def __init__(
        self,
        cfg: config.Config,
        *,
        reload_config: Callable[[], config.Config] | None = None,
        classifier_factory: ClassifierFactory = open_classifier,
        source_factory: Callable[[config.SourceConfig], Source] | None = None,
        notifier: Notifier | None = None,
        once: bool = False,
    ) -> None:
        self.cfg = cfg
        self.reload_config = reload_config
        self.classifier_factory = classifier_factory
        self.source_factory = source_factory or (
            lambda sc: open_source(sc.uri, sc, self.frame_need())
        )
        self.notifier = notifier or Notifier()
        self.once = once
        self.telemetry = Telemetry()
        self.buffer = LatestFrame()
        self.explainer = Explainer()
        self.classifier: ClassifierLike | None = None
        self.pipeline: Pipeline | None = None
        self.capture: Capture | None = None
        self.recorder: Recorder | None = None
        self.http: ApiServer | None = None
        self.latest: Result | None = None
        self.on_result: Callable[[Result], None] | None = None  # serve --once prints each
        self.webui = WebUI(self)  # the kiosk page; outlives HTTP restarts on reload
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.heartbeat = time.monotonic()
        self._camera_state = ""
        self.rollout = Rollout(self)
        self.mqtt: Any = None  # mqtt.Publisher when [mqtt] enabled
        self.last_reload: dict[str, Any] | None = None  # shown in /status
        self._inboxes: dict[str, InboxRecord] = {}  # dir:// records, kept across reconnects
        self._cpu0 = (0.0, 0)  # process CPU time and decisions at READY

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Everything up to READY=1; raises MpoxEdgeError for what the operator must fix."""
        cfg = self.cfg
        try:
            Path(cfg.state_dir).mkdir(parents=True, exist_ok=True)
            self.recorder = Recorder(cfg, self.telemetry)
        except OSError as e:
            raise config.ConfigError(f"event log in {cfg.state_dir}: {e}") from None
        self.notifier.status("loading model")
        with self.notifier.keepalive():
            self.classifier = self._load_model(cfg)
        self.pipeline = Pipeline(
            self.classifier, cfg.decision, cfg.roi, with_features=self.explainer.wanted(cfg)
        )
        self._start_http(cfg)
        self._start_mqtt(cfg)
        self._start_capture(cfg)
        self._event({"event": "start", "version": __version__, **self.model_info()})
        self._cpu0 = (time.process_time(), self.telemetry.get("frames_processed_total"))
        self.notifier.ready(f"ready; camera {self.capture.state if self.capture else '-'}")
        log.info("ready: %s on %s", self.model_info()["model"], self.model_info()["backend"])

    def _load_model(self, cfg: config.Config) -> Any:
        clf = self.classifier_factory(cfg)
        try:
            w, h = cfg.source.width or 640, cfg.source.height or 480
            dummy = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
            for _ in range(cfg.model.warmup):
                clf.predict(dummy, color_order="BGR")
        except BaseException:
            clf.close()
            raise
        return clf

    def _start_http(self, cfg: config.Config) -> None:
        if cfg.http.enabled:
            try:
                view = DaemonView(self)
                self.http = ApiServer(
                    view,
                    cfg.http.host,
                    cfg.http.port,
                    cfg.http.token,
                    routes=self.webui,
                    count=self.telemetry.inc,
                ).start()
            except OSError as e:
                raise config.ConfigError(
                    f"[http] cannot listen on {cfg.http.host}:{cfg.http.port}: {e.strerror or e}"
                ) from None
            log.info("listening on %s", self.http.url)

    def _start_mqtt(self, cfg: config.Config) -> None:
        if cfg.mqtt.enabled:
            from .mqtt import Publisher

            self.mqtt = Publisher(cfg, health=self.fleet_health, on_command=self.command).start()

    def command(self, cmd: str, payload: bytes) -> None:
        """An MQTT command (its network thread): only sets flags or starts the rollout."""
        if cmd == "reload":
            self.request_reload()
        elif cmd == "model":
            self.rollout.command(payload)

    def fleet_health(self) -> dict[str, Any]:
        """The periodic MQTT status message: /status plus what a fleet table shows."""
        return {
            **DaemonView(self).status(),
            "decisions_last_hour": self.telemetry.decisions_last_hour(),
            "temperature_c": cpu_temp_c(),
            "rss_bytes": rss_bytes(),
        }

    def _open_source(self, cfg: config.Config) -> Source:
        """The configured source; a watched dir:// inbox gets the persistent record."""
        src = self.source_factory(cfg.source)
        if isinstance(src, DirSource):
            key = str(src.path.resolve())
            rec = self._inboxes.get(key)
            if rec is None:
                keep = cfg.source.watch and not cfg.source.loop
                rec = InboxRecord(src.path, cfg.state_dir if keep else None)
                self._inboxes[key] = rec
            src.attach(rec, self._unreadable)
        return src

    def _unreadable(self, name: str, reason: str) -> None:
        """A dir:// photo that cannot be screened: counted, one log line, one event."""
        self.telemetry.inc("photos_unreadable_total")
        log.warning("unreadable photo: %s", reason)
        self._event({"event": "unreadable", "name": name, "reason": reason})

    def frame_need(self) -> FrameNeed:
        """The pixels the model, the quality check and the ROI need from each frame."""
        spec = self.classifier.spec if self.classifier is not None else None
        size = spec.input_size if spec is not None else 0
        if not size:
            return FrameNeed()
        cfg = self.cfg
        full = cfg.events.snapshots  # snapshots keep the camera's full resolution
        return FrameNeed.for_model(size, roi=cfg.roi.enabled, full_view=full)

    def _start_capture(self, cfg: config.Config) -> None:
        sc = cfg.source
        self.capture = Capture(
            lambda: self._open_source(cfg),
            self.buffer,
            self.telemetry,
            backoff=Backoff(sc.backoff_initial_s, sc.backoff_max_s),
            read_timeout_s=sc.read_timeout_s,
            stop_at_end=self.once,
            uri=sc.uri,
        )
        self.capture.start()

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload.set()

    def run(self, max_frames: int = 0) -> int:
        """The frame loop; returns when stopped, at the end of a --once source, or max_frames."""
        assert self.pipeline and self.capture and self.recorder
        while not self._stop.is_set():
            self.heartbeat = time.monotonic()
            self.notifier.watchdog()
            if self._reload.is_set():
                self._reload.clear()
                self.reload()
            self.rollout.poll()
            self.capture.poll()
            self._note_camera()
            frame = self.buffer.get(timeout=0.1)
            if frame is None:
                if self.capture.ended and self.once:
                    break  # in service mode an ended file stays ended (see /status)
                continue
            try:
                r = self.pipeline.process(frame)
            except Exception as e:  # noqa: BLE001 - one bad frame must not stop the kiosk
                self.telemetry.inc("frames_failed_total")
                log.error("frame %d failed: %s", frame.seq, one_line(e))
                if frame.still:  # a person's photo: its outcome is logged, once
                    self._event({"event": "failed", "name": frame.name, "error": one_line(e)})
                if frame.ack:
                    frame.ack(self.recorder.last_ok)
                continue
            self.telemetry.observe_ms(r.timings_ms)
            self.telemetry.decided(r.decision.label)
            self.recorder.decision(
                r,
                self.pipeline.classifier.classes,
                self.pipeline.positive_class,
                self.model_info(True),
            )
            if frame.ack:  # after the decision is in the log: a dir:// photo is done
                frame.ack(self.recorder.last_ok)
            self.latest = r
            if self.on_result is not None:
                self.on_result(r)
            self.webui.publish(r)
            if max_frames and self.telemetry.get("frames_processed_total") >= max_frames:
                break
        return 0

    def stop(self) -> None:
        """Release everything; each step bounded so SIGTERM -> exit stays under 2 s."""
        self.notifier.stopping()
        if self.capture:
            self.capture.stop(timeout=0.5)
        self.webui.close()
        if self.http:
            self.http.close()
        if self.recorder:
            self._event({"event": "stop", **self.counts()})
        if self.mqtt:
            self.mqtt.close(drain_s=0.5)
        if self.recorder:
            self.recorder.close()
        if self.classifier is not None:
            self.classifier.close()
        for rec in self._inboxes.values():
            rec.close()

    # -- SIGHUP (edge/kiosk/reload.py) ------------------------------------------------------
    def reload(self) -> None:
        """Re-read the config; apply what changed, or keep everything if anything fails."""
        reload_daemon(self)

    # -- outputs ------------------------------------------------------------------------------
    def _event(self, ev: dict[str, Any]) -> dict[str, Any]:
        return self.recorder.event(ev) if self.recorder else ev

    def _note_camera(self) -> None:
        cap = self.capture
        if cap is None or cap.state == self._camera_state:
            return
        self._camera_state = cap.state
        if cap.state in ("streaming", "unavailable", "ended"):
            self._event({"event": "camera", "state": cap.state, "error": cap.last_error})
            self.notifier.status(
                f"camera {cap.state}" + (f": {cap.last_error}" if cap.state != "streaming" else "")
            )

    def model_info(self, short: bool = False) -> dict[str, str]:
        clf = self.classifier
        if clf is None:
            return {"backend": "", "model_sha256": ""} | ({} if short else {"model": ""})
        info = {"backend": clf.description, "model_sha256": clf.backend.artifact.sha256}
        if not short:
            info["model"] = str(clf.model.path)
        return info

    def cpu_ms_per_decision(self) -> float | None:
        """Process CPU time (every thread: capture, decode, model) per decision since ready.

        What a device pays per answer, independent of how busy the machine is otherwise;
        None before the first decision."""
        cpu0, n0 = self._cpu0
        n = self.telemetry.get("frames_processed_total") - n0
        return (time.process_time() - cpu0) * 1e3 / n if n > 0 else None

    def counts(self) -> dict[str, int]:
        return {k.removesuffix("_total"): v for k, v in self.telemetry.counters.items()}
