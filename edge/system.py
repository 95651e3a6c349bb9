"""System probes (memory, temperature, process start, throttling) shared by bench, the
backends and the daemon's status: one place, so bench and ``/status`` read the same thing."""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any


def rss_bytes() -> int:
    """Resident set size now (not the peak), from /proc/self/statm."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # pragma: no cover - non-Linux
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return None


def release_free_memory() -> None:
    """Hand memory the process has freed back to the OS (glibc ``malloc_trim``).

    Loading a model parses and optimises a graph whose temporaries glibc keeps in its heap
    afterwards: measured here, about 30 MB of the default model's ONNX Runtime load stayed
    resident until trimmed. Called after a model load and after bench builds its frames.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def thermal_zones() -> list[tuple[str, float]]:
    """Every readable ``/sys/class/thermal`` zone in order: (type, degrees C). The one probe
    behind ``cpu_temp_c`` (``/status``, metrics) and ``thermal`` (bench)."""
    out = []
    for z in sorted(Path("/sys/class/thermal").glob("thermal_zone*")):
        try:
            kind = (z / "type").read_text().strip()
            out.append((kind, int((z / "temp").read_text().strip()) / 1000.0))
        except (OSError, ValueError):
            continue
    return out


def cpu_temp_c() -> float | None:
    """The SoC temperature: Pi ``cpu-thermal``, Jetson ``CPU-therm``, else the first zone."""
    zones = thermal_zones()
    for kind, value in zones:
        if "cpu" in kind.lower() or "soc" in kind.lower():
            return value
    return zones[0][1] if zones else None


def process_start_time() -> float | None:
    """Wall-clock time this process started (Linux), for an honest cold-start figure."""
    try:
        stat = Path("/proc/self/stat").read_text()
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
        btime = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime")
        )
        return btime + start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, StopIteration, IndexError):
        return None


def thermal() -> dict[str, Any]:
    """bench's record: every zone (``cpu_temp_c``) and, on a Pi, ``vcgencmd get_throttled``."""
    res: dict[str, Any] = {"cpu_temp_c": dict(thermal_zones()) or None}
    if shutil.which("vcgencmd"):
        try:
            r = subprocess.run(
                ["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=2
            )
            res["throttled"] = r.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return res
