"""What ``mpox-edge bench`` measured: ``BenchReport``, its JSON (docs/bench.md) and its table.

Schema ``mpox-edge.bench/1``: fields are added, never renamed or re-typed, within a
version. ``to_dict()`` is exactly what ``--json`` writes; ``format_lines()`` the terminal's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .evaluate import format_report
from .latency import STAGES

SCHEMA = "mpox-edge.bench/1"


@dataclass(frozen=True)
class ModelInfo:
    """The model directory and the artifact actually run."""

    path: str
    architecture: str
    artifact: str
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class BackendInfo:
    """What actually ran, and what was asked (``auto`` carries its ``selection``)."""

    name: str
    device: str
    precision: str
    threads: int
    requested: str
    selection: dict[str, Any] | None  # auto: every candidate, its time, cached or measured


@dataclass(frozen=True)
class FramesInfo:
    """The latency pass: frame size (WxH or native), timed and warm-up frames, distinct."""

    size: str
    runs: int
    warmup: int
    distinct: int


@dataclass(frozen=True)
class TorchComparison:
    """``--against torch``: PyTorch eager on the same frames and stages."""

    latency_ms: dict[str, dict[str, float]]
    speedup_end_to_end_p50: float
    speedup_inference_p50: float


@dataclass
class BenchReport:
    model: ModelInfo
    backend: BackendInfo
    frames: FramesInfo
    latency_ms: dict[str, dict[str, float]]  # stage -> min/p50/p90/p99/max/mean
    average_fps: float  # mean over frames of 1 / end-to-end latency
    throughput_fps: float  # frames / summed end-to-end time
    cold_start_s: float | None  # interpreter start to the first prediction
    load_s: float  # opening the model (and selection) to the first prediction
    thermal: dict[str, Any]  # cpu_temp_c (zones, degrees C), throttled (vcgencmd)
    cold_start_includes_selection: bool = False  # auto measured (not read from its cache)
    cold_start_from: str = "interpreter"  # what cold_start_s counts from
    peak_rss_mb: float = 0.0
    against_torch: TorchComparison | None = None
    accuracy: dict[str, Any] | None = None  # the shared eval report; None: --no-accuracy
    schema: str = field(default=SCHEMA)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schema": self.schema,
            "model": asdict(self.model),
            "backend": asdict(self.backend),
            "frames": asdict(self.frames),
            "latency_ms": self.latency_ms,
            "average_fps": self.average_fps,
            "throughput_fps": self.throughput_fps,
            "cold_start_s": self.cold_start_s,
            "cold_start_from": self.cold_start_from,
            "cold_start_includes_selection": self.cold_start_includes_selection,
            "load_s": self.load_s,
            "thermal": self.thermal,
        }
        if self.against_torch is not None:
            d["against_torch"] = asdict(self.against_torch)
        if self.accuracy is not None:
            d["accuracy"] = self.accuracy
        d["peak_rss_mb"] = self.peak_rss_mb
        return d

    def format_lines(self) -> list[str]:
        b, m, f, sel = self.backend, self.model, self.frames, self.backend.selection or {}
        lines = [
            f"model     {m.architecture}  {m.artifact} ({m.size_bytes / 1e6:.2f} MB)",
            f"backend   {b.name} / {b.device} / {b.precision}  threads {b.threads}"
            + (f"  (auto{', cached' if sel.get('cached') else ''})" if sel else ""),
            f"frames    {f.runs} x {f.size} (+{f.warmup} warm-up)",
        ]
        qs = ("min", "p50", "p90", "p99", "max")
        rows = [
            ("back-to-back" if k == "inference_back_to_back" else k, self.latency_ms[k])
            for k in (*STAGES, "inference_back_to_back")
            if self.latency_ms.get(k)
        ]
        # Columns widen with the largest figure (1000 ms and up under emulation or on a slow
        # device) and always keep a space between them.
        w = max([8] + [len(f"{s[q]:.3f}") + 1 for _, s in rows for q in qs])
        lines.append(f"{'stage':<13}" + "".join(f"{q:>{w}}" for q in qs) + "  ms")
        for name, s in rows:
            lines.append(f"{name:<13}" + "".join(f"{s[q]:>{w}.3f}" for q in qs))
        cold = self.cold_start_s
        how = ""
        if sel:
            how = (
                "; auto's choice read from its cache"
                if sel.get("cached")
                else "; includes auto measuring every candidate"
            )
        lines += [
            "  back-to-back = inference alone, tensors fed one after another (benchmark_app's "
            "method); the in-pipeline inference row pays for the frame work around it",
            f"average FPS {self.average_fps:.1f} (mean of 1/end-to-end per frame)  throughput "
            f"{self.throughput_fps:.1f} fps (frames / total end-to-end time)",
            f"cold start {f'{cold:.2f} s' if cold else 'n/a'} (interpreter start -> first "
            f"prediction{how})  peak RSS {self.peak_rss_mb:.0f} MB",
        ]
        if sel.get("cache_file"):
            lines.append(f"auto cache {sel['cache_file']}")
        th = self.thermal
        if th.get("cpu_temp_c") or th.get("throttled"):
            lines.append(f"thermal   {th.get('cpu_temp_c')} {th.get('throttled', '')}".rstrip())
        a = self.against_torch
        if a is not None:
            lines.append(
                f"vs PyTorch eager: end-to-end p50 {a.latency_ms['end_to_end']['p50']:.3f}"
                f" ms -> {a.speedup_end_to_end_p50:.1f}x faster (inference "
                f"{a.speedup_inference_p50:.1f}x)"
            )
        if self.accuracy is not None:
            lines += format_report(self.accuracy)[1:]
        return lines


def compare_torch(
    ours: dict[str, dict[str, float]], torch_ms: dict[str, dict[str, float]]
) -> TorchComparison:
    return TorchComparison(
        latency_ms=torch_ms,
        speedup_end_to_end_p50=torch_ms["end_to_end"]["p50"] / ours["end_to_end"]["p50"],
        speedup_inference_p50=torch_ms["inference"]["p50"] / ours["inference"]["p50"],
    )
