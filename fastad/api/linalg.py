"""api.linalg: the array API's `linalg` extension (2024.12), importable as `fastad.linalg`.

Decompositions, inverses and solves are library ops (`fastad.api.linalg_ops`)
that call LAPACK through numpy on the CPU and CuPy on CUDA, with derivative
rules in the op table. Everything else (norms, matrix_power, matrix_rank,
trace, outer, cross) is a composition of other ops, so it is lazy, fuses, and
differentiates through their rules; matmul, matrix_transpose, tensordot and
vecdot are the main namespace's (`fastad.api.linear_algebra`). Functions that return
several arrays return the spec's named tuples. Inputs of the decompositions and
norms must be floating point; complex inputs compute values but have no gradient
through the LAPACK ops (NotImplementedError in backward).
docs/LINALG.md lists what runs where and the limits of the derivative rules.
"""
from __future__ import annotations

import builtins
import math
from typing import NamedTuple

import numpy as np

import fastad as _fa

from .. import dtypes as dt
from ..errors import AxisError
from ..tensor import Tensor, _apply, _broadcast, broadcast_shapes, normalize_axes
from . import linalg_ops as _ops
# the spec's linalg.matmul, matrix_transpose, tensordot and vecdot are the main namespace's functions
from .linear_algebra import matmul, matrix_transpose, tensordot, vecdot

__all__ = ["cholesky", "cross", "det", "diagonal", "eigh", "eigvalsh", "inv", "matmul", "matrix_norm",
           "matrix_power", "matrix_rank", "matrix_transpose", "outer", "pinv", "qr", "slogdet", "solve",
           "svd", "svdvals", "tensordot", "trace", "vecdot", "vector_norm",
           "EighResult", "QRResult", "SlogdetResult", "SVDResult", "LinAlgError"]

LinAlgError = np.linalg.LinAlgError   # raised (when the value is computed) for singular / non-PD inputs


class EighResult(NamedTuple):
    eigenvalues: Tensor
    eigenvectors: Tensor


class QRResult(NamedTuple):
    Q: Tensor
    R: Tensor


class SlogdetResult(NamedTuple):
    sign: Tensor
    logabsdet: Tensor


class SVDResult(NamedTuple):
    U: Tensor
    S: Tensor
    Vh: Tensor


def _tensor(name, x) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"linalg.{name}: expected a fastad Tensor, got {type(x).__name__}")
    return x


def _matrix(name, x, square=False, kinds="fc") -> Tensor:
    """Check a (stack of) matrices: a Tensor of >= 2 dims, square if asked, of a dtype kind in `kinds`."""
    x = _tensor(name, x)
    if x.ndim < 2:
        raise ValueError(f"linalg.{name}: expected a matrix or a stack of matrices, got shape {x.shape}")
    if square and x.shape[-1] != x.shape[-2]:
        raise ValueError(f"linalg.{name}: expected square matrices, got shape {x.shape}")
    _kind(name, x, kinds)
    return x


def _kind(name, x, kinds):
    if x.dtype.kind not in kinds:
        need = {"fc": "a floating-point", "iufc": "a numeric"}[kinds]
        raise TypeError(f"linalg.{name}: needs {need} dtype, got {x.dtype.name}")


# ---------------------------------------------------------------------------
# Library ops (LAPACK)
# ---------------------------------------------------------------------------

def inv(x, /) -> Tensor:
    """The inverse; a singular matrix raises LinAlgError when the value is computed."""
    return _apply("linalg_inv", _matrix("inv", x, square=True))


def det(x, /) -> Tensor:
    return _apply("linalg_det", _matrix("det", x, square=True))


def slogdet(x, /) -> SlogdetResult:
    """(sign, log|det|); the gradient flows through logabsdet (needs an invertible matrix)."""
    packed = _apply("linalg_slogdet", _matrix("slogdet", x, square=True))
    sign, logabs = _ops.split(packed, [(1,), (1,)])
    return SlogdetResult(_fa.reshape(sign, x.shape[:-2]), _real(_fa.reshape(logabs, x.shape[:-2])))


