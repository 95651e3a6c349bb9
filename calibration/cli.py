"""``mpox-edge calibrate MODEL_DIR --data DIR``: int8 artifacts behind an accuracy guard.

Exit status: 0 when every requested backend got an int8 artifact, 1 when the guard
rejected at least one (the report says why; nothing was written for it), 2 when the
calibration set or the arguments were refused.
"""

from __future__ import annotations

import argparse
import sys

from mpox_edge.edge.cliopts import add_json, comma_list, ints, write_json

# The registered backends that have an int8 quantizer here (ncnn, for one, has none).
QUANTIZABLE = ("onnxruntime", "openvino")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model_dir", metavar="MODEL_DIR", help="model directory with fp32 artifacts")
    p.add_argument(
        "--data",
        required=True,
        help="calibration images: a root with splits.csv (e.g. MSID) or an image folder "
        "with one sub-folder per class",
    )
    p.add_argument("--splits", help="split file (default: DATA/splits.csv when it exists)")
    p.add_argument(
        "--calib-folds", type=ints, default=[0, 1, 2], help="folds to calibrate on (default 0,1,2)"
    )
    p.add_argument(
        "--val-folds", type=ints, default=[3], help="folds the accuracy guard uses (default 3)"
    )
    p.add_argument(
        "--test-folds",
        type=ints,
        default=[],
        help="folds evaluated for the report only, after every choice (e.g. 4)",
    )
    p.add_argument(
        "--val-data",
        help="validation image folder for the guard (image-folder mode; default: a "
        "stratified 25%% hold-out of --data)",
    )
    p.add_argument("--test-data", help="report-only test image folder (image-folder mode)")
    p.add_argument(
        "--backend",
        type=comma_list(choices=QUANTIZABLE, what="backends"),
        default=list(QUANTIZABLE),
        help=f"comma list of {', '.join(QUANTIZABLE)} (default: both)",
    )
    p.add_argument(
        "--method",
        default="minmax",
        choices=["minmax", "entropy", "percentile"],
        help="activation range calibration (default minmax)",
    )
    p.add_argument(
        "--exclude",
        type=comma_list(what="node names", allow_empty=True),
        default=[],
        help="comma list of node names kept in float (ONNX node names; OpenVINO names "
        "or ONNX names for openvino)",
    )
    p.add_argument(
        "--max-drop",
        type=float,
        default=1.0,
        help="accuracy guard: largest accepted drop in points, fp32 minus int8 (default 1.0)",
    )
    p.add_argument(
        "--min-agreement",
        type=float,
        help="also require this top-1 agreement with fp32, in percent (e.g. 98)",
    )
    p.add_argument(
        "--subset-size",
        type=int,
        default=300,
        help="calibration images used, stratified (default 300)",
    )
    p.add_argument(
        "--preset",
        default="performance",
        choices=["performance", "mixed"],
        help="NNCF preset (openvino)",
    )
    p.add_argument(
        "--no-bias-correction",
        action="store_true",
        help="turn off NNCF's fast bias correction (openvino)",
    )
    p.add_argument(
        "--accuracy-control",
        action="store_true",
        help="openvino: nncf.quantize_with_accuracy_control instead of the greedy fallback",
    )
    p.add_argument(
        "--op-types",
        default="auto",
        choices=["auto", "all", "conv"],
        help="onnxruntime operator scope: all, conv (Conv/MatMul/Gemm) or auto (both, "
        "keep the faster that passes the guard; default)",
    )
    p.add_argument(
        "--activation-type",
        default="uint8",
        choices=["uint8", "int8"],
        help="onnxruntime activation type (default uint8: int8 activations are slow on x86)",
    )
    p.add_argument(
        "--per-tensor",
        action="store_true",
        help="onnxruntime: per-tensor instead of per-channel weights",
    )
    p.add_argument(
        "--reduce-range",
        action="store_true",
        help="onnxruntime: 7-bit weights (x86 CPUs without VNNI)",
    )
    p.add_argument(
        "--fallback-limit",
        type=float,
        default=0.5,
        help="share of compute layers the guard may keep in float (default 0.5)",
    )
    p.add_argument(
        "--allow-synthetic",
        action="store_true",
        help="accept calibration images that look random/synthetic (recorded in the manifest)",
    )
    p.add_argument("--threads", type=int, help="inference threads for evaluation and timing")
    add_json(p)


def run(args: argparse.Namespace) -> int:

    from . import calibrate

    backends = list(args.backend)
    tty = sys.stderr.isatty()
    json_stdout = args.json == "-"

    def say(msg: str) -> None:
        if tty:
            try:
                from tqdm import tqdm

                tqdm.write(msg, file=sys.stderr)
                return
            except ImportError:  # pragma: no cover
                pass
        print(msg, file=sys.stderr)

    report = calibrate(
        args.model_dir,
        data=args.data,
        splits=args.splits,
        calib_folds=args.calib_folds,
        val_folds=args.val_folds,
        val_data=args.val_data,
        test_folds=args.test_folds,
        test_data=args.test_data,
        backends=backends,
        method=args.method,
        exclude=list(args.exclude),
        max_drop=args.max_drop,
        min_agreement=args.min_agreement,
        subset_size=args.subset_size,
        preset=args.preset,
        fast_bias_correction=not args.no_bias_correction,
        accuracy_control=args.accuracy_control,
        op_types=args.op_types,
        per_channel=not args.per_tensor,
        activation_type=args.activation_type,
        reduce_range=args.reduce_range,
        allow_synthetic=args.allow_synthetic,
        fallback_limit=args.fallback_limit,
        threads=args.threads,
        show_progress=tty,
        log=say,
    )
    write_json(args.json, report.to_dict())
    if not json_stdout:
        print("\n".join(report.format_table()))
    return 0 if report.ok else 1
