"""bench's table keeps its columns apart whatever the latency (emulators, slow devices)."""

from __future__ import annotations

from mpox_edge.edge.reports.benchreport import BackendInfo, BenchReport, FramesInfo, ModelInfo


def _report(ms: float) -> BenchReport:
    s = {"min": ms, "p50": ms * 1.1, "p90": ms * 1.2, "p99": ms * 1.3, "max": ms * 12.0}
    return BenchReport(
        backend=BackendInfo("onnxruntime", "cpu", "fp32", 2, "onnxruntime", None),
        model=ModelInfo("m", "x", "model.onnx", "", 1_000_000),
        frames=FramesInfo("1920x1080", 20, 2, 8),
        latency_ms={k: s for k in ("decode", "preprocess", "inference", "end_to_end")},
        average_fps=1.0,
        throughput_fps=1.0,
        cold_start_s=1.0,
        load_s=0.5,
        peak_rss_mb=100.0,
        thermal={},
    )


def test_columns_stay_apart_past_1000_ms() -> None:
    for ms in (1.234, 999.9, 3456.789, 123456.7):
        lines = _report(ms).format_lines()
        head = next(ln for ln in lines if ln.startswith("stage"))
        row = next(ln for ln in lines if ln.startswith("inference"))
        cells = row.split()
        assert len(cells) == 6, row  # name + 5 figures, each separated by a space
        assert float(cells[5]) == round(ms * 12.0, 3)
        assert len(head.split()) == 7 and len(row) == len(head) - 4  # aligned under " ms"
