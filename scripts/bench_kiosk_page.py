#!/usr/bin/env python3
"""What the kiosk page costs the daemon, and how fast it shows a decision.

A real ``mpox-edge serve`` (shipped model, ONNX Runtime) on a 720p MJPG clip made from real
photos of the bundled held-out sample (mpox and normal skin, so the card changes), looped:

- ``camera`` mode: the clip plays at 30 fps like a camera (``realtime = true``);
- ``flat`` mode: every frame as fast as the daemon can (the decision rate is the limit).

In each round one daemon is measured for ``--window`` seconds with no client and with one
headless Chromium on the page (live view + events), in alternating order; decisions/s and
daemon CPU (utime+stime of the serve process) are ratios within the round. Decision-to-screen
latency is what the page itself records (the SSE message carries the pipeline's decision
time; the page notes the frame after it rendered it). First paint is Chromium's
first-contentful-paint of ``GET /`` on loopback. Medians over rounds.

    nice -n 10 python3 scripts/bench_kiosk_page.py [--rounds 5] [--window 8] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from edge_fakes import ServeProcess  # noqa: E402
from kiosk_browser import HELDOUT, browser_paths, open_browser, wait_for  # noqa: E402

TARGETS = {"decisions_ratio": 0.95, "cpu_ratio": 1.10, "first_paint_ms": 300, "latency_ms": 100}


def make_clip(path: Path, seconds: float = 6.0, fps: int = 30) -> Path:
    """720p MJPG: real photos, letterboxed, one second each, alternating mpox / normal."""
    photos = sorted((HELDOUT / "Monkeypox").glob("*.webp"))[:3]
    photos += sorted((HELDOUT / "Normal").glob("*.webp"))[:3]
    order = [p for pair in zip(photos[:3], photos[3:], strict=True) for p in pair]
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (1280, 720))
    assert w.isOpened(), "OpenCV cannot write MJPG here"
    for i in range(int(seconds * fps)):
        img = cv2.imread(str(order[(i // fps) % len(order)]))
        frame = np.zeros((720, 1280, 3), np.uint8)
        frame[:, 280:1000] = cv2.resize(img, (720, 720), interpolation=cv2.INTER_CUBIC)
        w.write(np.roll(frame, i % fps, axis=1))  # a little motion, as from a hand-held arm
    w.release()
    return path


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(root: int) -> float:
    """CPU seconds of a process and all its descendants (the browser: driver + Chromium)."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    total = 0.0
    for pid in parent:
        p = pid
        while p > 1 and p != root:
            p = parent.get(p, 0)
        if p == root:
            try:
                total += cpu_s(pid)
            except (OSError, ValueError, IndexError):
                pass
    return total


def status(url: str) -> dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(url + "/status", timeout=5) as r:
        return json.loads(r.read())


def window(proc: ServeProcess, url: str, seconds: float, browser: Any = None) -> dict[str, float]:
    bpid = browser.service.process.pid if browser is not None else 0
    b0 = tree_cpu_s(bpid) if bpid else 0.0
    s0, c0, t0 = status(url), cpu_s(proc.proc.pid), time.monotonic()
    time.sleep(seconds)
    s1, c1, t1 = status(url), cpu_s(proc.proc.pid), time.monotonic()
    dt = t1 - t0
    b1 = tree_cpu_s(bpid) if bpid else 0.0
    return {
        "browser_cpu_percent": 100 * (b1 - b0) / dt,
        "decisions_per_s": (s1["frames"]["frames_processed"] - s0["frames"]["frames_processed"])
        / dt,
        "cpu_percent": 100 * (c1 - c0) / dt,
        "stream_fps": (
            (s1["ui"] or {}).get("frames_encoded", 0) - (s0["ui"] or {}).get("frames_encoded", 0)
        )
        / dt,
    }


