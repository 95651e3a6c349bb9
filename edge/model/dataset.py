"""Reading images and labelled image folders robustly.

Field data is messy: zero-byte files, PNGs that are 16-bit, grayscale or RGBA, JPEGs with a
wrong suffix, huge photos, folders named "Monkeypox" or "MKP". Everything here decodes what
can be decoded, and counts and names what cannot, instead of raising mid-run.
"""

from __future__ import annotations

import csv
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import DataError, shown
from .imageinfo import ImageInfo, sniff

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
# What mpox-edge itself writes (explain's overlays): never counted as a photo of a data set.
OWN_OUTPUT_SUFFIXES = (".cam.png",)
# Limits, checked on the header before any decode (see imageinfo.py). A full decode costs
# about twice its array in peak RSS (measured here: 368 MB for an 8000x8000 JPEG), so
# formats OpenCV cannot decode scaled down get a byte budget; a baseline JPEG above
# REDUCE_ABOVE is decoded at 1/2, 1/4 or 1/8 scale (7 MB instead of 368 MB for that JPEG).
MAX_PIXELS = 80_000_000  # refused above this whatever the format
MAX_DECODE_BYTES = 72_000_000  # a full decode's array: 24 MP of 8-bit BGR
REDUCE_ABOVE = 16_000_000  # pixels; larger baseline JPEGs are decoded scaled down
MAX_FILE_BYTES = 128 * 1024 * 1024  # read no further: not an image a kiosk takes
MIN_SIDE = 32  # pixels: a 1x1 "photo" is not something to classify

_REDUCED = {
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}
_ORIENT: dict[int, Callable[[np.ndarray], np.ndarray]] = {  # EXIF orientation -> upright
    2: lambda a: cv2.flip(a, 1),
    3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
    4: lambda a: cv2.flip(a, 0),
    5: cv2.transpose,
    6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
    7: lambda a: cv2.flip(cv2.transpose(a), -1),
    8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
}

# Folder-name aliases, matched case-insensitively, with spaces/dashes/underscores ignored.
CLASS_ALIASES: dict[str, tuple[str, ...]] = {
    "monkeypox": ("monkeypox", "mpox", "mkp", "monkey_pox", "mpxv"),
    "chickenpox": ("chickenpox", "varicella", "chicken_pox"),
    "measles": ("measles", "rubeola"),
    "normal": ("normal", "healthy", "others", "other"),
    "cowpox": ("cowpox",),
    "hfmd": ("hfmd", "handfootmouth", "hand_foot_mouth"),
}


def is_own_output(path: Path) -> bool:
    return path.name.lower().endswith(OWN_OUTPUT_SUFFIXES)


