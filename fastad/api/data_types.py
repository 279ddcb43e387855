"""api.data_types: the array API's data type functions on tensors, dtypes and Python scalars.

`fastad.dtypes` holds the dtypes and the promotion table on `DType`s (what the
frontend uses internally); these wrappers accept what the standard allows: tensors
(their dtype), dtypes, numpy dtypes and, in `result_type`, Python scalars (weakly
typed: they take the kind's dtype of the other operands).
"""
from __future__ import annotations

import builtins
from dataclasses import dataclass

import numpy as np

from .. import dtypes as dt
from ..tensor import Tensor

__all__ = ["result_type", "can_cast", "finfo", "iinfo"]

_PY_SCALARS = (builtins.bool, int, float, complex)


def _dtype_of(x) -> dt.DType:
    return x.dtype if isinstance(x, Tensor) else dt.to_dtype(x)


def result_type(*arrays_and_dtypes) -> dt.DType:
    """The promoted dtype of tensors and dtypes; Python scalars join weakly (2024.12)."""
    typed = [_dtype_of(x) for x in arrays_and_dtypes if not isinstance(x, _PY_SCALARS)]
    scalars = [x for x in arrays_and_dtypes if isinstance(x, _PY_SCALARS)]
    if not typed:
        raise TypeError("result_type: needs at least one array or dtype (Python scalars alone have no dtype)")
    out = dt.result_type(*typed)
    for s in scalars:
        out = dt.result_type(out, dt.scalar_dtype(s, out))
    return out


def can_cast(from_, to, /) -> builtins.bool:
    """Whether promotion alone turns `from_` (a tensor or dtype) into `to`."""
    return dt.can_cast(_dtype_of(from_), dt.to_dtype(to))


@dataclass(frozen=True)
class finfo_object:
    bits: int
    eps: float
    max: float
    min: float
    smallest_normal: float
    dtype: dt.DType


@dataclass(frozen=True)
class iinfo_object:
    bits: int
    max: int
    min: int
    dtype: dt.DType


_REAL = {"complex64": dt.float32, "complex128": dt.float64}


def finfo(type, /) -> finfo_object:
    """Machine limits of a floating dtype (of its real part for complex dtypes)."""
    d = _dtype_of(type)
    if not d.is_floating:
        raise ValueError(f"finfo: {d.name} is not a floating-point dtype")
    d = _REAL.get(d.name, d)
    fi = np.finfo(d.np)
    return finfo_object(bits=fi.bits, eps=float(fi.eps), max=float(fi.max), min=float(fi.min),
                        smallest_normal=float(fi.smallest_normal), dtype=d)


def iinfo(type, /) -> iinfo_object:
    """Machine limits of an integer dtype."""
    d = _dtype_of(type)
    if d.kind not in "iu":
        raise ValueError(f"iinfo: {d.name} is not an integer dtype")
    ii = np.iinfo(d.np)
    return iinfo_object(bits=ii.bits, max=int(ii.max), min=int(ii.min), dtype=d)
