"""``mpox-edge train`` host side: augmentation, grouped splits, checkpoints, a tiny real run.

Runs fast-mpoxnet at 64 px for one or two epochs on a synthetic folder (always) and on a
handful of real MSID images (skipped without ../shared), so the whole file stays well
under a minute on two cores.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from mpox_edge.converters.augment import augment
from mpox_edge.converters.traindata import ahash, group_near_duplicates, make_split_rows
from mpox_edge.edge.errors import CheckpointError, UsageError
from mpox_edge.edge.model.dataset import match_class, scan_folder

torch = pytest.importorskip("torch")

CLASSES = ["Chickenpox", "Measles", "Monkeypox", "Normal"]
ARCH = "fast-mpoxnet"


def _zoo_has(name: str) -> None:
    from mpox_edge.converters.zoo import list_models

    if name not in list_models():
        pytest.skip(f"zoo has no {name} yet")


def _blobs(rng: np.random.Generator, c: int, size: int = 48) -> np.ndarray:
    """A class-coloured image with random blobs: distinct aHash per image."""
    img = np.full((size, size, 3), 50 + 45 * c, np.uint8)
    for _ in range(6):
        x, y = (int(v) for v in rng.integers(0, size, 2))
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.circle(img, (x, y), int(rng.integers(3, 12)), col, -1)
    return img


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four class folders named by aliases, 10 images each, plus an exact duplicate."""
    root = tmp_path_factory.mktemp("synth")
    rng = np.random.default_rng(0)
    for c, name in enumerate(["chicken_pox", "Rubeola", "MKP", "healthy"]):
        d = root / name
        d.mkdir()
        for i in range(10):
            cv2.imwrite(str(d / f"{i}.png"), _blobs(rng, c))
    dup = cv2.imread(str(root / "MKP" / "0.png"))
    cv2.imwrite(str(root / "MKP" / "0_copy.png"), dup)
    return root


def test_folder_aliases_match_project_classes(synth: Path) -> None:
    assert match_class("MKP", CLASSES) == 2
    assert match_class("Monkey Pox", CLASSES) == 2
    assert match_class("chicken_pox", CLASSES) == 0
    assert match_class("Rubeola", CLASSES) == 1
    assert match_class("healthy", CLASSES) == 3
    assert scan_folder(synth, CLASSES).counts() == {
        "Chickenpox": 10,
        "Measles": 10,
        "Monkeypox": 11,
        "Normal": 10,
    }


def test_augment_is_seeded_uint8_and_varied() -> None:
    img = _blobs(np.random.default_rng(1), 2, size=100)
    a = augment(img, rng=np.random.default_rng(7), out_size=64)
    b = augment(img, rng=np.random.default_rng(7), out_size=64)
    c = augment(img, rng=np.random.default_rng(8), out_size=64)
    assert a.dtype == np.uint8 and a.shape == (64, 64, 3) and a.flags.c_contiguous
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        augment(img[..., 0], rng=np.random.default_rng(0), out_size=64)


def test_grouping_keeps_near_duplicates_together(synth: Path) -> None:
    rng = np.random.default_rng(3)
    base = _blobs(rng, 1, size=96)
    noisy = np.clip(base.astype(int) + rng.integers(-3, 4, base.shape), 0, 255).astype(np.uint8)
    small = cv2.resize(base, (64, 64))
    other = _blobs(rng, 3, size=96)
    groups = group_near_duplicates([ahash(im) for im in (base, other, noisy, small)])
    assert groups[0] == groups[2] == groups[3] != groups[1]

    rows = make_split_rows(synth, CLASSES, n_folds=5, seed=0)
    by_path = {r["path"]: r for r in rows}
    a, b = by_path["MKP/0.png"], by_path["MKP/0_copy.png"]
    assert a["group"] == b["group"] and a["fold"] == b["fold"]
    for f in range(5):  # stratified: every fold holds every class
        assert {r["label"] for r in rows if r["fold"] == f} == set(CLASSES)


