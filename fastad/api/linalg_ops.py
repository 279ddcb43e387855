"""api.linalg_ops: the linear-algebra primitives of `fastad.linalg`, added to the op table.

Start at the `defop` calls at the bottom. Each decomposition is one library op
whose reference calls LAPACK through the array module of its input: numpy on
the CPU, CuPy (cuSOLVER) on CUDA, so the runtimes run it with no code of their
own. A decomposition with several outputs (eigh, svd, qr, slogdet) is one op
whose output packs them along its last axis (`pack`); the frontend
(`fastad.api.linalg`) and the derivative rules cut them out again (`split`).

Complex inputs compute values; their backward pass raises (`defop` here).
Derivative rules are real-valued and built with the rule builder `f` from
other ops (matmul, permute, these ops), so they are differentiable again.
Their limits (docs/LINALG.md): eigh and svd assume distinct eigen/singular
values (pairs of equal ones contribute nothing, instead of infinity); svd with
full_matrices on a non-square input and qr with more columns than rows have no
gradient; det, slogdet and inv need an invertible matrix.
"""
from __future__ import annotations

import math
import sys

import numpy as np

from .. import dtypes as dt
from ..ops import LIBRARY, defop as _defop, f

__all__ = ["array_module", "pack", "split", "mT", "real_dtype"]


def array_module(x):
    """numpy, or CuPy for a CuPy array (CuPy is imported only by the CUDA runtime)."""
    cupy = sys.modules.get("cupy")
    return cupy if cupy is not None and isinstance(x, cupy.ndarray) else np


def real_dtype(dtype):
    """The real dtype of a complex one (a real dtype is its own)."""
    return {dt.complex64: dt.float32, dt.complex128: dt.float64}.get(dtype, dtype)


def _real_out(srcs, arg):
    return real_dtype(srcs[0].dtype)


def defop(name, kind, arity, vjp=None, **kw):
    """`ops.defop` for these ops: their derivative rules are real-valued, so a complex input's
    backward pass raises (complex linear algebra computes values only)."""
    def rule(c, g):
        if c.x.dtype.kind == "c":
            raise NotImplementedError(f"fastad.linalg: {name} has no complex gradient (real inputs only)")
        return vjp(c, g)
    return _defop(name, kind, arity, vjp=None if vjp is None else rule, **kw)


def _lapack(name, fn):
    """A reference that reports LAPACK's failures (singular, not positive definite) by op name."""
    def ref(*args):
        try:
            return fn(*args)
        except np.linalg.LinAlgError as e:
            raise np.linalg.LinAlgError(f"fastad.linalg.{name}: {e} (input shape {args[0].shape})") from None
    return ref


# ---------------------------------------------------------------------------
# Packing several outputs into one
# ---------------------------------------------------------------------------

def pack(xp, batch, parts):
    """One array of shape batch + (total,): each part flattened over its own (trailing) dims."""
    batch = tuple(batch)   # explicit sizes: -1 cannot be inferred in an empty batch
    return xp.concatenate([xp.reshape(p, batch + (math.prod(p.shape[len(batch):]),)) for p in parts], axis=-1)


def split(x, shapes):
    """The parts of a packed node or tensor `x` (shape batch + (total,)), reshaped to batch + shape."""
    batch, out, start = tuple(x.shape[:-1]), [], 0
    for shape in shapes:
        n = math.prod(shape)
        sl = tuple((0, d, 1) for d in batch) + ((start, start + n, 1),)
        out.append(f.reshape(f.slice(x, arg=sl), arg=batch + tuple(shape)))
        start += n
    return out


def eigh_shapes(n):
    return [(n,), (n, n)]


def svd_shapes(m, n, full):
    k = min(m, n)
    return [(m, m if full else k), (k,), (n if full else k, n)]


def qr_shapes(m, n, complete):
    k = m if complete else min(m, n)
    return [(m, k), (k, n)]


def _packed_shape(shapes_fn):
    def rule(srcs, arg):
        x = srcs[0].shape
        return x[:-2] + (sum(math.prod(s) for s in shapes_fn(x[-2], x[-1], arg)),)
    return rule


# ---------------------------------------------------------------------------
# Small helpers for the rules (nodes or tensors alike)
# ---------------------------------------------------------------------------

def mT(x):
    return f.permute(x, arg=tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2))


def _col(v, shape):
    """v (..., k) broadcast down the columns of a (..., k, m) matrix (diag(v) @ M)."""
    return f.expand(f.reshape(v, arg=tuple(v.shape) + (1,)), arg=tuple(shape))


