"""autodiff: reverse mode as graph building. Backward adds nodes; it computes nothing.

Start at `backward`. Each tensor made by a differentiable op carries a
`GradFn` recording the op, its parent tensors, their nodes at that moment and
the output node. `backward` visits tensors in reverse topological order,
calls each op's derivative rule (`fastad.ops.OPS[op].vjp`) on nodes, and sums
the gradients flowing into each tensor. The caller decides where gradients go
(`sink`) and then realizes them all at once, so the scheduler can fuse the
whole backward pass, and the forward pass with it.

Grad mode (`no_grad`, `enable_grad`) lives here too.
"""
from __future__ import annotations

import functools
import threading

from .ops import OPS, VJPContext, apply

__all__ = ["GradFn", "backward", "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled"]

_state = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_state, "enabled", True)


class set_grad_enabled:
    """Context manager (and decorator) that turns graph recording on or off.

    Called plainly, `set_grad_enabled(False)` switches the mode at once, as in
    PyTorch. `no_grad()` and `enable_grad()` switch only when entered, so one
    object can be entered again and again (and nested).
    """

    def __init__(self, mode: bool):
        self.mode = bool(mode)
        self._prev = [is_grad_enabled()]
        _state.enabled = self.mode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _state.enabled = self._prev.pop()
        return False

    def __call__(self, fn):
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            prev = is_grad_enabled()
            _state.enabled = mode
            try:
                return fn(*args, **kwargs)
            finally:
                _state.enabled = prev
        if not isinstance(self, _SwitchOnEnter):  # decorating must not switch the mode
            _state.enabled = self._prev.pop()
        return wrapper


class _SwitchOnEnter(set_grad_enabled):
    """A grad mode that takes effect on `__enter__` (reusable, nestable), not on construction."""

    def __init__(self, mode: bool):
        self.mode, self._prev = mode, []

    def __enter__(self):
        self._prev.append(is_grad_enabled())
        _state.enabled = self.mode
        return self


class no_grad(_SwitchOnEnter):
    """`with fastad.no_grad():` ops record no graph (in-place parameter updates go here)."""

    def __init__(self):
        super().__init__(False)


class enable_grad(_SwitchOnEnter):
    def __init__(self):
        super().__init__(True)


class GradFn:
    """How a tensor was made: the op, its parents (None where no gradient was wanted), their nodes, the output node."""

    __slots__ = ("op", "parents", "src_nodes", "arg", "out", "freed")

    def __init__(self, op: str, parents: tuple, src_nodes: tuple, arg, out):
        self.op, self.parents, self.src_nodes, self.arg, self.out = op, parents, src_nodes, arg, out
        self.freed = False

    @property
    def name(self) -> str:
        return "".join(w.capitalize() for w in self.op.split("_")) + "Backward"

    def free(self) -> None:
        self.parents = self.src_nodes = self.out = None
        self.freed = True

    def __repr__(self) -> str:
        return f"<{self.name}>"


def _topo(roots) -> list:
    """Tensors with a GradFn reachable from roots, parents before children."""
    order, seen = [], set()
    for root in roots:
        stack = [(root, False)]
        while stack:
            t, done = stack.pop()
            if done:
                order.append(t)
                continue
            if id(t) in seen:
                continue
            seen.add(id(t))
            stack.append((t, True))
            fn = t._ctx
            if fn is not None and not fn.freed:
                for p in fn.parents:
                    if p is not None and id(p) not in seen:
                        stack.append((p, False))
    return order


_FREED = ("Trying to backward through the graph a second time (or directly access saved tensors "
          "after they have already been freed). Specify retain_graph=True on the first backward() "
          "call (or use GradientTape(persistent=True)) if you need to backward twice.")


_MODIFIED = ("a tensor used by an operation was later modified by an in-place operation (y += ..., "
             "y.mul_(...)) and its gradient can no longer be traced; use an out-of-place update (y = y + ...)")


def backward(roots: list, seeds: list, sink, retain_graph: bool = False, stop_at=None) -> None:
    """Propagate `seeds` (nodes shaped like `roots`) back through the recorded graph.

    `sink(tensor, grad_node)` receives the total gradient of every tensor that
    ends the walk: leaves, and tensors in `stop_at` (ids) or with retain_grad.
    """
    grads: dict[int, object] = {}
    for r, s in zip(roots, seeds):
        grads[id(r)] = _accumulate(grads.get(id(r)), s)
    stop_at = stop_at or set()
    order = _topo(roots)
    for t in reversed(order):
        g = grads.pop(id(t), None)
        if g is None:
            continue
        fn = t._ctx
        if fn is None or id(t) in stop_at or t._retains_grad:
            sink(t, g)
            if fn is None:
                continue
        if fn.freed:
            raise RuntimeError(_FREED)
        rule = OPS[fn.op].vjp
        in_grads = rule(VJPContext(fn.out, fn.src_nodes, fn.arg), g)
        for parent, src, pg in zip(fn.parents, fn.src_nodes, in_grads):
            if pg is not None and parent is not None:
                if parent._ctx is not None and parent._node is not src:
                    # its GradFn now describes the in-place result, not the value this op used
                    raise RuntimeError(_MODIFIED)
                if pg.dtype is not parent.dtype:
                    pg = apply("cast", pg, arg=parent.dtype)
                grads[id(parent)] = _accumulate(grads.get(id(parent)), pg)
        if not retain_graph:
            fn.free()


def _accumulate(acc, g):
    return g if acc is None else apply("add", acc, g)
