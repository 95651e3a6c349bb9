"""``mpox-edge fleet --broker HOST[:PORT]``: every kiosk that reports to a broker, live.

Subscribes to the retained ``status`` and ``availability`` topics (so devices show up at
once) and to the event topics (last seen). ``--once`` prints one table after ``--wait``
seconds and exits; ``--json`` prints the devices as JSON for scripts.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from types import SimpleNamespace
from typing import Any

from ..cliopts import add_json, write_json
from ..errors import UsageError
from .mqtt import configure_client, paho_client

COLUMNS = ("device", "online", "last seen", "model", "version", "fps", "dec/h", "camera", "temp")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", required=True, help="HOST[:PORT] of the MQTT broker")
    p.add_argument("--root", default="mpox-edge/", help="topic root (default mpox-edge/)")
    p.add_argument("--once", action="store_true", help="print one table and exit")
    p.add_argument("--wait", type=float, default=2.0, help="seconds to listen with --once")
    add_json(p, "the devices (implies --once)")
    p.add_argument("--tls", action="store_true", help="TLS to the broker")
    p.add_argument("--ca-file", default="", help="CA certificate for --tls")
    p.add_argument("--username", default="")
    p.add_argument("--password-file", default="")


class Fleet:
    """What the topics say about each device (thread-safe snapshot via ``rows``)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.devices: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        rest = msg.topic[len(self.root) :]
        dev, _, kind = rest.partition("/")
        with self.lock:
            d = self.devices.setdefault(dev, {"device": dev, "online": None, "last_seen": None})
            if kind == "availability":
                d["online"] = msg.payload == b"online"
                return
            try:
                body = json.loads(msg.payload)
            except ValueError:
                return
            if kind == "status":
                d["status"] = body
                d["last_seen"] = max(d["last_seen"] or 0, float(body.get("ts", 0)))
            elif kind.startswith("events/"):
                d["last_seen"] = time.time()  # events carry ISO times; receipt is close
                d["last_event"] = {k: body.get(k) for k in ("id", "event", "decision", "ts")}

    def rows(self) -> list[dict[str, Any]]:
        with self.lock:
            out = []
            for dev in sorted(self.devices):
                d = self.devices[dev]
                s = d.get("status", {})
                out.append(
                    {
                        "device": dev,
                        "online": d["online"],
                        "last_seen": d["last_seen"],
                        "model": s.get("architecture", ""),
                        "model_version": (s.get("model_version") or s.get("model_sha256", ""))[:12],
                        "fps": s.get("fps"),
                        "decisions_last_hour": s.get("decisions_last_hour"),
                        "camera": (s.get("camera") or {}).get("state", ""),
                        "temperature_c": s.get("temperature_c"),
                        "rollout": (s.get("rollout") or {}).get("state", ""),
                        "last_event": d.get("last_event"),
                    }
                )
            return out


def table(rows: list[dict[str, Any]], now: float) -> str:
    def ago(t: float | None) -> str:
        return "-" if not t else f"{max(0, now - t):.0f} s ago"

    def yn(v: bool | None) -> str:
        return "?" if v is None else "yes" if v else "NO"

    cells = [COLUMNS] + [
        (
            r["device"],
            yn(r["online"]),
            ago(r["last_seen"]),
            r["model"] or "-",
            r["model_version"] or "-",
            "-" if r["fps"] is None else f"{r['fps']:.1f}",
            "-" if r["decisions_last_hour"] is None else str(r["decisions_last_hour"]),
            r["camera"] or "-",
            "-" if r["temperature_c"] is None else f"{r['temperature_c']:.0f} C",
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(c))).rstrip() for c in cells]
    return "\n".join(lines) + ("" if rows else "\n(no devices seen yet)")


def run(args: argparse.Namespace) -> int:
    host, _, port = args.broker.rpartition(":") if ":" in args.broker else (args.broker, "", "")
    try:
        port_n = int(port) if port else (8883 if args.tls else 1883)
    except ValueError:
        raise UsageError(f"--broker {args.broker!r}: the port must be a number") from None
    root = args.root if args.root.endswith("/") else args.root + "/"
    fleet = Fleet(root)
    c = paho_client("")
    configure_client(
        c,
        SimpleNamespace(
            tls=args.tls,
            ca_file=args.ca_file,
            cert_file="",
            key_file="",
            username=args.username,
            password_file=args.password_file,
        ),
    )
    c.on_message = fleet.on_message
    c.on_connect = lambda cl, *_: cl.subscribe(
        [(root + "+/status", 1), (root + "+/availability", 1), (root + "+/events/#", 0)]
    )
    try:
        c.connect(host or "127.0.0.1", port_n, keepalive=30)
    except OSError as e:
        raise UsageError(f"cannot reach the broker {args.broker}: {e.strerror or e}") from None
    c.loop_start()
    try:
        if args.once or args.json:
            time.sleep(args.wait)
            rows = fleet.rows()
            write_json(args.json, rows)
            if args.json != "-":
                print(table(rows, time.time()))
            return 0
        while True:  # live: redraw once a second until Ctrl-C
            sys.stdout.write("\x1b[H\x1b[2J" + table(fleet.rows(), time.time()) + "\n")
            sys.stdout.flush()
            time.sleep(1.0)
    finally:
        c.loop_stop()
        c.disconnect()
