"""rules: what derivative rules build graph with: the builder `f` and the context they see.

Start at `_Builder`. A rule in the op table (`fastad.ops`, an entry's `vjp`) gets a
`VJPContext` (the output `y`, the inputs, the static arg) and the output gradient,
and builds the input gradients through `f`: `f.mul(g, c.b)` is `apply("mul", g, c.b)`.
`fastad.ops` attaches one builder method per op (`add_builder`) and re-exports these
names.
"""
from __future__ import annotations

from .graph import Node
from .ops import apply, const

__all__ = ["VJPContext", "add_builder", "f", "install_tensor_builder", "node_of"]


# Derivative rules build graph through `f`. Given nodes they build nodes (a first-order
# backward pass: nothing is recorded). Given tensors they build tensors through the
# frontend, which records GradFns, so the gradient graph is itself differentiable
# (create_graph, nested tapes, fastad.grad of fastad.grad): one set of rules for every order.
_tensor_builder = None   # (apply(name, srcs, arg) -> Tensor, like(value, tensor) -> Tensor)


def install_tensor_builder(apply_fn, like_fn) -> None:
    """Called once by `fastad.tensor`, which sits above this module."""
    global _tensor_builder
    _tensor_builder = (apply_fn, like_fn)


def node_of(x) -> Node:
    """The node behind a node or a tensor (rules that inspect structure, e.g. a constant exponent)."""
    return x if type(x) is Node else x._node


class _Builder:
    """`f.mul(a, b)` is `apply("mul", a, b)`: lets derivative rules read like math.
    One method per op is attached by `add_builder`, once the table is complete."""

    @staticmethod
    def like(value, node: Node) -> Node:
        if type(node) is not Node:
            return _tensor_builder[1](value, node)
        return const(value, node.shape, node.dtype, node.device)

    @staticmethod
    def unreduce(g: Node, axes: tuple, shape: tuple) -> Node:
        """Broadcast a gradient of a reduction over `axes` back to the input `shape`."""
        kept = tuple(1 if i in axes else d for i, d in enumerate(shape))
        return f.expand(f.reshape(g, arg=kept), arg=tuple(shape))

    @staticmethod
    def reduce_to(g: Node, shape: tuple) -> Node:
        """Sum a broadcast gradient back to `shape` (same rank, size-1 dims were expanded)."""
        axes = tuple(i for i, (a, b) in enumerate(zip(shape, g.shape)) if a == 1 and b != 1)
        if not axes:
            return g
        return f.reshape(f.sum(g, arg=axes), arg=tuple(shape))


f = _Builder()


class VJPContext:
    """What a derivative rule sees: the output `y`, the inputs `srcs` (`x`, `a`, `b`) and the static `arg`."""

    __slots__ = ("y", "srcs", "arg")

    def __init__(self, y, srcs, arg):
        self.y, self.srcs, self.arg = y, srcs, arg

    x = a = property(lambda self: self.srcs[0])
    b = property(lambda self: self.srcs[1])


def _builder_method(name):
    def build(*srcs, arg=None):
        # the common cases first: one or two nodes (a plain backward pass)
        n = len(srcs)
        if n == 2:
            if type(srcs[0]) is Node and type(srcs[1]) is Node:
                return apply(name, srcs[0], srcs[1], arg=arg)
        elif n == 1:
            if type(srcs[0]) is Node:
                return apply(name, srcs[0], arg=arg)
        elif all(type(s) is Node for s in srcs):
            return apply(name, *srcs, arg=arg)
        return _tensor_builder[0](name, srcs, arg)
    build.__name__ = name
    return staticmethod(build)


def add_builder(name: str) -> None:
    """Give `f` a method for op `name`."""
    setattr(_Builder, name, _builder_method(name))
