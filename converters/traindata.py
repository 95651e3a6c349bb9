"""Training data: labelled images in memory, leak-free folds, and the augmenting Dataset.

MSID is 770 images of 224x224 (about 115 MB decoded), so every image is decoded once with
``edge.dataset.read_image`` and kept; an epoch then costs only augmentation and the model.
Without a split file, folds are made here the way MSID's ``splits.csv`` was made: images
whose 8x8 average hashes differ by <= 8 bits are grouped (near-duplicates, e.g. one photo
re-cropped) and whole groups are dealt to folds per class, so no near-duplicate straddles
train and validation.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from mpox_edge.edge.errors import DataError
from mpox_edge.edge.model.dataset import read_image, read_splits, scan_folder, split_set
from mpox_edge.edge.model.manifest import Preprocess
from mpox_edge.edge.model.preprocess import preprocess

from .augment import AugmentConfig, augment


@dataclass
class Images:
    """Decoded uint8 BGR images with labels and their paths (in split-file order)."""

    paths: list[Path]
    labels: np.ndarray
    images: list[np.ndarray]
    skipped: list[tuple[str, str]]


def load_images(items: Sequence[tuple[Path, int]]) -> Images:
    """Decode every image once; unreadable files are listed, not fatal."""
    paths, labels, imgs, skipped = [], [], [], []
    for p, y in items:
        try:
            imgs.append(read_image(p))
        except DataError as e:
            skipped.append((str(p), str(e)))
            continue
        paths.append(Path(p))
        labels.append(y)
    return Images(paths, np.asarray(labels, np.int64), imgs, skipped)


def ahash(img: np.ndarray) -> int:
    """8x8 average hash (64 bits): robust to resizing and mild recompression."""
    g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(g, (8, 8), interpolation=cv2.INTER_AREA).astype(np.float32)
    bits = (small > small.mean()).ravel()
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def group_near_duplicates(hashes: Sequence[int], *, max_distance: int = 8) -> list[int]:
    """Group ids by union-find over pairs with Hamming distance <= max_distance."""
    n = len(hashes)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    h = np.asarray(hashes, dtype=np.uint64)
    for i in range(n):
        x = np.bitwise_xor(h[i + 1 :], h[i])
        dist = np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
        for j in np.nonzero(dist <= max_distance)[0]:
            a, b = find(i), find(i + 1 + int(j))
            if a != b:
                parent[max(a, b)] = min(a, b)
    roots = [find(i) for i in range(n)]
    ids = {r: k for k, r in enumerate(dict.fromkeys(roots))}
    return [ids[r] for r in roots]


def grouped_folds(
    labels: Sequence[int], groups: Sequence[int], *, n_folds: int, seed: int
) -> list[int]:
    """Stratified group k-fold: each group (largest first) goes to the fold that has fewest
    images of that group's majority label, ties broken by fold size then a seeded shuffle."""
    rng = np.random.default_rng(seed)
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    order = list(members)
    rng.shuffle(order)
    order.sort(key=lambda g: -len(members[g]))  # stable: shuffled within equal sizes
    per_label = np.zeros((n_folds, max(labels) + 1), np.int64)
    size = np.zeros(n_folds, np.int64)
    fold = [0] * len(labels)
    for g in order:
        idx = members[g]
        y = Counter(labels[i] for i in idx).most_common(1)[0][0]
        f = min(range(n_folds), key=lambda k: (per_label[k, y], size[k]))
        for i in idx:
            fold[i] = f
            per_label[f, labels[i]] += 1
        size[f] += len(idx)
    return fold


