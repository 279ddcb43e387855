"""api.statistics: var, std (with `correction`), cumulative_sum and cumulative_prod.

var and std are compositions (mean, subtract, square, sum), so they fuse and
differentiate through those ops' rules; std's gradient at zero variance is 0
(a subgradient) rather than NaN. The cumulative sum and product are library
ops (numpy's or CuPy's cumsum/cumprod) with derivative rules:
d cumsum = the reversed cumulative sum of the cotangent; d cumprod =
revcumsum(g * y) / x before the first zero along the axis, the product with
that zero replaced by 1 at it, and 0 after it (exact with zeros, no NaN).
"""
from __future__ import annotations

import builtins
import math

from .. import dtypes as dt
from ..ops import LIBRARY, defop, f
from ..tensor import Tensor, _apply, normalize_axes
from .linalg_ops import array_module

__all__ = ["cumulative_sum", "cumulative_prod", "std", "var"]


def _flip(g, axis):
    """g reversed along `axis` (a slice with step -1)."""
    n = g.shape[axis]
    return f.slice(g, arg=tuple((n - 1, -1, -1) if i == axis else (0, d, 1) for i, d in enumerate(g.shape)))


def _revcumsum(g, axis):
    return _flip(f.cumsum(_flip(g, axis), arg=axis), axis)


def _cumprod_vjp(c, g):
    # dy_k/dx_i = prod_{j<=k, j!=i} x_j. Before the first zero along the axis that is y_k / x_i;
    # at the first zero it is the running product with that zero replaced by 1; after it, 0.
    x, y, axis = c.x, c.y, c.arg
    zero = f.eq(x, f.like(0, x))
    seen = f.cumsum(f.cast(zero, arg=x.dtype), arg=axis)          # zeros up to and including here
    before = f.eq(seen, f.like(0, seen))
    first = f.logical_and(zero, f.eq(seen, f.like(1, seen)))
    one = f.like(1, x)
    g_before = f.div(_revcumsum(f.mul(g, y), axis), f.where(before, x, one))
    g_first = _revcumsum(f.mul(g, f.cumprod(f.where(first, one, x), arg=axis)), axis)
    return (f.where(before, g_before, f.where(first, g_first, f.like(0, g))),)


def _same(srcs, axis):
    return srcs[0].shape


# arg = the axis; the output keeps the input's dtype (the frontend casts to the accumulator first)
defop("cumsum", LIBRARY, 1, shape=_same, vjp=lambda c, g: (_revcumsum(g, c.arg),),
      ref=lambda x, axis: array_module(x).cumsum(x, axis=axis, dtype=x.dtype))
defop("cumprod", LIBRARY, 1, shape=_same, vjp=_cumprod_vjp,
      ref=lambda x, axis: array_module(x).cumprod(x, axis=axis, dtype=x.dtype))


def _tensor(name, x) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a fastad Tensor, got {type(x).__name__}")
    return x


def _cumulative(name, op, x, axis, dtype, include_initial):
    import fastad as fa
    x = _tensor(name, x)
    if axis is None:
        if x.ndim > 1:
            raise ValueError(f"{name}: axis is required for a tensor of {x.ndim} dimensions")
        if x.ndim == 0:
            raise ValueError(f"{name}: a 0-d tensor has no axis")
        axis = 0
    (axis,) = normalize_axes(axis, x.ndim, name)
    if dtype is not None:
        dtype = dt.to_dtype(dtype)
    elif x.dtype.kind in "bi" and x.dtype is not dt.int64:
        dtype = dt.int64      # the array API's default accumulators, as for sum and prod
    elif x.dtype.kind == "u" and x.dtype is not dt.uint64:
        dtype = dt.uint64
    if dtype is not None and dtype is not x.dtype:
        x = _apply("cast", x, arg=dtype)
    out = _apply(op, x, arg=axis) if x.shape[axis] else fa.reshape(x, x.shape)
    if include_initial:
        start = fa.full(tuple(1 if i == axis else d for i, d in enumerate(x.shape)),
                        0 if op == "cumsum" else 1, dtype=x.dtype, device=x.device)
        out = fa.concat([start, out], axis=axis)
    return out


def cumulative_sum(x, /, *, axis=None, dtype=None, include_initial: bool = False) -> Tensor:
    """Running sums along `axis` (optional for 1-d); include_initial prepends the 0."""
    return _cumulative("cumulative_sum", "cumsum", x, axis, dtype, include_initial)


def cumulative_prod(x, /, *, axis=None, dtype=None, include_initial: bool = False) -> Tensor:
    """Running products along `axis` (optional for 1-d); include_initial prepends the 1.
    The gradient is exact where inputs are 0 too."""
    return _cumulative("cumulative_prod", "cumprod", x, axis, dtype, include_initial)


def var(x, /, *, axis=None, correction=0.0, keepdims: bool = False) -> Tensor:
    """sum((x - mean)^2) / (N - correction) over `axis`; N - correction <= 0 gives inf or NaN (numpy's)."""
    import fastad as fa
    x = _tensor("var", x)
    if not x.dtype.is_floating:
        raise TypeError(f"var: needs a floating-point dtype, got {x.dtype.name}")
    axes = normalize_axes(axis, x.ndim, "var")
    n = math.prod(x.shape[a] for a in axes)
    d = x - fa.mean(x, axis=axes, keepdims=True)
    total = fa.sum(d * d, axis=axes, keepdims=keepdims)
    return total / float(builtins.max(n - correction, 0))   # / 0.0: inf, or NaN for 0 / 0


def std(x, /, *, axis=None, correction=0.0, keepdims: bool = False) -> Tensor:
    """sqrt(var); the gradient where the variance is 0 is 0 (a subgradient), not NaN."""
    import fastad as fa
    v = var(x, axis=axis, correction=correction, keepdims=keepdims)
    zero = v == 0
    return fa.where(zero, fa.zeros_like(v), fa.sqrt(fa.where(zero, fa.ones_like(v), v)))
