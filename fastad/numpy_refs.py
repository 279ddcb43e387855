"""numpy_refs: the numpy references of op-table entries that take more than one numpy call.

Role: an op's numpy reference defines its semantics on every tier (fastad/ops.py).
Most are a single numpy function; these add the array API's special values
where numpy differs, a libm function numpy lacks, or the arrays a library op
builds (embed, scatter_add). Each is named after its op.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["expm1", "tanh", "sigmoid", "erf", "floordiv", "embed", "scatter_add", "py_slices"]


def expm1(x):
    """numpy's expm1; for complex infinities, NaNs and zeros exp(z) - 1, which gives the array API's
    special values (numpy's complex expm1 gives NaN + NaN j for the first two and -0 for -0 + 0j)."""
    out = np.expm1(x)
    if x.dtype.kind == "c":
        out = np.where(np.isfinite(x) & (x != 0), out, np.exp(x) - 1).astype(x.dtype)
    return out


def tanh(x):
    """numpy's tanh; for complex z with an infinite real and finite imaginary part the array API's
    +-1 + 0j carrying the signs of the parts (numpy's zero takes the sign of sin(2 imag))."""
    out = np.tanh(x)
    if x.dtype.kind == "c":
        edge = np.isinf(x.real) & np.isfinite(x.imag)
        fixed = np.array(np.copysign(1, x.real), dtype=x.dtype)   # an array even when 0-d
        fixed.imag = np.copysign(0, x.imag)   # set, not added: 1j * -0.0 would lose the sign
        out = np.where(edge, fixed, out).astype(x.dtype)
    return out


def sigmoid(x):
    with np.errstate(over="ignore"):
        return (1 / (1 + np.exp(-x))).astype(x.dtype)


def nan_guard_into(g, v, out):
    """np.where(g == 0, g, v), written into `out` (the numpy tier's blocks: no new array of their size)."""
    np.copyto(out, v)
    np.copyto(out, g, where=g == 0)
    return out


def floordiv(a, b):
    """numpy's floor_divide, except the array API's special cases with an infinite operand:
    +-inf // finite is +-inf and finite // +-inf is a signed zero (numpy: nan and 0 or -1)."""
    out = np.floor_divide(a, b)
    if a.dtype.kind == "f":
        out = np.where(np.isinf(a) | np.isinf(b), a / b, out)
    return out


def embed(g, arg):
    shape, slices = arg
    out = np.zeros(shape, g.dtype)
    out[py_slices(slices)] = g
    return out


def scatter_add(g, idx, arg):
    axis, shape = arg
    if isinstance(g, np.ndarray):
        out = np.zeros(shape, g.dtype)
        np.add.at(out, (slice(None),) * axis + (idx,), g)
        return out
    import cupy, cupyx   # noqa: E401 - a CUDA buffer: CuPy's scatter-add
    out = cupy.zeros(shape, g.dtype)
    cupyx.scatter_add(out, (slice(None),) * axis + (idx,), g)
    return out


_libm_erf = np.frompyfunc(math.erf, 1, 1)


def erf(x):
    """libm's erf (numpy has none), in x's dtype."""
    return np.asarray(_libm_erf(x), np.float64).astype(x.dtype)


def py_slices(slices) -> tuple:
    """Normalised (start, stop, step) triples (from `slice.indices`) as Python slices.
    There a -1 means 'before the front', which Python would read as 'the last element'."""
    return tuple(slice(0, 0, 1) if not range(a, b, c) else slice(a, b if b >= 0 else None, c)
                 for a, b, c in slices)
