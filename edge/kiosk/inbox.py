"""Which photos of a ``dir://`` inbox have been screened, kept across reconnects and restarts.

Each photo at a kiosk is a person: it must get exactly one decision, even when the capture
thread is restarted (a stalled read) or the daemon is (a reboot, an upgrade). A photo is
known by its name, size and modification time, so a new photo saved under an old name is
screened again. A key is *taken* (in memory) when the photo is read and *done* (appended
to ``inbox-<hash>.seen`` in the state directory, fsynced) once its decision, or its
``unreadable`` event, is in the event log. A photo taken but not done when the process
dies (SIGKILL between the two fsyncs) is screened again at the next start: at most one
duplicate, never a loss.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger("mpox_edge.inbox")


def photo_key(p: Path) -> str | None:
    """``name|size|mtime_ns`` of a photo, None if it vanished."""
    try:
        st = p.stat()
    except OSError:
        return None
    return f"{p.name}|{st.st_size}|{st.st_mtime_ns}"


def _quote(key: str) -> str:
    """One line per key, whatever the name holds (a newline in a file name is legal)."""
    return json.dumps(key, ensure_ascii=False) + "\n"


def _unquote(line: str) -> str:
    try:
        v = json.loads(line)
    except ValueError:
        return line  # a torn or foreign line: ignored by the caller unless it looks like a key
    return v if isinstance(v, str) else ""


class InboxRecord:
    """Thread-safe set of taken/done photo keys; persistent when ``state_dir`` is given."""

    def __init__(self, inbox: Path, state_dir: str | os.PathLike[str] | None = None) -> None:
        self.inbox = inbox
        self._lock = threading.Lock()
        self._taken: set[str] = set()
        self._done: set[str] = set()
        self.path: Path | None = None
        self._fd: int | None = None
        self._size = 0
        self._unsaved: list[str] = []
        if state_dir:
            tag = hashlib.sha256(str(inbox.resolve()).encode()).hexdigest()[:12]
            self.path = Path(state_dir) / f"inbox-{tag}.seen"
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        try:
            lines = self.path.read_bytes().decode("utf-8", "replace").splitlines()
        except FileNotFoundError:
            lines = []
        except OSError as e:
            log.error("inbox record %s unreadable (%s): starting empty", self.path, e)
            lines = []
        present = {k for k in map(_unquote, lines) if k.count("|") >= 2}
        # forget photos no longer in the inbox, so the record does not grow for ever
        names = {k.rsplit("|", 2)[0] for k in present}
        try:
            here = {p.name for p in self.inbox.iterdir()} & names
        except OSError:
            here = names
        self._done = {k for k in present if k.rsplit("|", 2)[0] in here}
        if len(self._done) < len(lines):
            self._rewrite()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._size = os.fstat(self._fd).st_size

    def _rewrite(self) -> None:
        assert self.path is not None
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text("".join(_quote(k) for k in sorted(self._done)), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as e:
            log.error("inbox record %s: cannot compact (%s)", self.path, e)

    def seen(self, key: str) -> bool:
        with self._lock:
            return key in self._done or key in self._taken

    def take(self, key: str) -> None:
        with self._lock:
            self._taken.add(key)

    def release(self, key: str) -> None:
        """A taken photo that was not screened after all (still being written)."""
        with self._lock:
            self._taken.discard(key)

    def done(self, key: str) -> None:
        """The photo's outcome is logged: never screen it again."""
        with self._lock:
            if key in self._done:
                return
            self._done.add(key)
            self._taken.discard(key)
            if self._fd is not None:
                self._unsaved.append(key)  # with any that a full disk kept out earlier
                line = "".join(_quote(k) for k in self._unsaved).encode("utf-8", "replace")
                try:
                    n = os.write(self._fd, line)
                    if n != len(line):
                        raise OSError(28, "short write (disk full?)")
                    os.fsync(self._fd)
                    self._size += n
                    self._unsaved.clear()
                except OSError as e:  # disk full: remembered in memory until a restart
                    log.error("inbox record %s: %s", self.path, e.strerror or e)
                    try:  # never leave half a key for the next one to be glued onto
                        os.ftruncate(self._fd, self._size)
                    except OSError:
                        pass

    def forget_all(self) -> None:
        """``loop``: start the folder over (a demo), in memory only."""
        with self._lock:
            self._taken.clear()
            self._done.clear()

    @property
    def count(self) -> int:
        with self._lock:
            return len(self._done | self._taken)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
