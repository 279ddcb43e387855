"""api.sorting: `sort` and `argsort` (stable, ascending or descending) as two library ops.

Start at `sort_take`. Both functions are one op pair: `sort_take(v, keys)`
permutes `v` along an axis into the sorted order of `keys`, and `sort_put` is
its inverse (it scatters back through the permutation). `sort(x)` is
`sort_take(x, x)`; its gradient is `sort_put(g, x)`, whose gradient is
`sort_take` again, so every order differentiates. `argsort(x)` is
`sort_take(iota, x)` with int64 positions as `v` (no gradient, as in PyTorch).
The references use the input's array module (numpy, or CuPy on CUDA). NaNs
sort last ascending and first descending; equal keys keep their order in both.
"""
from __future__ import annotations

import builtins

from ..ops import LIBRARY, defop, f
from ..tensor import Tensor, _apply, normalize_axes
from .linalg_ops import array_module

__all__ = ["sort", "argsort"]


def _perm(keys, axis, descending):
    """The stable sorting permutation of `keys` along `axis`; descending keeps equal keys in order too."""
    xp = array_module(keys)
    if not descending:
        return xp.argsort(keys, axis=axis, kind="stable")
    n = keys.shape[axis]
    flipped = xp.flip(keys, axis=axis)
    # the stable ascending order of the reversed keys, read backwards, is the stable descending order
    return (n - 1) - xp.flip(xp.argsort(flipped, axis=axis, kind="stable"), axis=axis)


def _take_ref(v, keys, arg):
    axis, descending = arg
    return array_module(v).take_along_axis(v, _perm(keys, axis, descending), axis=axis)


def _put_ref(v, keys, arg):
    axis, descending = arg
    xp = array_module(v)
    inverse = xp.argsort(_perm(keys, axis, descending), axis=axis)
    return xp.take_along_axis(v, inverse, axis=axis)


def _same_shape(srcs, arg):
    if srcs[0].shape != srcs[1].shape:
        raise ValueError(f"sort: values {srcs[0].shape} and keys {srcs[1].shape} differ in shape")
    return srcs[0].shape


# arg = (axis, descending); the keys carry no gradient (the permutation is piecewise constant)
defop("sort_take", LIBRARY, 2, ref=_take_ref, shape=_same_shape,
      vjp=lambda c, g: (f.sort_put(g, c.srcs[1], arg=c.arg), None))
defop("sort_put", LIBRARY, 2, ref=_put_ref, shape=_same_shape,
      vjp=lambda c, g: (f.sort_take(g, c.srcs[1], arg=c.arg), None))


def _axis(name, x, axis):
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a fastad Tensor, got {type(x).__name__}")
    if x.ndim == 0:
        raise ValueError(f"{name}: a 0-d tensor has no axis to sort")
    if x.dtype.kind == "c":
        raise TypeError(f"{name}: complex values have no order")
    (axis,) = normalize_axes(axis, x.ndim, name)
    return axis


def sort(x, /, *, axis: int = -1, descending: bool = False, stable: bool = True) -> Tensor:
    """`x` sorted along `axis` (always stably); the gradient scatters back through the permutation."""
    axis = _axis("sort", x, axis)
    return _apply("sort_take", x, x, arg=(axis, builtins.bool(descending)))


def argsort(x, /, *, axis: int = -1, descending: bool = False, stable: bool = True) -> Tensor:
    """The int64 indices that sort `x` along `axis` (always stably; no gradient)."""
    import fastad as fa
    axis = _axis("argsort", x, axis)
    n = x.shape[axis]
    iota = fa.reshape(fa.arange(n, dtype=fa.int64, device=x.device),
                      tuple(n if i == axis else 1 for i in range(x.ndim)))
    iota = fa.broadcast_to(iota, x.shape)
    return _apply("sort_take", iota, x, arg=(axis, builtins.bool(descending)))