def _row(v, shape):
    """v (..., k) broadcast along the rows of a (..., m, k) matrix (M @ diag(v))."""
    return f.expand(f.reshape(v, arg=tuple(v.shape[:-1]) + (1, v.shape[-1])), arg=tuple(shape))


def _unsq2(v, shape):
    """A batch of scalars (...) broadcast over the matrices of `shape` (..., n, m)."""
    return f.expand(f.reshape(v, arg=tuple(v.shape) + (1, 1)), arg=tuple(shape))


def _diag(v):
    return f.linalg_diag_embed(v, arg=(0, v.shape[-1], v.shape[-1]))


def _safe_recip(x):
    """1/x, and 0 where x == 0 (so no infinity enters a product that should vanish)."""
    zero = f.eq(x, f.like(0, x))
    return f.where(zero, f.like(0, x), f.div(f.like(1, x), f.where(zero, f.like(1, x), x)))


def _gap_inverse(v):
    """F[i, j] = 1 / (v[j] - v[i]), and 0 where v[i] == v[j] (the diagonal, and degenerate pairs)."""
    shape = tuple(v.shape) + (v.shape[-1],)
    return _safe_recip(f.sub(_row(v, shape), _col(v, shape)))


def _sym(x):
    return f.mul(f.add(x, mT(x)), f.like(0.5, x))


# ---------------------------------------------------------------------------
# Structural ops: diagonal, its embedding, triangular parts
# ---------------------------------------------------------------------------

def _diagonal_ref(x, offset):
    return array_module(x).diagonal(x, offset, axis1=-2, axis2=-1).copy()


def _diagonal_shape(srcs, offset):
    n, m = srcs[0].shape[-2:]
    return srcs[0].shape[:-2] + (max(0, min(n + min(offset, 0), m - max(offset, 0))),)


def _diag_embed_ref(g, arg):
    offset, n, m = arg
    xp = array_module(g)
    out = xp.zeros(g.shape[:-1] + (n, m), g.dtype)
    k = xp.arange(g.shape[-1])
    out[..., k + max(-offset, 0), k + max(offset, 0)] = g
    return out


# diagonal(x, offset) of the last two axes, and its transpose: g written on that diagonal of zeros
defop("linalg_diagonal", LIBRARY, 1, ref=_diagonal_ref, shape=_diagonal_shape,
      vjp=lambda c, g: (f.linalg_diag_embed(g, arg=(c.arg,) + tuple(c.x.shape[-2:])),))
defop("linalg_diag_embed", LIBRARY, 1, ref=_diag_embed_ref,
      shape=lambda srcs, arg: srcs[0].shape[:-1] + tuple(arg[1:]),
      vjp=lambda c, g: (f.linalg_diagonal(g, arg=c.arg[0]),))


def _band_ref(x, arg):
    k, upper = arg
    xp = array_module(x)
    return xp.triu(x, k) if upper else xp.tril(x, k)


# the lower (arg (k, False): tril) or upper (k, True: triu) triangle; a mask, so its own transpose
defop("linalg_band", LIBRARY, 1, ref=_band_ref, shape=lambda srcs, arg: srcs[0].shape,
      vjp=lambda c, g: (f.linalg_band(g, arg=c.arg),))


# ---------------------------------------------------------------------------
# Inverse, solve, determinants
# ---------------------------------------------------------------------------

def _same(srcs, arg):
    return srcs[0].shape


def _inv_vjp(c, g):
    yt = mT(c.y)
    return (f.neg(f.matmul(f.matmul(yt, g), yt)),)


def _solve_vjp(c, g):
    gb = f.linalg_solve(mT(c.a), g)
    return f.neg(f.matmul(gb, mT(c.y))), gb


def _det_vjp(c, g):
    a = c.x
    return (f.mul(_unsq2(f.mul(g, c.y), a.shape), mT(f.linalg_inv(a))),)


def _slogdet_ref(x, arg):
    sign, logabs = array_module(x).linalg.slogdet(x)
    return array_module(x).stack([sign, logabs], axis=-1)


def _slogdet_vjp(c, g):
    a = c.x
    glog = f.reshape(f.slice(g, arg=tuple((0, d, 1) for d in g.shape[:-1]) + ((1, 2, 1),)), arg=a.shape[:-2])
    return (f.mul(_unsq2(glog, a.shape), mT(f.linalg_inv(a))),)


defop("linalg_inv", LIBRARY, 1, domain="float", shape=_same, vjp=_inv_vjp,
      ref=_lapack("inv", lambda x, arg: array_module(x).linalg.inv(x)))