def _real(t):
    """The real part of a complex decomposition's real-valued output (packed with complex parts)."""
    return _fa.real(t) if t.dtype.kind == "c" else t


def solve(x1, x2, /) -> Tensor:
    """x with x1 @ x = x2. x2 of shape (M,) is one vector; otherwise batch dims broadcast."""
    a = _matrix("solve", x1, square=True)
    b = _tensor("solve", x2)
    _kind("solve", b, "fc")
    if a.device != b.device:
        raise ValueError(f"linalg.solve: operands on different devices: {a.device} and {b.device}")
    common = dt.result_type(a.dtype, b.dtype)
    a, b = _fa.astype(a, common, copy=False), _fa.astype(b, common, copy=False)
    n = a.shape[-1]
    vector = b.ndim == 1
    if vector:
        b = _fa.reshape(b, (n, 1))
    if b.shape[-2] != n:
        raise ValueError(f"linalg.solve: x1 {x1.shape} and x2 {x2.shape} do not match")
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2], op="linalg.solve")
    out = _apply("linalg_solve", _broadcast(a, batch + a.shape[-2:]), _broadcast(b, batch + b.shape[-2:]))
    return _fa.reshape(out, batch + (n,)) if vector else out


def cholesky(x, /, *, upper: bool = False) -> Tensor:
    """The Cholesky factor (lower, or upper = its transpose); not positive definite: LinAlgError."""
    low = _apply("linalg_cholesky", _matrix("cholesky", x, square=True))
    return matrix_transpose(low) if upper else low


def eigh(x, /) -> EighResult:
    """Eigenvalues (ascending) and eigenvectors of symmetric matrices (LAPACK reads the lower triangle).
    The gradient is that of eigh((x + x^T) / 2) and assumes distinct eigenvalues."""
    x = _matrix("eigh", x, square=True)
    w, v = _ops.split(_apply("linalg_eigh", x), _ops.eigh_shapes(x.shape[-1]))
    return EighResult(_real(w), v)


def eigvalsh(x, /) -> Tensor:
    return _apply("linalg_eigvalsh", _matrix("eigvalsh", x, square=True))


def svd(x, /, *, full_matrices: bool = True) -> SVDResult:
    """U, S (descending), Vh. Gradients assume distinct nonzero singular values; with
    full_matrices=True a non-square input has none (NotImplementedError in backward)."""
    x = _matrix("svd", x)
    full = builtins.bool(full_matrices)
    u, s, vh = _ops.split(_apply("linalg_svd", x, arg=full), _ops.svd_shapes(*x.shape[-2:], full))
    return SVDResult(u, _real(s), vh)


def svdvals(x, /) -> Tensor:
    return _apply("linalg_svdvals", _matrix("svdvals", x))


def qr(x, /, *, mode: str = "reduced") -> QRResult:
    """Q and R. Gradients for mode='reduced' with rows >= columns."""
    x = _matrix("qr", x)
    if mode not in ("reduced", "complete"):
        raise ValueError(f"linalg.qr: mode must be 'reduced' or 'complete', got {mode!r}")
    complete = mode == "complete"
    q, r = _ops.split(_apply("linalg_qr", x, arg=complete), _ops.qr_shapes(*x.shape[-2:], complete))
    return QRResult(q, r)


def _default_rtol(x) -> float:
    return builtins.max(x.shape[-2:]) * float(np.finfo(x.dtype.np).eps)


def _rtol(name, x, rtol) -> Tensor:
    """rtol (None: the spec's default, a float, or a tensor) as a real tensor of x's batch shape."""
    real = _ops.real_dtype(x.dtype)
    if rtol is None:
        rtol = _default_rtol(x)
    if not isinstance(rtol, Tensor):
        return _fa.full(x.shape[:-2], float(rtol), dtype=real, device=x.device)
    if rtol.dtype.kind not in "iuf":
        raise TypeError(f"linalg.{name}: rtol must be real, got {rtol.dtype.name}")
    try:
        shape = broadcast_shapes(rtol.shape, x.shape[:-2], op=f"linalg.{name}")
    except ValueError:
        raise ValueError(f"linalg.{name}: rtol of shape {rtol.shape} does not broadcast to the batch "
                         f"shape {x.shape[:-2]}") from None
    if shape != x.shape[:-2]:
        raise ValueError(f"linalg.{name}: rtol of shape {rtol.shape} broadcasts beyond the batch shape "
                         f"{x.shape[:-2]}")
    return _fa.broadcast_to(_fa.astype(rtol.detach(), real), shape)


