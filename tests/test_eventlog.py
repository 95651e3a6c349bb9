"""The decision log: durability across SIGKILL and torn writes, rotation, snapshots."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

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
