"""tape: TensorFlow-style `GradientTape` and `Variable` on top of the same autodiff.

Start at `GradientTape`. A tape records the ops that run inside its `with`
block on tensors it watches (trainable Variables are watched when first used,
unless `watch_accessed_variables=False`), and on tensors made by ops it
recorded. `gradient(target, sources)` runs the shared reverse pass
(`fastad.autodiff.backward`) through those ops only, so an op run after the
block, or on an unwatched tensor, does not exist for the tape (its gradient
is None). Tapes never free the recorded graph, so nested tapes each keep what
they need; a non-persistent tape allows one `gradient` call.

A gradient computed while another tape is recording is itself recorded on
that tape: `outer.gradient(inner.gradient(y, x), x)` is a second derivative.
The semantics follow TensorFlow's documented behaviour.
"""
from __future__ import annotations

import contextlib

from . import dtypes as dt
from .autodiff import active_tapes, backward
from .creation import asarray
from .ops import const, f
from .realize import mark_dirty, realize
from .tensor import Tensor

__all__ = ["GradientTape", "Variable"]


class Variable(Tensor):
    """A float tensor that requires grad, updated with `assign`, `assign_add` and `assign_sub`."""

    __slots__ = ("trainable", "name")

    def __init__(self, initial_value, trainable: bool = True, name: str | None = None, dtype=None,
                 device=None):
        src = asarray(initial_value, dtype=dtype, device=device)
        if not src.dtype.is_floating:
            src = src.astype(dt.default_float)
        super().__init__(src._node)
        self.trainable, self.name = trainable, name
        if trainable:
            self.requires_grad_(True)

    def _set(self, value, opname):
        v = value if isinstance(value, Tensor) else asarray(value, dtype=self.dtype, device=self.device)
        if v.shape != self.shape:
            raise ValueError(f"{opname}: shape {v.shape} does not match the variable's {self.shape}")
        return v._node

    def assign(self, value) -> "Variable":
        node = self._set(value, "assign")
        self._node = node if node.dtype is self.dtype else Tensor(node).astype(self.dtype)._node
        mark_dirty(self)
        return self

    def assign_add(self, delta) -> "Variable":
        return self.assign(Tensor(self._node) + Tensor(self._set(delta, "assign_add")))

    def assign_sub(self, delta) -> "Variable":
        return self.assign(Tensor(self._node) - Tensor(self._set(delta, "assign_sub")))


def _flatten(structure):
    """(list of leaves, rebuild(list) -> same structure) for a tensor, list, tuple or dict."""
    if isinstance(structure, Tensor):
        return [structure], lambda xs: xs[0]
    if isinstance(structure, dict):
        keys = list(structure)
        return [structure[k] for k in keys], lambda xs: dict(zip(keys, xs))
    if isinstance(structure, (list, tuple)):
        kind = type(structure)
        return list(structure), lambda xs: kind(xs)
    raise TypeError(f"expected a fastad Tensor or a list, tuple or dict of them, got {type(structure).__name__}")