def pinv(x, /, *, rtol=None) -> Tensor:
    """The pseudo-inverse (singular values <= rtol * the largest count as zero; rtol a float or a
    tensor broadcasting to the batch shape). The gradient holds where the rank is constant."""
    x = _matrix("pinv", x)
    return _apply("linalg_pinv", x, _rtol("pinv", x, rtol))


def diagonal(x, /, *, offset: int = 0) -> Tensor:
    x = _matrix("diagonal", x, kinds="biufc")
    return _apply("linalg_diagonal", x, arg=int(offset))


# ---------------------------------------------------------------------------
# Compositions
# ---------------------------------------------------------------------------

def trace(x, /, *, offset: int = 0, dtype=None) -> Tensor:
    d = diagonal(x, offset=offset)
    if dtype is None and d.dtype.kind in "iu" and d.dtype.itemsize < 8:   # the default accumulator
        dtype = _fa.int64 if d.dtype.kind == "i" else _fa.uint64
    return _fa.sum(d, axis=-1, dtype=dtype)


def _safe_root(s, p=2.0):
    """s ** (1/p) whose gradient at s == 0 is 0 rather than NaN (the norm's subgradient at 0)."""
    zero = s == 0
    safe = _fa.where(zero, _fa.ones_like(s), s)
    root = _fa.sqrt(safe) if p == 2 else safe ** (1.0 / p)
    return _fa.where(zero, _fa.zeros_like(s), root)


def vector_norm(x, /, *, axis=None, keepdims: bool = False, ord=2) -> Tensor:
    """The ord-norm over `axis` (None: all). ord: inf, -inf, 0 (the count of nonzeros), or any
    other real p (sum |x|**p) ** (1/p). The gradient at x == 0 is 0 (a subgradient), not NaN."""
    x = _tensor("vector_norm", x)
    _kind("vector_norm", x, "fc")
    axes = normalize_axes(axis, x.ndim, "linalg.vector_norm")   # axis=(): the elementwise |x|
    ax = _fa.abs(x)
    if ord == math.inf:
        out = _fa.max(ax, axis=axes, keepdims=keepdims) if x.size else _fa.sum(ax, axis=axes, keepdims=keepdims)
    elif ord == -math.inf:
        out = _fa.min(ax, axis=axes, keepdims=keepdims)
    elif ord == 0:
        out = _fa.sum(_fa.astype(x != 0, ax.dtype), axis=axes, keepdims=keepdims)
    elif ord == 1:
        out = _fa.sum(ax, axis=axes, keepdims=keepdims)
    elif ord == 2:
        out = _safe_root(_fa.sum(ax * ax, axis=axes, keepdims=keepdims))
    elif isinstance(ord, (int, float)) and not isinstance(ord, builtins.bool):
        if ord < 0:   # 1 / (sum |x|**p) ** (1/-p): zeros make |x|**p infinite and the norm 0, as in numpy
            out = _fa.sum(ax ** float(ord), axis=axes, keepdims=keepdims) ** (1.0 / ord)
        else:
            out = _safe_root(_fa.sum(ax ** float(ord), axis=axes, keepdims=keepdims), float(ord))
    else:
        raise ValueError(f"linalg.vector_norm: ord must be a real number or +-inf, got {ord!r}")
    return out


