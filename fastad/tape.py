"""tape: TensorFlow-style `GradientTape` and `Variable` on top of the same autodiff.

Start at `GradientTape.gradient`. A tape makes the tensors it watches record
graph while it is active (trainable Variables always record), then runs the
shared reverse pass (`fastad.autodiff.backward`) with a sink that collects
gradients for the sources instead of writing `.grad`.
"""
from __future__ import annotations

from . import dtypes as dt
from .autodiff import backward
from .creation import asarray
from .ops import apply, const
from .realize import realize
from .realize import mark_dirty
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
        self._node = node if node.dtype is self.dtype else apply("cast", node, arg=self.dtype)
        mark_dirty(self)
        return self

    def assign_add(self, delta) -> "Variable":
        return self.assign(Tensor(self._node) + Tensor(self._set(delta, "assign_add")))

    def assign_sub(self, delta) -> "Variable":
        return self.assign(Tensor(self._node) - Tensor(self._set(delta, "assign_sub")))


class GradientTape:
    """Records operations on watched tensors; `gradient(target, sources)` differentiates them."""

    _active: list = []

    def __init__(self, persistent: bool = False, watch_accessed_variables: bool = True):
        self.persistent = persistent
        self.watch_accessed_variables = watch_accessed_variables
        self._watched: list[Tensor] = []
        self._used = False

    def __enter__(self):
        GradientTape._active.append(self)
        return self

    def __exit__(self, *exc):
        GradientTape._active.remove(self)
        self._release()  # operations after the block are not recorded
        return False

    def watch(self, tensor) -> None:
        """Record operations on `tensor` (or each tensor of a list) from now on."""
        items = tensor if isinstance(tensor, (list, tuple)) else [tensor]
        for t in items:
            if not isinstance(t, Tensor):
                raise TypeError(f"watch: expected a fastad Tensor, got {type(t).__name__}")
            if not t.dtype.is_floating:
                raise TypeError(f"watch: only floating point tensors can be watched, not {t.dtype.name}")
            if t._ctx is None and not t._leaf_requires_grad:
                t._leaf_requires_grad = True
                self._watched.append(t)

    def _release(self):
        for t in self._watched:
            t._leaf_requires_grad = False
        self._watched.clear()

    def gradient(self, target, sources, output_gradients=None):
        """d(target)/d(sources): a tensor for a single source, a list for a list (None where unconnected)."""
        if self._used and not self.persistent:
            raise RuntimeError("GradientTape.gradient can only be called once on a non-persistent tape; "
                               "use GradientTape(persistent=True)")
        self._used = True
        single = isinstance(sources, Tensor)
        srcs = [sources] if single else list(sources)
        if not isinstance(target, Tensor):
            raise TypeError(f"gradient: target must be a fastad Tensor, got {type(target).__name__}")
        for s in srcs:
            if not isinstance(s, Tensor):
                raise TypeError(f"gradient: sources must be fastad Tensors, got {type(s).__name__}")
        results: dict[int, object] = {}
        if output_gradients is None:
            seed = const(1, target.shape, target.dtype, target.device)
        else:
            seed = asarray(output_gradients, dtype=target.dtype, device=target.device)._node
        wanted = {id(s) for s in srcs}

        def sink(t, g):
            if id(t) in wanted:
                results[id(t)] = g if id(t) not in results else apply("add", results[id(t)], g)

        if target._tracked:
            backward([target], [seed], sink, retain_graph=self.persistent, stop_at=wanted)
        out = [Tensor(results[id(s)]) if id(s) in results else None for s in srcs]
        realize([target._node] + [t._node for t in out if t is not None])
        return out[0] if single else out

    def __del__(self):
        if getattr(self, "_watched", None):
            self._release()
