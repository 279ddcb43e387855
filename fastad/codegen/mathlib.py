"""mathlib: branch-free, vectorizable exp/log/trig/pow for Numba-generated kernels.

Role: numba lowers ``math.exp``/``math.sin``/... to scalar libm calls, which
LLVM cannot vectorize (no SVML).  The functions here are written so that a
``for i in prange(n): out[i] = exp_f32(x[i])`` loop becomes 16-lane AVX-512
(8-lane AVX2) code: no branches (only ``select``), no data-dependent loops,
no calls, and the ``*_f32`` variants never touch float64.

Public API, callable from numba-compiled code only (``from
fastad.codegen.mathlib import exp_f32``), one function per dtype:
    exp, expm1, log, log1p, sin, cos, tan, tanh, sigmoid   -> name_f32(x), name_f64(x)
    pow                                                    -> pow_f32(x, y), pow_f64(x, y)
Arguments must already have exactly the function's dtype (float32 for
``_f32``); anything else is a numba TypingError.  Special values (±0, ±inf,
nan, overflow, underflow, domain errors, pow's integer-exponent rules) follow
numpy.  Accuracy (1-3 ulp), methods and speed: docs/MATHLIB.md.

Where to start reading: the "Public names" section at the end (how a call
is compiled and force-inlined), then the intrinsics section (the LLVM
primitives), then ``_exp_f32``: the template every function follows --
clamp the input so the core never sees inf/nan, reduce the range, evaluate a
polynomial, then patch special cases with selects.

Rules for editing this file (the tests check the first two):
  * f32 code: every constant is an ``np.float32`` module global.  A Python
    float or int literal mixed with float32 makes numba promote to float64.
  * Use ``_select`` instead of ``if``/ternaries and ``&``/``|`` instead of
    ``and``/``or``: those create branches, which block vectorization.
  * Division goes through ``_div`` (plain ``fdiv``): numba's default
    error_model='python' would add a zero check + exception path.
  * Operation order matters (Cody-Waite reduction, two-sum, Veltkamp split);
    it holds because the bodies are compiled without fastmath even when the
    caller uses fastmath (see ``_export``).
"""
import hashlib

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = [
    "exp_f32", "exp_f64", "expm1_f32", "expm1_f64", "log_f32", "log_f64",
    "log1p_f32", "log1p_f64", "sin_f32", "sin_f64", "cos_f32", "cos_f64",
    "tan_f32", "tan_f64", "tanh_f32", "tanh_f64", "sigmoid_f32", "sigmoid_f64",
    "pow_f32", "pow_f64", "floordiv_f32", "floordiv_f64", "mod_f32", "mod_f64", "ipow", "upow",
]


def _source_hash():
    try:
        with open(__file__, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()[:16]
    except OSError:
        return "unknown"


# Callers' numba caches hold inlined copies of these functions and numba does
# not notice when this file changes: put SOURCE_HASH into generated kernel
# source (e.g. a comment) so that a new mathlib gives new cache entries.
SOURCE_HASH = _source_hash()

# Private helpers (and the implementations behind the public names) are
# inlined at numba-IR level into whatever calls them.
_HELPER = dict(inline="always", error_model="numpy", fastmath=False)


# ----------------------------------------------------------------------------
# LLVM intrinsics.  Each accepts float32 or float64 and refuses mixed types,
# so an accidental float64 constant in f32 code fails to compile.
# ----------------------------------------------------------------------------

def _llvm_unary(name):
    """An intrinsic f(x) -> llvm.<name>.f32/f64 (fabs, rint, floor vectorize)."""
    def impl(typingctx, x):
        if not isinstance(x, types.Float):
            return None

        def codegen(context, builder, sig, args):
            ty = args[0].type
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ty, [ty]),
                "llvm.%s.%s" % (name, "f32" if ty == ir.FloatType() else "f64"))
            return builder.call(fn, [args[0]])
        return x(x), codegen
    impl.__name__ = "_" + name
    return intrinsic(impl)


_fabs = _llvm_unary("fabs")
_rint = _llvm_unary("rint")    # round-half-even in the default fp mode
_floor = _llvm_unary("floor")


@intrinsic
def _select(typingctx, cond, a, b):
    """cond ? a : b as an LLVM select: both sides are computed, no branch."""
    if not (isinstance(cond, types.Boolean) and isinstance(a, types.Float) and a == b):
        return None

    def codegen(context, builder, sig, args):
        return builder.select(args[0], args[1], args[2])
    return a(cond, a, b), codegen


@intrinsic
def _div(typingctx, a, b):
    """IEEE a / b (x/0 = ±inf, 0/0 = nan) with no zero-division check."""
    if not (isinstance(a, types.Float) and a == b):
        return None

    def codegen(context, builder, sig, args):
        return builder.fdiv(args[0], args[1])
    return a(a, b), codegen


@intrinsic
def _copysign(typingctx, mag, sgn):
    """|mag| with the sign bit of sgn (keeps -0.0, unlike a comparison)."""
    if not (isinstance(mag, types.Float) and mag == sgn):
        return None

    def codegen(context, builder, sig, args):
        ty = args[0].type
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ty, [ty, ty]),
            "llvm.copysign." + ("f32" if ty == ir.FloatType() else "f64"))
        return builder.call(fn, args)
    return mag(mag, sgn), codegen


