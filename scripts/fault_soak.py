#!/usr/bin/env python3
"""Fault-injection soak (issue 13): two real ``mpox-edge serve`` processes, one over a
``dir://`` inbox and one over a looping video played in real time, for ``--minutes`` of wall
time, with faults injected on a schedule:

* good photos dropped into the inbox (written, then renamed in, as a kiosk does), every
  cycle; bad files dropped in (corrupt JPEG, FIFO named .jpg, PNG decompression bomb, 1x1
  image, 200 MB sparse file, a PPM, a newline in the name);
* the source removed and restored (the inbox folder moved away and back; the video file
  deleted and a reload pointed at it, then restored);
* the disk filled and freed (the state directories live on a small tmpfs mounted here when
  run as root; otherwise this fault is skipped and says so);
* SIGHUP reloads with bad configs (a non-UTF-8 byte, NaN, a width of 1e8, a model whose
  manifest lists 5 classes over a 4-logit graph), each followed by the good config;
* slow HTTP clients (slow-loris header trickles and 100 idle connections) while a normal
  client checks /healthz.

It then checks: zero crashes (neither process exits before it is told to), zero lost or
duplicated decisions (every good photo exactly one ``decision`` event, every bad file
exactly one ``unreadable`` event, nothing else), RSS growth after warm-up <= 5 MB and a
bounded thread count, and prints every count it checked (``--json`` for a file).

    python3 scripts/fault_soak.py                 # 30 minutes
    python3 scripts/fault_soak.py --minutes 2 --json soak.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
MB = 1024 * 1024


def textured(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(60, 190, (h, w, 3), dtype=np.uint8)


def png_bomb(side: int = 10000) -> bytes:
    def chunk(k: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d))

    c = zlib.compressobj(1)
    block = (b"\x00" + bytes(side * 3)) * 100
    idat = b"".join(c.compress(block) for _ in range(side // 100)) + c.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def unit_environment(unit: Path = REPO / "deploy" / "mpox-edge.service") -> dict[str, str]:
    """The ``Environment=`` lines of the shipped unit, so the soak runs the daemon as systemd
    would (MALLOC_ARENA_MAX among them) instead of relying on the caller to set them."""
    env: dict[str, str] = {}
    for line in unit.read_text().splitlines():
        if line.startswith("Environment="):
            for item in line.split("=", 1)[1].split():
                key, _, value = item.strip('"').partition("=")
                env[key] = value
    return env


class Daemon:
    """One ``mpox-edge serve`` process with its config, log and /proc readings."""

    def __init__(self, name: str, root: Path, state: Path, uri: str, extra: str = "") -> None:
        self.name, self.state, self.uri = name, state, uri
        self.config = root / f"{name}.toml"
        self.good = (
            f'state_dir = "{state}"\n[model]\nbackend = "onnxruntime"\nthreads = 1\nwarmup = 2\n'
            f'[source]\nuri = "{uri}"\nbackoff_initial_s = 0.2\nbackoff_max_s = 2.0\n{extra}'
            "[http]\nport = 0\n[events]\nmax_bytes = 4000000\nbackups = 3\n"
        )
        self.config.write_text(self.good)
        self.log = open(root / f"{name}.log", "w")  # noqa: SIM115 - lives as long as the run
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mpox_edge.edge.cli", "serve", "--config", str(self.config)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **unit_environment(), "PYTHONUNBUFFERED": "1"},
        )
        self.url = ""
        self.samples: list[tuple[float, int, int]] = []  # (t, rss bytes, threads)

    def wait_ready(self, timeout: float = 180.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            text = Path(self.log.name).read_text()
            for line in text.splitlines():
                if "listening on " in line:
                    self.url = line.split("listening on ", 1)[1].strip()
                    return
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited at start:\n{text}")
            time.sleep(0.2)
        raise SystemExit(f"{self.name} did not start in {timeout} s")

    def sample(self) -> None:
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return
        f = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        rss = int(f["VmRSS"].split()[0]) * 1024
        self.samples.append((time.monotonic(), rss, int(f["Threads"])))

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/status", timeout=10) as r:
            return json.loads(r.read())

    def reload(self, text: bytes | None = None) -> None:
        self.config.write_bytes(text if text is not None else self.good.encode())
        self.proc.send_signal(signal.SIGHUP)

    def events(self) -> list[dict[str, Any]]:
        from mpox_edge.edge.kiosk.eventlog import read_events

        return list(read_events(self.state / "events.jsonl", rotated=True))


class Soak:
    def __init__(self, root: Path, minutes: float, say: Any) -> None:
        self.root, self.minutes, self.say = root, minutes, say
        self.counts: dict[str, int] = {
            "cycles": 0,
            "photos_dropped": 0,
            "bad_files_dropped": 0,
            "source_removals": 0,
            "disk_fills": 0,
            "bad_reloads": 0,
            "good_reloads": 0,
            "slow_http_clients": 0,
            "healthz_ok_during_slow_clients": 0,
        }
        self.good: list[str] = []
        self.bad: list[str] = []
        self.notes: list[str] = []
        self.seq = 0
        self.bomb = png_bomb()
        self.five = root / "five-class-model"
        from mpox_edge.edge.model.classifier import default_model_dir

        shutil.copytree(default_model_dir(), self.five)
        m = json.loads((self.five / "manifest.json").read_text())
        m["classes"].append("Cowpox")
        (self.five / "manifest.json").write_text(json.dumps(m))

    # -- setup -------------------------------------------------------------------------------
    def mount(self) -> Path:
        disk = self.root / "disk"
        disk.mkdir()
        self.tmpfs = False
        if os.geteuid() == 0:
            r = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(disk)], capture_output=True
            )
            self.tmpfs = r.returncode == 0
        if not self.tmpfs:
            self.notes.append("disk-full fault skipped: cannot mount a tmpfs (needs root)")
        return disk

    def start(self) -> None:
        disk = self.mount()
        self.inbox = self.root / "inbox"
        self.inbox.mkdir()
        self.video = self.root / "clip.avi"
        wr = cv2.VideoWriter(str(self.video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
        base = textured(240, 320, 0)
        for i in range(40):
            wr.write(np.roll(base, 4 * i, axis=1))
        wr.release()
        self.d_inbox = Daemon("inbox", self.root, disk / "inbox-state", f"dir://{self.inbox}")
        self.d_video = Daemon(
            "video",
            self.root,
            disk / "video-state",
            f"file://{self.video}",
            "loop = true\nrealtime = true\n",
        )
        self.daemons = [self.d_inbox, self.d_video]
        for d in self.daemons:
            d.wait_ready()
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._stop.wait(5.0):
            for d in self.daemons:
                d.sample()
            self.check_alive()

    def check_alive(self) -> None:
        for d in self.daemons:
            if d.proc.poll() is not None and not self._stop.is_set():
                self.crashed = getattr(self, "crashed", []) + [
                    f"{d.name} exited {d.proc.returncode}"
                ]
                self._stop.set()

    # -- faults ------------------------------------------------------------------------------
    def drop_photo(self) -> None:
        self.seq += 1
        name = f"p{self.seq:06d}.jpg"
        tmp = self.root / f".{name}"
        cv2.imwrite(str(tmp), textured(360, 480, self.seq))
        os.replace(tmp, self.inbox / name)
        self.good.append(name)
        self.counts["photos_dropped"] += 1

    def drop_bad(self) -> None:
        self.seq += 1
        n = self.seq
        files: dict[str, bytes | None] = {
            f"b{n:06d}-corrupt.jpg": b"\xff\xd8\xff\xdb" + os.urandom(3000),
            f"b{n:06d}-bomb.png": self.bomb,
            f"b{n:06d}-dot.png": cv2.imencode(".png", np.zeros((1, 1, 3), np.uint8))[1].tobytes(),
            f"b{n:06d}-ppm.jpg": b"P6\n64 64\n255\n" + bytes(64 * 64 * 3),
            f"b{n:06d}-evil\nname.jpg": b"\xff\xd8 nope",
            f"b{n:06d}-fifo.jpg": None,
            f"b{n:06d}-huge.jpg": None,
        }
        for name, data in files.items():
            p = self.inbox / name
            if data is not None:
                tmp = self.root / ".bad"
                tmp.write_bytes(data)
                os.replace(tmp, p)
            elif "fifo" in name:
                os.mkfifo(p)
            else:
                with open(p, "wb") as f:
                    f.truncate(200 * MB)
            self.bad.append(name)
        self.counts["bad_files_dropped"] += len(files)

    def remove_restore(self) -> None:
        away = self.root / "inbox-away"
        shutil.move(self.inbox, away)
        time.sleep(2.0)
        shutil.move(away, self.inbox)
        # the video: deleted, and the daemon made to reopen it (a changed source option)
        hidden = self.root / "clip.hidden"
        os.replace(self.video, hidden)
        self.d_video.reload(
            self.d_video.good.replace("backoff_max_s = 2.0", "backoff_max_s = 1.0").encode()
        )
        time.sleep(2.5)
        os.replace(hidden, self.video)
        time.sleep(1.0)
        self.d_video.reload()
        self.counts["source_removals"] += 2

    def fill_disk(self) -> None:
        if not self.tmpfs:
            return
        filler = self.root / "disk" / "filler"
        # unbuffered: a buffered file raises ENOSPC again when it is closed
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            while os.write(fd, b"\0" * (256 * 1024)):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        self.counts["disk_fills"] += 1
        for _ in range(3):  # photos arriving while the disk is full: screened once space is back
            self.drop_photo()
            time.sleep(1.5)
        filler.unlink()

    def bad_reloads(self) -> None:
        for d in self.daemons:
            good = d.good
            bad = [
                good.encode().replace(b"[http]", b"# caf\xe9\n[http]"),
                good.replace("[source]\n", "[source]\nread_timeout_s = nan\n").encode(),
                good.replace("[source]\n", "[source]\nwidth = 100000000\n").encode(),
                good.replace("[model]\n", f'[model]\ndir = "{self.five}"\n').encode(),
            ]
            for text in bad:
                d.reload(text)
                time.sleep(1.0)
                self.counts["bad_reloads"] += 1
            d.reload()
            self.counts["good_reloads"] += 1
            time.sleep(1.0)

    def slow_clients(self) -> None:
        d = self.d_inbox
        host, port = d.url.removeprefix("http://").rsplit(":", 1)
        socks = [socket.create_connection((host, int(port))) for _ in range(100)]
        loris = [socket.create_connection((host, int(port))) for _ in range(5)]
        for s in loris:
            s.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n")
        self.counts["slow_http_clients"] += len(socks) + len(loris)
        try:
            for _ in range(6):
                for s in loris:
                    try:
                        s.sendall(b"X")
                    except OSError:
                        pass
                with urllib.request.urlopen(d.url + "/healthz", timeout=10) as r:
                    if r.status == 200:
                        self.counts["healthz_ok_during_slow_clients"] += 1
                time.sleep(1.0)
        finally:
            for s in socks + loris:
                s.close()

    # -- run ---------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        faults = [self.drop_bad, self.remove_restore, self.fill_disk, self.bad_reloads]
        faults += [self.slow_clients]
        end = self.t0 + self.minutes * 60
        while time.monotonic() < end and not self._stop.is_set():
            for _ in range(3):
                self.drop_photo()
            faults[self.counts["cycles"] % len(faults)]()
            self.counts["cycles"] += 1
            time.sleep(max(0.0, min(4.0, end - time.monotonic())))
            if self.counts["cycles"] % 10 == 0:
                self.say(f"{(time.monotonic() - self.t0) / 60:.1f} min: {self.counts}")
        return self.finish()

    def finish(self) -> dict[str, Any]:
        deadline = time.monotonic() + 90
        want = set(self.good)
        while time.monotonic() < deadline and not self._stop.is_set():  # let the inbox drain
            got = {e.get("name") for e in self.d_inbox.events() if e["event"] == "decision"}
            if want <= got:
                break
            time.sleep(1.0)
        time.sleep(6.0)  # one more RSS/thread sample with every fault over
        self.check_alive()
        crashed = list(getattr(self, "crashed", []))
        status = {d.name: d.status() for d in self.daemons if d.proc.poll() is None}
        self._stop.set()
        codes = {}
        for d in self.daemons:
            if d.proc.poll() is None:
                d.proc.send_signal(signal.SIGTERM)
            try:
                codes[d.name] = d.proc.wait(15)
            except subprocess.TimeoutExpired:
                d.proc.kill()
                codes[d.name] = "killed after 15 s"
        evs = self.d_inbox.events()
        decided = [e["name"] for e in evs if e["event"] == "decision"]
        unreadable = [e["name"] for e in evs if e["event"] == "unreadable"]
        reloads = [e for d in self.daemons for e in d.events() if e["event"] == "reload"]
        r: dict[str, Any] = {
            "minutes": round((time.monotonic() - self.t0) / 60, 2),
            "faults": self.counts,
            "crashes": crashed + [f"{k} exit {v}" for k, v in codes.items() if v != 0],
            "photos_lost": len(set(self.good) - set(decided)),
            "photos_duplicated": len(decided) - len(set(decided)),
            "decisions": len(decided),
            "unexpected_decisions": len(set(decided) - set(self.good)),
            "bad_files_unreadable_events": len(unreadable),
            "bad_files_missing_events": len(set(self.bad) - set(unreadable)),
            "bad_files_duplicated_events": len(unreadable) - len(set(unreadable)),
            "reload_events": {
                "ok": sum(1 for e in reloads if e["ok"]),
                "rejected": sum(1 for e in reloads if not e["ok"]),
            },
            "frames": {k: v.get("frames", {}) for k, v in status.items()},
            "notes": self.notes,
        }
        warm = min(180.0, self.minutes * 60 / 3)
        for d in self.daemons:
            after = [(t, rss, th) for t, rss, th in d.samples if t - self.t0 >= warm]
            if len(after) >= 4:
                first = statistics.median(s[1] for s in after[:3])
                last = statistics.median(s[1] for s in after[-3:])
                r[f"{d.name}_rss_mb"] = {
                    "after_warmup": round(first / MB, 1),
                    "end": round(last / MB, 1),
                    "growth": round((last - first) / MB, 2),
                    "peak": round(max(s[1] for s in d.samples) / MB, 1),
                }
                r[f"{d.name}_threads"] = {
                    "typical": int(statistics.median(s[2] for s in after)),
                    "max": max(s[2] for s in after),
                    "end": after[-1][2],
                }
        growth_ok = all(r.get(f"{d.name}_rss_mb", {}).get("growth", 0) <= 5.0 for d in self.daemons)
        # Slow clients may hold up to the HTTP connection cap's threads while they last
        # (bounded); once they are gone the count must be back to the typical one (no leak).
        from mpox_edge.edge.kiosk.httpapi import _Server

        cap = _Server.max_connections
        threads_ok = True
        for d in self.daemons:
            th = r.get(f"{d.name}_threads")
            if th:
                th["bound"] = th["typical"] + cap + 4
                threads_ok &= th["max"] <= th["bound"] and th["end"] <= th["typical"] + 4
        # warm-up plus enough samples to see a trend: a short run checks correctness only
        r["rss_and_threads_checked"] = self.minutes >= 10
        if not r["rss_and_threads_checked"]:
            growth_ok = threads_ok = True
            self.notes.append("RSS/thread bounds not checked: runs under 10 minutes")
        r["ok"] = bool(
            not r["crashes"]
            and r["photos_lost"] == 0
            and r["photos_duplicated"] == 0
            and r["unexpected_decisions"] == 0
            and r["bad_files_missing_events"] == 0
            and r["bad_files_duplicated_events"] == 0
            and growth_ok
            and threads_ok
        )
        return r

    def cleanup(self) -> None:
        for d in getattr(self, "daemons", []):
            if d.proc.poll() is None:
                d.proc.kill()
        if getattr(self, "tmpfs", False):
            subprocess.run(["umount", "-l", str(self.root / "disk")], check=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="wall time (default 30)")
    ap.add_argument("--json", help="write the result here")
    ap.add_argument("--keep", help="work in this folder and keep it (default: a temp dir)")
    args = ap.parse_args(argv)

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    root = Path(args.keep or tempfile.mkdtemp(prefix="fault-soak-"))
    root.mkdir(parents=True, exist_ok=True)
    soak = Soak(root, args.minutes, say)
    try:
        soak.start()
        env = unit_environment()
        say(f"fault soak: {args.minutes:g} min, work dir {root}, unit environment {env}")
        result = soak.run()
        result["unit_environment"] = env
    finally:
        soak.cleanup()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    say("fault soak: " + ("PASS" if result["ok"] else "FAIL"))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
