"""api.indexing: `x[index]`, `x[index] = v` and the array API's take/take_along_axis.

Basic indices (ints, slices, None, ...) become one `slice` primitive plus a reshape,
built lazily. Advanced indices (integer arrays, boolean masks) go through the `take`
gather primitive of the op table, whose gradient is a scatter-add: the index itself is
read when the expression is built (`_positions`), so an index tensor is realised then.
A boolean mask always realises eagerly, as the result's shape depends on its values.
Item assignment is a functional update that rebinds the tensor (`setitem`).
"""
from __future__ import annotations

import builtins

import numpy as np

from .. import dtypes as dt
from ..autodiff import is_grad_enabled, no_grad
from ..tensor import Tensor, _apply, _as_tensor, _broadcast, _cast, normalize_axes
from .manipulation import reshape

__all__ = ["getitem", "setitem", "take", "take_along_axis"]


def getitem(x: Tensor, index) -> Tensor:
    """Basic indexing: ints, slices, None and Ellipsis. The gradient scatters back (`embed`)."""
    if not isinstance(index, tuple):
        index = (index,)
    # a 0-d integer tensor or array is an int (`for i in fastad.arange(3): x[i]`)
    index = tuple(int(i) if isinstance(i, (Tensor, np.ndarray)) and i.ndim == 0 and i.dtype.kind in "iu" else i
                  for i in index)
    if builtins.any(isinstance(i, (Tensor, np.ndarray, list, builtins.bool, np.bool_)) for i in index):
        return _gather(x, _positions(x, index))
    for i in index:
        if not (i is None or i is Ellipsis or isinstance(i, (int, np.integer, slice))):
            raise TypeError(f"invalid index {i!r}: use ints, slices, None and ...")
    n_ell = builtins.sum(1 for i in index if i is Ellipsis)
    if n_ell > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    n_real = builtins.sum(1 for i in index if i is not None and i is not Ellipsis)
    if n_real > x.ndim:
        raise IndexError(f"too many indices for a tensor of {x.ndim} dimensions: {n_real}")
    if n_ell:
        k = index.index(Ellipsis)
        index = index[:k] + (slice(None),) * (x.ndim - n_real) + index[k + 1:]
    else:
        index = index + (slice(None),) * (x.ndim - n_real)
    slices, out_shape, dim = [], [], 0
    for i in index:
        if i is None:
            out_shape.append(1)
            continue
        size = x.shape[dim]
        if isinstance(i, slice):
            s = i.indices(size)
            slices.append(s)
            out_shape.append(len(range(*s)))
        else:
            i = int(i)
            if not -size <= i < size:
                raise IndexError(f"index {i} is out of bounds for axis {dim} with size {size}")
            i %= size
            slices.append((i, i + 1, 1))
        dim += 1
    out = x
    if builtins.any(s != (0, d, 1) for s, d in zip(slices, x.shape)):
        out = _apply("slice", x, arg=tuple(slices))
    return reshape(out, tuple(out_shape))


def _index_value(i):
    """One entry of an index as numpy understands it: arrays and tensors are read now."""
    if isinstance(i, Tensor):
        i = np.asarray(i.numpy())
    elif isinstance(i, list):
        i = np.asarray(i)
    if isinstance(i, np.ndarray) and i.dtype.kind not in "biu":
        raise IndexError(f"arrays used as indices must be of integer or boolean type, not {i.dtype}")
    if i is not None and i is not Ellipsis and not isinstance(i, (slice, int, np.integer, np.ndarray, np.bool_)):
        raise IndexError(f"invalid index {i!r}: use ints, slices, None, ..., integer arrays or boolean masks")
    return i


def _positions(x: Tensor, index) -> np.ndarray:
    """The flat positions in `x` that `x[index]` reads, in the result's shape (numpy's indexing rules).

    Each axis's coordinate is a broadcast view of one arange (no memory per element of `x`);
    numpy indexes those views, so the work and memory follow the result's size."""
    index = tuple(_index_value(i) for i in (index if isinstance(index, tuple) else (index,)))
    pos = None
    stride = 1
    for axis in reversed(range(x.ndim)):
        n = x.shape[axis]
        coord = np.arange(n, dtype=np.int64).reshape((n,) + (1,) * (x.ndim - 1 - axis))
        term = np.broadcast_to(coord, x.shape)[index] * stride
        pos = term if pos is None else pos + term
        stride *= n
    return np.zeros((), np.int64)[index] if pos is None else pos


def _gather(x: Tensor, pos: np.ndarray) -> Tensor:
    from ..creation import asarray
    flat = reshape(x, (-1,))
    return reshape(_apply("take", flat, asarray(pos.reshape(-1), device=x.device), arg=0), pos.shape)