def _fmt(ty):
    """(int type, mantissa bits, exponent bias, bit pattern of sqrt(0.5))."""
    if ty == ir.FloatType():
        return ir.IntType(32), 23, 127, 0x3F3504F3
    return ir.IntType(64), 52, 1023, 0x3FE6A09E667F3BCD


@intrinsic
def _pow2(typingctx, n):
    """2**n for an integer-valued float n inside the *normal* exponent range
    ([-126, 127] / [-1022, 1023]); built by writing the exponent field, which
    is what makes exp vectorize (ldexp would be a libm call)."""
    if not isinstance(n, types.Float):
        return None

    def codegen(context, builder, sig, args):
        ity, mbits, bias, _ = _fmt(args[0].type)
        i = builder.fptosi(args[0], ity)
        i = builder.shl(builder.add(i, ir.Constant(ity, bias)), ir.Constant(ity, mbits))
        return builder.bitcast(i, args[0].type)
    return n(n), codegen


@intrinsic
def _frexp_sqrt2(typingctx, x):
    """Split a positive normal x into (m, k), x = m * 2**k, m in [sqrt(.5), sqrt(2)),
    k returned as a float.  Centring m on 1 keeps |log(m)| <= ln(2)/2.
    Integer trick: subtracting bits(sqrt(.5)) makes the exponent field carry
    exactly when the mantissa is >= sqrt(.5)'s mantissa."""
    if not isinstance(x, types.Float):
        return None
    rty = types.UniTuple(x, 2)

    def codegen(context, builder, sig, args):
        fty = args[0].type
        ity, mbits, _, sqrt_half = _fmt(fty)
        i = builder.bitcast(args[0], ity)
        k = builder.ashr(builder.sub(i, ir.Constant(ity, sqrt_half)), ir.Constant(ity, mbits))
        m = builder.bitcast(builder.sub(i, builder.shl(k, ir.Constant(ity, mbits))), fty)
        return context.make_tuple(builder, sig.return_type, [m, builder.sitofp(k, fty)])
    return rty(x), codegen


# ----------------------------------------------------------------------------
# Constants.  f32 ones are np.float32 so arithmetic stays in float32.
# ----------------------------------------------------------------------------
_f = np.float32
_h = float.fromhex

Z32, ONE32, TWO32, HALF32, QUARTER32, FOUR32 = _f(0), _f(1), _f(2), _f(0.5), _f(0.25), _f(4)
INF32, NAN32 = _f(np.inf), _f(np.nan)
TINY32 = _f(np.finfo(np.float32).tiny)             # smallest normal, 2**-126
MAX32 = _f(np.finfo(np.float32).max)
TWO23_32, M23_32 = _f(2.0 ** 23), _f(-23)
LOG2E32 = _f(1.4426950408889634)
# Cody-Waite ln2 = LN2A + LN2B; LN2A has 9 bits so n*LN2A is exact for |n| < 2**15.
LN2A32, LN2B32 = _f(0.693359375), _f(-2.12194440e-4)
SPLIT32 = _f(4097.0)                               # Veltkamp: 2**12 + 1

Z64, ONE64, TWO64, HALF64, QUARTER64, FOUR64 = 0.0, 1.0, 2.0, 0.5, 0.25, 4.0
INF64, NAN64 = np.inf, np.nan
TINY64 = np.finfo(np.float64).tiny                 # 2**-1022
MAX64 = np.finfo(np.float64).max
TWO54_64, M54_64 = 2.0 ** 54, -54.0
LOG2E64 = 1.4426950408889634
# fdlibm's split: LN2HI has 32 bits, so n*LN2HI is exact for |n| < 2**21.
LN2HI64, LN2LO64 = 6.93147180369123816490e-01, 1.90821492927058770002e-10
SPLIT64 = 134217729.0                              # Veltkamp: 2**27 + 1

# exp/expm1 f32 (Cephes expf): expm1(r) ~ r + r^2 P(r) on |r| <= ln2/2, 0.13 ulp.
EP0, EP1, EP2 = _f(1.9875691500e-4), _f(1.3981999507e-3), _f(8.3334519073e-3)
EP3, EP4, EP5 = _f(4.1665795894e-2), _f(1.6666665459e-1), _f(5.0000001201e-1)
# exp/expm1 f64 (fdlibm e_exp.c): exp(r) = 1 + r + r c / (2 - c), c = r - r^2 P(r^2).
XP1, XP2, XP3 = 1.66666666666666019037e-01, -2.77777777770155933842e-03, 6.61375632143793436117e-05
XP4, XP5 = -1.65339022054652515390e-06, 4.13813679705723846039e-08

# log f32 (Cephes logf): log(1+f) ~ f - f^2/2 + f^3 P(f) on f in [sqrt(.5)-1, sqrt(2)-1].
LP0, LP1, LP2 = _f(7.0376836292e-2), _f(-1.1514610310e-1), _f(1.1676998740e-1)
LP3, LP4, LP5 = _f(-1.2420140846e-1), _f(1.4249322787e-1), _f(-1.6668057665e-1)
LP6, LP7, LP8 = _f(2.0000714765e-1), _f(-2.4999993993e-1), _f(3.3333331174e-1)
# log f64 (fdlibm e_log.c): s = f/(2+f), log(1+f) = f - hfsq + s (hfsq + R(s^2)).
LG1, LG2, LG3 = 6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01
LG4, LG5, LG6 = 2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01
LG7 = 1.479819860511658591e-01

