"""Erf-GELU subgraphs fused into ``com.microsoft.Gelu`` before ONNX Runtime quantizes.

In fp32 ONNX Runtime fuses GELU itself, but in a QDQ graph each consumer of the shared
input gets its own DequantizeLinear, which breaks that fusion and leaves four float ops
plus Q/DQ per activation (see ``ort_int8.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def fuse_gelu(model: Any) -> tuple[Any, int]:
    """Replace erf-GELU subgraphs by ``com.microsoft.Gelu``; returns (model, how many).

    ``x * 0.5 * (1 + erf(x / sqrt 2))`` as torch exports it (``Div, Erf, Add, Mul, Mul``)
    becomes ``Gelu(x)``; when the final ``* 0.5`` was folded into the next layer's weights
    (``Div, Erf, Add, Mul`` = 2 GELU(x)) it becomes ``Gelu(x) * 2``. Exact same function.
    """
    from onnx import helper, numpy_helper

    g = model.graph
    const: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            for at in n.attribute:
                if at.name == "value":
                    const[n.output[0]] = numpy_helper.to_array(at.t)
    prod = {o: n for n in g.node for o in n.output}
    cons: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)
    graph_out = {o.name for o in g.output}

    def is_const(name: str, v: float) -> bool:
        a = const.get(name)
        return a is not None and a.size == 1 and abs(float(a.reshape(-1)[0]) - v) < 1e-4 * v

    def sole(t: str) -> Any:
        c = cons.get(t, [])
        return c[0] if len(c) == 1 and t not in graph_out else None

    drop: set[int] = set()
    insert: dict[int, list[Any]] = {}
    two = None
    for e in g.node:
        if e.op_type != "Erf":
            continue
        d = prod.get(e.input[0])
        if d is None or d.op_type != "Div" or not is_const(d.input[1], 2**0.5):
            continue
        x = d.input[0]
        a = sole(e.output[0]) if sole(d.output[0]) is e else None
        if a is None or a.op_type != "Add" or len(a.input) != 2:
            continue
        if not is_const(a.input[1] if a.input[0] == e.output[0] else a.input[0], 1.0):
            continue
        m1 = sole(a.output[0])
        if m1 is None or m1.op_type != "Mul" or sorted(m1.input) != sorted([x, a.output[0]]):
            continue
        m2 = sole(m1.output[0])
        half = (
            m2 is not None
            and m2.op_type == "Mul"
            and len(m2.input) == 2
            and is_const(m2.input[1] if m2.input[0] == m1.output[0] else m2.input[0], 0.5)
        )
        name = (m1.name or x).rsplit("/", 1)[0] + "/Gelu"
        if half:
            new = [helper.make_node("Gelu", [x], [m2.output[0]], name=name, domain="com.microsoft")]
            drop |= {id(d), id(e), id(a), id(m1), id(m2)}
        else:
            if two is None:
                two = f"{name}/two"
                g.initializer.append(numpy_helper.from_array(np.array(2.0, np.float32), two))
            new = [
                helper.make_node(
                    "Gelu", [x], [name + "_output_0"], name=name, domain="com.microsoft"
                ),
                helper.make_node(
                    "Mul", [name + "_output_0", two], [m1.output[0]], name=name + "/x2"
                ),
            ]
            drop |= {id(d), id(e), id(a), id(m1)}
        insert[id(d)] = new
    if not insert:
        return model, 0
    nodes = []
    for n in g.node:
        nodes.extend(insert.get(id(n), []))
        if id(n) not in drop:
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return model, len(insert)
