"""api.reductions: sum, prod, max, min and mean over axes (the reduce primitives of `fastad.ops`).

Start at `_reduce`: axis normalisation, the array API's accumulator dtypes and keepdims.
"""
from __future__ import annotations

import builtins
import math

from .. import dtypes as dt
from ..tensor import Tensor, _apply, _cast, _fresh, normalize_axes
from .elementwise import multiply

__all__ = ["sum", "prod", "max", "min", "mean"]


def _reduce(name: str, x: Tensor, axis, keepdims: builtins.bool, dtype=None) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a fastad Tensor, got {type(x).__name__}")
    axes = normalize_axes(axis, x.ndim, name)
    if dtype is not None:
        x = _cast(x, dtype)
    elif name in ("sum", "prod") and x.dtype.kind in "bi" and x.dtype is not dt.int64:
        x = _cast(x, dt.int64)  # the array API's default integer accumulator
    elif name in ("sum", "prod") and x.dtype.kind == "u" and x.dtype is not dt.uint64:
        x = _cast(x, dt.uint64)
    if name in ("max", "min"):
        if builtins.any(x.shape[a] == 0 for a in axes):
            raise ValueError(f"{name}: zero-size reduction over axes {axes} of shape {x.shape} has no identity")
    out = _apply(name, x, arg=axes) if axes else _fresh(x)
    if keepdims:
        out = _apply("reshape", out, arg=tuple(1 if i in axes else d for i, d in enumerate(x.shape)))
    return out


def sum(x, /, *, axis=None, dtype=None, keepdims=False):
    return _reduce("sum", x, axis, keepdims, dtype)


def prod(x, /, *, axis=None, dtype=None, keepdims=False):
    return _reduce("prod", x, axis, keepdims, dtype)


def max(x, /, *, axis=None, keepdims=False):
    return _reduce("max", x, axis, keepdims)


def min(x, /, *, axis=None, keepdims=False):
    return _reduce("min", x, axis, keepdims)


def mean(x, /, *, axis=None, keepdims=False):
    if not x.dtype.is_floating:
        x = _cast(x, dt.default_float)
    axes = normalize_axes(axis, x.ndim, "mean")
    n = math.prod(x.shape[a] for a in axes)
    total = _reduce("sum", x, axes, keepdims)
    return multiply(total, 1.0 / n if n else float("nan"))
