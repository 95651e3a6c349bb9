"""``mpox-edge zoo``: the registered architectures with size and cost."""

from __future__ import annotations

import argparse

from mpox_edge.edge.cliopts import add_json, write_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_json(p, "the table")
    p.add_argument("--names", action="store_true", help="print only the names (no torch needed)")


def run(args: argparse.Namespace) -> int:
    from . import get_entry, list_models

    if args.names:
        print("\n".join(list_models()))
        return 0
    from .profile import model_stats

    rows = []
    for name in list_models():
        e = get_entry(name)
        st = model_stats(name)
        rows.append(
            {
                "name": name,
                "params_m": st["params"] / 1e6,
                "mflops": st["mflops"],
                "input_size": st["input_size"],
                "paper_params_m": e.paper_params,
                "pretrained": e.pretrained_available,
                "cam": e.cam,
                "description": e.description,
            }
        )
    write_json(args.json, rows)
    if args.json == "-":
        return 0
    print(
        f"{'model':<22}{'params':>9}{'MFLOPs':>10}{'input':>7}  {'paper':>7}  "
        f"{'ImageNet':<9}{'CAM':<7}"
    )
    for r in rows:
        paper = f"{r['paper_params_m']:.2f}M" if r["paper_params_m"] else "-"
        print(
            f"{r['name']:<22}{r['params_m']:>8.2f}M{r['mflops']:>10.1f}{r['input_size']:>7}  "
            f"{paper:>7}  {'yes' if r['pretrained'] else 'no':<9}{r['cam'] or '-':<7}"
        )
    print("MFLOPs are multiply-adds at the input size (the MobileNet/ShuffleNet convention).")
    return 0
