"""api.methods: Tensor's PyTorch-style convenience methods (`t.sum()`, `t.reshape(...)`, `t.exp()`).

Each calls the namespace function of the same meaning; `install` attaches them to `Tensor`
once, when `fastad.tensor` has finished loading the sections.
"""
from __future__ import annotations

from .. import dtypes as dt
from ..tensor import Tensor, _apply, _cast
from . import elementwise as ew, manipulation as mp, reductions as red


def _shape_args(args):
    return args[0] if len(args) == 1 and not isinstance(args[0], int) else args


class _Methods:
    """The methods, gathered in a class body so `install` can copy them onto Tensor."""

    def sum(self, axis=None, keepdims=False, dtype=None):
        return red.sum(self, axis=axis, keepdims=keepdims, dtype=dtype)

    def mean(self, axis=None, keepdims=False):
        return red.mean(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        return red.max(self, axis=axis, keepdims=keepdims)

    def min(self, axis=None, keepdims=False):
        return red.min(self, axis=axis, keepdims=keepdims)

    def prod(self, axis=None, keepdims=False, dtype=None):
        return red.prod(self, axis=axis, keepdims=keepdims, dtype=dtype)

    def reshape(self, *shape):
        return mp.reshape(self, _shape_args(shape))

    def permute(self, *axes):
        return mp.permute_dims(self, _shape_args(axes))

    def transpose(self, dim0, dim1):
        perm = list(range(self.ndim))
        perm[dim0], perm[dim1] = perm[dim1], perm[dim0]
        return mp.permute_dims(self, perm)

    def squeeze(self, axis=None):
        return mp.squeeze(self, axis)

    def unsqueeze(self, axis):
        return mp.expand_dims(self, axis=axis)

    def expand(self, *shape):
        return mp.broadcast_to(self, _shape_args(shape))

    def astype(self, dtype):
        return ew.astype(self, dtype)

    def float(self):
        return _cast(self, dt.float32)

    def double(self):
        return _cast(self, dt.float64)

    def flatten(self):
        return mp.reshape(self, (-1,))

    def clone(self):
        """A copy with a buffer of its own; gradients flow back to `self` (PyTorch's clone)."""
        return _apply("copy", self)


_UNARY = ("exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tan", "tanh", "sigmoid", "relu", "abs", "sign",
          "square", "floor", "ceil", "round", "isnan", "isinf", "isfinite", "logical_not")


def install() -> None:
    for name, fn in vars(_Methods).items():
        if callable(fn) and not name.startswith("_"):
            setattr(Tensor, name, fn)
    for name in _UNARY:
        setattr(Tensor, name, getattr(ew, name))
