"""api.manipulation: shape and layout functions (reshape, permute_dims, concat, stack, ...).

All are movement primitives (reshape, permute, expand, slice) or concat; none computes.
"""
from __future__ import annotations

import builtins
import math

import numpy as np

from .. import dtypes as dt
from ..errors import AxisError
from ..tensor import Tensor, _apply, _broadcast, _cast, _fresh, normalize_axes

__all__ = ["broadcast_to", "reshape", "permute_dims", "expand_dims", "squeeze", "concat", "stack"]


def broadcast_to(x: Tensor, /, shape) -> Tensor:
    """`x` broadcast to `shape`: always a new tensor (see `_broadcast` for the internal form)."""
    out = _broadcast(x, shape)
    return _fresh(x) if out is x else out


def reshape(x: Tensor, shape, /, *, copy=None) -> Tensor:
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)
    if shape.count(-1) > 1:
        raise ValueError(f"reshape: only one dimension can be -1, got {shape}")
    if -1 in shape:
        known = math.prod(d for d in shape if d != -1)
        if known == 0 or x.size % known:
            raise ValueError(f"reshape: cannot reshape {x.shape} into {shape}")
        shape = tuple(x.size // known if d == -1 else d for d in shape)
    if builtins.any(d < 0 for d in shape):
        raise ValueError(f"reshape: negative dimension in {shape}")
    out = _apply("reshape", x, arg=shape)  # a new tensor even when the shape is unchanged
    return _apply("copy", out) if copy else out


def permute_dims(x: Tensor, axes) -> Tensor:
    axes = tuple(int(a) for a in axes)
    if builtins.any(not -x.ndim <= a < x.ndim for a in axes):
        raise AxisError(f"permute_dims: axes {axes} out of range for the {x.ndim} axes of {x.shape}")
    if sorted(a % builtins.max(x.ndim, 1) for a in axes) != list(range(x.ndim)) or len(axes) != x.ndim:
        raise ValueError(f"permute_dims: {axes} is not a permutation of the {x.ndim} axes of {x.shape}")
    axes = tuple(a % x.ndim for a in axes)
    if axes == tuple(range(x.ndim)):
        return _fresh(x)
    return _apply("permute", x, arg=axes)


def expand_dims(x: Tensor, /, *, axis=0) -> Tensor:
    if not -x.ndim - 1 <= axis <= x.ndim:
        raise AxisError(f"expand_dims: axis {axis} is out of bounds for {x.ndim + 1} dimensions")
    axis = axis % (x.ndim + 1)
    return reshape(x, x.shape[:axis] + (1,) + x.shape[axis:])


def squeeze(x: Tensor, /, axis=None) -> Tensor:
    axes = tuple(i for i, d in enumerate(x.shape) if d == 1) if axis is None else normalize_axes(axis, x.ndim, "squeeze")
    for a in axes:
        if x.shape[a] != 1:
            raise ValueError(f"squeeze: axis {a} has size {x.shape[a]}, not 1 (shape {x.shape})")
    return reshape(x, tuple(d for i, d in enumerate(x.shape) if i not in axes))


def concat(arrays, /, *, axis=0) -> Tensor:
    arrays = list(arrays)
    if not arrays:
        raise ValueError("concat: need at least one tensor")
    if axis is None:
        arrays, axis = [reshape(a, (-1,)) for a in arrays], 0
    ndim = arrays[0].ndim
    if ndim == 0:
        raise ValueError("concat: zero-dimensional tensors cannot be concatenated")
    if builtins.any(a.ndim != ndim for a in arrays):
        raise ValueError(f"concat: all tensors need {ndim} dimensions, got shapes {[a.shape for a in arrays]}")
    (axis,) = normalize_axes(axis, ndim, "concat")
    devices = {a.device for a in arrays}
    if len(devices) > 1:
        raise ValueError(f"concat: tensors on different devices: {', '.join(map(str, devices))}")
    common = dt.result_type(*(a.dtype for a in arrays))
    arrays = [_cast(a, common) for a in arrays]
    if len(arrays) == 1:
        return _fresh(arrays[0])
    return _apply("concat", *arrays, arg=axis)


def stack(arrays, /, *, axis=0) -> Tensor:
    arrays = list(arrays)
    if not arrays:
        raise ValueError("stack: need at least one tensor")
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"stack: all tensors need the same shape, got {sorted(shapes)}")
    ndim = arrays[0].ndim + 1
    if not -ndim <= axis < ndim:
        raise AxisError(f"stack: axis {axis} is out of bounds for {ndim} dimensions")
    return concat([expand_dims(a, axis=axis % ndim) for a in arrays], axis=axis % ndim)