def _norm(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def match_class(folder: str, classes: Sequence[str]) -> int | None:
    """Index of the model class a folder name means, or None."""
    key = _norm(folder)
    for i, c in enumerate(classes):
        names = {_norm(c)}
        for canon, aliases in CLASS_ALIASES.items():
            if _norm(c) == canon or _norm(c) in {_norm(a) for a in aliases}:
                names |= {canon, *(_norm(a) for a in aliases)}
        if key in names:
            return i
    return None


def check_header(data: bytes) -> tuple[ImageInfo, int]:
    """The header's claims against the limits: (info, reduction factor) or DataError."""
    if not data:
        raise DataError("empty file")
    info = sniff(data)
    size = f"{info.width}x{info.height} {info.format}"
    if min(info.width, info.height) < MIN_SIDE:
        raise DataError(f"image too small ({size}; need at least {MIN_SIDE} px a side)")
    if info.pixels > MAX_PIXELS:
        raise DataError(f"image too large ({size}; limit {MAX_PIXELS // 1_000_000} MP)")
    factor = 1
    if info.reducible:
        while info.pixels // (factor * factor) > REDUCE_ABOVE and factor < 8:
            factor *= 2
    elif info.decoded_bytes > MAX_DECODE_BYTES:
        raise DataError(
            f"image too large to decode safely ({size}, {info.decoded_bytes // 1_000_000} MB "
            f"decoded; limit {MAX_DECODE_BYTES // 1_000_000} MB, or a baseline JPEG)"
        )
    return info, factor


def decode_image(data: bytes) -> np.ndarray:
    """Decode bytes to an upright HxWx3 uint8 BGR image; raise DataError with the reason.

    The header is checked first (format, size: nothing huge is ever allocated), large
    baseline JPEGs are decoded scaled down, and the EXIF orientation is applied.
    """
    info, factor = check_header(data)
    buf = np.frombuffer(data, np.uint8)
    img: Any
    if factor > 1:
        img = cv2.imdecode(buf, _REDUCED[factor] | cv2.IMREAD_IGNORE_ORIENTATION)
    else:  # UNCHANGED keeps 16-bit and alpha for our own conversion, and ignores EXIF
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise DataError(f"not a decodable image ({info.format} header, corrupt data)")
    if img.dtype == np.uint16:
        img = (np.asarray(img, np.uint16) >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        lo, hi = float(img.min()), float(img.max())  # float TIFF/EXR-like data: stretch
        img = ((img - lo) * (255.0 / ((hi - lo) or 1.0))).astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    elif img.shape[2] == 1:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    turn = _ORIENT.get(info.orientation)
    if turn is not None:
        img = turn(img)
    return np.ascontiguousarray(img)


def read_bytes_bounded(
    path: str | os.PathLike[str], limit: int = MAX_FILE_BYTES, deadline_s: float | None = None
) -> bytes:
    """A regular file's bytes, never more than ``limit`` nor for longer than ``deadline_s``;
    FIFOs and devices are refused without blocking (opened non-blocking, fstat first)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DataError("not a regular file (a FIFO, device or socket): not read")
        if st.st_size > limit:
            raise DataError(f"file too large ({st.st_size} bytes; limit {limit})")
        end = None if deadline_s is None else time.monotonic() + deadline_s
        parts, total = [], 0
        while total <= limit:
            block = os.read(fd, 1 << 20)
            if not block:
                break
            parts.append(block)
            total += len(block)
            if end is not None and time.monotonic() > end:
                raise DataError(f"reading took longer than {deadline_s:g} s (slow storage?)")
    finally:
        os.close(fd)
    if total > limit:  # grew while we read
        raise DataError(f"file too large (over {limit} bytes)")
    return b"".join(parts)


def read_image(path: str | os.PathLike[str], *, deadline_s: float | None = None) -> np.ndarray:
    """Read an image file as upright HxWx3 uint8 BGR (16-bit, grey, RGBA, unicode paths)."""
    p = Path(path)
    try:
        data = read_bytes_bounded(p, deadline_s=deadline_s)
    except OSError as e:
        raise DataError(f"{shown(p)}: {e.strerror or e}") from None
    except DataError as e:
        raise DataError(f"{shown(p)}: {e}") from None
    try:
        return decode_image(data)
    except DataError as e:
        raise DataError(f"{shown(p)}: {e}") from None


@dataclass
class LabelledSet:
    """Image paths with class indices, plus what was left out and why."""

    classes: list[str]
    items: list[tuple[Path, int]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    unmatched_folders: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(self.classes, 0)
        for _, y in self.items:
            out[self.classes[y]] += 1
        return out

    def iter_images(self) -> Iterator[tuple[Path, int, np.ndarray | None, str | None]]:
        """Yield (path, label, image or None, reason if unreadable); counts skips itself."""
        for p, y in self.items:
            try:
                yield p, y, read_image(p), None
            except DataError as e:
                self.skipped.append((shown(p), str(e)))
                yield p, y, None, str(e)


def scan_folder(root: str | os.PathLike[str], classes: Sequence[str]) -> LabelledSet:
    """An ImageFolder-style directory: one sub-folder per class (names matched with aliases)."""
    r = Path(root)
    if r.is_file():
        raise DataError(
            f"{r} is a file; give a folder with one sub-folder of images per class "
            f"({', '.join(classes)})"
        )
    if not r.is_dir():
        raise DataError(f"data directory {r} does not exist")
    out = LabelledSet(classes=list(classes))
    for sub in sorted(d for d in r.iterdir() if d.is_dir()):
        y = match_class(sub.name, classes)
        if y is None:
            out.unmatched_folders.append(sub.name)
            continue
        for f, why in _walk(sub):
            if why:
                out.skipped.append((shown(f), why))
            elif is_own_output(f):
                continue
            elif f.suffix.lower() in IMAGE_SUFFIXES:
                out.items.append((f, y))
            elif not f.name.startswith("."):
                out.skipped.append((shown(f), "not an image file suffix"))
    if not out.items:
        hint = (
            f" (folders that match no class: {', '.join(out.unmatched_folders)})"
            if out.unmatched_folders
            else ""
        )
        raise DataError(f"{r} holds no images in class folders {list(classes)}{hint}")
    return out


def _walk(top: Path) -> Iterator[tuple[Path, str]]:
    """Files under ``top`` in name order as (path, "") or (path, why it is skipped).

    Symlinked folders are followed once (a loop back to a folder already walked is reported,
    not followed for ever); dangling or looping links and special files are reported too.
    """
    seen: set[tuple[int, int]] = set()

    def walk(d: Path) -> Iterator[tuple[Path, str]]:
        try:
            st = d.stat()
        except OSError as e:
            yield d, f"unreadable folder ({e.strerror or e})"
            return
        if (st.st_dev, st.st_ino) in seen:
            yield d, "symlink loop (folder already scanned): not followed"
            return
        seen.add((st.st_dev, st.st_ino))
        try:
            entries = sorted(d.iterdir())
        except OSError as e:
            yield d, f"unreadable folder ({e.strerror or e})"
            return
        for f in entries:
            try:
                mode = f.stat().st_mode
            except OSError as e:  # ELOOP, ENOENT: a link to itself or to nothing
                if not f.name.startswith("."):
                    yield f, f"broken or looping symlink ({e.strerror or e})"
                continue
            if stat.S_ISDIR(mode):
                yield from walk(f)
            elif stat.S_ISREG(mode):
                yield f, ""
            elif not f.name.startswith("."):
                yield f, "not a regular file (FIFO, device or socket)"

    yield from walk(top)


@dataclass(frozen=True)
class SplitRow:
    path: str
    label: str
    group: str
    fold: int
    collection: str = ""  # the optional ``collection`` column (scripts/combine_splits.py)


def read_splits(csv_path: str | os.PathLike[str]) -> list[SplitRow]:
    """Read a ``path,label,group,fold[,collection]`` split file such as MSID's ``splits.csv``."""
    p = Path(csv_path)
    try:
        with p.open(newline="", encoding="utf-8") as f:
            rows = [
                SplitRow(
                    r["path"],
                    r["label"],
                    r.get("group", r["path"]),
                    int(r["fold"]),
                    r.get("collection") or "",
                )
                for r in csv.DictReader(f)
            ]
    except OSError as e:
        raise DataError(f"{p}: {e.strerror or e}") from None
    except (KeyError, ValueError) as e:
        raise DataError(f"{p}: not a path,label,group,fold split file ({e})") from None
    if not rows:
        raise DataError(f"{p}: split file is empty")
    return rows


def split_set(
    root: str | os.PathLike[str],
    rows: Iterable[SplitRow],
    classes: Sequence[str],
    folds: Iterable[int],
) -> LabelledSet:
    """The images of the given folds, labelled by the split file (aliases allowed)."""
    keep = set(folds)
    out = LabelledSet(classes=list(classes))
    for r in rows:
        if r.fold not in keep:
            continue
        y = match_class(r.label, classes)
        if y is None:
            out.skipped.append((r.path, f"label {r.label!r} matches no class"))
            continue
        out.items.append((Path(root) / r.path, y))
    if not out.items:
        raise DataError(f"no images for folds {sorted(keep)} under {root}")
    return out
