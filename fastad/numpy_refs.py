"""numpy_refs: the numpy references of op-table entries that take more than one numpy call.

Role: an op's numpy reference defines its semantics on every tier (fastad/ops.py).
Most are a single numpy function; these add the array API's special values
where numpy differs, a libm function numpy lacks, or the arrays a library op
builds (embed, scatter_add). Each is named after its op.
"""
from __future__ import annotations

import math

import numpy as np

from . import dtypes as dt
from .config import settings

__all__ = ["expm1", "tanh", "sigmoid", "erf", "floordiv", "embed", "scatter_add", "py_slices", "matmul",
           "matmul_row_blocks", "cast", "reduction"]


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


# Large matrix products run in row blocks, each its own BLAS call, on fastad's threads when BLAS
# itself runs on one (`settings.matmul_row_blocks`). `run_blocks(f, n)` calls f(0) .. f(n-1):
# the CPU backend installs its pool's (`runtime.cpu`); None calls them in turn.
run_blocks = None
MATMUL_SPLIT_FLOPS = 1 << 23     # m*k*n from which a product is split (a few ms of one core)
MATMUL_MIN_ROWS = 64             # rows per block at least


def _large(a, b) -> bool:
    """A 2-D float product of host arrays of at least MATMUL_SPLIT_FLOPS multiply-adds (one dtype: BLAS)."""
    return (type(a) is np.ndarray and type(b) is np.ndarray and a.ndim == 2 and b.ndim == 2
            and a.dtype == b.dtype and a.dtype.kind == "f"
            and a.shape[0] * a.shape[1] * b.shape[1] >= MATMUL_SPLIT_FLOPS)


def matmul_row_blocks(a, b) -> int:
    """How many row blocks `matmul` computes a @ b in: by the shapes, dtypes and setting only,
    never the pool, so a product's bits are the same for any thread count."""
    parts = settings.matmul_row_blocks
    if parts < 2 or not _large(a, b):
        return 1
    return max(1, min(parts, a.shape[0] // MATMUL_MIN_ROWS))


def matmul(a, b):
    """np.matmul; a large 2-D product is computed as row blocks a[lo:hi] @ b written into one
    result (`matmul_row_blocks`), the blocks on `run_blocks`' threads (numpy releases the GIL
    inside BLAS)."""
    parts = matmul_row_blocks(a, b)
    if parts == 1:
        return np.matmul(a, b)
    m = a.shape[0]
    out = np.empty((m, b.shape[1]), a.dtype)
    bounds = [m * i // parts for i in range(parts + 1)]

    def block(i):
        np.matmul(a[bounds[i]:bounds[i + 1]], b, out=out[bounds[i]:bounds[i + 1]])

    if run_blocks is None:
        for i in range(parts):
            block(i)
    else:
        run_blocks(block, parts)
    return out


def reduction(name: str, x, axis, xp=np):
    """numpy's `name` ("sum", "prod", "max", "min") of x over `axis`, in the accumulator's dtype
    of every tier (`dtypes.accumulator`: a float32 sum adds up in float64), not rounded back."""
    fn = getattr(xp, name)
    acc = dt.accumulator(name, dt.to_dtype(x.dtype)).np
    return fn(x, axis=axis) if acc == x.dtype else fn(x, axis=axis, dtype=acc)


INT64_LIMIT = 2.0 ** 63   # floats in [-INT64_LIMIT, INT64_LIMIT) truncate to an int64


def cast(x, dtype):
    """x.astype(dtype), with float (and complex: its real part) to integer defined on every tier:
    truncate toward zero to int64, then wrap to the width (numpy's results on x86 for values
    within the int64 range: -2.7 -> uint8 254, 255.9 -> int8 -1). NaN, infinities and values
    beyond the int64 range give int64's minimum, wrapped (0 for the narrower dtypes); uint64
    takes [2**63, 2**64) exactly. numpy leaves these undefined (its results vary with the
    target width and the vector loop that runs), so kernels could not agree with it."""
    dtype = np.dtype(dtype)
    if x.dtype.kind not in "fc" or dtype.kind not in "iu":
        return x.astype(dtype)
    if x.dtype.kind == "c":
        x = x.real
    with np.errstate(invalid="ignore"):
        inside = (x >= -INT64_LIMIT) & (x < INT64_LIMIT)   # (False for NaN)
        i64 = np.where(inside, np.where(inside, x, 0).astype(np.int64), np.iinfo(np.int64).min)
        if dtype == np.uint64:
            big = (x >= INT64_LIMIT) & (x < 2 * INT64_LIMIT)
            return np.where(big, np.where(big, x, 0).astype(np.uint64), i64.view(np.uint64))
        return i64.astype(dtype)


_libm_erf = np.frompyfunc(math.erf, 1, 1)


def erf(x):
    """libm's erf (numpy has none), in x's dtype."""
    return np.asarray(_libm_erf(x), np.float64).astype(x.dtype)


def py_slices(slices) -> tuple:
    """Normalised (start, stop, step) triples (from `slice.indices`) as Python slices.
    There a -1 means 'before the front', which Python would read as 'the last element'."""
    return tuple(slice(0, 0, 1) if not range(a, b, c) else slice(a, b if b >= 0 else None, c)
                 for a, b, c in slices)
