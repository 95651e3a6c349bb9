"""Reading images and labelled image folders robustly.

Field data is messy: zero-byte files, PNGs that are 16-bit, grayscale or RGBA, JPEGs with a
wrong suffix, huge photos, folders named "Monkeypox" or "MKP". Everything here decodes what
can be decoded, and counts and names what cannot, instead of raising mid-run.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
# What mpox-edge itself writes (explain's overlays): never counted as a photo of a data set.
OWN_OUTPUT_SUFFIXES = (".cam.png",)
MAX_PIXELS = 80_000_000  # beyond this a decode would take seconds and hundreds of MB

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


def decode_image(data: bytes) -> np.ndarray:
    """Decode bytes to an HxWx3 uint8 BGR image; raise DataError with the reason."""
    if not data:
        raise DataError("empty file")
    buf = np.frombuffer(data, np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataError("not a decodable image")
    if img.shape[0] * img.shape[1] > MAX_PIXELS:
        raise DataError(f"image too large ({img.shape[1]}x{img.shape[0]})")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    elif img.shape[2] == 1:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(img)


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as HxWx3 uint8 BGR (handles 16-bit, grey, RGBA, unicode paths)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise DataError(f"{p}: {e.strerror or e}") from None
    try:
        return decode_image(data)
    except DataError as e:
        raise DataError(f"{p}: {e}") from None


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
                self.skipped.append((str(p), str(e)))
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
        for f in sorted(sub.rglob("*")):
            if f.is_file() and not is_own_output(f):
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    out.items.append((f, y))
                elif not f.name.startswith("."):
                    out.skipped.append((str(f), "not an image file suffix"))
    if not out.items:
        hint = (
            f" (folders that match no class: {', '.join(out.unmatched_folders)})"
            if out.unmatched_folders
            else ""
        )
        raise DataError(f"{r} holds no images in class folders {list(classes)}{hint}")
    return out


@dataclass(frozen=True)
class SplitRow:
    path: str
    label: str
    group: str
    fold: int


def read_splits(csv_path: str | os.PathLike[str]) -> list[SplitRow]:
    """Read a ``path,label,group,fold`` split file such as MSID's ``splits.csv``."""
    p = Path(csv_path)
    try:
        with p.open(newline="", encoding="utf-8") as f:
            rows = [
                SplitRow(r["path"], r["label"], r.get("group", r["path"]), int(r["fold"]))
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
