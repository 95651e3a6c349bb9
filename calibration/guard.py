"""The accuracy guard: no int8 model is kept unless its measured drop fits ``max_drop``.

After a quantizer writes a candidate, fp32 and int8 run on the validation set (never the
calibration set) through the runtime's own backend classes, exactly as on a device. If
the drop (accuracy points, fp32 minus int8) exceeds the guard, the compute layers are
ranked by the error their own quantization adds (nMSE at the layer's output minus nMSE at
its input, measured on calibration images, never on validation images) and the most
sensitive ones are kept in float, 1, 2, 4, 8... at a time, until the drop fits or the
fallback budget (``fallback_limit``, a share of the compute layers) is spent. A candidate
that never fits is deleted: the caller writes no int8 artifact.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from mpox_edge.edge.model.backends import Backend, backend_class
from mpox_edge.edge.model.manifest import Artifact, ModelDir
from mpox_edge.edge.reports.accuracy import classification_report, softmax

from .reader import ImageSet

Wrap = Callable[..., Any]


class Quantizer(Protocol):
    """One int8 candidate maker (a backend's variant): quantize with some nodes in float."""

    backend: str
    fmt: str

    @property
    def variant(self) -> str: ...

    @property
    def restores_accuracy(self) -> bool:
        """The tool restores accuracy itself (no greedy fallback on top)."""
        ...

    def prepare(self) -> None: ...

    def resolve_exclude(self, names: Sequence[str]) -> list[str]: ...

    def nodes(self) -> list[str]: ...

    def quantize(self, exclude: Sequence[str]) -> Path: ...

    def discard(self, path: Path) -> None: ...

    def layer_errors(self, candidate: Path, samples: Sequence[np.ndarray]) -> dict[str, float]: ...


@dataclass
class Attempt:
    excluded: list[str]  # every node kept in float (user's + fallback's)
    fallback: int  # how many of them the fallback added
    int8_accuracy: float
    agreement: float
    drop: float  # accuracy points, fp32 minus int8
    accepted: bool


@dataclass
class GuardResult:
    backend: str
    variant: str
    accepted: bool
    reason: str
    n: int  # validation images
    fp32_accuracy: float
    int8_accuracy: float = math.nan
    agreement: float = math.nan
    drop: float = math.nan
    excluded: list[str] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    ranking: list[tuple[str, float]] = field(default_factory=list)  # most sensitive first
    candidate: Path | None = None
    int8_report: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("candidate")
        d.pop("int8_report")
        d["ranking"] = [[n, s] for n, s in self.ranking[:10]]
        return d


# -- running models -------------------------------------------------------------------------
def open_model(
    md: ModelDir,
    backend: str,
    fmt: str,
    path: Path,
    *,
    precision: str,
    threads: int | None = None,
    outputs: tuple[str, ...] = ("logits",),
) -> Backend:
    """Open a file that is not (yet) in the manifest through the runtime's backend class."""
    art = Artifact(
        format=fmt,
        precision=precision,
        path=str(path),
        sha256="",
        size_bytes=0,
        outputs=outputs,
    )
    return backend_class(backend)(md, art, Path(path), device="cpu", threads=threads)


def predict(
    be: Backend, images: ImageSet, *, wrap: Wrap | None = None, desc: str = "eval"
) -> np.ndarray:
    """Logits ``(N, C)`` one image at a time (batch 1, as on the device)."""
    it: Any = images.arrays
    if wrap is not None:
        it = wrap(it, total=len(images), desc=desc)
    return np.concatenate([be.infer(x)["logits"] for x in it]).astype(np.float64)


def accuracy_report(logits: np.ndarray, images: ImageSet) -> dict[str, Any]:
    return classification_report(images.labels, softmax(logits), images.classes)


def compare(fp32_logits: np.ndarray, int8_logits: np.ndarray, images: ImageSet) -> dict[str, float]:
    """fp32 and int8 accuracy, top-1 agreement and the drop in points."""
    a32 = accuracy_report(fp32_logits, images)["accuracy"]
    a8 = accuracy_report(int8_logits, images)["accuracy"]
    agree = float(np.mean(fp32_logits.argmax(1) == int8_logits.argmax(1)))
    return {
        "fp32_accuracy": a32,
        "int8_accuracy": a8,
        "agreement": agree,
        "drop": round(100.0 * (a32 - a8), 6),
    }


# -- the greedy fallback --------------------------------------------------------------------
def fallback_schedule(n_nodes: int, fallback_limit: float, max_attempts: int) -> list[int]:
    """How many ranked layers to keep in float at each attempt: 0, 1, 2, 4, ..., the cap."""
    cap = int(math.floor(max(0.0, min(1.0, fallback_limit)) * n_nodes))
    steps = [0]
    k = 1
    while k < cap:
        steps.append(k)
        k *= 2
    if cap > 0:
        steps.append(cap)
    if len(steps) > max_attempts:  # keep the start and the cap, thin the middle
        steps = steps[: max(1, max_attempts - 1)] + [cap]
    return steps


def rank_layers(errors: dict[str, float], skip: Sequence[str] = ()) -> list[tuple[str, float]]:
    """Layers by the error their quantization adds, most sensitive first (ties: name)."""
    s = set(skip)
    return sorted(((n, e) for n, e in errors.items() if n not in s), key=lambda t: (-t[1], t[0]))


def run_guard(
    q: Quantizer,
    md: ModelDir,
    *,
    validation: ImageSet,
    fp32_logits: np.ndarray,
    rank_samples: Sequence[np.ndarray],
    max_drop: float,
    min_agreement: float | None = None,
    exclude: Sequence[str] = (),
    fallback_limit: float = 0.5,
    max_attempts: int = 8,
    threads: int | None = None,
    outputs: tuple[str, ...] = ("logits",),
    wrap: Wrap | None = None,
    say: Callable[[str], None] = lambda s: None,
) -> GuardResult:
    """Quantize, measure, and fall back greedily until the drop fits (or give up)."""
    fp32_acc = accuracy_report(fp32_logits, validation)["accuracy"]
    res = GuardResult(
        backend=q.backend,
        variant=q.variant,
        accepted=False,
        reason="",
        n=len(validation),
        fp32_accuracy=fp32_acc,
    )
    user = list(exclude)
    pool = [n for n in q.nodes() if n not in set(user)]
    schedule = (
        [0] if q.restores_accuracy else fallback_schedule(len(pool), fallback_limit, max_attempts)
    )
    first: Path | None = None
    for k in schedule:
        if k > 0 and not res.ranking:
            assert first is not None
            res.ranking = rank_layers(q.layer_errors(first, rank_samples), skip=user)
            if not res.ranking:
                break  # nothing measurable to keep in float
        if first is not None:
            q.discard(first)
            first = None
        extra = [n for n, _ in res.ranking[:k]]
        excluded = user + extra
        cand = q.quantize(excluded)
        try:
            be = open_model(
                md, q.backend, q.fmt, cand, precision="int8", threads=threads, outputs=outputs
            )
            try:
                logits = predict(be, validation, wrap=wrap, desc=f"{q.backend} int8")
            finally:
                be.close()
        except BaseException:
            q.discard(cand)
            raise
        m = compare(fp32_logits, logits, validation)
        ok = m["drop"] <= max_drop + 1e-9 and (
            min_agreement is None or 100.0 * m["agreement"] >= min_agreement - 1e-9
        )
        res.attempts.append(
            Attempt(
                excluded=excluded,
                fallback=len(extra),
                int8_accuracy=m["int8_accuracy"],
                agreement=m["agreement"],
                drop=m["drop"],
                accepted=ok,
            )
        )
        res.int8_accuracy, res.agreement, res.drop = (
            m["int8_accuracy"],
            m["agreement"],
            m["drop"],
        )
        res.excluded = excluded
        what = f"{q.backend} {q.variant}: int8 {100 * m['int8_accuracy']:.1f}% vs fp32 "
        what += f"{100 * fp32_acc:.1f}% (drop {m['drop']:+.2f} pts, agreement "
        what += f"{100 * m['agreement']:.1f}%, {len(excluded)} layer(s) in float)"
        if ok:
            res.accepted, res.candidate = True, cand
            res.int8_report = accuracy_report(logits, validation)
            res.reason = "drop within the guard"
            say(what + " -> accepted")
            return res
        say(what + " -> over the guard")
        if k == 0 and len(schedule) > 1:
            first = cand  # kept for the per-layer error ranking
        else:
            q.discard(cand)
    if first is not None:
        q.discard(first)
    why = f"drop {res.drop:+.2f} points > max {max_drop:g}"
    if min_agreement is not None and 100.0 * res.agreement < min_agreement:
        why = f"top-1 agreement {100 * res.agreement:.1f}% < {min_agreement:g}%"
    if q.restores_accuracy:
        res.reason = f"{why} after NNCF accuracy control"
    elif len(schedule) == 1 and fallback_limit <= 0:
        res.reason = f"{why}; no layer left to keep in float (fallback limit 0)"
    elif len(schedule) == 1:
        res.reason = f"{why}; no layer left to keep in float ({len(pool)} compute layers)"
    else:
        res.reason = (
            f"{why} even with {res.attempts[-1].fallback} of {len(pool)} layers kept in float "
            f"(fallback limit {fallback_limit:g}, {len(res.attempts)} attempts)"
        )
    return res


# -- latency --------------------------------------------------------------------------------
def measure_latency(
    models: dict[str, Backend],
    x: np.ndarray,
    *,
    rounds: int = 5,
    runs: int = 20,
    warmup: int = 10,
) -> dict[str, float]:
    """Median ms per inference of each opened model, measured interleaved in rounds.

    Interleaving (fp32, int8, fp32, int8, ...) makes a noisy shared machine hit every
    model alike instead of biasing whichever ran during a busy second.
    """
    for be in models.values():
        for _ in range(warmup):
            be.infer(x)
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for k, be in models.items():
            for _ in range(runs):
                t0 = time.perf_counter()
                be.infer(x)
                times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}