# sin/cos f32 (Cephes sinf/cosf) on |r| <= pi/4.
SS1, SS2, SS3 = _f(-1.6666654611e-1), _f(8.3321608736e-3), _f(-1.9515295891e-4)
SC1, SC2, SC3 = _f(4.166664568298827e-2), _f(-1.388731625493765e-3), _f(2.443315711809948e-5)
# sin/cos f64 (fdlibm k_sin.c / k_cos.c).
DS1, DS2, DS3 = -1.66666666666666324348e-01, 8.33333333332248946124e-03, -1.98412698298579493134e-04
DS4, DS5, DS6 = 2.75573137070700676789e-06, -2.50507602534068634195e-08, 1.58969099521155010221e-10
DC1, DC2, DC3 = 4.16666666666666019037e-02, -1.38888888888741095749e-03, 2.48015872894767294178e-05
DC4, DC5, DC6 = -2.75573143513906633035e-07, 2.08757232129817482790e-09, -1.13596475577881948265e-11

# Trig range reduction r = x - n*pi/2.  pi/2 is split into pieces with few
# bits each so that n*piece is exact while |n| < 2**16 (f32, |x| < 102943) /
# 2**27 (f64, |x| < 2.1e8).  The leading pieces end on bit 2**-23 (f32) /
# 2**-51 (f64), so subtracting them is exact too; the later pieces go through
# two-sum, giving r as an unevaluated pair rh + rl.  The last piece carries
# full precision: the pieces sum to pi/2 within 1e-22 (f32) / 7e-49 (f64),
# which keeps results near multiples of pi/2 (tiny r) accurate.
TWO_OVER_PI32 = _f(0.6366197723675814)
PA32, PB32, PC32, PD32, PE32, PF32, PG32 = (_f(_h(s)) for s in (
    "0x1.92p+0", "0x1.ep-12", "0x1.b4p-16", "0x1.44p-24", "0x1.08p-34", "0x1.ap-41", "0x1.84698ap-48"))
TRIG_LIMIT32 = _f(102943.0)
RCLAMP32 = _f(0.8)   # > pi/4; only bites beyond TRIG_LIMIT (keeps |sin|,|cos| <= 1)
TWO_OVER_PI64 = 0.6366197723675814
PA64, PB64, PC64, PD64, PE64 = (_h(s) for s in (
    "0x1.921fb5p+0", "0x1.110b46p-26", "0x1.1a6262p-54", "0x1.3145cp-78", "0x1.b839a252049c1p-104"))
TRIG_LIMIT64 = 2.1e8
RCLAMP64 = 0.8

# pow: atanh series log(1+f) = 2s + s^3 (2/3 + 2/5 s^2 + ...), |s| <= 0.1716.
# f32: the tail beyond 2s is evaluated in float32 (<1% of the value).
Q32 = tuple(_f(2.0 / (2 * i + 3)) for i in range(6))
QA32, QB32, QC32, QD32, QE32, QF32 = Q32
LN2H32 = _f(_h("0x1.62e4p-1"))                     # 16 bits: k*LN2H exact for |k| < 2**8
LN2L32 = _f(0.6931471805599453 - _h("0x1.62e4p-1"))
POW_YMAX32 = _f(2.0 ** 34)   # |y| beyond this over/underflows unless x == 1
# f64: 2s and (2/3) s^3 in double-double, the rest (<2e-4 of the value) in double.
Q64 = tuple(2.0 / (2 * i + 5) for i in range(12))  # 2/5, 2/7, ..., 2/27
QA64, QB64, QC64, QD64, QE64, QF64, QG64, QH64, QI64, QJ64, QK64, QL64 = Q64
TWO3H64 = 2.0 / 3.0
TWO3L64 = float.fromhex("0x1.5555555555555p-55")  # 2/3 - TWO3H64
LN2H64 = LN2HI64
LN2L64 = LN2LO64
POW_YMAX64 = 2.0 ** 64


# ----------------------------------------------------------------------------
# Shared helpers (generic over dtype: no constants inside).
# ----------------------------------------------------------------------------

@njit(**_HELPER)
def _clamp(x, lo, hi):
    """Clamp with nan -> hi, so later integer conversions never see nan."""
    t = _select(x < hi, x, hi)
    return _select(t > lo, t, lo)