def make_split_rows(
    root: str | os.PathLike[str], classes: Sequence[str], *, n_folds: int = 5, seed: int = 0
) -> list[dict[str, Any]]:
    """A ``path,label,group,fold`` table for an image folder without a split file."""
    ls = scan_folder(root, classes)
    data = load_images(ls.items)
    if len(data.images) < n_folds:
        raise DataError(f"{root}: {len(data.images)} readable images, fewer than {n_folds} folds")
    groups = group_near_duplicates([ahash(im) for im in data.images])
    folds = grouped_folds(data.labels.tolist(), groups, n_folds=n_folds, seed=seed)
    return [
        {
            "path": p.relative_to(root).as_posix(),
            "label": classes[int(y)],
            "group": g,
            "fold": f,
        }
        for p, y, g, f in zip(data.paths, data.labels, groups, folds, strict=True)
    ]


def write_split_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    import csv

    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["path", "label", "group", "fold"])
        w.writeheader()
        w.writerows(rows)


def resolve_splits(
    data: str, classes: Sequence[str], *, out: str, splits: str | None, seed: int
) -> str:
    """The split file to use; without one, write a grouped stratified split beside ``out``
    (``model.pt`` -> ``model.splits.csv``) so evaluation can find the untouched fold 4."""
    if splits:
        return splits
    path = Path(out).with_suffix(".splits.csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_split_rows(path, make_split_rows(data, classes, n_folds=5, seed=seed))
    print(f"wrote a near-duplicate-grouped 5-fold split to {path}", file=sys.stderr)
    return str(path)


def fold_sets(
    root: str | os.PathLike[str],
    splits: str | os.PathLike[str],
    classes: Sequence[str],
    *,
    train_folds: Sequence[int],
    val_folds: Sequence[int],
) -> tuple[Images, Images]:
    """Decoded train and validation images for the given folds of a split file."""
    if set(train_folds) & set(val_folds):
        raise DataError(f"train folds {list(train_folds)} and val folds overlap")
    rows = read_splits(splits)
    tr = load_images(split_set(root, rows, classes, train_folds).items)
    # no validation fold asked for: a final model on all training folds
    va = load_images(split_set(root, rows, classes, val_folds).items if val_folds else [])
    for name, s in (("training", tr), ("validation", va)):
        if name == "validation" and not val_folds:
            continue
        if len(s.images) == 0:
            raise DataError(f"no readable {name} images under {root}")
    return tr, va


def fingerprint(*sets: Images) -> str:
    """sha256 over (relative name, label, pixels): changes when any training input does."""
    h = hashlib.sha256()
    for s in sets:
        for p, y, im in zip(s.paths, s.labels, s.images, strict=True):
            h.update(f"{p.parent.name}/{p.name}:{int(y)}:{im.shape}".encode())
            h.update(im.tobytes())
    return h.hexdigest()


def preprocess_all(images: Sequence[np.ndarray], spec: Preprocess) -> np.ndarray:
    """Validation/teacher inputs through the one ``preprocess`` (no augmentation)."""
    return np.concatenate([preprocess(im, spec) for im in images])


class AugmentedDataset:
    """torch Dataset of augmented, preprocessed training views.

    Each view's randomness is ``default_rng([seed, epoch, index])``, so it does not depend on
    batch order, worker count or how many images came before: resuming or re-running an
    epoch reproduces it exactly.
    """

    def __init__(
        self,
        data: Images,
        spec: Preprocess,
        *,
        seed: int,
        config: AugmentConfig | None = None,
        extra_specs: Sequence[Preprocess] = (),
    ) -> None:
        self.data, self.spec, self.seed = data, spec, seed
        self.config = config or AugmentConfig()
        self.extra_specs = list(extra_specs)  # e.g. a teacher with another input size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.data.images)

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        import torch

        rng = np.random.default_rng([self.seed, self.epoch, i])
        view = augment(
            self.data.images[i], rng=rng, out_size=self.spec.input_size, config=self.config
        )
        xs = [torch.from_numpy(preprocess(view, self.spec)[0])]
        xs += [torch.from_numpy(preprocess(view, s)[0]) for s in self.extra_specs]
        return (*xs, int(self.data.labels[i]))
