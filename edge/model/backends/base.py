"""What every backend is: the protocol, its probe result and its typed options.

A backend module imports its runtime only inside methods, so importing this package (and
each backend's class, for its name and options) never loads ONNX Runtime or OpenVINO.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np

from ...errors import UsageError
from ..manifest import Artifact, ModelDir

OptionsT = TypeVar("OptionsT", bound="BackendOptions")


@dataclass(frozen=True)
class Probe:
    """What a backend can do here, found without loading a model."""

    name: str
    available: bool
    version: str = ""
    devices: tuple[str, ...] = ()
    reason: str = ""  # why it is unavailable


@dataclass(frozen=True)
class BackendOptions:
    """Base of a backend's options: a frozen dataclass built only from keys it declares.

    A typo'd key (``spinn=False``) is an error with a did-you-mean, never a silent default.
    """

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(
        cls: type[OptionsT], values: Mapping[str, object], *, backend: str
    ) -> OptionsT:
        hints = typing.get_type_hints(cls)
        problems = []
        for key, value in values.items():
            if key not in hints:
                close = difflib.get_close_matches(key, cls.names(), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                have = ", ".join(cls.names()) or "none"
                problems.append(f"unknown option {key!r}{hint}; {backend} takes: {have}")
            elif not _type_ok(value, hints[key]):
                problems.append(f"option {key} must be {_type_name(hints[key])}, not {value!r}")
        if problems:
            raise UsageError(f"{backend}: " + "; ".join(problems))
        checked: dict[str, Any] = dict(values)  # keys and types checked above
        return cls(**checked)


@dataclass(frozen=True)
class NoOptions(BackendOptions):
    """A backend that takes no caller options (any key is refused)."""


def _type_ok(value: object, tp: Any) -> bool:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return any(_type_ok(value, t) for t in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp in (int, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, tp)


def _type_name(tp: Any) -> str:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return " or ".join(_type_name(t) for t in typing.get_args(tp))
    return "None" if tp is type(None) else getattr(tp, "__name__", str(tp))


class Backend(Protocol):
    """One artifact of a model opened by one runtime on one device.

    The constructor receives only the options of this backend (``Options``' keys); the
    registry's ``load_backend`` checks availability, the device and the sha256 first.
    """

    name: ClassVar[str]
    distributions: ClassVar[tuple[str, ...]]  # pip names that provide the runtime (version)
    Options: ClassVar[type[BackendOptions]]
    device: str
    threads: int
    artifact: Artifact
    output_names: list[str]  # every graph output (``logits`` among them)
    input_shape: list[Any] | None  # the graph's input as exported (None: not known)

    def __init__(
        self,
        model: ModelDir,
        artifact: Artifact,
        path: Path,
        *,
        device: str = "cpu",
        threads: int | None = None,
        options: Mapping[str, object] | None = None,
    ) -> None: ...

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


class BackendBase:
    """What every backend's constructor does first: its own options checked (``Options``),
    the device name lower-cased, threads defaulted to the cores this process may use."""

    name: ClassVar[str]
    Options: ClassVar[type[BackendOptions]] = NoOptions

    def __init__(
        self,
        model: ModelDir,
        artifact: Artifact,
        path: Path,
        *,
        device: str = "cpu",
        threads: int | None = None,
        options: Mapping[str, object] | None = None,
    ) -> None:
        self.options = self.Options.from_mapping(options or {}, backend=self.name)
        self.device = device.lower()
        self.threads = threads or default_threads()
        self.artifact = artifact


def default_threads() -> int:
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)
