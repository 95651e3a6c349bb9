"""The quantizer registry: one int8 method per backend, imported only when it runs.

Each entry owns what differs between backends (the artifact's format and path, the
candidates tried, what the manifest records about the tool); ``run.py`` does what is the
same for all (guard, timing, install). Adding a backend's int8: a class that satisfies
``BackendQuantizer`` and one line here.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, ClassVar, Protocol

from mpox_edge.edge.errors import UsageError

from .config import CalibrationConfig
from .guard import Quantizer
from .reader import CalibrationReader, ImageSet

QUANTIZERS: dict[str, str] = {
    "onnxruntime": "mpox_edge.calibration.ort_int8:OrtInt8",
    "openvino": "mpox_edge.calibration.ov_int8:OvInt8",
}


class BackendQuantizer(Protocol):
    backend: ClassVar[str]  # the runtime backend (edge.model.backends.REGISTRY) it serves
    fmt: ClassVar[str]  # the manifest format of the artifact it writes
    int8_path: ClassVar[str]  # where, relative to the model directory
    weights_suffix: ClassVar[str | None]  # a second file beside it (OpenVINO's .bin)

    def __init__(self, cfg: CalibrationConfig) -> None: ...

    def variants(
        self, fp32_path: Path, work: Path, reader: CalibrationReader, validation: ImageSet
    ) -> list[Quantizer]:
        """The candidates to try, in order (each passes the guard on its own)."""
        ...

    def record(self, chosen: Quantizer) -> dict[str, Any]:
        """The manifest's ``quantizer`` record of the chosen candidate."""
        ...


def quantizer_for(backend: str, cfg: CalibrationConfig) -> BackendQuantizer:
    try:
        modname, clsname = QUANTIZERS[backend].split(":")
    except KeyError:
        raise UsageError(
            f"no int8 calibration for backend {backend!r}; known: {', '.join(QUANTIZERS)}"
        ) from None
    cls: type[BackendQuantizer] = getattr(importlib.import_module(modname), clsname)
    return cls(cfg)


def candidate_files(q: BackendQuantizer, candidate: Path) -> list[Path]:
    """The candidate's files (the model, and its weights file where the format has one)."""
    return [candidate] + ([candidate.with_suffix(q.weights_suffix)] if q.weights_suffix else [])
