#!/usr/bin/env python3
"""Peak RSS of ``mpox-edge serve --once`` on the bundled held-out photos (the default model).

Why: the issue asks that prometheus-client and MQTT keep the device's memory budget. Runs the
daemon as a child process N times and reports the median of the children's peak RSS
(``ru_maxrss``), so the figure covers model, capture, HTTP API, /metrics and MQTT together.

    python3 scripts/fleet_rss.py --runs 3            # this checkout
    python3 scripts/fleet_rss.py --runs 3 --mqtt HOST:PORT   # with [mqtt] on (a broker there)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def one_run(extra_toml: str) -> int:
    import mpox_edge.edge as e

    heldout = Path(e.__file__).parent / "data" / "heldout" / "Monkeypox"  # dir:// is one folder
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "c.toml"
        cfg.write_text(
            f'state_dir = "{tmp}/state"\n[source]\nuri = "dir://{heldout}"\nwatch = false\n'
            f'[http]\nport = 0\n[model]\nbackend = "onnxruntime"\n{extra_toml}'
        )
        code = (
            "import resource,sys,urllib.request,threading\n"
            "from mpox_edge.edge.cli import main\n"
            "rc = main(['serve','--config',sys.argv[1],'--once'])\n"
            "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
            "sys.exit(rc)\n"
        )
        r = subprocess.run(
            [sys.executable, "-c", code, str(cfg)], capture_output=True, text=True, timeout=600
        )
        if r.returncode != 0:
            sys.exit(f"serve failed: {r.stderr[-2000:]}")
        peak = [ln for ln in r.stdout.splitlines() if ln.startswith("PEAK")]
        return int(peak[-1].split()[1]) * 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mqtt", help="HOST:PORT of a broker: run with [mqtt] enabled")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    extra = ""
    if a.mqtt:
        host, _, port = a.mqtt.partition(":")
        extra = f'[mqtt]\nenabled = true\nhost = "{host}"\nport = {port or 1883}\n'
    peaks = [one_run(extra) for _ in range(a.runs)]
    out = {
        "peak_rss_mib_median": round(statistics.median(peaks) / 2**20, 1),
        "peak_rss_mib": [round(p / 2**20, 1) for p in peaks],
        "mqtt": bool(a.mqtt),
        "pythonpath": os.environ.get("PYTHONPATH", ""),
    }
    print(
        json.dumps(out)
        if a.json
        else f"peak RSS median {out['peak_rss_mib_median']} MiB "
        f"(runs: {out['peak_rss_mib']}){' with MQTT' if a.mqtt else ''}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