def test_test_fold_is_refused() -> None:
    _zoo_has(ARCH)
    from mpox_edge.converters.trainloop import TrainConfig

    with pytest.raises(UsageError, match="held-out test fold"):
        TrainConfig(data=".", arch=ARCH, out="x.pt", val_folds=[4]).validate()


def _fit(data: Path, out: Path, **kw: object) -> dict:
    from mpox_edge.converters.trainloop import TrainConfig, fit

    cfg = TrainConfig(
        data=str(data),
        arch=ARCH,
        out=str(out),
        epochs=kw.pop("epochs", 1),  # type: ignore[arg-type]
        batch_size=8,
        input_size=64,
        threads=2,
        **kw,  # type: ignore[arg-type]
    )
    return fit(cfg, progress=False)


def test_train_writes_checkpoint_that_reloads(synth: Path, tmp_path: Path) -> None:
    _zoo_has(ARCH)
    from mpox_edge.converters.checkpoint import build_from_checkpoint, load_checkpoint

    out = tmp_path / "m.pt"
    res = _fit(synth, out)
    assert res["best_epoch"] == 1 and out.is_file()
    assert (tmp_path / "m.splits.csv").is_file()  # the generated grouped split is kept
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    arch, sd, meta = load_checkpoint(out)
    assert arch == ARCH and meta["format"] == "mpox-edge-checkpoint" and meta["version"] == 1
    assert meta["classes"] == CLASSES and meta["num_classes"] == 4
    assert meta["preprocess"]["input_size"] == 64
    assert meta["train_config"]["seed"] == 0 and len(meta["train_config"]["data_fingerprint"]) == 64
    assert any(k.startswith("aux_heads.") for k in sd)  # aux heads kept; export drops them
    model, meta2 = build_from_checkpoint(out)
    assert not model.training and meta2["val"]["accuracy"] == res["val"]["accuracy"]


def test_training_is_reproducible(synth: Path, tmp_path: Path) -> None:
    """Same seed, same data, same threads: bit-identical weights."""
    _zoo_has(ARCH)
    from mpox_edge.converters.checkpoint import load_checkpoint

    sds = []
    for name in ("a", "b"):
        _fit(synth, tmp_path / name / "m.pt", mixup=0.4, label_smoothing=0.1)
        sds.append(load_checkpoint(tmp_path / name / "m.pt")[1])
    assert sds[0].keys() == sds[1].keys()
    assert all(torch.equal(sds[0][k], sds[1][k]) for k in sds[0])


def test_cosine_schedule_decays_to_zero_over_the_epochs(synth: Path, tmp_path: Path) -> None:
    """A fixed-epoch run keeps its last epoch: cosine ends it at a small step, and the
    history records the lr each epoch used."""
    _zoo_has(ARCH)
    res = _fit(synth, tmp_path / "m.pt", epochs=4, lr=1e-3, lr_schedule="cosine", val_folds=[])
    lrs = [row["lr"] for row in res["history"]]
    want = [1e-3 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]
    assert lrs == pytest.approx(want) and res["best_epoch"] == 4
    flat = _fit(synth, tmp_path / "c.pt", epochs=2, lr=1e-3, val_folds=[])
    assert [row["lr"] for row in flat["history"]] == [1e-3, 1e-3]
    from mpox_edge.converters.trainloop import TrainConfig

    with pytest.raises(UsageError, match="--lr-schedule"):
        TrainConfig(data=".", arch=ARCH, out="x.pt", lr_schedule="step").validate()


