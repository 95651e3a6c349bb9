"""``BenchReport`` is the schema docs/bench.md documents: every field it writes is there."""

from __future__ import annotations

import re
from pathlib import Path

from mpox_edge.edge.reports.benchreport import (
    SCHEMA,
    BackendInfo,
    BenchReport,
    FramesInfo,
    ModelInfo,
    compare_torch,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "bench.md"


def _documented() -> dict[str, set[str]]:
    """Top-level field -> documented sub-fields, from the table's first column
    (``model.path``, ``.architecture`` ...: continuations name the row's first field's)."""
    out: dict[str, set[str]] = {}
    for line in DOC.read_text().splitlines():
        if not line.startswith("| `"):
            continue
        cells = re.findall(r"`([^`]+)`", line.split("|")[1])
        top, _, rest = cells[0].partition(".")
        subs = out.setdefault(top, set())
        for c in [rest, *(c[1:] for c in cells[1:] if c.startswith("."))]:
            if c and not c.startswith(("<", "{")) and "." not in c:
                subs.add(c)
    return out


def _report() -> BenchReport:
    q = ("min", "p50", "p90", "p99", "max", "mean")
    lat = {"end_to_end": dict.fromkeys(q, 2.0), "inference": dict.fromkeys(q, 1.0)}
    return BenchReport(
        model=ModelInfo("m", "arch", "model.onnx", "0" * 64, 10),
        backend=BackendInfo("onnxruntime", "cpu", "fp32", 2, "auto", {"cached": True}),
        frames=FramesInfo("1920x1080", 10, 2, 8),
        latency_ms=lat,
        average_fps=500.0,
        throughput_fps=500.0,
        cold_start_s=1.0,
        load_s=0.5,
        thermal={"cpu_temp_c": None},
        peak_rss_mb=100.0,
        against_torch=compare_torch(
            lat, {"end_to_end": dict.fromkeys(q, 8.0), "inference": dict.fromkeys(q, 5.0)}
        ),
        accuracy={"n": 0},
    )


def test_every_field_is_documented() -> None:
    doc = _documented()
    d = _report().to_dict()
    assert d["schema"] == SCHEMA and f'"{SCHEMA}"' in DOC.read_text()
    assert set(d) == set(doc), set(d) ^ set(doc)
    for top in ("model", "backend", "frames"):
        assert set(d[top]) == doc[top], (top, set(d[top]) ^ doc[top])
    assert set(d["against_torch"]) >= {"latency_ms", "speedup_end_to_end_p50"}
    assert d["against_torch"]["speedup_end_to_end_p50"] == 4.0
    assert d["against_torch"]["speedup_inference_p50"] == 5.0


def test_optional_parts_are_absent_not_null() -> None:
    r = _report()
    r.against_torch, r.accuracy = None, None
    d = r.to_dict()
    assert "against_torch" not in d and "accuracy" not in d
    lines = r.format_lines()
    assert lines[0].startswith("model     arch  model.onnx") and "(auto, cached)" in lines[1]
    assert any("peak RSS 100 MB" in line for line in lines)