def one_round(
    clip: Path, tmp: Path, mode: str, seconds: float, browser_first: bool, ui: str
) -> dict[str, Any]:
    cfg = tmp / f"{mode}.toml"
    cfg.write_text(
        f'state_dir = "{tmp / "state"}"\n[model]\nbackend = "onnxruntime"\nwarmup = 3\n'
        f'[source]\nuri = "file://{clip}"\nloop = true\n'
        f"realtime = {str(mode == 'camera').lower()}\n"
        "[http]\nport = 0\n" + ui
    )
    proc = ServeProcess(["--config", str(cfg)])
    drv = None
    try:
        url = proc.url(timeout=120)
        proc.wait_for("ready:", timeout=120)
        time.sleep(3)  # warm-up: caches, the first smoothing windows
        out: dict[str, Any] = {}
        for phase in ["browser", "none"] if browser_first else ["none", "browser"]:
            if phase == "browser":
                drv = b = open_browser(800, 480)
                b.get(url + "/")
                wait_for(lambda b=b: b.execute_script("return kiosk.messages") > 0, 10, "events")
                time.sleep(2)  # the browser's own start-up settles
                drv.execute_script("kiosk.latencies.length = 0")
                out["browser"] = window(proc, url, seconds, drv)
                out["latencies_ms"] = drv.execute_script("return kiosk.latencies.slice()")
                drv.quit()
                drv = None
                time.sleep(2)
            else:
                out["none"] = window(proc, url, seconds)
        return out
    finally:
        if drv is not None:
            drv.quit()
        proc.stop()


def first_paints(clip: Path, tmp: Path, n: int) -> list[float]:
    cfg = tmp / "paint.toml"
    cfg.write_text(
        f'state_dir = "{tmp / "state"}"\n[model]\nbackend = "onnxruntime"\nwarmup = 1\n'
        f'[source]\nuri = "file://{clip}"\nloop = true\nrealtime = true\n[http]\nport = 0\n'
    )
    proc = ServeProcess(["--config", str(cfg)])
    drv = None
    try:
        url = proc.url(timeout=120)
        proc.wait_for("ready:", timeout=120)
        drv = open_browser(800, 480)
        drv.get("about:blank")
        out = []
        for _ in range(n + 1):  # the first navigation warms the browser's caches: dropped
            drv.get(url + "/")
            fcp = wait_for(
                lambda: drv.execute_script(
                    "const e = performance.getEntriesByName('first-contentful-paint');"
                    "return e.length ? e[0].startTime : 0;"
                ),
                5,
                "first contentful paint",
            )
            out.append(float(fcp))
            drv.get("about:blank")
        return out[1:]
    finally:
        if drv is not None:
            drv.quit()
        proc.stop()


def _reader(url: str, path: str, stop: threading.Event) -> None:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        while not stop.is_set() and s.recv(65536):
            pass


