"""Every setting of one calibration run, grouped and validated before any image is read.

``CalibrationConfig`` plays the part of NNCF's ``quantize()`` arguments: the data (which
images calibrate, guard and only report), the accuracy guard, each backend's quantizer
options and the latency measurement. ``check()`` lists every problem at once (as
``TrainConfig`` and the daemon's config do); ``from_options`` builds one from the flat
keywords of ``calibrate()`` and the command line, with a did-you-mean for a typo.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from mpox_edge.edge.errors import UsageError

from .sets import parse_folds

METHODS = ("minmax", "entropy", "percentile")
OP_SCOPES = ("auto", "all", "conv")
PRESETS = ("performance", "mixed")
Folds = Sequence[int] | str


@dataclass(frozen=True)
class DataConfig:
    """Calibration images, the guard's validation images and a report-only test set."""

    data: str  # a root with splits.csv, or an image folder with one sub-folder per class
    splits: str | None = None
    calib_folds: tuple[int, ...] = (0, 1, 2)
    val_folds: tuple[int, ...] = (3,)
    val_data: str | None = None  # image-folder mode: the guard's set (else a 25% hold-out)
    test_folds: tuple[int, ...] = ()
    test_data: str | None = None
    subset_size: int = 300  # calibration images used, stratified
    allow_synthetic: bool = False  # accept random-looking calibration images (recorded)

    def check(self) -> list[str]:  # fold overlaps are checked where the sets are built
        return [] if self.subset_size >= 1 else ["--subset-size must be positive"]


@dataclass(frozen=True)
class GuardConfig:
    """No int8 artifact is kept unless it fits these (``guard.py``)."""

    max_drop: float = 1.0  # accuracy points, fp32 minus int8, on validation images
    min_agreement: float | None = None  # also require this top-1 agreement, percent
    fallback_limit: float = 0.5  # share of compute layers the guard may keep in float
    max_attempts: int = 8
    exclude: tuple[str, ...] = ()  # node names kept in float from the start

    def check(self) -> list[str]:
        bad = [
            (not math.isfinite(self.max_drop), "--max-drop must be a finite number of points"),
            (
                self.min_agreement is not None and not 0 <= self.min_agreement <= 100,
                "--min-agreement is a percentage in [0, 100]",
            ),
            (not 0 <= self.fallback_limit <= 1, "--fallback-limit must be in [0, 1]"),
            (self.max_attempts < 1, "max_attempts must be >= 1"),
        ]
        return [msg for cond, msg in bad if cond]


@dataclass(frozen=True)
class OrtConfig:
    """ONNX Runtime quantizer settings (``ort_int8.py``; recorded in the manifest)."""

    op_types: str = "auto"  # auto | all | conv
    per_channel: bool = True
    activation_type: str = "uint8"  # uint8 | int8
    reduce_range: bool = False  # 7-bit weights, for x86 CPUs without VNNI (see docs)
    pre_optimize: bool = False  # let quant_pre_process run ORT's optimizer (slower int8 here)
    fuse_gelu: bool = True  # erf-GELU subgraphs -> com.microsoft.Gelu before quantizing
    percentile: float = 99.999

    def check(self) -> list[str]:
        bad = [
            (self.op_types not in OP_SCOPES, f"--op-types must be one of {', '.join(OP_SCOPES)}"),
            (self.activation_type not in ("uint8", "int8"), "activation type must be uint8/int8"),
            (not 0 < self.percentile <= 100, "percentile must be in (0, 100]"),
        ]
        return [msg for cond, msg in bad if cond]

    def scopes(self) -> list[str]:
        return ["all", "conv"] if self.op_types == "auto" else [self.op_types]


@dataclass(frozen=True)
class OvConfig:
    """NNCF quantizer settings (``ov_int8.py``; recorded in the manifest)."""

    preset: str = "performance"
    fast_bias_correction: bool = True
    accuracy_control: bool = False  # nncf.quantize_with_accuracy_control (uses max_drop)

    def check(self) -> list[str]:
        if self.preset not in PRESETS:
            return [f"--preset must be one of {', '.join(PRESETS)}, not {self.preset!r}"]
        return []