defop("linalg_solve", LIBRARY, 2, domain="float", shape=lambda srcs, arg: srcs[1].shape, vjp=_solve_vjp,
      ref=_lapack("solve", lambda a, b, arg: array_module(a).linalg.solve(a, b)))
defop("linalg_det", LIBRARY, 1, domain="float", shape=lambda srcs, arg: srcs[0].shape[:-2], vjp=_det_vjp,
      ref=_lapack("det", lambda x, arg: array_module(x).linalg.det(x)))
# slogdet: (..., 2) = (sign, log|det|); the sign is piecewise constant (no gradient)
defop("linalg_slogdet", LIBRARY, 1, domain="float", shape=lambda srcs, arg: srcs[0].shape[:-2] + (2,),
      vjp=_slogdet_vjp, ref=_lapack("slogdet", _slogdet_ref))


# ---------------------------------------------------------------------------
# Cholesky, eigh, svd, qr, pinv
# ---------------------------------------------------------------------------

def _cholesky_vjp(c, g):
    # A = L L^T: gA = sym(L^-T Phi(L^T gL) L^-1), Phi = the lower triangle with its diagonal halved
    ll = c.y
    p = f.linalg_band(f.matmul(mT(ll), g), arg=(0, False))
    p = f.sub(p, f.mul(_diag(f.linalg_diagonal(p, arg=0)), f.like(0.5, p)))
    linv = f.linalg_inv(ll)
    return (_sym(f.matmul(f.matmul(mT(linv), p), linv)),)


def _eigh_ref(x, arg):
    xp = array_module(x)
    w, v = xp.linalg.eigh(x)
    return pack(xp, x.shape[:-2], [w, v])


def _eigh_vjp(c, g):
    # A = V diag(w) V^T: gA = V (diag(gw) + F o (V^T gV)) V^T, symmetrised (the gradient of eigh(sym(A)))
    n = c.x.shape[-1]
    w, v = split(c.y, eigh_shapes(n))
    gw, gv = split(g, eigh_shapes(n))
    inner = f.add(_diag(gw), f.mul(_gap_inverse(w), f.matmul(mT(v), gv)))
    return (_sym(f.matmul(f.matmul(v, inner), mT(v))),)


def _eigvalsh_vjp(c, g):
    n = c.x.shape[-1]
    _, v = split(f.linalg_eigh(c.x), eigh_shapes(n))
    return (f.matmul(f.mul(v, _row(g, v.shape)), mT(v)),)


def _svd_ref(x, full):
    xp = array_module(x)
    u, s, vh = xp.linalg.svd(x, full_matrices=full)
    return pack(xp, x.shape[:-2], [u, s, vh])


def _svd_vjp(c, g):
    m, n = c.x.shape[-2:]
    if c.arg and m != n:
        raise NotImplementedError("svd: no gradient with full_matrices=True for a non-square input "
                                  "(the extra singular vectors are not unique); use full_matrices=False")
    u, s, vh = split(c.y, svd_shapes(m, n, c.arg))
    gu, gs, gvh = split(g, svd_shapes(m, n, c.arg))
    v, gv = mT(vh), mT(gvh)
    k = s.shape[-1]
    fm = _gap_inverse(f.mul(s, s))
    j = f.mul(fm, f.sub(f.matmul(mT(u), gu), f.matmul(mT(gu), u)))
    kk = f.mul(fm, f.sub(f.matmul(mT(v), gv), f.matmul(mT(gv), v)))
    sq = tuple(s.shape) + (k,)
    inner = f.add(f.add(f.mul(j, _row(s, sq)), _diag(gs)), f.mul(_col(s, sq), kk))
    ga = f.matmul(f.matmul(u, inner), vh)
    sinv = _safe_recip(s)
    t1 = f.mul(gu, _row(sinv, gu.shape))                      # gU S^-1, then (I - U U^T) of it
    ga = f.add(ga, f.matmul(f.sub(t1, f.matmul(u, f.matmul(mT(u), t1))), vh))
    w = mT(f.mul(gv, _row(sinv, gv.shape)))                   # S^-1 gV^T, then of it (I - V V^T)
    ga = f.add(ga, f.matmul(u, f.sub(w, f.matmul(f.matmul(w, v), vh))))
    return (ga,)


def _svdvals_vjp(c, g):
    m, n = c.x.shape[-2:]
    u, _, vh = split(f.linalg_svd(c.x, arg=False), svd_shapes(m, n, False))
    return (f.matmul(f.mul(u, _row(g, u.shape)), vh),)


