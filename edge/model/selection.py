"""``auto``: pick the fastest available (backend, device, precision) by measuring it.

Peers use a fixed priority list; which runtime wins depends on the model, the CPU and the
precision (int8 is slower than fp32 for some models), so we time every candidate on the
real model and cache the decision keyed by the model's sha256, a hardware fingerprint and
the runtime versions: a kiosk measures once, not at every start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import statistics
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, IntegrityError, MpoxEdgeError
from .backends import REGISTRY, backend_class, load_backend
from .manifest import ModelDir, atomic_write_text

log = logging.getLogger("mpox_edge.select")
DEFAULT_MAX_DROP = 1.0  # accuracy points an int8 artifact may lose against fp32


def cache_dir_default(state_dir: str | None = None) -> Path:
    """Where ``auto`` keeps its choice, one place for bench and serve: $MPOX_EDGE_CACHE, else
    serve's state directory (``state_dir``, by default systemd's StateDirectory, else
    $XDG_STATE_HOME/mpox-edge). bench and serve print the file they used."""
    if os.environ.get("MPOX_EDGE_CACHE"):
        return Path(os.environ["MPOX_EDGE_CACHE"])
    return Path(state_dir or default_state_dir())


def default_state_dir() -> str:
    """systemd's StateDirectory= when run as the service, else a per-user directory."""
    if os.environ.get("STATE_DIRECTORY"):
        return os.environ["STATE_DIRECTORY"].split(":")[0]
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "mpox-edge")


def hardware_fingerprint() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model", "Hardware")):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.machine()}|{cpu}|{os.cpu_count()}"


def candidates(md: ModelDir, *, max_drop: float = DEFAULT_MAX_DROP) -> list[dict[str, Any]]:
    """Every (backend, device, precision) the manifest and this machine allow, with verdicts."""
    out = []
    for name in REGISTRY:
        cls = backend_class(name)
        pr = cls.probe()
        if not pr.available:
            out.append(
                {"backend": name, "device": "-", "precision": "-", "ok": False, "reason": pr.reason}
            )
            continue
        for art in md.manifest.artifacts:
            if art.format not in cls.formats():
                continue
            # OpenVINO reads ONNX too; prefer its own IR when both exist for a precision.
            if art.format != cls.formats()[0] and md.manifest.artifact(
                cls.formats()[0], art.precision
            ):
                continue
            for dev in pr.devices:
                if dev == "auto":
                    continue
                c = {
                    "backend": name,
                    "device": dev,
                    "precision": art.precision,
                    "artifact": art.path,
                    "ok": True,
                    "reason": "",
                }
                if art.precision == "int8":
                    rec = art.int8
                    drop = rec.accuracy_drop if rec else None
                    measured_on = (rec.measured_backend if rec else None) or name
                    if measured_on != name:
                        c.update(ok=False, reason=f"int8 drop was measured on {measured_on}")
                    elif drop is None:
                        c.update(ok=False, reason="int8 accuracy drop was never measured")
                    elif drop > max_drop:
                        c.update(ok=False, reason=f"int8 loses {drop:.2f} points (> {max_drop})")
                out.append(c)
    return out


def _versions() -> dict[str, str]:
    """Installed runtime versions, from package metadata: importing OpenVINO just to key the
    cache cost a kiosk that runs ONNX Runtime 33 MB of RSS (measured here)."""
    vs = {}
    for name in REGISTRY:
        vs[name] = "missing"
        for dist in backend_class(name).distributions:
            try:
                vs[name] = f"{dist} {metadata.version(dist)}"
                break
            except metadata.PackageNotFoundError:
                continue
    return vs


def time_candidates(
    md: ModelDir,
    cands: list[dict[str, Any]],
    x: np.ndarray,
    *,
    threads: int | None,
    warmup: int,
    runs: int,
    block: int = 25,
    settle: int = 5,
    backend_options: dict[str, Any] | None = None,
) -> dict[int, float]:
    """Median inference latency (ms) per candidate index, timed round-robin.

    All candidates are loaded and warmed first, then timed in turn in blocks, so a burst of
    load from another process hits every candidate alike instead of biasing whichever
    happened to be timed during it. Each block starts with ``settle`` untimed runs and is
    long enough that the previous runtime's thread pool (still spinning, or pinned to the
    same cores) has gone quiet: measured here with three candidates, blocks of 10 after 2
    settle runs timed OpenVINO at 1.5-1.9x its time alone; blocks of 25 after 5 match the
    candidates timed alone within noise.
    """
    loaded = {}
    try:
        for i, c in enumerate(cands):
            loaded[i] = load_backend(
                md,
                c["backend"],
                device=c["device"],
                precision=c["precision"],
                threads=threads,
                options=backend_options,
            )
            for _ in range(warmup):
                loaded[i].infer(x)
        ts: dict[int, list[float]] = {i: [] for i in loaded}
        while any(len(v) < runs for v in ts.values()):
            for i, be in loaded.items():
                for _ in range(settle):
                    be.infer(x)
                for _ in range(min(block, runs - len(ts[i]))):
                    t0 = time.perf_counter()
                    be.infer(x)
                    ts[i].append((time.perf_counter() - t0) * 1e3)
        return {i: statistics.median(v) for i, v in ts.items()}
    finally:
        for be in loaded.values():
            be.close()


