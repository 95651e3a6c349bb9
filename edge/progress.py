"""A dependency-free progress bar on stderr (the device has no tqdm); silent when not a TTY."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Sized
from typing import TypeVar

T = TypeVar("T")


def progress(
    it: Iterable[T], *, total: int | None = None, desc: str = "", enabled: bool | None = None
) -> Iterator[T]:
    on = sys.stderr.isatty() if enabled is None else enabled
    if not on:
        yield from it
        return
    if total is None and isinstance(it, Sized):
        total = len(it)
    t0 = last = time.monotonic()
    i = 0
    for i, x in enumerate(it, 1):
        yield x
        now = time.monotonic()
        if now - last > 0.1 or i == total:
            last = now
            rate = i / max(now - t0, 1e-9)
            if total:
                n = int(30 * i / total)
                bar = "#" * n + "-" * (30 - n)
                sys.stderr.write(f"\r{desc} [{bar}] {i}/{total} {rate:6.1f}/s")
            else:
                sys.stderr.write(f"\r{desc} {i} {rate:6.1f}/s")
            sys.stderr.flush()
    if i:
        sys.stderr.write("\n")
        sys.stderr.flush()
