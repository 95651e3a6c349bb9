"""The project's own exceptions (NNCF-style small hierarchy).

The CLI turns any ``MpoxEdgeError`` into one clear line on stderr and a non-zero exit;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class MpoxEdgeError(Exception):
    """Base class: a problem the user can act on."""

    exit_code = 2


class UsageError(MpoxEdgeError):
    """A wrong argument or option combination."""


class ModelError(MpoxEdgeError):
    """A model directory or manifest that cannot be used."""


class ManifestError(ModelError):
    """manifest.json is missing, does not parse, or misses a field."""


class IntegrityError(ModelError):
    """An artifact is missing or its sha256 does not match the manifest (tampered)."""


class UnknownArchitectureError(MpoxEdgeError):
    """An architecture name that is not in the zoo."""


class CheckpointError(MpoxEdgeError):
    """A checkpoint that is missing or does not fit the named architecture."""


class ParityError(MpoxEdgeError):
    """An exported artifact does not reproduce the PyTorch model."""


class BackendUnavailableError(MpoxEdgeError):
    """A requested backend or device is not installed or not present."""


class DataError(MpoxEdgeError):
    """A data directory that is missing, empty or unusable."""


class CalibrationError(MpoxEdgeError):
    """int8 calibration refused or could not meet the accuracy guard."""


class SourceError(MpoxEdgeError):
    """A camera or media source that cannot be opened."""


class ConfigError(MpoxEdgeError):
    """A configuration file that does not validate."""


class MissingDependencyError(MpoxEdgeError):
    """A host-only extra (torch, onnx, nncf...) is needed but not installed."""


def shown(name: object) -> str:
    """A file name fit for a one-line message: control characters (a newline in a name
    would split the line and forge a second one) are escaped as Python would write them."""
    s = str(name)
    if s.isprintable():
        return s
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in s)


def one_line(e: BaseException) -> str:
    """An exception as one log line: a config error lists its problems joined by '; '."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [""]
    text = lines[0] + (" " + "; ".join(lines[1:]) if len(lines) > 1 else "")
    return text if isinstance(e, MpoxEdgeError) else f"{type(e).__name__}: {text}".rstrip(": ")
