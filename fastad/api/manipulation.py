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

__all__ = ["broadcast_to", "reshape", "permute_dims", "expand_dims", "squeeze", "concat", "stack", "broadcast_arrays", "flip", "moveaxis", "roll", "repeat", "tile",
           "unstack"]


def broadcast_to(x: Tensor, /, shape) -> Tensor:
    """`x` broadcast to `shape`: always a new tensor (see `_broadcast` for the internal form)."""
    out = _broadcast(x, shape)
    return _fresh(x) if out is x else out


def reshape(x: Tensor, /, shape, *, copy=None) -> Tensor:
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


def expand_dims(x: Tensor, /, axis=0) -> Tensor:
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


def broadcast_arrays(*arrays) -> list:
    """The tensors broadcast to their common shape (each a new tensor)."""
    from ..tensor import broadcast_shapes
    shape = broadcast_shapes(*(a.shape for a in arrays), op="broadcast_arrays")
    return [broadcast_to(a, shape) for a in arrays]


def flip(x: Tensor, /, *, axis=None) -> Tensor:
    """`x` reversed along `axis` (all axes when None): a slice with step -1."""
    axes = normalize_axes(axis, x.ndim, "flip")
    if not axes or builtins.all(x.shape[a] <= 1 for a in axes):
        return _fresh(x)
    sl = tuple((d - 1, -1, -1) if i in axes and d > 0 else (0, d, 1) for i, d in enumerate(x.shape))
    return _apply("slice", x, arg=sl)


def moveaxis(x: Tensor, source, destination, /) -> Tensor:
    src = (source,) if isinstance(source, (int, np.integer)) else tuple(source)
    dst = (destination,) if isinstance(destination, (int, np.integer)) else tuple(destination)
    if len(src) != len(dst):
        raise ValueError(f"moveaxis: source {source} and destination {destination} differ in length")
    src = [normalize_axes(a, x.ndim, "moveaxis")[0] for a in src]
    dst = [normalize_axes(a, x.ndim, "moveaxis")[0] for a in dst]
    if len(set(src)) != len(src) or len(set(dst)) != len(dst):
        raise ValueError("moveaxis: repeated axis")
    order = [a for a in range(x.ndim) if a not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return permute_dims(x, order)


def _slice_axis(x, axis, start, stop):
    return _apply("slice", x, arg=tuple((start, stop, 1) if i == axis else (0, d, 1)
                                        for i, d in enumerate(x.shape)))


def roll(x: Tensor, /, shift, *, axis=None) -> Tensor:
    """Elements shifted along `axis` (the flattened tensor when None), wrapping around."""
    if axis is None:
        if not isinstance(shift, (int, np.integer)):
            raise TypeError("roll: with axis=None the shift must be an int")
        return reshape(roll(reshape(x, (-1,)), int(shift), axis=0), x.shape)
    shifts = (shift,) if isinstance(shift, (int, np.integer)) else tuple(shift)
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    if len(shifts) != len(axes):
        if len(shifts) == 1:
            shifts = shifts * len(axes)
        else:
            raise ValueError(f"roll: {len(shifts)} shifts for {len(axes)} axes")
    out = x
    for s, a in zip(shifts, axes):
        (a,) = normalize_axes(a, x.ndim, "roll")
        n = x.shape[a]
        s = int(s) % n if n else 0
        if s:
            out = _apply("concat", _slice_axis(out, a, n - s, n), _slice_axis(out, a, 0, n - s), arg=a)
    return _fresh(x) if out is x else out


def repeat(x: Tensor, repeats, /, *, axis=None) -> Tensor:
    """Each element repeated `repeats` times along `axis` (the flattened tensor when None).
    An int repeats by broadcasting; a tensor of counts is read now (the output's size depends on it)."""
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    (axis,) = normalize_axes(axis, x.ndim, "repeat")
    n = x.shape[axis]
    if isinstance(repeats, (int, np.integer)):
        r = int(repeats)
        if r < 0:
            raise ValueError(f"repeat: negative repeats {r}")
        wide = reshape(x, x.shape[:axis + 1] + (1,) + x.shape[axis + 1:])
        wide = _broadcast(wide, x.shape[:axis + 1] + (r,) + x.shape[axis + 1:])
        return reshape(wide, x.shape[:axis] + (n * r,) + x.shape[axis + 1:])
    counts = np.asarray(repeats.numpy() if isinstance(repeats, Tensor) else repeats)
    if counts.dtype.kind not in "iu" or counts.ndim > 1:
        raise TypeError(f"repeat: repeats must be an int or a 1-d integer array, got {counts.dtype}")
    if np.any(counts < 0):
        raise ValueError("repeat: negative repeats")
    counts = np.broadcast_to(counts, (n,))
    from ..creation import asarray
    idx = asarray(np.repeat(np.arange(n, dtype=np.int64), counts), device=x.device)
    return _apply("take", x, idx, arg=axis)


def tile(x: Tensor, repetitions, /) -> Tensor:
    """`x` repeated `repetitions[i]` times along each axis (leading ones added to match lengths)."""
    reps = tuple(int(r) for r in repetitions)
    if builtins.any(r < 0 for r in reps):
        raise ValueError(f"tile: negative repetitions {reps}")
    nd = builtins.max(len(reps), x.ndim)
    reps = (1,) * (nd - len(reps)) + reps
    shape = (1,) * (nd - x.ndim) + x.shape
    # (r0, d0, r1, d1, ...) by broadcasting, then merged pairwise
    wide = reshape(x, tuple(v for d in shape for v in (1, d)))
    wide = _broadcast(wide, tuple(v for r, d in zip(reps, shape) for v in (r, d)))
    return reshape(wide, tuple(r * d for r, d in zip(reps, shape)))


def unstack(x: Tensor, /, *, axis=0) -> tuple:
    """The slices of `x` along `axis`, as a tuple of tensors."""
    if x.ndim == 0:
        raise ValueError("unstack: a 0-d tensor has no axis to split")
    (axis,) = normalize_axes(axis, x.ndim, "unstack")
    rest = x.shape[:axis] + x.shape[axis + 1:]
    return tuple(reshape(_slice_axis(x, axis, i, i + 1), rest) for i in range(x.shape[axis]))
