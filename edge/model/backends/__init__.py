"""Inference backends behind one small protocol and an explicit registry.

The registry maps names to ``module:Class`` strings; a backend's runtime is imported only
when that backend is probed or used, so a device without OpenVINO still starts.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from ...errors import BackendUnavailableError, UsageError
from ...system import release_free_memory
from ..graphcheck import check_graph
from ..manifest import Artifact, ModelDir

REGISTRY: dict[str, str] = {
    "onnxruntime": "mpox_edge.edge.model.backends.ort:OnnxRuntimeBackend",
    "openvino": "mpox_edge.edge.model.backends.ov:OpenVINOBackend",
    "ncnn": "mpox_edge.edge.model.backends.ncnn:NcnnBackend",
}


@dataclass(frozen=True)
class Probe:
    """What a backend can do here, found without loading a model."""

    name: str
    available: bool
    version: str = ""
    devices: tuple[str, ...] = ()
    reason: str = ""  # why it is unavailable


@runtime_checkable
class Backend(Protocol):
    name: str
    distributions: tuple[str, ...]  # pip names that provide the runtime (for its version)
    device: str
    threads: int

    @classmethod
    def probe(cls) -> Probe: ...

    @classmethod
    def formats(cls) -> tuple[str, ...]:
        """Artifact formats this backend loads, in order of preference."""
        ...

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Run one batch; returns every graph output by name (``logits`` always)."""
        ...

    def close(self) -> None: ...


def backend_class(name: str) -> type:
    try:
        target = REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown backend {name!r}; known: {', '.join(REGISTRY)}") from None
    modname, clsname = target.split(":")
    return getattr(importlib.import_module(modname), clsname)


def probe(name: str) -> Probe:
    return backend_class(name).probe()


def probe_all() -> Iterator[Probe]:
    for name in REGISTRY:
        yield probe(name)


def pick_artifact(model: ModelDir, backend: str, precision: str) -> Artifact:
    """The manifest's artifact a backend runs for a precision (by declared format)."""
    cls = backend_class(backend)
    for fmt in cls.formats():
        art = model.manifest.artifact(fmt, precision)
        if art is not None:
            return art
    have = ", ".join(a.key for a in model.manifest.artifacts) or "none"
    raise BackendUnavailableError(
        f"{model.path} has no {precision} artifact that {backend} can run "
        f"(formats {', '.join(cls.formats())}; the model has: {have})"
    )


def load_backend(
    model: ModelDir,
    backend: str,
    *,
    device: str = "cpu",
    precision: str = "fp32",
    threads: int | None = None,
    **options: object,
) -> Backend:
    """Open one backend on one artifact of a model, after checking it is available."""
    cls = backend_class(backend)
    pr = cls.probe()
    if not pr.available:
        raise BackendUnavailableError(f"backend {backend} is not available: {pr.reason}")
    if device.lower() not in {d.lower() for d in pr.devices}:
        raise BackendUnavailableError(
            f"backend {backend} has no device {device!r} here (devices: {', '.join(pr.devices)})"
        )
    art = pick_artifact(model, backend, precision)
    path = model.verify(art)
    backend_obj = cls(model, art, path, device=device, threads=threads, **options)
    try:
        check_graph(model, art, backend_obj)  # issue 13: manifest vs graph, at every load
    except BaseException:
        backend_obj.close()
        raise
    release_free_memory()  # the graph loader's temporaries
    return backend_obj


def default_threads() -> int:
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)
