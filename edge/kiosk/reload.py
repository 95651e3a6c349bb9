"""SIGHUP in the running daemon: re-read the config and apply what changed, or nothing.

No failure of a reload may stop a running kiosk (issue 13): a config that does not decode or
validate, a model that does not load or disagrees with its manifest, or a bug are all one
log line, a ``reload ok:false`` event and a line in /status. Kept out of ``daemon`` so the
lifecycle there reads in one screen; this is the one place that knows which section change
restarts which part.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ..errors import one_line
from . import config

if TYPE_CHECKING:
    from .daemon import Daemon

log = logging.getLogger("mpox_edge.daemon")


def reload_daemon(d: Daemon) -> None:
    """Apply the re-read config to ``d``; on any failure keep the running one and say why."""
    if d.reload_config is None:
        return
    d.notifier.reloading()
    try:
        new = _apply(d)
    except Exception as e:  # noqa: BLE001 - see the module docstring
        msg = one_line(e)
        log.error("reload rejected, keeping the running configuration: %s", msg)
        d.telemetry.inc("reloads_failed_total")
        d.last_reload = {"ok": False, "error": msg, "at": time.time()}
        d._event({"event": "reload", "ok": False, "error": msg})
        d.notifier.ready("reload rejected: see the journal")
        return
    d.last_reload = {"ok": True, "error": "", "at": time.time(), "config": new.origin}
    d._event({"event": "reload", "ok": True})
    d.notifier.ready("reloaded")
    log.info("configuration reloaded from %s", new.origin)


def _apply(d: Daemon) -> config.Config:
    """The new model first (the step most likely to fail), swapped in only once the pipeline
    accepts the new decision settings; then every other section that changed."""
    assert d.reload_config is not None and d.pipeline is not None
    old = d.cfg
    new = d.reload_config()
    clf = d.pipeline.classifier  # the running model (== d.classifier)
    if asdict(new.model) != asdict(old.model):
        with d.notifier.keepalive():
            clf = d._load_model(new)
    prev: Any = d.pipeline.classifier
    d.pipeline.classifier = clf
    try:
        d.pipeline.configure(new.decision, new.roi)
    except BaseException:
        d.pipeline.classifier = prev
        if clf is not prev:
            clf.close()
        raise
    if clf is not prev:
        prev.close()
        d.classifier = clf
    d.pipeline.with_features = d.explainer.wanted(new)
    if d.recorder:
        d.recorder.reconfigure(new)
    if asdict(new.source) != asdict(old.source) and d.capture is not None:
        d.capture.stop(timeout=0.5)
        d._start_capture(new)
    if asdict(new.http) != asdict(old.http):
        _restart_http(d, old, new)
    d.cfg = new
    if asdict(new.mqtt) != asdict(old.mqtt):
        if d.mqtt:
            d.mqtt.close(drain_s=0.0)
            d.mqtt = None
        d._start_mqtt(new)
    d.rollout.on_reload()
    return new


def _restart_http(d: Daemon, old: config.Config, new: config.Config) -> None:
    if d.http:
        d.http.close()
        d.http = None
    for cfg in (new, old):  # the new address taken: keep serving where we were
        try:
            d._start_http(cfg)
            return
        except config.ConfigError as e:
            log.error("reload: %s", e)
