"""Inference backends behind one small protocol and an explicit registry.

The registry maps names to ``module:Class`` strings; a backend's runtime is imported only
when that backend is probed or used, so a device without OpenVINO still starts. Adding a
backend: a module with a class that satisfies ``Backend`` (its ``Options`` dataclass, its
``probe``/``formats``) and one line in ``REGISTRY``.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator, Mapping

from ...errors import BackendUnavailableError, UsageError
from ...system import release_free_memory
from ..graphcheck import check_graph
from ..manifest import Artifact, ModelDir
from .base import Backend, BackendOptions, NoOptions, Probe, default_threads

__all__ = [
    "REGISTRY",
    "Backend",
    "BackendOptions",
    "NoOptions",
    "Probe",
    "backend_class",
    "check_options",
    "default_threads",
    "load_backend",
    "options_for",
    "pick_artifact",
    "probe",
    "probe_all",
]

REGISTRY: dict[str, str] = {
    "onnxruntime": "mpox_edge.edge.model.backends.ort:OnnxRuntimeBackend",
    "openvino": "mpox_edge.edge.model.backends.ov:OpenVINOBackend",
    "ncnn": "mpox_edge.edge.model.backends.ncnn:NcnnBackend",
}


def backend_class(name: str) -> type[Backend]:
    try:
        target = REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown backend {name!r}; known: {', '.join(REGISTRY)}") from None
    modname, clsname = target.split(":")
    cls: type[Backend] = getattr(importlib.import_module(modname), clsname)
    return cls


def probe(name: str) -> Probe:
    return backend_class(name).probe()


def probe_all() -> Iterator[Probe]:
    for name in REGISTRY:
        yield probe(name)


def check_options(options: Mapping[str, object]) -> dict[str, str]:
    """Every key must be some registered backend's option; returns key -> that backend.

    A key that no backend declares is a typo (``spinn=False``): an error with a
    did-you-mean, never silently dropped.
    """
    owners = {k: b for b in REGISTRY for k in backend_class(b).Options.names()}
    bad = [k for k in options if k not in owners]
    if bad:
        hints = []
        for k in bad:
            close = difflib.get_close_matches(k, list(owners), n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        known = ", ".join(f"{k} ({b})" for k, b in owners.items()) or "none"
        raise UsageError(f"unknown backend option {', '.join(hints)}; known: {known}")
    return owners


def options_for(backend: str, options: Mapping[str, object]) -> dict[str, object]:
    """One backend's share of options meant for whichever backend runs.

    ``auto`` may pick any backend, so callers (the daemon) pass every backend's options at
    once and each backend takes its own keys (``check_options`` first).
    """
    owners = check_options(options)
    return {k: v for k, v in options.items() if owners[k] == backend}


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
    options: Mapping[str, object] | None = None,
) -> Backend:
    """Open one backend on one artifact of a model, after checking it is available.

    ``options`` may hold every backend's options (see ``options_for``); unknown keys fail
    before anything is loaded.
    """
    cls = backend_class(backend)
    own = options_for(backend, options or {})
    pr = cls.probe()
    if not pr.available:
        raise BackendUnavailableError(f"backend {backend} is not available: {pr.reason}")
    if device.lower() not in {d.lower() for d in pr.devices}:
        raise BackendUnavailableError(
            f"backend {backend} has no device {device!r} here (devices: {', '.join(pr.devices)})"
        )
    art = pick_artifact(model, backend, precision)
    path = model.verify(art)
    backend_obj = cls(model, art, path, device=device, threads=threads, options=own)
    try:
        check_graph(model, art, backend_obj)  # issue 13: manifest vs graph, at every load
    except BaseException:
        backend_obj.close()
        raise
    release_free_memory()  # the graph loader's temporaries
    return backend_obj
