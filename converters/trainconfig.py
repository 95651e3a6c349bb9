"""The options of one ``mpox-edge train`` run, validated before any data is read.

Recorded verbatim in each checkpoint's ``train_config``, so a model says how it was made.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mpox_edge.edge.errors import UsageError

DEFAULT_CLASSES = ["Chickenpox", "Measles", "Monkeypox", "Normal"]
POSITIVE_CLASS = "Monkeypox"


@dataclass
class TrainConfig:
    """Every option of one run; recorded verbatim in the checkpoint's ``train_config``."""

    data: str
    arch: str
    out: str
    classes: list[str] = field(default_factory=lambda: list(DEFAULT_CLASSES))
    splits: str | None = None
    train_folds: list[int] = field(default_factory=lambda: [0, 1, 2])
    val_folds: list[int] = field(default_factory=lambda: [3])
    test_fold: int = 4
    epochs: int = 100
    patience: int = 15
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    mixup: float = 0.0
    aux_weight: float = 1.0
    seed: int = 0
    pretrained: bool = False
    freeze_backbone: bool = False
    teacher: str | None = None
    distill_alpha: float = 0.5
    distill_temp: float = 4.0
    input_size: int | None = None
    threads: int | None = None
    workers: int = 0
    augment: str = "default"  # AugmentConfig preset: default | shift
    # cosine: lr decays to 0 over --epochs, so a fixed-epoch run (no validation fold, the last
    # epoch kept, as the cross-validation models are) does not end on a noisy step
    lr_schedule: str = "constant"

    def validate(self) -> None:
        from .zoo import get_entry

        entry = get_entry(self.arch)
        bad = [
            (self.epochs < 1, "--epochs must be >= 1"),
            (self.patience < 1, "--patience must be >= 1"),
            (self.batch_size < 2, "--batch-size must be >= 2"),
            (not self.lr > 0, "--lr must be > 0"),
            (not 0 <= self.label_smoothing < 1, "--label-smoothing must be in [0, 1)"),
            (not 0 <= self.distill_alpha <= 1, "--distill-alpha must be in [0, 1]"),
            (not self.distill_temp > 0, "--distill-temp must be > 0"),
            (self.workers not in (0, 1, 2), "--workers must be 0, 1 or 2"),
            (self.augment not in ("default", "shift"), "--augment must be default or shift"),
            (
                self.lr_schedule not in ("constant", "cosine"),
                "--lr-schedule must be constant or cosine",
            ),
            (not self.train_folds, "train folds must be given"),
            (bool(set(self.train_folds) & set(self.val_folds)), "train and val folds overlap"),
            (self.test_fold in self.train_folds + self.val_folds, self._test_msg()),
            (self.pretrained and not entry.pretrained_available, self._no_weights_msg()),
            (
                len(self.classes) < 2 or len(set(self.classes)) != len(self.classes),
                "--classes needs two or more distinct names",
            ),
        ]
        for cond, msg in bad:
            if cond:
                raise UsageError(msg)

    def _no_weights_msg(self) -> str:
        return f"{self.arch} has no offline pretrained weights: drop --pretrained or use --teacher"

    def _test_msg(self) -> str:
        return (
            f"fold {self.test_fold} is the held-out test fold: never train or validate on it "
            "(--test-fold -1 if your split file has no test fold)"
        )
