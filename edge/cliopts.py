"""Options every command shares, defined once so they mean the same everywhere.

* ``--backend``: ``auto`` plus the backend registry's names, as argparse ``choices``.
* ``--json PATH|-``: the report as JSON at PATH (the human text still goes to stdout), or
  with ``-`` (or a bare ``--json``) JSON alone on stdout. PATH's folder is checked when the
  arguments are parsed, before any work, so a long run never ends in a lost report.
* ``comma_list``: one argument type for every comma list (folds, classes, targets).
* ``HelpFormatter``: help texts show each option's default.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .model.backends import REGISTRY
from .model.manifest import atomic_write_text

T = TypeVar("T")

AUTO = "auto"
# What bench and the kiosk run: the measured fastest (cached, see selection.cache_dir_default).
DEFAULT_BACKEND = AUTO
# eval and explain default to the fp32 reference: `auto` picks the precision itself (it
# ignores --precision) and measures every runtime on a first run.
REFERENCE_BACKEND = "onnxruntime"


def backend_choices() -> list[str]:
    return [AUTO, *REGISTRY]


class HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` where an option has a meaningful default not already named."""

    def _get_help_string(self, action: argparse.Action) -> str:
        h = action.help or ""
        d = action.default
        if (
            d in (None, False, argparse.SUPPRESS, "", [])
            or "default" in h.lower()
            or "%(default)" in h
            or not action.option_strings
        ):
            return h
        shown = ",".join(map(str, d)) if isinstance(d, list | tuple) else d
        return f"{h} (default: {str(shown).replace('%', '%%')})"


def add_backend(
    p: argparse.ArgumentParser, *, default: str | None = DEFAULT_BACKEND, help: str = ""
) -> None:
    """``--backend`` with the registry's names; ``default=None`` leaves it to a config file."""
    p.add_argument(
        "--backend",
        default=default,
        choices=backend_choices(),
        help=help or "auto = the measured fastest here (cached); or a named runtime",
    )


def json_output(value: str) -> str:
    """argparse type for ``--json``: '-' or a file whose folder exists and is writable."""
    if value == "-":
        return value
    p = Path(value)
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"{value} is a directory; give a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(
            f"cannot write {value}: the folder {parent} does not exist (create it first)"
        )
    if not os.access(parent, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write {value}: the folder {parent} is read-only")
    return value


def add_json(p: argparse.ArgumentParser, what: str = "the report") -> None:
    p.add_argument(
        "--json",
        metavar="PATH|-",
        nargs="?",
        const="-",
        type=json_output,
        help=f"write {what} as JSON to PATH (text still printed), or with '-' or no "
        "value print only JSON on stdout",
    )


def json_to_stdout(args: argparse.Namespace) -> bool:
    return getattr(args, "json", None) == "-"


def write_json(target: str | None, obj: Any) -> None:
    """Honour ``--json``: nothing for None, stdout for '-', else an atomic file write."""
    if not target:
        return
    text = json.dumps(obj, indent=2, default=_plain)
    if target == "-":
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    else:
        atomic_write_text(Path(target), text + "\n")


def _plain(o: Any) -> Any:
    """numpy scalars -> float; anything else (a Path) -> its string."""
    try:
        return float(o)
    except (TypeError, ValueError):
        return str(o)


def comma_list(
    item: Callable[[str], T] = str,  # type: ignore[assignment]
    *,
    choices: Sequence[str] | None = None,
    what: str = "values",
    allow_empty: bool = False,
) -> Callable[[str], list[T]]:
    """argparse type: ``"a, b,c"`` -> ``[a, b, c]`` converted by ``item``, with a clear
    message naming the bad entry (and the choices, when there are any)."""

    def parse(s: str) -> list[T]:
        parts = [x.strip() for x in s.split(",") if x.strip()]
        if not parts and not allow_empty:
            raise argparse.ArgumentTypeError(f"expected a comma list of {what}, got {s!r}")
        out: list[T] = []
        for x in parts:
            if choices is not None and x not in choices:
                raise argparse.ArgumentTypeError(
                    f"{x!r} is not one of {', '.join(choices)} (comma list)"
                )
            try:
                out.append(item(x))
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"expected a comma list of {what}, {x!r} is not one"
                ) from None
        return out

    parse.__name__ = f"comma list of {what}"
    return parse


ints = comma_list(int, what="integers", allow_empty=True)
