"""api.searching: argmax, argmin, count_nonzero, nonzero and searchsorted (`where` is elementwise).

argmax, argmin and searchsorted are library ops with int64 outputs (their
references use the input's array module: numpy, or CuPy on CUDA); count_nonzero
is a comparison and a sum. None has a gradient (indices and counts), as in
PyTorch. `nonzero` has a data-dependent shape, so it realises its input when
called and returns computed tensors.
"""
from __future__ import annotations

import builtins

from .. import dtypes as dt
from ..ops import LIBRARY, defop
from ..tensor import Tensor, _apply, normalize_axes
from .linalg_ops import array_module

__all__ = ["argmax", "argmin", "count_nonzero", "nonzero", "searchsorted"]


def _int64(srcs, arg):
    return dt.int64


def _arg_shape(srcs, axis):
    return () if axis is None else tuple(d for i, d in enumerate(srcs[0].shape) if i != axis)


# arg = the axis, or None for the flattened input; the first occurrence wins (NaN counts as the extremum)
defop("argmax", LIBRARY, 1, out=_int64, shape=_arg_shape,
      ref=lambda x, axis: array_module(x).argmax(x, axis=axis))
defop("argmin", LIBRARY, 1, out=_int64, shape=_arg_shape,
      ref=lambda x, axis: array_module(x).argmin(x, axis=axis))


def _searchsorted_ref(x1, x2, *rest):
    side = rest[-1]
    sorter = rest[0] if len(rest) == 2 else None
    return array_module(x1).searchsorted(x1, x2, side=side, sorter=sorter)


# inputs (x1, x2[, sorter]), arg = side
defop("searchsorted", LIBRARY, -1, out=_int64, shape=lambda srcs, side: srcs[1].shape, ref=_searchsorted_ref)


def _tensor(name, x) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a fastad Tensor, got {type(x).__name__}")
    return x


def _arg_extremum(name, x, axis, keepdims):
    x = _tensor(name, x)
    if x.dtype.kind == "c":
        raise TypeError(f"{name}: complex values have no order")
    if axis is not None:
        (axis,) = normalize_axes(axis, x.ndim, name)
        if x.shape[axis] == 0:
            raise ValueError(f"{name}: axis {axis} of shape {x.shape} is empty")
    elif x.size == 0:
        raise ValueError(f"{name}: the tensor is empty")
    if x.ndim == 0:
        out = _apply(name, _apply("reshape", x, arg=(1,)), arg=0)
    else:
        out = _apply(name, x, arg=axis)
    if keepdims:
        kept = tuple(1 if axis is None or i == axis else d for i, d in enumerate(x.shape))
        out = _apply("reshape", out, arg=kept)
    return out


def argmax(x, /, *, axis=None, keepdims: bool = False) -> Tensor:
    """The int64 index of the first maximum over `axis` (None: the flattened tensor)."""
    return _arg_extremum("argmax", x, axis, keepdims)


def argmin(x, /, *, axis=None, keepdims: bool = False) -> Tensor:
    """The int64 index of the first minimum over `axis` (None: the flattened tensor)."""
    return _arg_extremum("argmin", x, axis, keepdims)


def count_nonzero(x, /, *, axis=None, keepdims: bool = False) -> Tensor:
    """The int64 number of nonzero (for bool: True) elements over `axis`."""
    import fastad as fa
    x = _tensor("count_nonzero", x)
    axes = normalize_axes(axis, x.ndim, "count_nonzero")
    nz = fa.astype(x != 0 if x.dtype is not dt.bool else x, fa.int64)
    return fa.sum(nz, axis=axes, keepdims=keepdims)


def nonzero(x, /) -> tuple:
    """The indices of the nonzero elements, one int64 tensor per axis (row-major order).
    The result's size depends on the data: `x` is realised now and the results are computed tensors."""
    import fastad as fa
    x = _tensor("nonzero", x)
    if x.ndim == 0:
        raise ValueError("nonzero: a 0-d tensor has no axes (reshape it to 1-d first)")
    buf = _buffer(x)
    xp = array_module(buf)
    return tuple(fa.asarray(xp.asarray(i, dtype=xp.int64), device=x.device) for i in xp.nonzero(buf))


def _buffer(x: Tensor):
    """`x`'s computed array on its own device (numpy, or CuPy for CUDA)."""
    from ..realize import realize
    node = x._node
    realize([node])
    if node.buffer is not None:
        return node.buffer
    from ..runtime import backend_for
    from ..runtime.reference import const_array
    return const_array(node, backend_for(node.device).xp)


def searchsorted(x1, x2, /, *, side: str = "left", sorter=None) -> Tensor:
    """Insertion indices (int64) of `x2` into the sorted 1-d `x1` (or `x1` read through `sorter`)."""
    x1 = _tensor("searchsorted", x1)
    if isinstance(x2, (int, float)) and not isinstance(x2, builtins.bool):   # a Python scalar
        from ..tensor import _as_tensor
        x2 = _as_tensor(x2, x1)
    x2 = _tensor("searchsorted", x2)
    if x1.ndim != 1:
        raise ValueError(f"searchsorted: x1 must be 1-d, got shape {x1.shape}")
    if side not in ("left", "right"):
        raise ValueError(f"searchsorted: side must be 'left' or 'right', got {side!r}")
    if builtins.any(t.dtype.kind == "c" for t in (x1, x2)):
        raise TypeError("searchsorted: complex values have no order")
    common = dt.result_type(x1.dtype, x2.dtype)
    x1 = x1 if x1.dtype is common else _apply("cast", x1, arg=common)
    x2 = x2 if x2.dtype is common else _apply("cast", x2, arg=common)
    srcs = (x1, x2)
    if sorter is not None:
        sorter = _tensor("searchsorted", sorter)
        if sorter.shape != x1.shape or sorter.dtype.kind not in "iu":
            raise ValueError(f"searchsorted: sorter must be integer indices of shape {x1.shape}")
        srcs += (sorter,)
    return _apply("searchsorted", *srcs, arg=side)
