#!/usr/bin/env python3
"""MQTT on vs off: the daemon's decisions per second, and the frame loop's p99 while the
broker is down. In-process daemon, fake classifier, lossless synthetic source, every
decision logged (state on /dev/shm), a real mosquitto on loopback. Rounds alternate
off / on / broker-down so drift hits all three alike; medians are reported.

Besides decisions per second (wall clock: moved by whatever else the machine runs), each
round records the process's CPU milliseconds per decision (every thread: frame loop,
model, publisher, paho). On a device whose cores the model keeps busy, throughput scales as
1 / CPU per decision, so ``cpu_off / cpu_on`` is MQTT's cost in throughput measured in a way
other load moves less. Finer still, the "on" rounds read the CPU clocks of the MQTT threads
themselves (the publisher and paho's network thread, ``pthread_getcpuclockid``):
``mqtt_share`` = their CPU / the process's, the throughput a CPU-bound device gives up to
them, a ratio within each round that the machine's other load hardly moves.

    python3 scripts/fleet_bench.py --decisions 3000 --rounds 3
    python3 scripts/fleet_bench.py --real --decisions 1000 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from edge_fakes import FakeClassifier  # noqa: E402
from fleet_servers import Mosquitto  # noqa: E402
from mpox_edge.edge.kiosk.daemon import Daemon  # noqa: E402
from test_fleet_mqtt import Synthetic, fleet_cfg  # noqa: E402


def mqtt_threads_cpu() -> float:
    """CPU seconds of the publisher and paho's network thread (0.0 while they do not run)."""
    total = 0.0
    for th in threading.enumerate():
        if th.ident and (th.name == "mqtt" or th.name.startswith("paho-mqtt-client")):
            try:
                total += time.clock_gettime(time.pthread_getcpuclockid(th.ident))
            except OSError:  # exited meanwhile
                pass
    return total


def one(
    state: Path, port: int, mqtt: bool, n: int, real: bool
) -> tuple[float, float, float, float]:
    cfg = fleet_cfg(state, port)
    cfg.mqtt.enabled = mqtt
    cfg.model.backend = "onnxruntime"
    kw = {} if real else {"classifier_factory": lambda c: FakeClassifier()}
    d = Daemon(cfg, source_factory=lambda sc: Synthetic(), **kw)  # type: ignore[arg-type]
    d.start()
    stamps: list[float] = []
    orig = d.telemetry.decided

    def decided(label: str) -> None:
        stamps.append(time.perf_counter())
        orig(label)

    d.telemetry.decided = decided  # type: ignore[method-assign]
    t = threading.Thread(target=d.run, kwargs={"max_frames": n}, daemon=True)
    cpu0, mq0 = time.process_time(), mqtt_threads_cpu()
    t.start()
    t.join()
    if d.mqtt and d.recorder:  # what is still queued is part of the cost: let it go out
        end = time.monotonic() + 5.0
        while d.mqtt.connected and d.mqtt.acked < d.recorder.log.seq and time.monotonic() < end:
            time.sleep(0.01)
    mq = mqtt_threads_cpu() - mq0
    cpu = time.process_time() - cpu0
    d.stop()
    gaps = sorted(b - a for a, b in zip(stamps[n // 10 : -1], stamps[n // 10 + 1 :], strict=True))
    rate = (len(stamps) - n // 10 - 1) / (stamps[-1] - stamps[n // 10])
    return rate, gaps[int(len(gaps) * 0.99)] * 1e3, cpu * 1e3 / len(stamps), mq / cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decisions", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--real", action="store_true", help="the shipped model instead of a fake")
    a = ap.parse_args()
    res: dict[str, list[tuple[float, float, float, float]]] = {
        "off": [],
        "on": [],
        "broker_down": [],
    }
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as tmp:
        broker = Mosquitto(Path(tmp) / "broker").start()
        try:
            for r in range(a.rounds):
                for mode in res:
                    if mode == "broker_down":
                        broker.stop()
                    elif broker.proc is None:
                        broker.start()
                    st = Path(tmp) / f"{mode}-{r}"
                    res[mode].append(one(st, broker.port, mode != "off", a.decisions, a.real))
        finally:
            broker.stop()
    out = {
        m: {"decisions_per_s": round(statistics.median(x[0] for x in v), 1),
            "loop_p99_ms": round(statistics.median(x[1] for x in v), 3),
            "cpu_ms_per_decision": round(statistics.median(x[2] for x in v), 3),
            "per_round_decisions_per_s": [round(x[0], 1) for x in v],
            "per_round_cpu_ms_per_decision": [round(x[2], 3) for x in v]}
        for m, v in res.items()
    }  # fmt: skip
    out["on_vs_off"] = round(out["on"]["decisions_per_s"] / out["off"]["decisions_per_s"], 3)
    # each round's on / off (neighbours in time): less exposed to drift than ratio of medians
    paired = [on[0] / off[0] for on, off in zip(res["on"], res["off"], strict=True)]
    out["on_vs_off_paired_median"] = round(statistics.median(paired), 3)
    # CPU-bound throughput ratio: off's CPU per decision over on's, per round and median
    cpu_paired = [off[2] / on[2] for on, off in zip(res["on"], res["off"], strict=True)]
    out["cpu_bound_on_vs_off_paired_median"] = round(statistics.median(cpu_paired), 3)
    out["cpu_bound_on_vs_off_per_round"] = [round(x, 3) for x in cpu_paired]
    share = [x[3] for x in res["on"]]
    out["mqtt_share_of_cpu_per_round"] = [round(x, 4) for x in share]
    out["mqtt_share_of_cpu_median"] = round(statistics.median(share), 4)
    out["cpu_bound_on_vs_off_by_thread_clocks"] = round(1 - statistics.median(share), 3)
    out["classifier"] = "shipped model, onnxruntime" if a.real else "fake (tests/edge_fakes.py)"
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
