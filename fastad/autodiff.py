"""autodiff: reverse mode as graph building. Backward adds nodes; it computes nothing.

Start at `backward`. Each tensor made by a differentiable op carries a
`GradFn` recording the op, its parent tensors, their nodes at that moment and
the output node. `backward` visits tensors in reverse topological order,
calls each op's derivative rule (`fastad.ops.OPS[op].vjp`) on nodes, and sums
the gradients flowing into each tensor. The caller decides where gradients go
(`sink`) and then realizes them all at once, so the scheduler can fuse the
whole backward pass, and the forward pass with it.

With `create_graph` the same walk runs on tensors instead of nodes: the
rules then build their graph through the frontend, which records GradFns, so
the gradient can itself be differentiated (higher order) by the same rules.

TensorFlow-style tapes (`fastad.tape`) share this walk. A tape records an op
when the op runs while the tape is active and one of its inputs is watched by
the tape or was made by an op the tape recorded; each GradFn lists the tapes
that recorded it (`tapes`), and a tape's gradient follows only those GradFns.
So ops run outside a tape's block, or on tensors it does not watch, are
invisible to it, and tapes never free a graph another tape still needs.

Grad mode (`no_grad`, `enable_grad`) and the active tapes live here too.
"""
from __future__ import annotations

import functools
import threading

from . import backward_memo
from .ops import OPS, VJPContext, f

__all__ = ["GradFn", "backward", "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled",
           "active_tapes", "recording_tapes"]


class _GradMode(threading.local):
    enabled = True   # a class default, so a thread that never switched reads it without a miss


_state = _GradMode()

# GradientTapes inside whose `with` block we are, innermost last (fastad.tape manages it)
active_tapes: list = []


def recording_tapes(inputs) -> tuple:
    """The active tapes that record an op on `inputs`: those that see (watch, or recorded the
    making of) at least one input. Trainable variables are watched on first use, unless the
    tape was made with watch_accessed_variables=False."""
    out = ()
    for tape in active_tapes:
        if tape._recording and any(tape._sees(t) for t in inputs):
            out += (tape,)
    return out


def is_grad_enabled() -> bool:
    return _state.enabled


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

    __slots__ = ("op", "parents", "src_nodes", "arg", "out", "freed", "tapes")

    def __init__(self, op: str, parents: tuple, src_nodes: tuple, arg, out, tapes: tuple = ()):
        self.op, self.parents, self.src_nodes, self.arg, self.out = op, parents, src_nodes, arg, out
        self.freed = False
        self.tapes = tapes      # the recording sessions of the GradientTapes that recorded this op

    @property
    def name(self) -> str:
        return "".join(w.capitalize() for w in self.op.split("_")) + "Backward"

    def free(self) -> None:
        self.parents = self.src_nodes = self.out = None
        self.freed = True

    def __repr__(self) -> str:
        return f"<{self.name}>"


def _followed(fn, tape):
    """The GradFn a walk goes through (None: the tensor ends the walk, like a leaf)."""
    if fn is None or (tape is not None and tape._session not in fn.tapes):
        return None
    return fn


def _topo(roots, tape=None) -> list:
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
            fn = t._ctx if tape is None else _followed(t._ctx, tape)
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


def backward(roots: list, seeds: list, sink, retain_graph: bool = False, stop_at=None,
             create_graph: bool = False, tape=None) -> None:
    """Propagate `seeds` (shaped like `roots`) back through the recorded graph.

    `sink(tensor, grad)` receives the total gradient of every tensor that ends
    the walk: leaves, and tensors in `stop_at` (ids) or with retain_grad. The
    gradients are nodes; with `create_graph` they are tensors whose own graph is
    recorded (seeds must then be tensors). `tape`: follow only the GradFns that
    this GradientTape recorded. A plain walk over a graph structure seen before
    rebuilds the gradient graph from its recipe (`fastad.backward_memo`).
    """
    stop_at = stop_at or _NO_STOPS
    order = _topo(roots, tape)
    recording = None
    if not create_graph and tape is None and backward_memo.enabled:
        found = backward_memo.structure_key(order, roots, seeds, stop_at)
        if found is not None:
            key, known = found
            memo = backward_memo.lookup(key)
            if memo is not None and memo is not backward_memo.RULES:
                backward_memo.replay(memo, known, order, sink, retain_graph)
                return
            if memo is None:
                recording = backward_memo.record(key, known, order)
    if recording is None:
        _walk(order, roots, seeds, sink, retain_graph, stop_at, create_graph, tape, None)
    else:
        with recording:
            _walk(order, roots, seeds, sink, retain_graph, stop_at, create_graph, tape, recording)


_NO_STOPS = frozenset()


def _walk(order, roots, seeds, sink, retain_graph, stop_at, create_graph, tape, recording) -> None:
    """The walk itself: each op's derivative rule, in reverse topological order (`recording`: tell it
    each sink call and each GradFn used)."""
    grads: dict[int, object] = {}
    for r, s in zip(roots, seeds):
        grads[id(r)] = _accumulate(grads.get(id(r)), s)
    last = len(order) - 1
    for k, t in enumerate(reversed(order)):
        g = grads.pop(id(t), None)
        if g is None:
            continue
        fn = t._ctx if tape is None else _followed(t._ctx, tape)
        if fn is None or id(t) in stop_at or t._retains_grad:
            sink(t, g)
            if recording is not None:
                recording.sinks.append((t, g))
            if fn is None:
                continue
        if fn.freed:
            raise RuntimeError(_FREED)
        rule = OPS[fn.op].vjp
        if create_graph:
            # the output is `t` itself: a second tensor for the same GradFn would be walked twice later
            ctx = VJPContext(t, _saved_tensors(t.__class__, fn), fn.arg)
        else:
            ctx = VJPContext(fn.out, fn.src_nodes, fn.arg)
        in_grads = rule(ctx, g)
        for parent, src, pg in zip(fn.parents, fn.src_nodes, in_grads):
            if pg is not None and parent is not None:
                if parent._ctx is not None and parent._node is not src:
                    # its GradFn now describes the in-place result, not the value this op used
                    raise RuntimeError(_MODIFIED)
                if pg.dtype is not parent.dtype:
                    pg = f.cast(pg, arg=parent.dtype)
                grads[id(parent)] = _accumulate(grads.get(id(parent)), pg)
        if recording is not None:   # (whether this walk frees: a replay may be asked otherwise)
            recording.freed.append(last - k)
        if not retain_graph:
            fn.free()


def _saved_tensors(cls, fn) -> tuple:
    """The inputs of `fn` as tensors that still carry their own history (for create_graph)."""
    return tuple(p if p is not None and p._node is n else cls(n) for p, n in zip(fn.parents, fn.src_nodes))


def _accumulate(acc, g):
    return g if acc is None else f.add(acc, g)
