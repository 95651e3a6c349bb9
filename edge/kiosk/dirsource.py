"""``dir://``: still photos dropped into a folder, one per person at a kiosk.

Kept apart from ``sources`` (camera and stream sources) because an inbox is a different
animal: nothing may be dropped, each photo is acknowledged once its decision is logged, and
the folder is hostile ground (issue 13).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import DataError, SourceError, shown
from ..model.dataset import IMAGE_SUFFIXES, is_own_output, read_image
from .config import SourceConfig
from .inbox import InboxRecord, photo_key
from .sources import Frame, Source, SourceEnded

log = logging.getLogger("mpox_edge.sources")


class DirSource(Source):
    """Still images in a folder, in name order; with ``watch`` it waits for new ones.

    Hostile inboxes (issue 13): special files (a FIFO named ``.jpg``) are never opened for
    a blocking read, every read is bounded in bytes and time (well inside the capture's
    stall timeout, so no thread is ever abandoned), what was screened lives in an
    ``InboxRecord`` that the daemon keeps across reconnects and restarts, and a photo that
    cannot be read is reported through ``on_unreadable`` instead of vanishing.
    """

    still = True
    lossless = True  # each photo is a person: never dropped
    poll_s = 0.25
    settle_s = 0.3

    def __init__(self, uri: str, cfg: SourceConfig, path: Path) -> None:
        super().__init__(uri, cfg)
        self.path = path
        self.record = InboxRecord(path)  # in memory; the daemon attaches a persistent one
        self.on_unreadable: Callable[[str, str], None] = _log_unreadable
        self._queue: list[tuple[Path, str]] = []

    def attach(
        self, record: InboxRecord, on_unreadable: Callable[[str, str], None] | None = None
    ) -> None:
        self.record = record
        if on_unreadable is not None:
            self.on_unreadable = on_unreadable

    finite = True

    def open(self) -> None:
        if not self.path.is_dir():
            raise SourceError(f"{self.uri}: {shown(self.path)} is not a directory")
        if not self.cfg.watch and not self._scan():
            _refuse_class_tree(self.uri, self.path)

    def _scan(self) -> list[tuple[Path, str]]:
        try:
            files = sorted(
                p
                for p in self.path.iterdir()
                if p.suffix.lower() in IMAGE_SUFFIXES
                and not p.name.startswith(".")
                and not is_own_output(p)
            )
        except OSError as e:
            raise SourceError(f"{self.uri}: {e.strerror or e}") from None
        fresh = []
        now = time.time()
        for p in files:
            key = photo_key(p)
            if key is None or self.record.seen(key):
                continue
            # A photo still being written is left for the next poll (kiosks: write, rename).
            if self.cfg.watch and now - _mtime(p) < self.settle_s:
                continue
            fresh.append((p, key))
        return fresh

    def read(self) -> Frame | None:
        if not self._queue:
            self._queue = self._scan()
        if not self._queue:
            if self.cfg.loop and self.record.count:
                self.record.forget_all()
                return None
            if not self.cfg.watch:
                raise SourceEnded(f"{self.uri}: no more images")
            time.sleep(self.poll_s)
            return None
        p, key = self._queue.pop(0)
        if self.record.seen(key):
            return None  # taken by an earlier reader of this inbox meanwhile
        self.record.take(key)
        budget = max(0.1, min(2.0, self.cfg.read_timeout_s / 2))
        try:
            img = read_image(p, deadline_s=budget)
        except DataError as e:
            if photo_key(p) != key:  # changed under us: still being written, try again
                self.record.release(key)
                return None
            self.on_unreadable(p.name, str(e))
            self.record.done(key)
            return None
        record = self.record

        def ack(logged: bool = True) -> None:  # not logged (disk full): screen it again
            if logged:
                record.done(key)
            else:
                record.release(key)

        return dataclasses.replace(self._frame(img, "BGR", p.name), ack=ack)


def _log_unreadable(name: str, reason: str) -> None:
    log.warning("unreadable photo: %s", reason)


def _refuse_class_tree(uri: str, path: Path) -> None:
    """dir:// reads one folder of photos; a tree of class folders (a labelled data set) would
    otherwise end at once with 0 photos and exit 0. Say what to do instead."""
    try:
        subs = sorted(
            d.name
            for d in path.iterdir()
            if d.is_dir() and any(f.suffix.lower() in IMAGE_SUFFIXES for f in d.iterdir())
        )
    except OSError:
        return
    if subs:
        raise SourceError(
            f"{uri}: no photos in {path} itself, only in its sub-folders "
            f"({', '.join(subs[:5])}{', ...' if len(subs) > 5 else ''}); dir:// reads one "
            "folder (not sub-folders): point it at one of them, or for a labelled set use "
            "`mpox-edge eval --data`"
        )


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return float("inf")  # vanished meanwhile: never ready
