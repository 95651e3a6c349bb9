"""Events, health and availability to an MQTT broker, with the event log as the outbox.

The frame loop never touches the network: it appends to the fsync'd event log as always, and
a publisher thread reads that log from disk and publishes each record with QoS 1. The last
``seq`` the broker acknowledged (contiguously) is kept in ``<state>/mqtt-outbox.json``, so
after a broker outage (paho re-sends its unacknowledged messages in order on reconnect) or a
daemon restart (we re-read the log after that seq) everything pending goes out in order.
Delivery is at-least-once: each payload carries ``id`` = ``<device>:<seq>`` for de-duplication.
Topics and payloads are documented in docs/fleet.md.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ..errors import MissingDependencyError
from ..model.manifest import atomic_write_text
from .config import Config
from .eventlog import last_seq

log = logging.getLogger("mpox_edge.mqtt")
_SEQ = re.compile(rb'"seq":(\d+)')
_EVENT = re.compile(rb'"event":"(\w+)"')
Handler = Callable[[str, bytes], None]


BACKGROUND_NICE = 10  # added to the thread's nice value (at most 19)


def run_in_background() -> None:
    """Lower the calling thread's priority (Linux: each thread has its own nice value).

    On a 2-core device the model's intra-op threads hold both cores during an inference; a
    publish or an ack handled at the same priority takes one of them away and the whole
    inference waits for it. At nice 10 the scheduler runs MQTT work in the gaps instead.
    """
    try:
        tid = threading.get_native_id()
        nice = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, nice + BACKGROUND_NICE))
    except (OSError, AttributeError):  # not permitted, or not Linux: run as is
        pass


def paho_client(client_id: str) -> Any:
    """A paho-mqtt 2.x client (MQTT 3.1.1, persistent session); clear error without it."""
    try:
        import paho.mqtt.client as paho
    except ModuleNotFoundError:
        raise MissingDependencyError(
            "[mqtt] needs paho-mqtt: pip install 'mpox-edge[fleet]'"
        ) from None
    return paho.Client(
        paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not client_id
    )


def configure_client(c: Any, m: Any) -> None:
    """TLS and credentials from an ``[mqtt]`` section (or the fleet command's options)."""
    if m.tls:
        c.tls_set(
            ca_certs=m.ca_file or None, certfile=m.cert_file or None, keyfile=m.key_file or None
        )
    if m.username:
        pw = Path(m.password_file).read_text().strip() if m.password_file else None
        c.username_pw_set(m.username, pw)


class LogReader:
    """Lines of the event log in order, across rotations: open handles survive renames.

    When the file being read has been rotated away, the reader re-opens the rotated files
    that may hold newer records (several rotations can pass during a long outage) and the
    caller skips what it has seen by ``seq``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._files: deque[IO[bytes]] = deque()
        self.reopen(0)

    def reopen(self, after: int) -> None:
        """Handles on every file, oldest first, that holds a record with seq > ``after``."""
        self.close()
        n = len(self.path.name) + 1
        olds = [f for f in self.path.parent.glob(self.path.name + ".*") if f.name[n:].isdigit()]
        for f in sorted(olds, key=lambda f: -int(f.name[n:])):
            if last_seq(f, rotated=False) > after:
                self._open(f)
        self._open(self.path)

    def _open(self, f: Path) -> None:
        try:
            self._files.append(open(f, "rb"))  # noqa: SIM115 - held across calls
        except OSError:
            pass

    def next_line(self, seen: int) -> bytes | None:
        """The next complete line, or None for now; ``seen``: the last seq handed on."""
        if not self._files:
            self._open(self.path)
        while self._files:
            fh = self._files[0]
            pos = fh.tell()
            line = fh.readline()
            if line.endswith(b"\n"):
                return line
            fh.seek(pos)  # nothing, or half a line being written: come back later
            if len(self._files) > 1:
                self._files.popleft().close()
                continue
            if self._rotated(fh):
                self.reopen(seen)
                continue
            return None
        return None

    def _rotated(self, fh: IO[bytes]) -> bool:
        try:
            return os.stat(self.path).st_ino != os.fstat(fh.fileno()).st_ino
        except OSError:
            return False

    def close(self) -> None:
        while self._files:
            self._files.popleft().close()


class Publisher:
    """The publisher thread; ``start()`` returns at once, even with the broker down."""

    # How often the publisher looks for new log lines when nothing wakes it: an event
    # reaches the broker at most this late, and arrives there in a batch with its neighbours
    # (one wake-up of each thread per batch: 0.28 -> 0.1 ms of CPU per decision, docs/fleet.md)
    POLL_S = 0.25
    SAVE_EVERY_S = 1.0  # the outbox offset, at most this often while nothing is pending

    def __init__(
        self,
        cfg: Config,
        *,
        health: Callable[[], dict[str, Any]],
        on_command: Handler | None = None,
    ) -> None:
        self.cfg, self.m = cfg, cfg.mqtt
        self.device, self.prefix = cfg.device_id, cfg.topic_prefix
        self.health, self.on_command = health, on_command
        self.offset_path = Path(cfg.state_dir) / "mqtt-outbox.json"
        self.acked = self._load_offset(cfg.events_path)
        self.published = 0  # messages acknowledged by the broker since start
        self.connected = False
        self.listening = False  # the broker acknowledged the set/# subscription
        self._sub_mid = -1
        self._inflight: deque[int] = deque()  # seqs in publish order
        self._mids: dict[int, int] = {}  # mid -> seq
        self._done: set[int] = set()
        self._acks: deque[int] = deque()  # mids acknowledged, from paho's thread
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._saved = self.acked
        self._saved_at = 0.0  # monotonic time of the last offset write
        self._net_niced = False
        self.client = paho_client(self.device)
        configure_client(self.client, self.m)
        self.client.max_inflight_messages_set(self.m.max_inflight)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 15)
        self.client.will_set(self.topic("availability"), "offline", qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)

    def topic(self, name: str) -> str:
        return self.prefix + name

    def _load_offset(self, events: Path) -> int:
        try:
            seq = int(json.loads(self.offset_path.read_text())["seq"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0
        if seq > last_seq(events):  # the log was replaced: what it holds is all new
            log.warning("event log restarted below the published seq %d: publishing it all", seq)
            return 0
        return seq

    def start(self) -> Publisher:
        self.client.connect_async(self.m.host, self.m.port, keepalive=self.m.keepalive_s)
        self.client.loop_start()
        self._thread.start()
        log.info("MQTT: publishing to %s:%d as %s", self.m.host, self.m.port, self.prefix)
        return self

    # -- paho callbacks (its network thread) ----------------------------------------------
    def _on_connect(self, c: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        if rc.is_failure:
            log.error("MQTT: broker %s:%d refused the connection: %s", self.m.host, self.m.port, rc)
            return
        if not self._net_niced:  # paho's network thread, which only callbacks run in
            run_in_background()
            self._net_niced = True
        self.connected = True
        c.publish(self.topic("availability"), "online", qos=1, retain=True)
        if self.m.commands and self.on_command is not None:
            self._sub_mid = c.subscribe(self.topic("set/#"), qos=1)[1]
        log.info("MQTT: connected to %s:%d", self.m.host, self.m.port)
        self._wake.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        if self.connected:
            log.warning("MQTT: disconnected (%s); events wait in the log", rc)
        self.connected = self.listening = False

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, _rcs: Any, _p: Any = None) -> None:
        # Commands sent before the broker holds the subscription are not delivered (on the
        # first connection only: the session keeps it across reconnects).
        if mid == self._sub_mid:
            self.listening = True

    def _on_publish(self, _c: Any, _u: Any, mid: int, _rc: Any = None, _p: Any = None) -> None:
        # paho holds its own locks here: only hand the ack over to the publisher thread, and
        # wake it only when the in-flight window is full (a backlog draining). At a kiosk's
        # pace it polls instead, so events leave in batches: one wake-up of each thread per
        # batch rather than per event.
        self._acks.append(mid)
        if len(self._inflight) >= self.m.max_inflight:
            self._wake.set()

    def _take_acks(self) -> None:
        while self._acks:
            seq = self._mids.pop(self._acks.popleft(), None)
            if seq is not None:
                self._done.add(seq)
        while self._inflight and self._inflight[0] in self._done:
            self._done.discard(s := self._inflight.popleft())
            self.acked = s
            self.published += 1

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        cmd = msg.topic[len(self.prefix) :].removeprefix("set/")
        if cmd not in ("reload", "model") or self.on_command is None:
            log.warning("MQTT: unknown command topic %s ignored", msg.topic)
            return
        log.info("MQTT: command %s", cmd)
        self.on_command(cmd, bytes(msg.payload))

    # -- the publisher thread -------------------------------------------------------------
    def _run(self) -> None:
        run_in_background()
        reader = LogReader(self.cfg.events_path)
        next_health = 0.0
        try:
            while not self._stop.is_set():
                self._take_acks()
                sent = self._pump(reader)
                now = time.monotonic()
                if self.connected and now >= next_health:
                    self._publish_health()
                    next_health = now + self.m.health_interval_s
                self._save_offset()
                if not sent:
                    self._wake.wait(self.POLL_S)
                    self._wake.clear()
        finally:
            reader.close()

    def _pump(self, reader: LogReader) -> int:
        n = 0
        while self.connected and len(self._inflight) < self.m.max_inflight:
            line = reader.next_line(self._inflight[-1] if self._inflight else self.acked)
            if line is None:
                break
            m = _SEQ.search(line, 0, 80)  # no JSON round trip per event: splice bytes
            if m is None or not line.startswith(b"{"):
                continue  # a torn line, or a record written before events had a seq
            seq = int(m.group(1))
            if seq <= self.acked or (self._inflight and seq <= self._inflight[-1]):
                continue
            self._send(line, seq)
            n += 1
        return n

    def _send(self, line: bytes, seq: int) -> None:
        kind = _EVENT.search(line)
        head = f'{{"id":"{self.device}:{seq}","device":"{self.device}",'.encode()
        body = head + line[1:].rstrip(b"\n")
        if self.m.images and b'"snapshot":' in line:
            ev = json.loads(body)
            try:
                ev["image_jpeg_b64"] = base64.b64encode(Path(ev["snapshot"]).read_bytes()).decode()
            except OSError as e:
                ev["image_error"] = e.strerror or str(e)
            body = json.dumps(ev, separators=(",", ":")).encode()
        topic = self.topic(f"events/{kind.group(1).decode() if kind else 'other'}")
        self._inflight.append(seq)
        info = self.client.publish(topic, body, 1)
        self._mids[info.mid] = seq  # an ack that beats this line waits in _acks: still found

    def _publish_health(self) -> None:
        try:
            h = {"device": self.device, "ts": time.time(), **self.health(), "mqtt": self.stats()}
        except Exception as e:  # noqa: BLE001 - a broken probe must not stop the events
            log.error("MQTT: health message failed: %s", e)
            return
        self.client.publish(self.topic("status"), json.dumps(h, default=str), 1, retain=True)

    def stats(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "acked_seq": self.acked,
            "inflight": len(self._inflight),
            "published": self.published,
        }

    def _save_offset(self, force: bool = False) -> None:
        """Every 200 acks, or once the queue is empty and a second has passed, and on close.

        Not after every ack: at a kiosk's pace the queue empties after each event, and an
        fsync'd write per decision is the publisher's largest cost (and wears an SD card).
        A crash between writes re-publishes at most that much: at-least-once, by ``id``."""
        if self.acked == self._saved:
            return
        now = time.monotonic()
        idle = not self._inflight and now - self._saved_at >= self.SAVE_EVERY_S
        if force or self.acked - self._saved >= 200 or idle:
            try:
                atomic_write_text(
                    self.offset_path, json.dumps({"seq": self.acked, "device": self.device})
                )
                self._saved, self._saved_at = self.acked, now
            except OSError as e:
                log.error("MQTT: cannot save %s: %s", self.offset_path, e.strerror or e)

    def close(self, drain_s: float = 0.5) -> None:
        """Publish what is pending for up to ``drain_s``, then ``offline`` and disconnect."""
        end = time.monotonic() + drain_s
        while self.connected and time.monotonic() < end:
            self._wake.set()
            if not self._inflight and last_seq(self.cfg.events_path) <= self.acked:
                break
            time.sleep(0.02)
        self._stop.set()
        self._wake.set()
        self._thread.join(2)
        if self.connected:
            self.client.publish(self.topic("availability"), "offline", qos=1, retain=True)
            time.sleep(0.05)
        self.client.disconnect()
        self.client.loop_stop()
        self._save_offset(force=True)