@dataclass(frozen=True)
class LatencyConfig:
    """fp32 vs int8 timing: interleaved rounds, median (``guard.measure_latency``)."""

    rounds: int = 5
    runs: int = 20

    def check(self) -> list[str]:
        return [] if self.rounds >= 1 and self.runs >= 1 else ["latency rounds/runs must be >= 1"]


@dataclass(frozen=True)
class CalibrationConfig:
    data: DataConfig
    backends: tuple[str, ...] = ("onnxruntime", "openvino")
    method: str = "minmax"  # activation ranges: minmax | entropy | percentile
    guard: GuardConfig = field(default_factory=GuardConfig)
    onnxruntime: OrtConfig = field(default_factory=OrtConfig)
    openvino: OvConfig = field(default_factory=OvConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    threads: int | None = None  # inference threads for evaluation and timing

    def check(self) -> list[str]:
        from .quantizers import QUANTIZERS

        errors = []
        if self.method not in METHODS:
            errors.append(f"--method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if not self.backends:
            errors.append(f"--backend needs at least one of {', '.join(QUANTIZERS)}")
        for b in self.backends:
            if b not in QUANTIZERS:
                errors.append(f"unknown backend {b!r}; known: {', '.join(QUANTIZERS)}")
        if self.threads is not None and self.threads < 1:
            errors.append("--threads must be >= 1")
        for group in (self.data, self.guard, self.onnxruntime, self.openvino, self.latency):
            errors += group.check()
        return errors

    def validate(self) -> None:
        errors = self.check()
        if errors:
            raise UsageError("; ".join(errors))

    @classmethod
    def from_options(cls, *, data: str | os.PathLike[str], **options: Any) -> CalibrationConfig:
        """The flat keywords of ``calibrate()`` (the CLI's options) sorted into groups."""
        groups: dict[str, dict[str, Any]] = {g: {} for g in _GROUPS}
        top: dict[str, Any] = {}
        unknown = []
        for key, value in options.items():
            if key in _TOP:
                top[key] = tuple(dict.fromkeys(value)) if key == "backends" else value
                continue
            owner = next((g for g, names in _GROUPS.items() if key in names), None)
            if owner is None:
                unknown.append(key)
                continue
            name = _RENAMED.get(key, key)
            if name.endswith("_folds"):
                value = tuple(parse_folds(value))
            elif name == "exclude":
                value = tuple(value)
            elif name in ("splits", "val_data", "test_data") and value is not None:
                value = str(value)
            groups[owner][name] = value
        if unknown:
            known = sorted(set(_TOP) | {k for names in _GROUPS.values() for k in names})
            hints = [
                f"{k!r}" + "".join(f" (did you mean {c!r}?)" for c in _close(k, known))
                for k in unknown
            ]
            raise UsageError(f"calibrate: unknown option {', '.join(hints)}")
        return cls(
            data=DataConfig(data=str(data), **groups["data"]),
            guard=GuardConfig(**groups["guard"]),
            onnxruntime=OrtConfig(**groups["onnxruntime"]),
            openvino=OvConfig(**groups["openvino"]),
            latency=LatencyConfig(**groups["latency"]),
            **top,
        )


def _names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


def _close(key: str, known: list[str]) -> list[str]:
    return difflib.get_close_matches(key, known, n=1)


_TOP = {"backends", "method", "threads"}
_RENAMED = {"latency_rounds": "rounds", "latency_runs": "runs"}
_GROUPS = {
    "data": _names(DataConfig) - {"data"},
    "guard": _names(GuardConfig),
    "onnxruntime": _names(OrtConfig),
    "openvino": _names(OvConfig),
    "latency": {"latency_rounds", "latency_runs"},
}