@njit(**_HELPER)
def _two_sum(a, b):
    """a + b = s + e exactly (Knuth; no ordering requirement)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@njit(**_HELPER)
def _fast_two_sum(a, b):
    """a + b = s + e exactly, valid when |a| >= |b| (or a == 0)."""
    s = a + b
    return s, b - (s - a)


# ----------------------------------------------------------------------------
# float32
# ----------------------------------------------------------------------------

@njit(**_HELPER)
def _scale_f32(p, n):
    """p * 2**n for integer-valued n in [-300, 300]: two factors so that
    results overflowing to inf or landing in the subnormal range round once."""
    n1 = _rint(n * HALF32)
    return (p * _pow2(n1)) * _pow2(n - n1)


@njit(**_HELPER)
def _expm1_poly_f32(r):
    p = ((((EP0 * r + EP1) * r + EP2) * r + EP3) * r + EP4) * r + EP5
    return r + (r * r) * p


@njit(**_HELPER)
def _expm1_core_f32(x):
    """expm1(x) for x in [-30, 90] (clamped) as an unevaluated pair hi + lo;
    no special cases."""
    t = _clamp(x, _f(-30.0), _f(90.0))
    n = _rint(t * LOG2E32)
    r, rr = _two_sum(t - n * LN2A32, -(n * LN2B32))   # reduced arg as a pair
    tail = rr + (r * r) * (((((EP0 * r + EP1) * r + EP2) * r + EP3) * r + EP4) * r + EP5)
    # 2^n (1 + r + tail) - 1 = ((2^n - 1) + 2^n r) + 2^n tail.  Keeping r and
    # the first sum's rounding error separate avoids doubling p's error when
    # n = +-1 cancels.  n >= 100 would overflow 2^n alone.
    big = n >= _f(100.0)
    s = _pow2(_select(big, Z32, n))
    u, ue = _two_sum(s - ONE32, s * r)
    return (_select(big, _scale_f32((r + tail) + ONE32, n), u),
            _select(big, Z32, ue + s * tail))


@njit(**_HELPER)
def _exp_f32(x):
    # Clamp first: beyond [-120, 120] the result is already 0 / inf, and the
    # clamped value keeps n (hence the exponent bit tricks) in range.
    t = _clamp(x, _f(-120.0), _f(120.0))
    n = _rint(t * LOG2E32)
    r = (t - n * LN2A32) - n * LN2B32        # exact Cody-Waite first step
    res = _scale_f32(ONE32 + _expm1_poly_f32(r), n)
    return _select(x != x, x, res)


@njit(**_HELPER)
def _expm1_f32(x):
    hi, lo = _expm1_core_f32(x)
    res = hi + lo
    res = _select(x == Z32, x, res)          # keeps -0.0
    return _select(x != x, x, res)


@njit(**_HELPER)
def _log_kernel_f32(f, k, c):
    """k*ln2 + log(1+f) + c for f in [sqrt(.5)-1, sqrt(2)-1], c a tiny correction."""
    z = f * f
    p = ((((((((LP0 * f + LP1) * f + LP2) * f + LP3) * f + LP4) * f + LP5) * f + LP6) * f
          + LP7) * f + LP8)
    y = f * z * p + k * LN2B32 + c - HALF32 * z
    return (f + y) + k * LN2A32


@njit(**_HELPER)
def _log_f32(x):
    sub = x < TINY32                          # subnormal: rescale to normal first
    m, k = _frexp_sqrt2(_select(sub, x * TWO23_32, x))
    k = k + _select(sub, M23_32, Z32)
    res = _log_kernel_f32(m - ONE32, k, Z32)
    res = _select(x > Z32, res, _select(x == Z32, -INF32, NAN32))
    return _select(x == INF32, x, res)


@njit(**_HELPER)
def _log1p_f32(x):
    u = ONE32 + x
    m, k = _frexp_sqrt2(u)
    # c = rounding error of u = 1 + x (exact, two forms by magnitude), then
    # log(1+x) = log(u) + log(1 + c/u) ~ log(u) + c/u.
    c = _select(k > Z32, ONE32 - (u - x), x - (u - ONE32))
    res = _log_kernel_f32(m - ONE32, k, _div(c, u))
    res = _select(x > -ONE32, res, _select(x == -ONE32, -INF32, NAN32))
    res = _select(x == INF32, x, res)
    return _select(x == Z32, x, res)          # keeps -0.0


@njit(**_HELPER)
def _trig_reduce_f32(x):
    """(rh, rl, q): x = (4k + q) pi/2 + rh + rl, |rh| <= pi/4, q in {0,1,2,3}
    as a float.  Non-finite x is treated as 0; beyond TRIG_LIMIT32 the pair
    is clamped (rh to +-0.8, rl to 0), so results stay finite and bounded."""
    xs = _select(_fabs(x) <= MAX32, x, Z32)
    n = _rint(xs * TWO_OVER_PI32)
    r = ((xs - n * PA32) - n * PB32) - n * PC32      # exact (see constants)
    r, e = _two_sum(r, -(n * PD32))
    r, e2 = _two_sum(r, -(n * PE32))
    e = e + e2
    r, e2 = _two_sum(r, -(n * PF32))
    e = e + e2
    r, e2 = _two_sum(r, -(n * PG32))
    rh, rl = _fast_two_sum(r, e + e2)
    ok = _fabs(x) <= TRIG_LIMIT32
    rh = _clamp(rh, -RCLAMP32, RCLAMP32)
    rl = _select(ok, rl, Z32)
    q = n - FOUR32 * _floor(n * QUARTER32)
    return rh, rl, q


@njit(**_HELPER)
def _sincos_poly_f32(r, rl):
    """(sin, cos) of r + rl, |r| <= pi/4, rl a tail below ulp(r)."""
    z = r * r
    hz = HALF32 * z
    s = r + ((r * z) * ((SS3 * z + SS2) * z + SS1) + rl * (ONE32 - hz))
    w = ONE32 - hz
    # w + (((1 - w) - hz) ...) recovers the rounding error of 1 - z/2.
    c = w + (((ONE32 - w) - hz) + ((z * z) * ((SC3 * z + SC2) * z + SC1) - r * rl))
    return s, c


@njit(**_HELPER)
def _sin_f32(x):
    r, rl, q = _trig_reduce_f32(x)
    s, c = _sincos_poly_f32(r, rl)
    v = _select((q == ONE32) | (q == _f(3.0)), c, s)
    v = _select(q >= TWO32, -v, v)
    v = _select(_fabs(x) <= MAX32, v, x - x)  # inf, nan -> nan
    return _select(x == Z32, x, v)


@njit(**_HELPER)
def _cos_f32(x):
    r, rl, q = _trig_reduce_f32(x)
    s, c = _sincos_poly_f32(r, rl)
    v = _select((q == ONE32) | (q == _f(3.0)), s, c)
    v = _select((q == ONE32) | (q == TWO32), -v, v)
    return _select(_fabs(x) <= MAX32, v, x - x)


@njit(**_HELPER)
def _tan_f32(x):
    r, rl, q = _trig_reduce_f32(x)
    s, c = _sincos_poly_f32(r, rl)
    odd = (q == ONE32) | (q == _f(3.0))
    v = _div(_select(odd, -c, s), _select(odd, s, c))
    v = _select(_fabs(x) <= MAX32, v, x - x)
    return _select(x == Z32, x, v)


@njit(**_HELPER)
def _tanh_f32(x):
    # tanh|x| = e / (e + 2), e = expm1(2|x|): well conditioned everywhere
    # (relative error of e is damped by 2/(e+2) <= 1).  |x| >= 9.5 rounds to 1.
    # e and e + 2 are carried as pairs so only the division rounds.
    eh, el = _expm1_core_f32(TWO32 * _select(_fabs(x) < _f(9.5), _fabs(x), _f(9.5)))
    eh, el = _fast_two_sum(eh, el)
    dh, dl = _two_sum(TWO32, eh)
    t = _div(eh, dh)
    v = _copysign(t + _div(el - t * (dl + el), dh), x)
    v = _select(x == Z32, x, v)
    return _select(x != x, x, v)


@njit(**_HELPER)
def _sigmoid_f32(x):
    # e = exp(-|x|) <= 1 never overflows; x >= 0: 1/(1+e), x < 0: e/(1+e).
    e = _exp_f32(-_fabs(x))
    d = ONE32 + e
    v = _div(_select(x < Z32, e, ONE32), d)
    return _select(x != x, x, v)


@njit(**_HELPER)
def _split_f32(a):
    c = SPLIT32 * a
    hi = c - (c - a)
    return hi, a - hi


@njit(**_HELPER)
def _two_prod_f32(a, b):
    """a * b = p + e exactly (Dekker; no FMA so results do not depend on the CPU)."""
    p = a * b
    ah, al = _split_f32(a)
    bh, bl = _split_f32(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


@njit(**_HELPER)
def _log_dd_f32(ax):
    """log(ax) as a float32 pair (hi, lo), ax positive finite nonzero."""
    sub = ax < TINY32
    m, k = _frexp_sqrt2(_select(sub, ax * TWO23_32, ax))
    k = k + _select(sub, M23_32, Z32)
    f = m - ONE32                             # exact
    dh = TWO32 + f
    dl = f - (dh - TWO32)                     # exact rounding error of 2 + f
    sh = _div(f, dh)                          # s = f / (2 + f), then its tail:
    p, e = _two_prod_f32(sh, dh)
    sl = _div(((f - p) - e) - sh * dl, dh)
    z = sh * sh
    q = ((((QF32 * z + QE32) * z + QD32) * z + QC32) * z + QB32) * z + QA32
    h, l = _two_sum(k * LN2H32, TWO32 * sh)   # both terms exact
    # s^3 Q(s^2) with s = sh + sl ~ sh^3 Q + 2 sh^2 sl
    l = l + ((TWO32 * sl + z * (sh * q + TWO32 * sl)) + k * LN2L32)
    return _fast_two_sum(h, l)


@njit(**_HELPER)
def _pow_f32(x, y):
    ax = _fabs(x)
    finite_nz = (ax > Z32) & (ax <= MAX32)
    lh, ll = _log_dd_f32(_select(finite_nz, ax, ONE32))
    yc = _clamp(y, -POW_YMAX32, POW_YMAX32)
    ph, pe = _two_prod_f32(yc, lh)
    th, tl = _fast_two_sum(ph, pe + yc * ll)  # y*log|x| as a pair
    t = _clamp(th, _f(-120.0), _f(120.0))
    tl = _select(t == th, tl, Z32)            # clamped: the tail is meaningless
    n = _rint(t * LOG2E32)
    r = (t - n * LN2A32) + (tl - n * LN2B32)
    res = _scale_f32(ONE32 + _expm1_poly_f32(r), n)
    # numpy / C99 special cases, most specific last.
    fy = _floor(y)
    yint = fy == y                            # true for +-inf, harmless below
    yodd = yint & (_floor(y * HALF32) != y * HALF32)
    xneg = _copysign(ONE32, x) < Z32          # includes -0.0
    res = _select(ax == Z32, _select(y < Z32, INF32, Z32), res)
    res = _select(ax == INF32, _select(y < Z32, Z32, INF32), res)
    res = _select(xneg & yodd, -res, res)
    res = _select(xneg & finite_nz & (fy != y), NAN32, res)   # (-2)**0.5
    res = _select((x != x) | (y != y), NAN32, res)
    return _select((y == Z32) | (x == ONE32), ONE32, res)


# ----------------------------------------------------------------------------
# float64 (same structure; fdlibm polynomials)
# ----------------------------------------------------------------------------

@njit(**_HELPER)
def _scale_f64(p, n):
    n1 = _rint(n * HALF64)
    return (p * _pow2(n1)) * _pow2(n - n1)


@njit(**_HELPER)
def _exp_reduce_f64(t):
    """t = n ln2 + hi - lo; returns (n, hi, lo, r = hi - lo, q) where
    exp(hi - lo) = 1 + (hi - (lo - q)), q = r c / (2 - c)."""
    n = _rint(t * LOG2E64)
    hi = t - n * LN2HI64
    lo = n * LN2LO64
    r = hi - lo
    z = r * r
    c = r - z * (XP1 + z * (XP2 + z * (XP3 + z * (XP4 + z * XP5))))
    return n, hi, lo, _div(r * c, TWO64 - c)


@njit(**_HELPER)
def _exp_f64(x):
    t = _clamp(x, -1000.0, 1000.0)
    n, hi, lo, q = _exp_reduce_f64(t)
    res = _scale_f64(ONE64 - ((lo - q) - hi), n)
    return _select(x != x, x, res)


@njit(**_HELPER)
def _expm1_core_f64(x):
    """expm1(x) for x in [-60, 720] (clamped); see _expm1_core_f32."""
    t = _clamp(x, -60.0, 720.0)
    n, hi, lo, q = _exp_reduce_f64(t)
    r, rr = _two_sum(hi, -lo)
    tail = rr + q                             # expm1(hi - lo) = r + tail
    big = n >= 1000.0
    s = _pow2(_select(big, Z64, n))
    u, ue = _two_sum(s - ONE64, s * r)
    return (_select(big, _scale_f64((r + tail) + ONE64, n), u),
            _select(big, Z64, ue + s * tail))


@njit(**_HELPER)
def _expm1_f64(x):
    hi, lo = _expm1_core_f64(x)
    res = hi + lo
    res = _select(x == Z64, x, res)
    return _select(x != x, x, res)


@njit(**_HELPER)
def _log_kernel_f64(f, k, c):
    s = _div(f, TWO64 + f)
    z = s * s
    w = z * z
    t1 = w * (LG2 + w * (LG4 + w * LG6))
    t2 = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7)))
    hfsq = HALF64 * f * f
    return k * LN2HI64 - ((hfsq - (s * (hfsq + (t1 + t2)) + (k * LN2LO64 + c))) - f)


@njit(**_HELPER)
def _log_f64(x):
    sub = x < TINY64
    m, k = _frexp_sqrt2(_select(sub, x * TWO54_64, x))
    k = k + _select(sub, M54_64, Z64)
    res = _log_kernel_f64(m - ONE64, k, Z64)
    res = _select(x > Z64, res, _select(x == Z64, -INF64, NAN64))
    return _select(x == INF64, x, res)


@njit(**_HELPER)
def _log1p_f64(x):
    u = ONE64 + x
    m, k = _frexp_sqrt2(u)
    c = _select(k > Z64, ONE64 - (u - x), x - (u - ONE64))
    res = _log_kernel_f64(m - ONE64, k, _div(c, u))
    res = _select(x > -ONE64, res, _select(x == -ONE64, -INF64, NAN64))
    res = _select(x == INF64, x, res)
    return _select(x == Z64, x, res)


@njit(**_HELPER)
def _trig_reduce_f64(x):
    xs = _select(_fabs(x) <= MAX64, x, Z64)
    n = _rint(xs * TWO_OVER_PI64)
    r = (xs - n * PA64) - n * PB64                  # exact
    r, e = _two_sum(r, -(n * PC64))
    r, e2 = _two_sum(r, -(n * PD64))
    e = e + e2
    r, e2 = _two_sum(r, -(n * PE64))
    rh, rl = _fast_two_sum(r, e + e2)
    ok = _fabs(x) <= TRIG_LIMIT64
    rh = _clamp(rh, -RCLAMP64, RCLAMP64)
    rl = _select(ok, rl, Z64)
    q = n - FOUR64 * _floor(n * QUARTER64)
    return rh, rl, q


@njit(**_HELPER)
def _sincos_poly_f64(r, rl):
    z = r * r
    hz = HALF64 * z
    s = r + ((r * z) * (DS1 + z * (DS2 + z * (DS3 + z * (DS4 + z * (DS5 + z * DS6))))) + rl * (ONE64 - hz))
    w = ONE64 - hz
    c = w + (((ONE64 - w) - hz) + ((z * z) * (DC1 + z * (DC2 + z * (DC3 + z * (DC4 + z * (DC5 + z * DC6)))))
                                   - r * rl))
    return s, c


@njit(**_HELPER)
def _sin_f64(x):
    r, rl, q = _trig_reduce_f64(x)
    s, c = _sincos_poly_f64(r, rl)
    v = _select((q == ONE64) | (q == 3.0), c, s)
    v = _select(q >= TWO64, -v, v)
    v = _select(_fabs(x) <= MAX64, v, x - x)
    return _select(x == Z64, x, v)


@njit(**_HELPER)
def _cos_f64(x):
    r, rl, q = _trig_reduce_f64(x)
    s, c = _sincos_poly_f64(r, rl)
    v = _select((q == ONE64) | (q == 3.0), s, c)
    v = _select((q == ONE64) | (q == TWO64), -v, v)
    return _select(_fabs(x) <= MAX64, v, x - x)


@njit(**_HELPER)
def _tan_f64(x):
    r, rl, q = _trig_reduce_f64(x)
    s, c = _sincos_poly_f64(r, rl)
    odd = (q == ONE64) | (q == 3.0)
    v = _div(_select(odd, -c, s), _select(odd, s, c))
    v = _select(_fabs(x) <= MAX64, v, x - x)
    return _select(x == Z64, x, v)


@njit(**_HELPER)
def _tanh_f64(x):
    eh, el = _expm1_core_f64(TWO64 * _select(_fabs(x) < 22.0, _fabs(x), 22.0))
    eh, el = _fast_two_sum(eh, el)
    dh, dl = _two_sum(TWO64, eh)
    t = _div(eh, dh)
    v = _copysign(t + _div(el - t * (dl + el), dh), x)
    v = _select(x == Z64, x, v)
    return _select(x != x, x, v)


@njit(**_HELPER)
def _sigmoid_f64(x):
    e = _exp_f64(-_fabs(x))
    d = ONE64 + e
    v = _div(_select(x < Z64, e, ONE64), d)
    return _select(x != x, x, v)


@njit(**_HELPER)
def _split_f64(a):
    c = SPLIT64 * a
    hi = c - (c - a)
    return hi, a - hi


@njit(**_HELPER)
def _two_prod_f64(a, b):
    p = a * b
    ah, al = _split_f64(a)
    bh, bl = _split_f64(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


@njit(**_HELPER)
def _log_dd_f64(ax):
    """log(ax) as a double-double (hi, lo), ax positive finite nonzero.
    |y log x| can reach 745, so log needs ~63 good bits: 2s and (2/3)s^3
    are carried as pairs, the remaining series (< 2e-4 relative) in double."""
    sub = ax < TINY64
    m, k = _frexp_sqrt2(_select(sub, ax * TWO54_64, ax))
    k = k + _select(sub, M54_64, Z64)
    f = m - ONE64
    dh = TWO64 + f
    dl = f - (dh - TWO64)
    sh = _div(f, dh)
    p, e = _two_prod_f64(sh, dh)
    sl = _div(((f - p) - e) - sh * dl, dh)
    zh, zl = _two_prod_f64(sh, sh)
    # s^3 ~ sh*zh + (sh*zl + 3 zh sl)
    ch, cl = _two_prod_f64(sh, zh)
    cl = cl + (sh * zl + 3.0 * zh * sl)
    # (2/3) s^3 as a pair
    th, tl = _two_prod_f64(ch, TWO3H64)
    tl = tl + (ch * TWO3L64 + cl * TWO3H64)
    z = zh
    q = ((((((((((QL64 * z + QK64) * z + QJ64) * z + QI64) * z + QH64) * z + QG64) * z + QF64) * z
               + QE64) * z + QD64) * z + QC64) * z + QB64) * z + QA64
    rest = (ch * z) * q                       # s^5 terms on; truncation < 2**-70
    # sum: k ln2 + 2 sh + th + (small terms); k*LN2H and 2*sh are exact.
    h, l = _two_sum(k * LN2H64, TWO64 * sh)
    h2, l2 = _two_sum(h, th)
    l = l + l2 + (TWO64 * sl + tl + rest + k * LN2L64)
    return _fast_two_sum(h2, l)


@njit(**_HELPER)
def _pow_f64(x, y):
    ax = _fabs(x)
    finite_nz = (ax > Z64) & (ax <= MAX64)
    lh, ll = _log_dd_f64(_select(finite_nz, ax, ONE64))
    yc = _clamp(y, -POW_YMAX64, POW_YMAX64)
    ph, pe = _two_prod_f64(yc, lh)
    th, tl = _fast_two_sum(ph, pe + yc * ll)
    t = _clamp(th, -1000.0, 1000.0)
    tl = _select(t == th, tl, Z64)
    n = _rint(t * LOG2E64)
    hi = t - n * LN2HI64
    lo = n * LN2LO64 - tl
    r = hi - lo
    z = r * r
    c = r - z * (XP1 + z * (XP2 + z * (XP3 + z * (XP4 + z * XP5))))
    res = _scale_f64(ONE64 - ((lo - _div(r * c, TWO64 - c)) - hi), n)
    fy = _floor(y)
    yint = fy == y
    yodd = yint & (_floor(y * HALF64) != y * HALF64)
    xneg = _copysign(ONE64, x) < Z64
    res = _select(ax == Z64, _select(y < Z64, INF64, Z64), res)
    res = _select(ax == INF64, _select(y < Z64, Z64, INF64), res)
    res = _select(xneg & yodd, -res, res)
    res = _select(xneg & finite_nz & (fy != y), NAN64, res)
    res = _select((x != x) | (y != y), NAN64, res)
    return _select((y == Z64) | (x == ONE64), ONE64, res)


# ----------------------------------------------------------------------------
# Public names.
#
# Each public function is an intrinsic that compiles its implementation once
# per process as a separate LLVM function (numba's compile_subroutine, with
# default flags: no fastmath, whatever the caller uses) and calls it with a
# call-site ``alwaysinline`` attribute.  Why not njit(inline="always")?  That
# re-types and re-lowers the whole body at every call site: a prange kernel
# calling 5 of these compiled in 1.9 s instead of 0.5 s.  Why not a plain
# njit call?  LLVM then inlines only below its size threshold, so loops
# calling sin/pow stay scalar.  The argument types must match exactly.
# ----------------------------------------------------------------------------

def _export(impl, ty):
    py = impl.py_func

    def codegen(context, builder, sig, args):
        context = context.subtarget(fastmath=False)   # the caller's fastmath must not leak in
        cres = context.compile_subroutine(builder, py, sig)   # once per process and signature
        fn = context.declare_function(builder.module, cres.fndesc)
        call = context.call_conv.call_function
        try:
            status, res = call(builder, fn, sig.return_type, sig.args, args, attrs=("alwaysinline",))
        except TypeError:   # numba without call-site attrs: LLVM's own inline threshold decides
            status, res = call(builder, fn, sig.return_type, sig.args, args)
        with cgutils.if_unlikely(builder, status.is_error):   # never taken; folded away
            context.call_conv.return_status_propagate(builder, status)
        return res

    if py.__code__.co_argcount == 1:
        def typer(typingctx, x):
            return (ty(ty), codegen) if x == ty else None
    else:
        def typer(typingctx, x, y):
            return (ty(ty, ty), codegen) if (x == ty and y == ty) else None
    typer.__name__ = py.__name__.lstrip("_")
    typer.__doc__ = py.__doc__
    return intrinsic(typer)


_f32t, _f64t = types.float32, types.float64
exp_f32, exp_f64 = _export(_exp_f32, _f32t), _export(_exp_f64, _f64t)
expm1_f32, expm1_f64 = _export(_expm1_f32, _f32t), _export(_expm1_f64, _f64t)
log_f32, log_f64 = _export(_log_f32, _f32t), _export(_log_f64, _f64t)
log1p_f32, log1p_f64 = _export(_log1p_f32, _f32t), _export(_log1p_f64, _f64t)
sin_f32, sin_f64 = _export(_sin_f32, _f32t), _export(_sin_f64, _f64t)
cos_f32, cos_f64 = _export(_cos_f32, _f32t), _export(_cos_f64, _f64t)
tan_f32, tan_f64 = _export(_tan_f32, _f32t), _export(_tan_f64, _f64t)
tanh_f32, tanh_f64 = _export(_tanh_f32, _f32t), _export(_tanh_f64, _f64t)
sigmoid_f32, sigmoid_f64 = _export(_sigmoid_f32, _f32t), _export(_sigmoid_f64, _f64t)
pow_f32, pow_f64 = _export(_pow_f32, _f32t), _export(_pow_f64, _f64t)


# ----------------------------------------------------------------------------
# Floor division, remainder and integer power with numpy's exact semantics.
#
# numpy defines float `//` and `%` through one divmod (fmod, moved to the
# divisor's sign, the quotient snapped to a whole number), so 1 // 0.1 is 9,
# not floor(1 / 0.1) = 10, and `a == (a // b) * b + a % b` holds as far as
# rounding allows. The gradient of `%` uses `//`, so both must follow it.
# ----------------------------------------------------------------------------

def _make_divmod(T):
    zero, one, half = T(0), T(1), T(0.5)

    @njit(**_HELPER)
    def floordiv(a, b):
        mod = np.fmod(a, b)
        div = _div(a - mod, b)
        div = _select((mod != zero) & ((b < zero) != (mod < zero)), div - one, div)
        fl = _floor(div)
        fl = _select(div - fl > half, fl + one, fl)
        fl = _select(div == zero, _copysign(zero, _div(a, b)), fl)
        return _select(b == zero, _div(a, b), fl)

    @njit(**_HELPER)
    def mod(a, b):
        m = np.fmod(a, b)
        m = _select((m != zero) & ((b < zero) != (m < zero)), m + b, m)
        return _select(m == zero, _copysign(zero, b), m)

    return floordiv, mod


_floordiv_f32, _mod_f32 = _make_divmod(np.float32)
_floordiv_f64, _mod_f64 = _make_divmod(np.float64)
floordiv_f32, floordiv_f64 = _export(_floordiv_f32, _f32t), _export(_floordiv_f64, _f64t)
mod_f32, mod_f64 = _export(_mod_f32, _f32t), _export(_mod_f64, _f64t)


@njit(error_model="numpy")
def ipow(a, b):
    """Signed integer a**b in int64 by squaring (the caller casts to the dtype, so it wraps like
    numpy); a negative exponent raises, as numpy does at every size."""
    if b < 0:
        raise ValueError("Integers to negative integer powers are not allowed.")
    r, base = np.int64(1), np.int64(a)
    while b:
        if b & 1:
            r = r * base
        base = base * base
        b >>= 1
    return r


@njit(error_model="numpy")
def upow(a, b):
    """Unsigned integer a**b in uint64 by squaring (wraps like numpy once cast to the dtype)."""
    r, base, e = np.uint64(1), np.uint64(a), np.uint64(b)
    while e:
        if e & np.uint64(1):
            r = r * base
        base = base * base
        e = e >> np.uint64(1)
    return r