def _qr_ref(x, complete):
    xp = array_module(x)
    q, r = xp.linalg.qr(x, mode="complete" if complete else "reduced")
    return pack(xp, x.shape[:-2], [q, r])


def _qr_vjp(c, g):
    # reduced QR with m >= n: M = R gR^T - gQ^T Q, gA = (gQ + Q copyltu(M)) R^-T
    m, n = c.x.shape[-2:]
    if m < n or (c.arg and m != n):
        raise NotImplementedError(f"qr: gradient defined for mode='reduced' with rows >= columns, "
                                  f"got a {m}x{n} input in mode {'complete' if c.arg else 'reduced'}")
    q, r = split(c.y, qr_shapes(m, n, c.arg))
    gq, gr = split(g, qr_shapes(m, n, c.arg))
    mm = f.sub(f.matmul(r, mT(gr)), f.matmul(mT(gq), q))
    low = f.linalg_band(mm, arg=(-1, False))
    copyltu = f.add(f.add(low, mT(low)), _diag(f.linalg_diagonal(mm, arg=0)))
    b = f.add(gq, f.matmul(q, copyltu))
    return (mT(f.linalg_solve(r, mT(b))),)


def _pinv_ref(x, rtol, arg):
    # numpy's definition, written once for numpy and CuPy (whose pinv takes no per-matrix cutoff)
    xp = array_module(x)
    if x.size == 0:
        return xp.zeros(x.shape[:-2] + x.shape[-2:][::-1], x.dtype)
    u, s, vh = xp.linalg.svd(x, full_matrices=False)
    cutoff = rtol[..., None] * xp.max(s, axis=-1, keepdims=True)
    big = s > cutoff
    s_inv = xp.where(big, 1 / xp.where(big, s, 1), 0).astype(s.dtype)
    return xp.matmul(xp.conj(xp.swapaxes(vh, -1, -2)) * s_inv[..., None, :], xp.conj(xp.swapaxes(u, -1, -2)))


def _pinv_vjp(c, g):
    # d(A+) = -A+ dA A+ + A+ A+^T dA^T (I - A A+) + (I - A+ A) dA^T A+^T A+   (constant rank)
    a, x = c.x, c.y
    gt = mT(g)
    ga = f.neg(f.matmul(f.matmul(mT(x), g), mT(x)))
    t2 = f.matmul(f.matmul(gt, x), mT(x))
    ga = f.add(ga, f.sub(t2, f.matmul(a, f.matmul(x, t2))))
    t3 = f.matmul(f.matmul(mT(x), x), gt)
    return f.add(ga, f.sub(t3, f.matmul(f.matmul(t3, x), a))), None


defop("linalg_cholesky", LIBRARY, 1, domain="float", shape=_same, vjp=_cholesky_vjp,
      ref=_lapack("cholesky", lambda x, arg: array_module(x).linalg.cholesky(x)))
defop("linalg_eigh", LIBRARY, 1, domain="float", vjp=_eigh_vjp, ref=_lapack("eigh", _eigh_ref),
      shape=_packed_shape(lambda m, n, arg: eigh_shapes(n)))
defop("linalg_eigvalsh", LIBRARY, 1, domain="float", vjp=_eigvalsh_vjp, out=_real_out,
      ref=_lapack("eigvalsh", lambda x, arg: array_module(x).linalg.eigvalsh(x)),
      shape=lambda srcs, arg: srcs[0].shape[:-1])
# svd: arg = full_matrices; packs (U, S, Vh)
defop("linalg_svd", LIBRARY, 1, domain="float", vjp=_svd_vjp, ref=_lapack("svd", _svd_ref),
      shape=_packed_shape(svd_shapes))
defop("linalg_svdvals", LIBRARY, 1, domain="float", vjp=_svdvals_vjp, out=_real_out,
      ref=_lapack("svdvals", lambda x, arg: array_module(x).linalg.svd(x, compute_uv=False)),
      shape=lambda srcs, arg: srcs[0].shape[:-2] + (min(srcs[0].shape[-2:]),))
# qr: arg = complete (mode="complete"); packs (Q, R)
defop("linalg_qr", LIBRARY, 1, domain="float", vjp=_qr_vjp, ref=_lapack("qr", _qr_ref),
      shape=_packed_shape(qr_shapes))
# pinv(x, rtol): rtol (batch shape, real) is the relative cutoff of small singular values
defop("linalg_pinv", LIBRARY, 2, domain="float", vjp=_pinv_vjp, ref=_lapack("pinv", _pinv_ref),
      shape=lambda srcs, arg: srcs[0].shape[:-2] + srcs[0].shape[-2:][::-1])
