"""reference: evaluate a graph node by node with each op's numpy reference. The test oracle.

Start at `evaluate`. It walks the graph in topological order and calls
`OPS[op].ref` on numpy (or CuPy: `xp`) arrays. It knows nothing of kernels
or fusion, which is what makes it a trustworthy oracle for the JIT backends.
"""
from __future__ import annotations

import numpy as np

from .._util import contiguous
from ..graph import Node, toposort
from ..ops import OPS

__all__ = ["evaluate", "evaluate_in_place", "const_array"]


def const_array(node: Node, xp=np):
    """A read-only broadcast array for a const node (no memory per element)."""
    value = xp.asarray(node.arg, dtype=node.dtype.np)
    return value if not node.shape else xp.broadcast_to(value, node.shape)


def evaluate(outputs: list[Node], xp=np, order: list[Node] | None = None) -> list:
    """Arrays for `outputs`, computed with the numpy references (nothing is stored on the nodes).
    `order`: the graph in topological order, when the caller has it."""
    values: dict[int, object] = {}
    asarray = xp.asarray
    with np.errstate(all="ignore"):
        for node in order if order is not None else toposort(outputs):
            if node.buffer is not None:
                values[id(node)] = node.buffer
            elif node.op == "const":
                values[id(node)] = const_array(node, xp)
            else:
                out = OPS[node.op].ref(*[values[id(s)] for s in node.srcs], node.arg)
                values[id(node)] = asarray(out, dtype=node.dtype.np)
    return [values[id(n)] for n in outputs]


def evaluate_in_place(order: list[Node]) -> None:
    """Compute every node of `order` (a CPU graph in topological order) with the numpy references
    and store each value on its node, intermediates included: the tiny-graph path of
    `fastad.schedule.run`, where values are small and a later graph may reuse any of them."""
    with np.errstate(all="ignore"):
        for node in order:
            if node.buffer is None and node.op != "const":
                out = OPS[node.op].ref(*[s.buffer if s.buffer is not None else const_array(s) for s in node.srcs],
                                       node.arg)
                node.settle(contiguous(np.asarray(out, dtype=node.dtype.np)))

