"""api.indexing: `x[index]` (getitem) and the array API's take/take_along_axis.

Basic indices become one `slice` primitive plus a reshape.
"""
from __future__ import annotations

import builtins

import numpy as np

from ..tensor import Tensor, _apply
from .manipulation import reshape

__all__ = ["getitem"]


def getitem(x: Tensor, index) -> Tensor:
    """Basic indexing: ints, slices, None and Ellipsis. The gradient scatters back (`embed`)."""
    if not isinstance(index, tuple):
        index = (index,)
    # a 0-d integer tensor or array is an int (`for i in fastad.arange(3): x[i]`)
    index = tuple(int(i) if isinstance(i, (Tensor, np.ndarray)) and i.ndim == 0 and i.dtype.kind in "iu" else i
                  for i in index)
    for i in index:
        if isinstance(i, (Tensor, np.ndarray, list)) or isinstance(i, builtins.bool):
            raise TypeError("advanced (array or bool) indexing is not supported; use ints, slices, None and ...")
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