def attribute(clip: Path, tmp: Path, rounds: int, seconds: float) -> dict[str, float]:
    """Daemon CPU % (camera mode) with raw socket readers instead of a browser: what each
    route costs the daemon itself, without a browser competing for the same cores."""
    cfg = tmp / "attr.toml"
    cfg.write_text(
        f'state_dir = "{tmp / "state"}"\n[model]\nbackend = "onnxruntime"\nwarmup = 3\n'
        f'[source]\nuri = "file://{clip}"\nloop = true\nrealtime = true\n[http]\nport = 0\n'
    )
    cases = {"none": [], "events": ["/events"], "stream": ["/stream.mjpg"]}
    cases["both"] = cases["events"] + cases["stream"]
    out: dict[str, list[float]] = {k: [] for k in cases}
    proc = ServeProcess(["--config", str(cfg)])
    try:
        url = proc.url(timeout=120)
        proc.wait_for("ready:", timeout=120)
        time.sleep(3)
        for _ in range(rounds):
            for name, paths in cases.items():
                stop = threading.Event()
                for path in paths:
                    threading.Thread(target=_reader, args=(url, path, stop), daemon=True).start()
                time.sleep(1)
                out[name].append(window(proc, url, seconds)["cpu_percent"])
                stop.set()
                time.sleep(0.5)
    finally:
        proc.stop()
    return {k: med(v) for k, v in out.items()}


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--window", type=float, default=8.0, help="seconds measured per phase")
    ap.add_argument("--modes", default="camera,flat", help="camera, flat or both")
    ap.add_argument("--paints", type=int, default=10, help="first-paint navigations")
    ap.add_argument("--stream-width", type=int, default=0, help="[ui] stream_width (0: default)")
    ap.add_argument("--stream-fps", type=float, default=0, help="[ui] stream_fps (0: default)")
    ap.add_argument(
        "--attribute",
        action="store_true",
        help="also: daemon CPU with raw /events, /stream readers",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if browser_paths() is None:
        print("error: needs Debian's chromium and chromium-driver (apt install)", file=sys.stderr)
        return 2
    if args.rounds < 1 or args.window <= 0:
        print("error: --rounds must be >= 1 and --window > 0", file=sys.stderr)
        return 2
    pairs = (("stream_width", args.stream_width), ("stream_fps", args.stream_fps))
    ui = "[ui]\n" + "".join(f"{k} = {v}\n" for k, v in pairs if v)
    report: dict[str, Any] = {"targets": TARGETS, "ui": ui.split("\n")[1:-1], "modes": {}}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        clip = make_clip(tmp / "clip.avi")
        for mode in args.modes.split(","):
            rounds = []
            for i in range(args.rounds):
                r = one_round(clip, tmp, mode, args.window, browser_first=bool(i % 2), ui=ui)
                r["decisions_ratio"] = (
                    r["browser"]["decisions_per_s"] / r["none"]["decisions_per_s"]
                )
                r["cpu_ratio"] = r["browser"]["cpu_percent"] / r["none"]["cpu_percent"]
                lat = r.pop("latencies_ms")
                r["latency_ms_median"], r["latency_ms_p95"] = (
                    med(lat),
                    float(np.percentile(lat, 95)) if lat else float("nan"),
                )
                r["latency_samples"] = len(lat)
                rounds.append(r)
                print(
                    f"{mode} round {i + 1}: decisions {r['none']['decisions_per_s']:.1f} -> "
                    f"{r['browser']['decisions_per_s']:.1f}/s ({r['decisions_ratio']:.3f}), CPU "
                    f"{r['none']['cpu_percent']:.1f} -> {r['browser']['cpu_percent']:.1f}% "
                    f"({r['cpu_ratio']:.3f}), browser {r['browser']['browser_cpu_percent']:.0f}%, "
                    f"stream {r['browser']['stream_fps']:.1f} fps, latency "
                    f"median {r['latency_ms_median']:.1f} ms p95 {r['latency_ms_p95']:.1f} "
                    f"(n={len(lat)})",
                    file=sys.stderr,
                )
            report["modes"][mode] = {
                "rounds": rounds,
                "decisions_ratio": med([r["decisions_ratio"] for r in rounds]),
                "cpu_ratio": med([r["cpu_ratio"] for r in rounds]),
                "decisions_per_s_none": med([r["none"]["decisions_per_s"] for r in rounds]),
                "decisions_per_s_browser": med([r["browser"]["decisions_per_s"] for r in rounds]),
                "cpu_percent_none": med([r["none"]["cpu_percent"] for r in rounds]),
                "cpu_percent_browser": med([r["browser"]["cpu_percent"] for r in rounds]),
                "stream_fps": med([r["browser"]["stream_fps"] for r in rounds]),
                "browser_cpu_percent": med([r["browser"]["browser_cpu_percent"] for r in rounds]),
                "latency_ms": med([r["latency_ms_median"] for r in rounds]),
                "latency_ms_p95": med([r["latency_ms_p95"] for r in rounds]),
            }
        if args.attribute:
            report["raw_clients_cpu_percent"] = attribute(clip, tmp, args.rounds, args.window)
        paints = first_paints(clip, tmp, args.paints)
        report["first_paint_ms"] = med(paints)
        report["first_paint_ms_all"] = [round(p, 1) for p in paints]
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        for mode, m in report["modes"].items():
            print(
                f"{mode:6s}: decisions/s {m['decisions_per_s_none']:.1f} -> "
                f"{m['decisions_per_s_browser']:.1f} (ratio {m['decisions_ratio']:.3f}, target >= "
                f"{TARGETS['decisions_ratio']}); daemon CPU {m['cpu_percent_none']:.1f}% -> "
                f"{m['cpu_percent_browser']:.1f}% (ratio {m['cpu_ratio']:.3f}, target <= "
                f"{TARGETS['cpu_ratio']}); browser {m['browser_cpu_percent']:.0f}% CPU; "
                f"live view {m['stream_fps']:.1f} fps; decision to "
                f"screen median {m['latency_ms']:.1f} ms, p95 {m['latency_ms_p95']:.1f} ms "
                f"(target <= {TARGETS['latency_ms']})"
            )
        if "raw_clients_cpu_percent" in report:
            a = report["raw_clients_cpu_percent"]
            print(
                "daemon CPU with raw readers (camera mode): "
                + ", ".join(f"{k} {v:.1f}%" for k, v in a.items())
            )
        print(
            f"first paint: median {report['first_paint_ms']:.0f} ms over {len(paints)} loads "
            f"(target <= {TARGETS['first_paint_ms']})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