def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mpox_edge.converters import checkpoint as ck

    out = tmp_path / "c.pt"
    sd = {"w": torch.ones(2)}
    ck.save_checkpoint(out, arch="x", classes=CLASSES, state_dict=sd, epoch=1)
    before = out.read_bytes()

    def boom(*a: object, **k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        ck.save_checkpoint(out, arch="x", classes=CLASSES, state_dict=sd, epoch=2)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def test_checkpoint_errors_are_one_clear_line(tmp_path: Path) -> None:
    _zoo_has(ARCH)
    _zoo_has("micro-mpoxnet")
    from mpox_edge.converters.checkpoint import build_from_checkpoint, load_checkpoint
    from mpox_edge.converters.zoo import create_model

    bare = tmp_path / "bare.pt"
    torch.save(create_model(ARCH).state_dict(), bare)
    with pytest.raises(CheckpointError, match="does not fit architecture micro-mpoxnet"):
        build_from_checkpoint(bare, arch="micro-mpoxnet")
    with pytest.raises(CheckpointError, match="--arch"):
        load_checkpoint(bare)
    with pytest.raises(CheckpointError, match="unknown architecture"):
        load_checkpoint(bare, arch="resnet-9000")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint") as e:
        load_checkpoint(junk)
    assert "\n" not in str(e.value)
    model, meta = build_from_checkpoint(bare, arch=ARCH)  # the right arch loads strictly
    assert meta["num_classes"] == 4


def test_ctrl_c_keeps_best_checkpoint(
    synth: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    _zoo_has(ARCH)
    from mpox_edge.converters import trainloop
    from mpox_edge.converters.checkpoint import load_checkpoint
    from mpox_edge.edge.cli import main

    real = trainloop.evaluate_logits
    calls = {"n": 0}

    def interrupt_second(*a: object, **k: object) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(trainloop, "evaluate_logits", interrupt_second)
    out = tmp_path / "m.pt"
    argv = ["train", str(synth), "--arch", ARCH, "--out", str(out), "--epochs", "3"]
    argv += ["--input-size", "64", "--batch-size", "8", "--no-progress"]
    assert main(argv) == 130
    assert "best checkpoint (epoch 1" in capsys.readouterr().err
    assert load_checkpoint(out)[2]["epoch"] == 1


def test_train_and_distil_on_real_msid_images(msid: Path, tmp_path: Path) -> None:
    """A dozen real images (folds 0 and 3 only): train one epoch, then distil from it."""
    _zoo_has(ARCH)
    with (msid / "splits.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    pick: list[dict[str, str]] = []
    for fold, per_class in (("0", 4), ("3", 2)):
        for c in CLASSES:
            pick += [r for r in rows if r["fold"] == fold and r["label"] == c][:per_class]
    assert all(r["fold"] != "4" for r in pick)
    splits = tmp_path / "splits.csv"
    with splits.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "label", "group", "fold"])
        w.writeheader()
        w.writerows(pick)
    teacher = tmp_path / "t.pt"
    res = _fit(msid, teacher, splits=str(splits), train_folds=[0], val_folds=[3])
    assert res["val"]["n"] == 8 and res["train_config"]["n_train"] == 16
    assert res["train_config"]["splits_used"] == str(splits)
    student = tmp_path / "s.pt"
    res2 = _fit(
        msid, student, splits=str(splits), train_folds=[0], val_folds=[3], teacher=str(teacher)
    )
    assert student.is_file() and res2["train_config"]["teacher"] == str(teacher)


def test_no_validation_fold_keeps_the_last_epoch_with_shift_augment(
    synth: Path, tmp_path: Path
) -> None:
    """``--val-folds none``: a final model on all training folds, fixed epochs, last kept."""
    _zoo_has(ARCH)
    from mpox_edge.converters.checkpoint import load_checkpoint
    from mpox_edge.converters.train import summary_lines

    out = tmp_path / "final.pt"
    res = _fit(synth, out, epochs=2, train_folds=[0, 1, 2, 3], val_folds=[], augment="shift")
    assert res["best_epoch"] == 2 and res["val"] is None and out.is_file()
    _, _, meta = load_checkpoint(out)
    assert meta["epoch"] == 2 and meta["train_config"]["augment_preset"] == "shift"
    assert meta["train_config"]["augment"]["jpeg_p"] > 0
    assert "no validation fold" in " ".join(summary_lines(res))