class GradientTape:
    """Records operations on watched tensors; `gradient(target, sources)` differentiates them."""

    def __init__(self, persistent: bool = False, watch_accessed_variables: bool = True):
        self.persistent = persistent
        self.watch_accessed_variables = watch_accessed_variables
        self._watched: dict[int, Tensor] = {}
        self._recording = False
        self._used = False
        self._session = object()   # what GradFns record (reset() starts a new one)

    # ---- recording ----------------------------------------------------------
    def __enter__(self):
        if self in active_tapes:
            raise RuntimeError("this GradientTape is already recording")
        active_tapes.append(self)
        self._recording = True
        return self

    def __exit__(self, *exc):
        active_tapes.remove(self)
        self._recording = False   # operations after the block are not recorded
        return False

    def _sees(self, t: Tensor) -> bool:
        """Whether an op on `t` belongs on this tape (watching trainable variables on first use)."""
        if id(t) in self._watched:
            return True
        fn = t._ctx
        if fn is not None and self._session in fn.tapes:
            return True
        if self.watch_accessed_variables and getattr(t, "trainable", False) and t._ctx is None:
            self._watched[id(t)] = t
            return True
        return False

    def watch(self, tensor) -> None:
        """Record operations on `tensor` (or each tensor of a list, tuple or dict) from now on."""
        for t in _flatten(tensor)[0]:
            if not isinstance(t, Tensor):
                raise TypeError(f"watch: expected a fastad Tensor, got {type(t).__name__}")
            if not t.dtype.is_floating:
                raise TypeError(f"watch: only floating point tensors can be watched, not {t.dtype.name}")
            self._watched[id(t)] = t

    def watched_variables(self) -> tuple:
        """The variables this tape watches, in the order it first saw them."""
        return tuple(t for t in self._watched.values() if isinstance(t, Variable))

    @contextlib.contextmanager
    def stop_recording(self):
        """`with tape.stop_recording():` ops inside are not recorded on this tape."""
        if not self._recording:
            raise RuntimeError("stop_recording: the tape is not recording")
        self._recording = False
        try:
            yield
        finally:
            self._recording = True

    def reset(self) -> None:
        """Forget everything recorded so far (inside the block, recording goes on)."""
        self._watched.clear()
        self._used = False
        self._session = object()

    # ---- gradients -----------------------------------------------------------
    def gradient(self, target, sources, output_gradients=None, unconnected_gradients="none"):
        """d(target)/d(sources), shaped like `sources` (a tensor, list, tuple or dict).

        A list of targets is differentiated as their sum. Sources the target does not depend
        on through recorded ops get None, or zeros with unconnected_gradients="zero"."""
        if unconnected_gradients not in ("none", "zero"):
            raise ValueError(f"gradient: unconnected_gradients must be 'none' or 'zero', got {unconnected_gradients!r}")
        if self._used and not self.persistent:
            raise RuntimeError("GradientTape.gradient can only be called once on a non-persistent tape; "
                               "use GradientTape(persistent=True)")
        targets, _ = _flatten(target)
        srcs, rebuild = _flatten(sources)
        for t in targets:
            if not isinstance(t, Tensor):
                raise TypeError(f"gradient: target must be a fastad Tensor, got {type(t).__name__}")
        for s in srcs:
            if not isinstance(s, Tensor):
                raise TypeError(f"gradient: sources must be fastad Tensors, got {type(s).__name__}")
        if output_gradients is None:
            seeds = [const(1, t.shape, t.dtype, t.device) for t in targets]
        else:
            ogs = [output_gradients] if isinstance(target, Tensor) else _flatten(output_gradients)[0]
            if len(ogs) != len(targets):
                raise ValueError(f"gradient: {len(ogs)} output_gradients for {len(targets)} targets")
            seeds = []
            for t, og in zip(targets, ogs):
                og = og if isinstance(og, Tensor) else asarray(og, dtype=t.dtype, device=t.device)
                if og.shape != t.shape:
                    raise ValueError(f"gradient: output_gradients shape {og.shape} does not match the target's {t.shape}")
                seeds.append(og._node if og.dtype is t.dtype else og.astype(t.dtype)._node)
        self._used = True
        # a gradient taken while another tape records is recorded there (higher order)
        create_graph = any(tp._recording for tp in active_tapes if tp is not self)
        results: dict[int, object] = {}
        wanted = {id(s) for s in srcs}

        def sink(t, g):
            if id(t) in wanted:
                prev = results.get(id(t))
                if prev is None:
                    results[id(t)] = g
                else:
                    results[id(t)] = f.add(prev, g)   # nodes, or tensors with create_graph

        roots = [t for t in targets if t._ctx is not None or id(t) in wanted]
        seeds = [s for t, s in zip(targets, seeds) if t._ctx is not None or id(t) in wanted]
        if create_graph:
            seeds = [Tensor(s) for s in seeds]
        if roots:
            backward(roots, seeds, sink, retain_graph=True, stop_at=wanted, create_graph=create_graph,
                     tape=self)
        out = []
        for s in srcs:
            g = results.get(id(s))
            if g is None:
                g = None if unconnected_gradients == "none" else Tensor(const(0, s.shape, s.dtype, s.device))
            elif not isinstance(g, Tensor):
                g = Tensor(g)
            out.append(g)
        realize([t._node for t in targets] + [g._node for g in out if g is not None])
        if not self.persistent:
            self._watched.clear()
        return rebuild(out)
