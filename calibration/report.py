"""The calibration report: what ``calibrate`` did per backend, as a table and as JSON."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA = "mpox-edge.calibrate/1"


@dataclass
class BackendResult:
    """What calibration did for one backend."""

    backend: str
    written: bool
    reason: str
    artifact: str | None = None  # relative path of the int8 artifact written
    variant: str = ""
    fp32_accuracy: float = math.nan
    int8_accuracy: float = math.nan
    agreement: float = math.nan
    drop: float = math.nan  # points
    excluded: list[str] = field(default_factory=list)
    fp32_ms: float = math.nan
    int8_ms: float = math.nan
    fp32_bytes: int = 0
    int8_bytes: int = 0
    variants: list[dict[str, Any]] = field(default_factory=list)
    test: dict[str, Any] | None = None
    previous: str | None = None  # an older int8 artifact left in place after a rejection

    @property
    def speedup(self) -> float:
        return self.fp32_ms / self.int8_ms if self.int8_ms and self.int8_ms > 0 else math.nan


@dataclass
class CalibrationReport:
    model_dir: str
    architecture: str
    method: str
    max_drop: float
    calibration: dict[str, Any]
    validation: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    results: list[BackendResult] = field(default_factory=list)
    allow_synthetic: bool = False

    @property
    def ok(self) -> bool:
        """Every requested backend got an int8 artifact that passed the guard."""
        return bool(self.results) and all(r.written for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["schema"] = SCHEMA
        d["ok"] = self.ok
        for r, rd in zip(self.results, d["results"], strict=True):
            rd["speedup"] = r.speedup
        return _jsonable(d)

    def format_table(self) -> list[str]:
        c, v = self.calibration, self.validation
        lines = [
            f"int8 calibration of {self.model_dir} ({self.architecture}), method {self.method}, "
            f"guard: drop <= {self.max_drop:g} points",
            f"  calibration: {c['n']} images, {c['source']} ({_counts(c['per_class'])})"
            + (" [synthetic allowed]" if self.allow_synthetic else ""),
            f"  validation:  {v['n']} images, {v['source']} ({_counts(v['per_class'])})",
            "",
            f"  {'backend':<12}{'variant':<10}{'fp32':>7}{'int8':>7}{'drop':>7}{'agree':>7}"
            f"{'float':>6}{'fp32 ms':>9}{'int8 ms':>9}{'speed':>7}{'MB fp32>int8':>14}  result",
        ]
        for r in self.results:
            size = f"{r.fp32_bytes / 1e6:.1f}>{r.int8_bytes / 1e6:.1f}" if r.int8_bytes else "-"
            res = f"wrote {r.artifact}" if r.written else f"NO int8 artifact: {r.reason}"
            if r.written and r.speedup < 1.0:
                res += " (int8 slower than fp32 here)"
            lines.append(
                f"  {r.backend:<12}{r.variant or '-':<10}{_pct(r.fp32_accuracy):>7}"
                f"{_pct(r.int8_accuracy):>7}{_num(r.drop, '+.2f'):>7}{_pct(r.agreement):>7}"
                f"{len(r.excluded) if r.variant else '-':>6}{_num(r.fp32_ms, '.2f'):>9}"
                f"{_num(r.int8_ms, '.2f'):>9}{_num(r.speedup, '.2f', 'x'):>7}{size:>14}  {res}"
            )
            for var in r.variants if len(r.variants) > 1 else []:
                if var["variant"] != r.variant:
                    lines.append(
                        f"  {'':<12}{var['variant']:<10}{'':>7}{_pct(var['int8_accuracy']):>7}"
                        f"{_num(var['drop'], '+.2f'):>7}{_pct(var['agreement']):>7}"
                        f"{var['float_layers']:>6}{'':>9}{_num(var.get('int8_ms'), '.2f'):>9}"
                        f"{'':>7}{'':>14}  "
                        + ("candidate, not kept" if var["accepted"] else "over the guard")
                    )
            if r.test:
                t = r.test
                lines.append(
                    f"  {'':<12}report-only test set ({t['source']}, {t['n']} images): fp32 "
                    f"{_pct(t['fp32_accuracy'])}, int8 {_pct(t['int8_accuracy'])}, drop "
                    f"{t['drop']:+.2f}, agreement {_pct(t['agreement'])}"
                )
            if r.previous:
                lines.append(f"  {'':<12}{r.previous}")
        for w in self.warnings:
            lines.append(f"  warning: {w}")
        return lines


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items())


def _pct(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}%"


def _num(v: float | None, fmt: str, suffix: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:{fmt}}{suffix}"


def _jsonable(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_jsonable(v) for v in o]
    if isinstance(o, float) and math.isnan(o):
        return None
    if isinstance(o, np.generic):
        return _jsonable(o.item())
    if isinstance(o, Path):
        return str(o)
    return o
