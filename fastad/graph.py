"""graph: the lazy IR. A `Node` is one operation: op name, source nodes, shape, dtype, device, static arg.

Start at `Node`. Nodes are built by `fastad.ops.apply` (which checks shapes and
dtypes against the op table) and never change what they denote. The one
mutable part is the result: once the runtime computes a node it stores the
buffer in `node.buffer` and drops the sources (`Node.settle`), so the graph
behind a computed value is freed and never recomputed.

Buffers are immutable: a host buffer is made read-only when it is stored on a
node (`freeze`). That is the aliasing rule's foundation (docs/ARCHITECTURE.md,
"Aliasing"): two tensors may share a buffer, but nobody can write through it,
so no write can ever change a value that was computed, or is pending, from it.

`explain(nodes)` prints a graph, one line per node, in topological order.
"""
from __future__ import annotations

import math
from typing import Iterable

from numpy import ndarray as _ndarray

__all__ = ["Node", "toposort", "explain_lines", "freeze"]


def freeze(buffer):
    """`buffer` made read-only when it is a host (numpy) array; device arrays have no such flag."""
    if type(buffer) is _ndarray:
        buffer.setflags(False)   # write=False, positional: a keyword costs twice as much, and .flags a new object
    return buffer


class Node:
    """One lazy operation. Compare nodes by identity; `key()` gives their structure."""

    __slots__ = ("op", "srcs", "shape", "dtype", "device", "arg", "buffer", "__weakref__")

    def __init__(self, op: str, srcs: tuple, shape: tuple, dtype, device, arg=None, buffer=None):
        self.op = op            # name of an entry in fastad.ops.OPS
        self.srcs = srcs        # tuple[Node, ...]
        self.shape = shape      # tuple[int, ...]
        self.dtype = dtype      # fastad.dtypes.DType
        self.device = device    # fastad.device.Device
        self.arg = arg          # hashable static attribute (axes, shape, value of a const, ...)
        if type(buffer) is _ndarray:   # `freeze`, inlined: nodes are built on every op
            buffer.setflags(False)
        self.buffer = buffer    # the value, once known

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def realized(self) -> bool:
        return self.buffer is not None

    def settle(self, buffer) -> None:
        """Record the computed value and release the recipe that produced it."""
        self.buffer = freeze(buffer)
        if self.op != "const":
            self.op, self.srcs, self.arg = "buffer", (), None

    def __repr__(self) -> str:
        shape = ",".join(map(str, self.shape))
        return f"<Node {self.op} {self.dtype.name}[{shape}] {self.device}>"


def toposort(outputs: Iterable[Node], stop_at_realized: bool = True) -> list[Node]:
    """Nodes reachable from `outputs`, each after its sources (iterative: graphs can be deep)."""
    order: list[Node] = []
    seen: set[Node] = set()   # nodes hash by identity
    add = seen.add
    for root in outputs:
        if root in seen:
            continue
        add(root)
        stack = [(root, iter(() if stop_at_realized and root.buffer is not None else root.srcs))]
        while stack:
            node, it = stack[-1]
            for s in it:
                if s not in seen:
                    add(s)
                    stack.append((s, iter(() if stop_at_realized and s.buffer is not None else s.srcs)))
                    break
            else:
                stack.pop()
                order.append(node)
    return order


def _fmt_arg(node: Node) -> str:
    if node.arg is None:
        return ""
    if node.op == "cast":
        return f" to={node.arg.name}"
    return f" {node.arg!r}"


def explain_lines(outputs: Iterable[Node]) -> list[str]:
    """One readable line per node: `%3 = mul(%1, %2)  float32[4,3] cpu`."""
    order = toposort(outputs)
    names = {id(n): f"%{i}" for i, n in enumerate(order)}
    lines = []
    for n in order:
        shape = ",".join(map(str, n.shape))
        if n.buffer is not None and n.op != "const":
            rhs = "buffer"
        else:
            rhs = f"{n.op}({', '.join(names[id(s)] for s in n.srcs)}){_fmt_arg(n)}"
        lines.append(f"{names[id(n)]:>4} = {rhs:<40} {n.dtype.name}[{shape}] {n.device}")
    return lines
