"""Named evaluation collections: image sets from several sources in one ``eval`` run.

Each ``--data DIR`` starts a collection; ``--splits``, ``--folds``, ``--exclude`` and
``--name`` given after it apply to it (given before the first ``--data``, to the first).
A split file with a ``collection`` column (``scripts/combine_splits.py``: MSID and msld2-dev
in one file) becomes one collection per value, so every figure stays split by collection.
Images whose class the model does not know (msld2-dev's Cowpox and HFMD for a 4-class
model) are kept with class index -1: the 4-class figures leave them out, the screening
view counts them as "not the positive class".
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..cliopts import ints
from ..errors import DataError, UsageError
from ..model.dataset import IMAGE_SUFFIXES, match_class, read_image, read_splits

TEST_FOLD = 4  # MSID's and msld2-dev's reported test fold: nothing is chosen on it


@dataclass
class CollectionSpec:
    data: str | None = None  # None: the bundled held-out sample
    splits: str | None = None
    folds: list[int] | None = None
    exclude: str | None = None
    name: str | None = None


class CollectionAction(argparse.Action):
    """Collects ``--data`` and its per-collection options, in command-line order."""

    def __call__(self, parser: Any, ns: argparse.Namespace, value: Any, opt: Any = None) -> None:
        specs: list[CollectionSpec] = list(getattr(ns, "collections", None) or [])
        key = self.dest
        if key == "data":
            if specs and specs[-1].data is None:
                specs[-1].data = value  # options came first: they belong to the first --data
            else:
                specs.append(CollectionSpec(data=value))
        else:
            if not specs:
                specs.append(CollectionSpec())
            if getattr(specs[-1], key) is not None:
                parser.error(f"--{key} given twice for one --data (start another with --data)")
            setattr(specs[-1], key, value)
        ns.collections = specs


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.set_defaults(collections=[])
    p.add_argument(
        "--data",
        action=CollectionAction,
        metavar="DIR",
        help="an image folder (one sub-folder per class) or, with --splits, a split file's "
        "image root; repeat for several collections (default: the bundled MSID fold-4 sample)",
    )
    p.add_argument(
        "--splits",
        action=CollectionAction,
        metavar="CSV",
        help="split file (path,label,group,fold) of the preceding --data",
    )
    p.add_argument(
        "--folds",
        action=CollectionAction,
        type=ints,
        metavar="LIST",
        help="folds of the preceding --data to evaluate (comma list; default 4; needs a "
        "split file: --splits, or DIR/splits.csv)",
    )
    p.add_argument(
        "--exclude",
        action=CollectionAction,
        metavar="CSV",
        help="drop the images this CSV names (a path relative to DIR, or a file name, in "
        "any column), e.g. models/msld2-msid-overlap.csv; the count dropped is reported",
    )
    p.add_argument("--name", action=CollectionAction, help="name of the preceding collection")


@dataclass
class Collection:
    name: str
    root: Path
    description: str  # where the images came from, for the report
    classes: list[str]  # the model's classes
    items: list[tuple[Path, str, int]] = field(default_factory=list)  # path, label, index|-1
    folds: list[int] = field(default_factory=list)
    excluded: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def unseen(self) -> list[str]:
        """Labels present here that the model has no class for."""
        return sorted({lab for _, lab, y in self.items if y < 0})

    def iter_images(self) -> Iterator[tuple[Path, str, int, np.ndarray | None]]:
        """Yield (path, label, index, image or None); unreadable images are counted."""
        for p, lab, y in self.items:
            try:
                yield p, lab, y, read_image(p)
            except DataError as e:
                self.skipped.append((str(p), str(e)))
                yield p, lab, y, None


def parse_folds(folds: list[int] | None) -> list[int]:
    return sorted(set(folds or ())) or [TEST_FOLD]


def read_exclude(path: str) -> set[str]:
    """Every cell of a CSV (header included), normalised to forward slashes."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return {c.strip().replace("\\", "/") for row in csv.reader(f) for c in row if c}
    except OSError as e:
        raise DataError(f"--exclude {path}: {e.strerror or e}") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"--exclude {path}: not a readable CSV ({e})") from None


def load_all(
    spec: CollectionSpec, classes: Sequence[str], default_root: Path, *, split: bool = True
) -> list[Collection]:
    """One spec as its collections: one per ``collection`` value of its split file (named
    ``VALUE-foldN``, or ``NAME/VALUE`` with ``--name``), else the one ``load`` gives."""
    splits = _split_file(spec, Path(spec.data) if spec.data else default_root)
    folds = parse_folds(spec.folds)
    rows = read_splits(splits) if splits else []
    values = sorted({r.collection for r in rows if r.fold in folds})
    if not split or len(values) < 2 or "" in values:
        return [load(spec, classes, default_root)]
    return [load(spec, classes, default_root, collection=v) for v in values]


def _split_file(spec: CollectionSpec, root: Path) -> str | None:
    """``--splits``, else ``root/splits.csv`` when ``--folds`` asks for one and it exists."""
    if spec.splits is not None:
        return spec.splits
    if spec.folds is not None and (root / "splits.csv").is_file():
        return str(root / "splits.csv")
    return None


def load(
    spec: CollectionSpec,
    classes: Sequence[str],
    default_root: Path,
    *,
    collection: str | None = None,
) -> Collection:
    """Resolve one spec into labelled image paths (nothing decoded yet); ``collection``:
    only the split file's rows of that ``collection`` value."""
    root = Path(spec.data) if spec.data else default_root
    if not root.is_dir():
        raise DataError(f"data directory {root} does not exist")
    splits = _split_file(spec, root)
    if splits is None and spec.folds is not None:
        raise UsageError(f"--folds needs --splits (no splits.csv in {root})")
    items: list[tuple[Path, str, int]] = []
    skipped: list[tuple[str, str]] = []
    folds: list[int] = []
    if splits:
        folds = parse_folds(spec.folds)
        for r in read_splits(splits):
            if r.fold in folds and (collection is None or r.collection == collection):
                y = match_class(r.label, classes)
                items.append((root / r.path, classes[y] if y is not None else r.label, _i(y)))
    else:
        for sub in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")):
            y = match_class(sub.name, classes)
            label = classes[y] if y is not None else sub.name
            for f in sorted(sub.rglob("*")):
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                    items.append((f, label, _i(y)))
                elif f.is_file() and not f.name.startswith("."):
                    skipped.append((str(f), "not an image file suffix"))
    excluded = 0
    if spec.exclude:
        drop = read_exclude(spec.exclude)
        keep = [it for it in items if not _named(it[0], root, drop)]
        excluded, items = len(items) - len(keep), keep
    if not items:
        raise DataError(f"{root} holds no images" + (f" in folds {folds}" if folds else ""))
    where = f"{root} folds {','.join(map(str, folds))}" if folds else str(root)
    if collection:
        where += f" (collection {collection})"
    suffix = f"-fold{'+'.join(map(str, folds))}" if folds else ""
    if collection:
        name = f"{spec.name}/{collection}" if spec.name else collection + suffix
    else:
        name = spec.name or root.resolve().name + suffix
    c = Collection(name, root, where, list(classes), items, folds, excluded, skipped)
    return c


def _i(y: int | None) -> int:
    return -1 if y is None else y


def _named(p: Path, root: Path, names: set[str]) -> bool:
    try:
        rel = p.relative_to(root).as_posix()
    except ValueError:
        rel = p.as_posix()
    return rel in names or p.name in names or p.as_posix() in names