def verify_all(md: ModelDir, *, allow_tampered: bool = False, log: Any = None) -> list[str]:
    """Check every artifact's sha256 before anything is chosen or served.

    ``auto`` used to reject a tampered artifact as "cannot load" and serve another one with
    exit 0. A mismatch anywhere in the directory now refuses the model; an operator who
    opts in (``allow_tampered``) gets the untouched artifacts, and the problems back, to
    show loudly (log, /status, /metrics). Returns the problems (empty: all intact).
    """
    problems = []
    for art in md.manifest.artifacts:
        try:
            md.verify(art)
        except IntegrityError as e:
            problems.append(str(e))
    if problems and not allow_tampered:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise IntegrityError(
            f"{problems[0]}{more}; refusing the whole model directory "
            "(to serve its intact artifacts anyway, set [model] allow_tampered = true)"
        )
    for p in problems:  # a warning whatever ``log`` is: this must reach the journal
        globals()["log"].warning("TAMPERED MODEL, serving its intact artifacts anyway: %s", p)
        if log is not None:
            log(f"TAMPERED MODEL: {p}")
    return problems


def select_backend(
    md: ModelDir,
    *,
    threads: int | None = None,
    reselect: bool = False,
    cache_dir: str | Path | None = None,
    max_drop: float = DEFAULT_MAX_DROP,
    warmup: int = 10,
    runs: int = 100,
    log: Any = None,
    backend_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Measure (or recall) the fastest candidate; returns the decision with every timing."""
    say = log or globals()["log"].info
    arts = sorted(a.sha256 for a in md.manifest.artifacts)
    key_src = json.dumps(
        {
            "model": arts,
            "hw": hardware_fingerprint(),
            "versions": _versions(),
            "threads": threads,
            "max_drop": max_drop,
            "method": 2,  # 2: longer blocks; choices cached by the old timing are redone
        },
        sort_keys=True,
    )
    key = hashlib.sha256(key_src.encode()).hexdigest()[:24]
    cache = Path(cache_dir) if cache_dir else cache_dir_default()
    cache_file = cache / f"selection-{key}.json"
    if not reselect and cache_file.is_file():
        try:
            decision = json.loads(cache_file.read_text())
            decision["cached"] = True
            decision["cache_file"] = str(cache_file)
            say(
                f"auto: cached choice {decision['backend']}/{decision['device']}/"
                f"{decision['precision']} ({cache_file})"
            )
            return decision
        except (OSError, json.JSONDecodeError, KeyError):
            pass  # unreadable cache: measure again
    spec = md.manifest.preprocess
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, spec.input_size, spec.input_size)).astype(np.float32)
    cands = candidates(md, max_drop=max_drop)
    runnable = []
    for c in cands:
        if not c["ok"]:
            say(f"auto: reject {c['backend']}/{c['device']}/{c['precision']}: {c['reason']}")
            continue
        try:  # a candidate that cannot even load is rejected with its reason
            time_candidates(
                md, [c], x, threads=threads, warmup=1, runs=1, backend_options=backend_options
            )
            runnable.append(c)
        except MpoxEdgeError as e:
            c.update(ok=False, reason=str(e))
            say(f"auto: reject {c['backend']}/{c['device']}/{c['precision']}: {e}")
    medians = time_candidates(
        md, runnable, x, threads=threads, warmup=warmup, runs=runs, backend_options=backend_options
    )
    for i, c in enumerate(runnable):
        c["median_ms"] = medians[i]
        say(f"auto: {c['backend']}/{c['device']}/{c['precision']}: median {medians[i]:.3f} ms")
    timed = [c for c in cands if c["ok"] and "median_ms" in c]
    if not timed and not any(c["device"] != "-" for c in cands):
        from .backends.ort import ORT_HINT

        raise BackendUnavailableError(f"no inference runtime is installed here: {ORT_HINT}")
    if not timed:
        raise BackendUnavailableError(
            "no backend can run this model here: "
            + "; ".join(f"{c['backend']}: {c['reason']}" for c in cands)
        )
    best = min(timed, key=lambda c: c["median_ms"])
    for c in timed:
        c["reason"] = (
            "fastest" if c is best else f"{c['median_ms'] / best['median_ms']:.2f}x slower"
        )
    decision = {
        "backend": best["backend"],
        "device": best["device"],
        "precision": best["precision"],
        "median_ms": best["median_ms"],
        "candidates": cands,
        "key": key,
        "threads": threads,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cached": False,
    }
    try:
        cache.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cache_file, json.dumps(decision, indent=2))
        decision["cache_file"] = str(cache_file)
        say(
            f"auto: chose {best['backend']}/{best['device']}/{best['precision']}, "
            f"cached in {cache_file}"
        )
    except OSError as e:
        say(f"auto: could not cache the choice in {cache}: {e}")
    return decision