def matrix_norm(x, /, *, keepdims: bool = False, ord="fro") -> Tensor:
    """'fro', 'nuc', 1, -1, 2, -2, inf, -inf norms of the last two axes."""
    x = _matrix("matrix_norm", x)
    axes = (x.ndim - 2, x.ndim - 1)
    if ord == "fro":
        out = vector_norm(x, axis=axes, keepdims=keepdims)
    elif ord in ("nuc", 2, -2):
        s = svdvals(x)
        red = {"nuc": _fa.sum, 2: _fa.max, -2: _fa.min}[ord]
        out = red(s, axis=-1)
        if keepdims:
            out = _fa.reshape(out, out.shape + (1, 1))
    elif ord in (1, -1, math.inf, -math.inf):
        over, keep = (-2, -1) if ord in (1, -1) else (-1, -2)
        col = _fa.sum(_fa.abs(x), axis=over, keepdims=True)
        red = _fa.max if ord > 0 else _fa.min
        out = red(col, axis=keep, keepdims=True)
        if not keepdims:
            out = _fa.reshape(out, x.shape[:-2])
    else:
        raise ValueError(f"linalg.matrix_norm: ord must be 'fro', 'nuc', +-1, +-2 or +-inf, got {ord!r}")
    return out


def matrix_power(x, n, /) -> Tensor:
    """x @ x @ ... (n times) by repeated squaring; n < 0 powers the inverse, n == 0 gives identities."""
    x = _matrix("matrix_power", x, square=True, kinds="iufc" if n >= 0 else "fc")
    if not isinstance(n, (int, np.integer)) or isinstance(n, builtins.bool):
        raise TypeError(f"linalg.matrix_power: n must be an int, got {type(n).__name__}")
    if n == 0:
        eye = _fa.eye(x.shape[-1], dtype=x.dtype, device=x.device)
        return _fa.broadcast_to(eye, x.shape)
    base = inv(x) if n < 0 else x
    n, result = builtins.abs(int(n)), None
    while n:
        if n & 1:
            result = base if result is None else _fa.matmul(result, base)
        n >>= 1
        if n:
            base = _fa.matmul(base, base)
    return result if result is not x else _apply("reshape", x, arg=x.shape)


def matrix_rank(x, /, *, rtol=None) -> Tensor:
    """The number of singular values above rtol * the largest (int64, no gradient)."""
    x = _matrix("matrix_rank", x)
    s = svdvals(x)
    if x.shape[-1] == 0 or x.shape[-2] == 0:
        return _fa.zeros(x.shape[:-2], dtype=_fa.int64, device=x.device)
    tol = _fa.max(s, axis=-1, keepdims=True) * _fa.reshape(_rtol("matrix_rank", x, rtol), x.shape[:-2] + (1,))
    return _fa.sum(_fa.astype(s > tol, _fa.int64), axis=-1)


def outer(x1, x2, /) -> Tensor:
    a, b = _tensor("outer", x1), _tensor("outer", x2)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"linalg.outer: expected 1-d tensors, got shapes {a.shape} and {b.shape}")
    return _fa.reshape(a, (a.shape[0], 1)) * _fa.reshape(b, (1, b.shape[0]))


def cross(x1, x2, /, *, axis: int = -1) -> Tensor:
    """The cross product of 3-vectors along `axis` (batch dims broadcast)."""
    a, b = _tensor("cross", x1), _tensor("cross", x2)
    _kind("cross", a, "iufc")
    _kind("cross", b, "iufc")
    shape = broadcast_shapes(a.shape, b.shape, op="cross")
    if not -len(shape) <= axis < 0:
        raise AxisError(f"cross: axis {axis} must be negative and within the broadcast rank {len(shape)}")
    if shape[axis] != 3 or a.shape[axis] != 3 or b.shape[axis] != 3:
        raise ValueError(f"cross: axis {axis} must have size 3 in both, got {a.shape} and {b.shape}")
    a, b = _fa.broadcast_to(a, shape), _fa.broadcast_to(b, shape)
    ax = axis % len(shape)

    def part(t, i):
        return t[(slice(None),) * ax + (i,)]
    a0, a1, a2 = (part(a, i) for i in range(3))
    b0, b1, b2 = (part(b, i) for i in range(3))
    return _fa.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=ax)
