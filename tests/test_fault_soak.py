"""The fault-injection soak runs end to end (a short run: correctness counts only; the
30-minute run with the RSS and thread bounds is recorded in docs/hardening.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_fault_soak_short_run(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    r = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "fault_soak.py"), "--minutes", "0.75"]
        + ["--json", str(out)],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["ok"] and res["crashes"] == [] and res["photos_lost"] == 0
    assert res["photos_duplicated"] == 0 and res["bad_files_missing_events"] == 0
    f = res["faults"]
    assert f["photos_dropped"] >= 9 and f["bad_files_dropped"] >= 7 and f["bad_reloads"] >= 8
    assert 0 < res["reload_events"]["rejected"] <= f["bad_reloads"]  # SIGHUPs may coalesce
    assert "fault soak: PASS" in r.stderr
