"""The images one calibration run shares across backends, loaded and checked once.

Calibration images (refused when empty, too few, missing a class or noise-like), the
guard's validation images and the report-only test images, from ``sets.py``'s choice,
turned into tensors by the runtime's own preprocessing (``reader.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mpox_edge.edge.errors import CalibrationError
from mpox_edge.edge.model.manifest import ModelDir

from .config import CalibrationConfig
from .reader import CalibrationReader, ImageSet, SetCheck, check_calibration_set, load_images
from .sets import Sets, resolve_sets

Say = Callable[[str], None]


class RunInputs:
    """The images and settings every backend of one run shares."""

    def __init__(self, md: ModelDir, cfg: CalibrationConfig, wrap: Any, say: Say) -> None:
        self.md, self.cfg, self.wrap, self.say = md, cfg, wrap, say
        man, d = md.manifest, cfg.data
        self.sets: Sets = resolve_sets(
            man.classes,
            d.data,
            splits=d.splits,
            calib_folds=list(d.calib_folds),
            val_folds=list(d.val_folds),
            val_data=d.val_data,
            test_folds=list(d.test_folds),
            test_data=d.test_data,
        )
        pp = man.preprocess
        self.calib: ImageSet = load_images(
            self.sets.calib, pp, limit=d.subset_size, wrap=wrap, desc="calibration images"
        )
        self.check: SetCheck = check_calibration_set(self.calib, allow_synthetic=d.allow_synthetic)
        self.val: ImageSet = load_images(self.sets.val, pp, wrap=wrap, desc="validation images")
        if not len(self.val):
            raise CalibrationError("the validation set has no readable images")
        self.test: ImageSet | None = (
            load_images(self.sets.test, pp, wrap=wrap, desc="test images")
            if self.sets.test is not None
            else None
        )
        self.reader = CalibrationReader(self.calib)
        self.reader.progress = wrap

    def warnings(self) -> list[str]:
        out = self.sets.warnings + self.check.warnings
        if self.cfg.data.allow_synthetic and self.check.synthetic:
            out.append(
                f"{len(self.check.synthetic)} synthetic-looking calibration images accepted "
                "(--allow-synthetic, recorded in the manifest)"
            )
        vcounts = self.val.counts()
        if any(k == 0 for k in vcounts.values()):
            out.append(
                "the validation set lacks class(es) "
                + ", ".join(c for c, k in vcounts.items() if k == 0)
                + "; the drop is measured on the others only"
            )
        if len(self.val) < 100:
            out.append(
                f"the validation set has {len(self.val)} images: one flipped prediction moves "
                f"the accuracy by {100 / len(self.val):.2f} points"
            )
        return out


def calib_summary(run: RunInputs) -> dict[str, Any]:
    c = run.check
    return {
        "n": len(run.calib),
        "per_class": c.counts,
        "source": run.sets.calib_source,
        "distinct": c.distinct,
    }
