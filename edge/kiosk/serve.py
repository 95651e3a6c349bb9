"""``mpox-edge serve``: the kiosk daemon (run by deploy/mpox-edge.service).

Configuration comes from one TOML file (``--config``, default /etc/mpox-edge/config.toml);
the few options here override it, also across SIGHUP reloads. SIGTERM/SIGINT stop after the
current frame; SIGHUP re-reads the file. ``--once`` processes a file or a folder of photos
to its end and exits, for batch runs and tests.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType
from typing import Any

from ..cliopts import add_backend
from ..errors import ConfigError, SourceError
from . import config
from .daemon import Daemon
from .pipeline import Result
from .sources import open_source

log = logging.getLogger("mpox_edge.serve")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        help=f"TOML file (default {config.DEFAULT_PATH}; if that is absent, built-in defaults)",
    )
    p.add_argument(
        "--source",
        help="source URI: csi://0, /dev/video0, usb://0, rtsp://..., "
        "file://clip.mp4, dir://photos (overrides [source] uri)",
    )
    p.add_argument("--loop", action="store_true", help="start a file:// source over at its end")
    p.add_argument("--model", help="model directory (overrides [model] dir)")
    add_backend(p, default=None, help="overrides [model] backend (whose default is auto)")
    p.add_argument("--host", help="HTTP bind address (overrides [http] host)")
    p.add_argument("--port", type=int, help="HTTP port, 0 for any free one (overrides [http] port)")
    p.add_argument("--state-dir", help="event log and selection cache (overrides state_dir)")
    p.add_argument(
        "--once",
        action="store_true",
        help="batch run: check that the file or dir:// folder opens (exit 2 if not), print "
        "one line per decision, exit at its end instead of waiting or retrying. dir:// reads "
        "the photos in that one folder, not in sub-folders",
    )
    p.add_argument("--check", action="store_true", help="validate the configuration and exit")


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    o: dict[str, Any] = {}
    for opt, key in (
        ("source", "source.uri"),
        ("model", "model.dir"),
        ("backend", "model.backend"),
        ("host", "http.host"),
        ("port", "http.port"),
        ("state_dir", "state_dir"),
    ):
        v = getattr(args, opt, None)
        if v is not None:
            o[key] = v
    if getattr(args, "loop", False):
        o["source.loop"] = True
    if getattr(args, "once", False):
        o["source.watch"] = False
    return o


def load_config(path: str | None, overrides: dict[str, Any]) -> config.Config:
    cfg = config.load(path, overrides)
    try:
        open_source(cfg.source.uri, cfg.source)  # syntax only: nothing is opened here
    except SourceError as e:
        raise ConfigError(f"{cfg.origin}: [source] uri: {e}") from None
    return cfg


def quiet_opencv() -> None:
    """OpenCV warns on every failed camera open; a retrying daemon says it once, itself."""
    try:
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except (ImportError, AttributeError):  # pragma: no cover - unusual OpenCV builds
        pass


class _Terminated(Exception):
    """SIGTERM before the frame loop runs (model still loading): abandon the start."""


def run(args: argparse.Namespace) -> int:
    if not getattr(args, "verbose", False):
        logging.getLogger("mpox_edge").setLevel(logging.INFO)  # lifecycle lines for journald
    quiet_opencv()
    overrides = overrides_from(args)
    cfg = load_config(args.config, overrides)
    if args.check:
        print(
            f"{cfg.origin}: configuration OK (source {cfg.source.uri}, "
            f"model {cfg.model.dir or 'default'}, backend {cfg.model.backend})"
        )
        return 0
    if args.once:
        check_finite_source(cfg)
    daemon = Daemon(cfg, reload_config=lambda: load_config(args.config, overrides), once=args.once)
    tally: dict[str, int] = {}
    if args.once:
        daemon.on_result = lambda r: print_decision(r, tally)
    running = False

    def on_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("%s: stopping", signal.Signals(signum).name)
        daemon.request_stop()
        if not running:
            raise _Terminated

    def on_hup(_signum: int, _frame: FrameType | None) -> None:
        daemon.request_reload()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    try:
        daemon.start()
        running = True
        daemon.run()
    except _Terminated:
        pass
    finally:
        running = True  # a second signal during shutdown must not interrupt the cleanup
        daemon.stop()
        log.info("stopped")
    if args.once:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(tally.items()))
        print(f"{sum(tally.values())} decisions{': ' + counts if counts else ''}", flush=True)
    return 0


def check_finite_source(cfg: config.Config) -> None:
    """--once: a missing file or folder is an error now, not a retry loop (a camera, which
    may come up later, is left to the capture thread's retries)."""
    src = open_source(cfg.source.uri, cfg.source)
    if not src.finite:
        return
    try:
        src.open()
    except SourceError as e:
        raise SourceError(f"--once: {e}") from None
    finally:
        src.close()


def print_decision(r: Result, tally: dict[str, int]) -> None:
    """One line per decision on stdout (the log lines go to stderr)."""
    d = r.decision
    tally[d.label] = tally.get(d.label, 0) + 1
    what = r.frame.name or f"frame {r.frame.seq}"
    top = f"  top {d.top_class} {d.top_prob:.3f}" if d.top_class else ""
    print(f"{what}\t{d.label}\t{d.reason}{top}", flush=True)


if __name__ == "__main__":  # pragma: no cover
    from ..cli import main

    sys.exit(main(["serve", *sys.argv[1:]]))
