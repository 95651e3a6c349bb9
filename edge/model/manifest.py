"""manifest.json: the single description of a model directory.

Every stage (export, calibration, bench, eval, the daemon) reads the model's classes, input
and preprocessing, and its artifacts from here. Nothing guesses a format from a file suffix:
each artifact names its ``format`` (``onnx`` or ``openvino``) and ``precision``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import IntegrityError, ManifestError

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
FORMATS = ("onnx", "openvino", "ncnn")
PRECISIONS = ("fp32", "int8")
MAX_INPUT_SIZE = 2048  # pixels a side; the zoo uses 160..384


@dataclass(frozen=True)
class Preprocess:
    """How a decoded image becomes the input tensor (see ``edge.preprocess``)."""

    input_size: int
    mean: tuple[float, float, float]  # [0, 1] units, in the model's colour order
    std: tuple[float, float, float]
    color_order: str = "RGB"
    layout: str = "NCHW"
    resize: str = "shorter_side_center_crop"
    interpolation: str = "linear"

    def __post_init__(self) -> None:
        if self.color_order not in ("RGB", "BGR"):
            raise ManifestError(
                f"preprocess.color_order must be RGB or BGR, not {self.color_order!r}"
            )
        if self.layout != "NCHW":
            raise ManifestError(f"preprocess.layout {self.layout!r} is not supported (NCHW only)")
        if self.resize not in ("shorter_side_center_crop", "stretch"):
            raise ManifestError(f"preprocess.resize {self.resize!r} is not supported")
        if not isinstance(self.input_size, int) or not 8 <= self.input_size <= MAX_INPUT_SIZE:
            raise ManifestError(
                f"preprocess.input_size must be an integer 8..{MAX_INPUT_SIZE}, "
                f"not {self.input_size!r}"  # 60000 would allocate 43 GB per frame
            )
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ManifestError("preprocess needs three mean and three std values")
        if not all(math.isfinite(v) for v in (*self.mean, *self.std)):
            raise ManifestError("preprocess mean/std values must be finite numbers")
        if any(s <= 0 for s in self.std):
            raise ManifestError("preprocess.std values must be positive")


@dataclass(frozen=True)
class Int8Record:
    """What calibration measured for an int8 artifact (written by ``mpox_edge.calibration``).

    ``auto`` trusts an int8 artifact only through this record: the accuracy drop against
    fp32 on validation images, measured on one backend. Stored in the artifact's ``extra``
    object in manifest.json (the layout older manifests already have); fields absent from a
    file stay None and are not written back; other keys (a backend's notes) stay in
    ``Artifact.extra``.
    """

    calibrated_at: str | None = None
    measured_backend: str | None = None  # the backend the drop was measured on
    method: str | None = None
    quantizer: dict[str, Any] | None = None  # tool, variant, settings
    calibration: dict[str, Any] | None = None  # n, per_class, source, distinct
    excluded_nodes: list[str] | None = None  # kept in float (user's + guard's)
    excluded_by_user: list[str] | None = None
    excluded_by_guard: list[str] | None = None
    validation: dict[str, Any] | None = None  # n, source, fp32/int8 accuracy, agreement
    accuracy_drop: float | None = None  # points, fp32 minus int8, on validation images
    max_drop: float | None = None
    guard: dict[str, Any] | None = None  # attempts, most sensitive layers
    latency_ms: dict[str, Any] | None = None  # fp32, int8, speedup, threads, machine
    int8_slower: bool | None = None
    variants: list[dict[str, Any]] | None = None
    allow_synthetic: bool | None = None
    min_agreement: float | None = None
    test: dict[str, Any] | None = None  # report-only test set, never used for a choice
    size_bytes: dict[str, Any] | None = None

    @classmethod
    def split_extra(cls, extra: dict[str, Any]) -> tuple[Int8Record | None, dict[str, Any]]:
        """(the record, if any of its keys is there; the keys that are not the record's)."""
        known = {f.name for f in fields(cls)}
        rec = {k: v for k, v in extra.items() if k in known}
        return (cls(**rec) if rec else None), {k: v for k, v in extra.items() if k not in known}

    def to_extra(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: v for k, v in d.items() if v is not None}


@dataclass(frozen=True)
class Artifact:
    """One runnable file (or file pair for OpenVINO IR) of the model."""

    format: str  # "onnx" | "openvino" | "ncnn"
    precision: str  # "fp32" | "int8"
    path: str  # relative to the model directory (.xml for OpenVINO)
    sha256: str
    size_bytes: int
    weights_path: str | None = None  # OpenVINO / ncnn .bin
    weights_sha256: str | None = None
    outputs: tuple[str, ...] = ("logits",)
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes (not int8's record)
    int8: Int8Record | None = None  # int8 artifacts: what calibration measured

    @property
    def key(self) -> str:
        return f"{self.format}-{self.precision}"


@dataclass
class Manifest:
    architecture: str
    classes: list[str]
    preprocess: Preprocess
    artifacts: list[Artifact]
    positive_class: str | None = None  # the class a screening decision refers on (mpox)
    # p(positive) at or above which screening refers; chosen on validation data (see eval).
    # Newer models add method ("pooled out-of-fold"), n and sensitivity/specificity CIs;
    # with a temperature the threshold applies to the calibrated probability.
    screening_threshold: dict[str, Any] | None = None
    # {value, fitted_on, n, ece_before, ece_after}: softmax(logits / value) (edge.model.trust)
    temperature: dict[str, Any] | None = None
    # {kind, threshold, stats_file, sha256, fitted_on, ...}: the "unsure" score (trust.py)
    ood: dict[str, Any] | None = None
    cam: dict[str, Any] | None = None  # class-activation map support (explain)
    parity: dict[str, Any] = field(default_factory=dict)
    accuracy: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    exporter: dict[str, str] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    # -- lookup -----------------------------------------------------------------------------
    def artifact(self, fmt: str, precision: str = "fp32") -> Artifact | None:
        for a in self.artifacts:
            if a.format == fmt and a.precision == precision:
                return a
        return None

    def replace_artifact(self, art: Artifact) -> None:
        self.artifacts = [a for a in self.artifacts if a.key != art.key] + [art]

    # -- (de)serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for a, art in zip(d["artifacts"], self.artifacts, strict=True):
            a["outputs"] = list(a["outputs"])
            del a["int8"]
            if art.int8 is not None:  # manifest.json keeps the record in the artifact's extra
                a["extra"] = art.int8.to_extra() | a["extra"]
        d["preprocess"]["mean"] = list(self.preprocess.mean)
        d["preprocess"]["std"] = list(self.preprocess.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        try:
            if d.get("schema_version", SCHEMA_VERSION) > SCHEMA_VERSION:
                raise ManifestError(
                    f"manifest schema {d['schema_version']} is newer than this mpox-edge "
                    f"understands ({SCHEMA_VERSION}); upgrade mpox-edge"
                )
            pp = dict(d["preprocess"])
            pp["mean"] = tuple(float(v) for v in pp["mean"])
            pp["std"] = tuple(float(v) for v in pp["std"])
            arts = []
            for a in d["artifacts"]:
                a = dict(a)
                a["outputs"] = tuple(a.get("outputs", ("logits",)))
                if a["format"] not in FORMATS or a["precision"] not in PRECISIONS:
                    raise ManifestError(f"artifact {a['path']!r}: unknown format/precision")
                a.pop("int8", None)
                if a["precision"] == "int8" and a.get("extra"):
                    a["int8"], a["extra"] = Int8Record.split_extra(dict(a["extra"]))
                arts.append(Artifact(**a))
            classes = [str(c) for c in d["classes"]]
            if len(classes) < 2:
                raise ManifestError("manifest needs at least two classes")
            known = {f.name for f in cls.__dataclass_fields__.values()}
            rest = {
                k: v
                for k, v in d.items()
                if k in known and k not in ("preprocess", "artifacts", "classes")
            }
            return cls(classes=classes, preprocess=Preprocess(**pp), artifacts=arts, **rest)
        except ManifestError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise ManifestError(f"manifest.json is missing or has a bad field: {e}") from None


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    """Write through a temp file + rename so a crash never leaves half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a daemon user must read manifests
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ModelDir:
    """A model directory: its manifest plus verified access to its artifacts."""

    def __init__(self, path: str | os.PathLike[str], manifest: Manifest) -> None:
        self.path = Path(path)
        self.manifest = manifest
        self._verified: set[str] = set()

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ModelDir:
        p = Path(path)
        if not p.is_dir():
            raise ManifestError(f"model directory {p} does not exist")
        mf = p / MANIFEST_NAME
        if not mf.is_file():
            raise ManifestError(f"{p} has no {MANIFEST_NAME}: not an mpox-edge model directory")
        try:
            data = json.loads(mf.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ManifestError(f"{mf} does not parse as JSON: {e}") from None
        except RecursionError:  # a hostile '[[[[...' manifest
            raise ManifestError(f"{mf} is nested too deeply to be a manifest") from None
        if not isinstance(data, dict):
            raise ManifestError(f"{mf} is not a JSON object")
        return cls(p, Manifest.from_dict(data))

    def save(self) -> None:
        atomic_write_text(
            self.path / MANIFEST_NAME, json.dumps(self.manifest.to_dict(), indent=2) + "\n"
        )

    def file(self, rel: str) -> Path:
        p = (self.path / rel).resolve()
        if self.path.resolve() not in p.parents:
            raise ManifestError(f"artifact path {rel!r} escapes the model directory")
        return p

    def verify(self, art: Artifact) -> Path:
        """Check an artifact's sha256 (once per process) and return its path."""
        pairs = [(art.path, art.sha256)]
        if art.weights_path:
            pairs.append((art.weights_path, art.weights_sha256 or ""))
        for rel, digest in pairs:
            if rel in self._verified:
                continue
            f = self.file(rel)
            if not f.is_file():
                raise IntegrityError(
                    f"{self.path}: artifact {rel} named in the manifest is missing"
                )
            if sha256_file(f) != digest:
                raise IntegrityError(
                    f"{self.path}: {rel} does not match the sha256 in manifest.json "
                    "(modified or corrupted); re-export or restore it"
                )
            self._verified.add(rel)
        return self.file(art.path)

    def make_artifact(
        self,
        *,
        fmt: str,
        precision: str,
        path: str,
        weights_path: str | None = None,
        outputs: tuple[str, ...] = ("logits",),
        extra: dict[str, Any] | None = None,
        int8: Int8Record | None = None,
    ) -> Artifact:
        """A new artifact entry from a file in the directory (sizes, sha256 measured here).

        An int8 artifact's ``extra`` is read as its ``Int8Record``, as ``from_dict`` does."""
        if precision == "int8" and int8 is None and extra:
            int8, extra = Int8Record.split_extra(extra)
        f = self.file(path)
        size = f.stat().st_size
        wsha = None
        if weights_path:
            wf = self.file(weights_path)
            size += wf.stat().st_size
            wsha = sha256_file(wf)
        return Artifact(
            format=fmt,
            precision=precision,
            path=path,
            sha256=sha256_file(f),
            size_bytes=size,
            weights_path=weights_path,
            weights_sha256=wsha,
            outputs=tuple(outputs),
            extra=dict(extra or {}),
            int8=int8,
        )
