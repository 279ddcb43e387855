"""reference: evaluate a graph node by node with each op's numpy reference. The test oracle.

Start at `evaluate`. It walks the graph in topological order and calls
`OPS[op].ref` on numpy (or CuPy: `xp`) arrays. It knows nothing of kernels
or fusion, which is what makes it a trustworthy oracle for the JIT backends.
"""
from __future__ import annotations

import numpy as np

from ..graph import Node, toposort
from ..ops import OPS

__all__ = ["evaluate", "const_array"]


def const_array(node: Node, xp=np):
    """A read-only broadcast array for a const node (no memory per element)."""
    return xp.broadcast_to(xp.asarray(node.arg, dtype=node.dtype.np), node.shape)


def evaluate(outputs: list[Node], xp=np, order: list[Node] | None = None) -> list:
    """Arrays for `outputs`, computed with the numpy references (nothing is stored on the nodes).
    `order`: the graph in topological order, when the caller has it."""
    values: dict[int, object] = {}
    with np.errstate(all="ignore"):
        for node in order if order is not None else toposort(outputs):
            if node.buffer is not None:
                values[id(node)] = node.buffer
            elif node.op == "const":
                values[id(node)] = const_array(node, xp)
            else:
                args = [values[id(s)] for s in node.srcs]
                out = OPS[node.op].ref(*args, node.arg)
                values[id(node)] = xp.asarray(out, dtype=node.dtype.np)
    return [values[id(n)] for n in outputs]
