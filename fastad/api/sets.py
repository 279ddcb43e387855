"""api.sets: unique_all, unique_counts, unique_inverse and unique_values.

Their output sizes depend on the data, so each realises its input when called
and returns computed tensors (numpy on the CPU, CuPy on CUDA): no lazy graph
and no gradient, as with PyTorch's `unique`. Values come out sorted; each NaN
is distinct (the spec's rule), and indices and counts are int64.
"""
from __future__ import annotations

from typing import NamedTuple

from ..tensor import Tensor
from .linalg_ops import array_module
from .searching import _buffer

__all__ = ["unique_all", "unique_counts", "unique_inverse", "unique_values",
           "UniqueAllResult", "UniqueCountsResult", "UniqueInverseResult"]


class UniqueAllResult(NamedTuple):
    values: Tensor
    indices: Tensor
    inverse_indices: Tensor
    counts: Tensor


class UniqueCountsResult(NamedTuple):
    values: Tensor
    counts: Tensor


class UniqueInverseResult(NamedTuple):
    values: Tensor
    inverse_indices: Tensor


def _unique(name, x):
    """(values, first indices, inverse indices shaped like x, counts) as computed tensors."""
    import fastad as fa
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a fastad Tensor, got {type(x).__name__}")
    buf = _buffer(x)
    xp = array_module(buf)
    flat = buf.reshape(-1)
    values, index, inverse, counts = xp.unique(flat, return_index=True, return_inverse=True,
                                               return_counts=True, equal_nan=False)

    def tensor(a, dtype=None):
        return fa.asarray(a if dtype is None else a.astype(dtype), device=x.device)
    return (tensor(values), tensor(index, xp.int64), tensor(inverse.reshape(buf.shape), xp.int64),
            tensor(counts, xp.int64))


def unique_all(x, /) -> UniqueAllResult:
    """Sorted unique values, the index of each one's first occurrence, the inverse indices (shaped
    like `x`) and the counts. Realises `x` now (data-dependent shape)."""
    return UniqueAllResult(*_unique("unique_all", x))


def unique_counts(x, /) -> UniqueCountsResult:
    """Sorted unique values and their counts. Realises `x` now (data-dependent shape)."""
    values, _, _, counts = _unique("unique_counts", x)
    return UniqueCountsResult(values, counts)


def unique_inverse(x, /) -> UniqueInverseResult:
    """Sorted unique values and the inverse indices (shaped like `x`). Realises `x` now."""
    values, _, inverse, _ = _unique("unique_inverse", x)
    return UniqueInverseResult(values, inverse)


def unique_values(x, /) -> Tensor:
    """The sorted unique values. Realises `x` now (data-dependent shape)."""
    return _unique("unique_values", x)[0]
