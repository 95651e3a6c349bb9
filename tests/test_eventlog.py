"""The decision log: durability across SIGKILL and torn writes, rotation, snapshots."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mpox_edge.edge.kiosk.eventlog import EventLog, read_events, write_snapshot

WRITER = """
import sys
from mpox_edge.edge.kiosk.eventlog import EventLog
log = EventLog(sys.argv[1])
i = 0
while True:
    log.append({"event": "decision", "i": i, "pad": "x" * 300})
    if i == 20:
        print("written", flush=True)
    i += 1
"""


def test_roundtrip_and_timestamps(tmp_path: Path) -> None:
    p = tmp_path / "ev.jsonl"
    with EventLog(p) as log:
        out = log.append({"event": "decision", "decision": "refer"})
        log.append({"event": "stop"})
    assert out["ts"] and list(out)[0] == "ts"
    evs = list(read_events(p))
    assert [e["event"] for e in evs] == ["decision", "stop"] and evs[0]["decision"] == "refer"
    assert p.read_bytes().endswith(b"\n")


def test_sigkill_mid_write_loses_nothing_earlier(tmp_path: Path) -> None:
    p = tmp_path / "ev.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(p)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "written"
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    errors: list[str] = []
    idx = [e["i"] for e in read_events(p, errors=errors)]
    assert len(idx) > 20 and idx == list(range(len(idx)))  # contiguous: nothing lost
    assert len(errors) <= 1  # at most the line being written when killed
    # A power cut can leave a torn tail the kernel never completed: simulate it and reopen.
    data = p.read_bytes()
    p.write_bytes(data + b'{"event":"decision","i":99999,"pa')
    errors.clear()
    assert [e["i"] for e in read_events(p, errors=errors)] == idx and len(errors) == 1
    with EventLog(p) as log:
        log.append({"event": "start"})
    evs = list(read_events(p))
    assert [e.get("i") for e in evs[:-1]] == idx and evs[-1]["event"] == "start"


def test_rotation_by_size_keeps_backups(tmp_path: Path) -> None:
    p = tmp_path / "ev.jsonl"
    with EventLog(p, max_bytes=4096, backups=2) as log:
        for i in range(100):
            log.append({"i": i, "pad": "y" * 100})
    assert p.stat().st_size <= 4096
    assert (tmp_path / "ev.jsonl.1").is_file() and (tmp_path / "ev.jsonl.2").is_file()
    assert not (tmp_path / "ev.jsonl.3").exists()
    idx = [e["i"] for e in read_events(p, rotated=True)]
    assert idx == list(range(idx[0], 100))  # oldest rotated away, the rest in order
    assert [e["i"] for e in read_events(p)][-1] == 99


def test_snapshots_are_private_atomic_and_pruned(tmp_path: Path) -> None:
    d = tmp_path / "snaps"
    for i in range(5):
        write_snapshot(d, f"2024-{i}.jpg", b"\xff\xd8jpeg" + bytes([i]), keep=3)
    files = sorted(f.name for f in d.iterdir())
    assert files == ["2024-2.jpg", "2024-3.jpg", "2024-4.jpg"]  # no temp files left behind
    for f in d.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert stat.S_IMODE(d.stat().st_mode) == 0o700


def test_reader_ignores_garbage_lines(tmp_path: Path) -> None:
    p = tmp_path / "ev.jsonl"
    p.write_text('{"a": 1}\n[1, 2]\n\n\xff\n{"b": 2}\n')
    errors: list[str] = []
    assert list(read_events(p, errors=errors)) == [{"a": 1}, {"b": 2}]
    assert len(errors) == 1
    assert json.loads(json.dumps(list(read_events(tmp_path / "missing.jsonl")))) == []


# -- disk full (issue 13, case 6) ----------------------------------------------------------------
def _fill_and_recover(state: Path, caplog: Any, free: Any) -> None:
    """Write until the disk is full, keep failing, then free space: nothing acknowledged is
    lost, the first event after recovery is readable, the failures are counted and said
    once (not once per event)."""
    from mpox_edge.edge.kiosk import config
    from mpox_edge.edge.kiosk.recorder import Recorder
    from mpox_edge.edge.kiosk.telemetry import Telemetry

    tel = Telemetry()
    rec = Recorder(config.from_dict({"state_dir": str(state)}), tel)
    ok: list[int] = []
    with caplog.at_level(logging.ERROR, logger="mpox_edge.recorder"):
        for i in range(400):
            before = tel.get("events_written_total")
            rec.event({"event": "decision", "i": i, "pad": "x" * 300})
            if tel.get("events_written_total") > before:
                ok.append(i)
    failed = tel.get("events_failed_total")
    assert failed > 100 and len(ok) + failed == 400
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "No space left on device" in errors[0].getMessage()
    free()
    rec.event({"event": "decision", "i": "after"})
    rec.close()
    bad: list[str] = []
    got = [e["i"] for e in read_events(state / "events.jsonl", errors=bad)]
    assert bad == [] and got == [*ok, "after"]  # every acknowledged event, and the next one


def test_disk_full_on_a_real_filesystem(tmp_path: Path, caplog: Any) -> None:
    """A 64 KB tmpfs mounted here (needs root, as CI runs): a real ENOSPC mid-line."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)])
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (no CAP_SYS_ADMIN)")
    try:
        filler = mnt / "filler"
        filler.write_bytes(b"f" * 20_000)
        _fill_and_recover(mnt, caplog, lambda: filler.unlink())
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_by_fault_injection(
    tmp_path: Path, caplog: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same at the fd level (runs everywhere): os.write writes part of the line, then
    ENOSPC, as a filesystem does when it fills mid-write."""
    from mpox_edge.edge.kiosk import eventlog

    real_write = os.write
    state = {"room": 40_000, "full": True}

    def write(fd: int, data: bytes) -> int:
        if not state["full"]:
            return real_write(fd, data)
        if state["room"] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = real_write(fd, data[: state["room"]])
        state["room"] -= n
        return n

    monkeypatch.setattr(eventlog.os, "write", write)
    _fill_and_recover(tmp_path, caplog, lambda: state.update(full=False))
