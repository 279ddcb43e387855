"""api.utility: all, any and diff.

all/any count the nonzero elements with a sum (so empty reductions give True/False
without special cases; NaN counts as nonzero); diff is slices and a subtraction.
"""
from __future__ import annotations

from .. import dtypes as dt
from ..tensor import Tensor, _apply, _cast, _fresh, normalize_axes
from .elementwise import equal, greater, not_equal, subtract
from .manipulation import concat
from .reductions import sum

__all__ = ["all", "any", "diff"]


def _count(pred, x, axis, keepdims):
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a fastad Tensor, got {type(x).__name__}")
    return sum(_cast(pred(x, 0) if x.dtype is not dt.bool else (x if pred is not_equal else
                                                                   _apply("logical_not", x)), dt.int64),
               axis=axis, keepdims=keepdims)


def all(x, /, *, axis=None, keepdims=False) -> Tensor:
    """True where every element along `axis` is nonzero (True over no elements)."""
    return equal(_count(equal, x, axis, keepdims), 0)


def any(x, /, *, axis=None, keepdims=False) -> Tensor:
    """True where some element along `axis` is nonzero (False over no elements)."""
    return greater(_count(not_equal, x, axis, keepdims), 0)


def diff(x, /, *, axis=-1, n=1, prepend=None, append=None) -> Tensor:
    """The n-th forward difference along `axis` (`prepend`/`append` joined first)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"diff: expected a fastad Tensor, got {type(x).__name__}")
    if x.ndim == 0:
        raise ValueError("diff: needs at least one dimension")
    if int(n) != n or n < 0:
        raise ValueError(f"diff: n must be a non-negative int, got {n!r}")
    (axis,) = normalize_axes(axis, x.ndim, "diff")
    parts = [p for p in (prepend, x, append) if p is not None]
    out = concat(parts, axis=axis) if len(parts) > 1 else x
    for _ in range(int(n)):
        m = out.shape[axis]
        hi = _apply("slice", out, arg=tuple((1, max(m, 1), 1) if i == axis else (0, d, 1)
                                            for i, d in enumerate(out.shape)))
        lo = _apply("slice", out, arg=tuple((0, max(m - 1, 0), 1) if i == axis else (0, d, 1)
                                            for i, d in enumerate(out.shape)))
        out = _apply("logical_xor", hi, lo) if out.dtype is dt.bool else subtract(hi, lo)
    return out if out is not x else _fresh(x)