def setitem(x: Tensor, index, value) -> None:
    """`x[index] = value`: a functional update that rebinds `x` to a new node (other tensors that
    shared the old value keep it). Gradients flow through it: to `value` at the written places and
    to the old value of `x` everywhere else. As for every in-place update, a leaf that requires grad
    raises (wrap the write in `fastad.no_grad()`). Where an index repeats, the last write wins."""
    pos = _positions(x, index)
    track = is_grad_enabled() and (x._ctx is not None or (isinstance(value, Tensor) and value._tracked))
    if track and not (x._ctx is None and x._leaf_requires_grad):
        out = _updated(Tensor(x._node, x._ctx), pos, value)
        x._node, x._ctx = out._node, out._ctx
        return
    with no_grad():
        out = _updated(x, pos, value)
    x._assign(out._node, "__setitem__")


def _updated(x: Tensor, pos: np.ndarray, value) -> Tensor:
    from ..creation import asarray
    from .elementwise import where
    v = _as_tensor(value, x)
    if v.device != x.device:
        raise ValueError(f"__setitem__: value on {v.device}, tensor on {x.device}")
    # Python scalars are weakly typed and take x's dtype; a tensor's dtype must promote to x's
    if isinstance(value, Tensor) and not dt.can_cast(v.dtype, x.dtype):
        raise TypeError(f"__setitem__: can't assign {v.dtype.name} values to a {x.dtype.name} tensor")
    v = _broadcast(_cast(v, x.dtype), pos.shape).reshape(-1) if pos.size else None
    flat, size = reshape(x, (-1,)), x.size
    if v is None:
        return reshape(flat, x.shape)
    # the last write to a repeated position wins (numpy's rule): keep each position's last occurrence
    order = pos.reshape(-1)
    keep = np.sort(len(order) - 1 - np.unique(order[::-1], return_index=True)[1])
    targets = asarray(order[keep], device=x.device)
    picked = _apply("take", v, asarray(keep.astype(np.int64), device=x.device), arg=0)
    written = _apply("scatter_add", picked, targets, arg=(0, (size,)))
    hit = np.zeros(size, bool)
    hit[order] = True
    return reshape(where(asarray(hit, device=x.device), written, flat), x.shape)


def take(x: Tensor, indices, /, *, axis=None) -> Tensor:
    """Elements of `x` at `indices` (integers, negative ones counting from the end) along `axis`
    (x must be 1-d when axis is None). A gather primitive: the gradient scatters back with add."""
    if not isinstance(x, Tensor):
        raise TypeError(f"take: expected a fastad Tensor, got {type(x).__name__}")
    if axis is None:
        if x.ndim != 1:
            raise ValueError(f"take: axis is required for a tensor of {x.ndim} dimensions")
        axis = 0
    (axis,) = normalize_axes(axis, x.ndim, "take")
    idx = _as_tensor(indices, x)
    if idx.dtype.kind not in "iu":
        raise IndexError(f"take: indices must be integers, not {idx.dtype.name}")
    return _apply("take", x, _wrapped(idx, x.shape[axis]), arg=axis)


def _wrapped(idx: Tensor, n: int) -> Tensor:
    """int64 indices with negative ones counted from the end (computed lazily)."""
    from .elementwise import add, less, where
    idx = _cast(idx, dt.int64)
    return where(less(idx, 0), add(idx, n), idx) if idx.dtype.kind == "i" else idx


def take_along_axis(x: Tensor, indices, /, *, axis=-1) -> Tensor:
    """`x` gathered at `indices` along `axis`; the other axes of `indices` broadcast against `x`'s."""
    from ..creation import arange
    from .elementwise import add, multiply
    idx = _as_tensor(indices, x)
    if idx.ndim != x.ndim:
        raise ValueError(f"take_along_axis: indices need {x.ndim} dimensions, got shape {idx.shape}")
    if idx.dtype.kind not in "iu":
        raise IndexError(f"take_along_axis: indices must be integers, not {idx.dtype.name}")
    (axis,) = normalize_axes(axis, x.ndim, "take_along_axis")
    off = [1 if d == axis else (x.shape[d], idx.shape[d]) for d in range(x.ndim)]
    for d, pair in enumerate(off):
        if d != axis and len(set(pair) - {1}) > 1:
            raise ValueError(f"take_along_axis: indices of shape {idx.shape} don't broadcast against {x.shape}")
    off = [1 if d == axis else builtins.max(p) if 0 not in p else 0 for d, p in enumerate(off)]
    xb = _broadcast(x, tuple(x.shape[axis] if d == axis else n for d, n in enumerate(off)))
    shape = tuple(idx.shape[axis] if d == axis else n for d, n in enumerate(off))
    strides = [int(np.prod(xb.shape[d + 1:])) for d in range(x.ndim)]
    lin = multiply(_wrapped(idx, x.shape[axis]), strides[axis])
    for d in range(x.ndim):
        if d != axis and shape[d] > 1:
            coord = reshape(arange(shape[d], dtype=dt.int64, device=x.device),
                            tuple(shape[d] if k == d else 1 for k in range(x.ndim)))
            lin = add(lin, multiply(coord, strides[d]))
    lin = _broadcast(lin, shape)
    return reshape(_apply("take", reshape(xb, (-1,)), reshape(lin, (-1,)), arg=0), shape)
