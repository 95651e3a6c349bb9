"""The decision log: JSON lines that survive power cuts, plus optional image snapshots.

Each event is one ``write()`` of a complete line on an ``O_APPEND`` descriptor followed by
``fsync``, so after a crash the file holds every acknowledged event and at most one torn
line at the very end. On reopen we start on a fresh line, and ``read_events`` skips lines
that do not parse, so the torn tail costs exactly the event that was being written.
A write that fails (disk full) is cut back to the last complete line. Rotation is by
size (``events.jsonl`` -> ``events.jsonl.1`` ...). Snapshots are off by default (patient
images); when on, they are written atomically with mode 0600.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger("mpox_edge.eventlog")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class EventLog:
    """Append-only, fsync-per-event JSON lines with size rotation. Thread-safe."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = 10_000_000,
        backups: int = 5,
        fsync: bool = True,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.fsync = fsync
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._size = 0
        self._resync = False
        self._open()
        self.seq = last_seq(self.path)  # every event gets the next number: its id on MQTT

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        size = os.fstat(fd).st_size
        if size:
            with open(self.path, "rb") as f:  # a torn last line: end it so ours starts clean
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    size += os.write(fd, b"\n")
        self._fd, self._size = fd, size

    def append(self, event: dict[str, Any]) -> dict[str, Any]:
        """Write one event durably and return it (with ``seq``, ``ts``); OSError raises.

        ``seq`` grows by one per event across rotations and restarts (a failed write does
        not use up a number), so a consumer can order and de-duplicate what it receives.
        """
        with self._lock:
            ts = event.get("ts") or datetime.now(timezone.utc).isoformat(timespec="milliseconds")
            rest = {k: v for k, v in event.items() if k not in ("ts", "seq")}
            event = {"ts": ts, "seq": self.seq + 1, **rest}
            line = (json.dumps(event, separators=(",", ":"), default=str) + "\n").encode()
            if self._fd is None:
                self._open()
            if self._size and self._size + len(line) > self.max_bytes:
                self._rotate()
            assert self._fd is not None
            if self._resync:  # an earlier failed write could not be cut back
                line = b"\n" + line
            try:
                written = os.write(self._fd, line)
                while written < len(line):  # short writes are legal; ENOSPC raises here
                    written += os.write(self._fd, line[written:])
                if self.fsync:
                    os.fsync(self._fd)
            except OSError:
                self._cut_back()
                raise
            self._size += len(line)
            self.seq = event["seq"]
            self._resync = False
        return event

    def _cut_back(self) -> None:
        """Disk full mid-line: truncate to the last complete line, so that the next event,
        once there is space again, starts on a line of its own instead of being glued onto
        a fragment (and lost to readers although counted as written)."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, self._size)
        except OSError:
            self._resync = True  # cannot cut: begin the next write with a newline instead

    def _rotate(self) -> None:
        self._close_fd()
        if self.backups <= 0:
            self.path.unlink(missing_ok=True)
        else:
            for i in range(self.backups - 1, 0, -1):
                src = self.path.with_name(f"{self.path.name}.{i}")
                if src.exists():
                    os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        _fsync_dir(self.path.parent)
        self._open()

    def _close_fd(self) -> None:
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None

    def close(self) -> None:
        with self._lock:
            self._close_fd()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_events(
    path: str | os.PathLike[str], *, rotated: bool = False, errors: list[str] | None = None
) -> Iterator[dict[str, Any]]:
    """Events oldest first; lines that do not parse (a torn tail) are skipped and noted."""
    p = Path(path)
    files = [p]
    if rotated:
        olds = sorted(p.parent.glob(p.name + ".*"), key=lambda f: _suffix_num(f, p))
        files = [f for f in reversed(olds) if _suffix_num(f, p) > 0] + files
    for f in files:
        try:
            data = f.read_bytes()
        except FileNotFoundError:
            continue
        for n, raw in enumerate(data.split(b"\n"), 1):
            if not raw.strip():
                continue
            try:
                ev = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError):
                if errors is not None:
                    errors.append(f"{f.name}:{n}: unreadable line skipped ({len(raw)} bytes)")
                continue
            if isinstance(ev, dict):
                yield ev


def last_seq(path: str | os.PathLike[str], rotated: bool = True) -> int:
    """The highest ``seq`` at the end of the log (or of its newest rotated file), else 0."""
    p = Path(path)
    for f in (p, p.with_name(p.name + ".1")) if rotated else (p,):
        try:
            with open(f, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - 65536))
                tail = fh.read()
        except OSError:
            continue
        for raw in reversed(tail.split(b"\n")):
            try:
                ev = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            if isinstance(ev, dict) and isinstance(ev.get("seq"), int):
                return int(ev["seq"])
    return 0


def _suffix_num(f: Path, base: Path) -> int:
    tail = f.name[len(base.name) + 1 :]
    return int(tail) if tail.isdigit() else 0


def write_snapshot(
    directory: str | os.PathLike[str], name: str, data: bytes, *, keep: int = 500
) -> Path:
    """Write ``data`` as ``directory/name`` atomically, mode 0600; prune to the newest ``keep``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=f".{name}.", suffix=".tmp")  # mkstemp: 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, d / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(d)
    snaps = sorted((p for p in d.iterdir() if not p.name.startswith(".")), key=lambda p: p.name)
    for old in snaps[:-keep] if len(snaps) > keep else []:
        old.unlink(missing_ok=True)
    return d / name
