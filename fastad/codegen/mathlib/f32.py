"""mathlib.f32: the float32 functions (Cephes polynomials).  They never touch float64.

Start at `_exp_f32`: the template every function follows (clamp, reduce, polynomial, patch
special cases with selects).  Horner steps are `_fma` (one rounding, one instruction); the
error-free transforms stay plain operations.  The public names at the end are exported through
`_core._export`; methods and accuracy: docs/MATHLIB.md.
"""
import numpy as np
from numba import njit

from ._core import (_HELPER, _clamp, _copysign, _div, _export, _f, _f32t, _fabs, _fast_two_sum, _floor, _fma,
                    _frexp_sqrt2, _h, _pow2, _rint, _select, _two_sum)

Z32, ONE32, TWO32, HALF32, QUARTER32, FOUR32 = _f(0), _f(1), _f(2), _f(0.5), _f(0.25), _f(4)
INF32, NAN32 = _f(np.inf), _f(np.nan)
TINY32 = _f(np.finfo(np.float32).tiny)             # smallest normal, 2**-126
MAX32 = _f(np.finfo(np.float32).max)
TWO23_32, M23_32 = _f(2.0 ** 23), _f(-23)
LOG2E32 = _f(1.4426950408889634)
# Cody-Waite ln2 = LN2A + LN2B; LN2A has 9 bits so n*LN2A is exact for |n| < 2**15.
LN2A32, LN2B32 = _f(0.693359375), _f(-2.12194440e-4)
SPLIT32 = _f(4097.0)                               # Veltkamp: 2**12 + 1

# exp/expm1 f32 (Cephes expf): expm1(r) ~ r + r^2 P(r) on |r| <= ln2/2, 0.13 ulp.
EP0, EP1, EP2 = _f(1.9875691500e-4), _f(1.3981999507e-3), _f(8.3334519073e-3)
EP3, EP4, EP5 = _f(4.1665795894e-2), _f(1.6666665459e-1), _f(5.0000001201e-1)

EXP_SHORT32 = _f(87.0)        # exp(+-87) and its 2^n (|n| <= 126) are normal

# log f32 (Cephes logf): log(1+f) ~ f - f^2/2 + f^3 P(f) on f in [sqrt(.5)-1, sqrt(2)-1].
LP0, LP1, LP2 = _f(7.0376836292e-2), _f(-1.1514610310e-1), _f(1.1676998740e-1)
LP3, LP4, LP5 = _f(-1.2420140846e-1), _f(1.4249322787e-1), _f(-1.6668057665e-1)
LP6, LP7, LP8 = _f(2.0000714765e-1), _f(-2.4999993993e-1), _f(3.3333331174e-1)

# sin/cos f32 (Cephes sinf/cosf) on |r| <= pi/4.
SS1, SS2, SS3 = _f(-1.6666654611e-1), _f(8.3321608736e-3), _f(-1.9515295891e-4)
SC1, SC2, SC3 = _f(4.166664568298827e-2), _f(-1.388731625493765e-3), _f(2.443315711809948e-5)

# tanh f32 (Cephes tanhf) on |x| < 0.625: x + x^3 P(x^2).
TH0, TH1, TH2 = _f(-5.70498872745e-3), _f(2.06390887954e-2), _f(-5.37397155531e-2)
TH3, TH4 = _f(1.33314422036e-1), _f(-3.33332819422e-1)
TANH_SMALL32 = _f(0.625)

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
# The short reduction (|x| <= TRIG_SHORT32, so |n| < 2**8): PS1 has 16 bits and PS2 ends on
# bit 2**-23, so n*PS1, n*PS2 and both subtractions are exact; n*PS3 (16 bits) is exact and
# goes through one two-sum; PS4 rounds, an absolute error near 2**-56.
PS1_32, PS2_32, PS3_32, PS4_32 = (_f(_h(s)) for s in ("0x1.921ep+0", "0x1.b4p-16", "0x1.4442p-24", "0x1.a308d4p-41"))
TRIG_SHORT32 = _f(400.0)

# pow: atanh series log(1+f) = 2s + s^3 (2/3 + 2/5 s^2 + ...), |s| <= 0.1716.
# f32: the tail beyond 2s is evaluated in float32 (<1% of the value).
Q32 = tuple(_f(2.0 / (2 * i + 3)) for i in range(6))
QA32, QB32, QC32, QD32, QE32, QF32 = Q32
LN2H32 = _f(_h("0x1.62e4p-1"))                     # 16 bits: k*LN2H exact for |k| < 2**8
LN2L32 = _f(0.6931471805599453 - _h("0x1.62e4p-1"))
POW_YMAX32 = _f(2.0 ** 34)   # |y| beyond this over/underflows unless x == 1


@njit(**_HELPER)
def _scale_f32(p, n):
    """p * 2**n for integer-valued n in [-300, 300]: two factors so that
    results overflowing to inf or landing in the subnormal range round once."""
    n1 = _rint(n * HALF32)
    return (p * _pow2(n1)) * _pow2(n - n1)


@njit(**_HELPER)
def _expm1_poly_f32(r):
    p = _fma(_fma(_fma(_fma(_fma(EP0, r, EP1), r, EP2), r, EP3), r, EP4), r, EP5)
    return _fma(r * r, p, r)


@njit(**_HELPER)
def _expm1_core_f32(x):
    """expm1(x) for x in [-30, 90] (clamped) as an unevaluated pair hi + lo;
    no special cases."""
    t = _clamp(x, _f(-30.0), _f(90.0))
    n = _rint(t * LOG2E32)
    r, rr = _two_sum(t - n * LN2A32, -(n * LN2B32))   # reduced arg as a pair
    tail = _fma(r * r, _fma(_fma(_fma(_fma(_fma(EP0, r, EP1), r, EP2), r, EP3), r, EP4), r, EP5), rr)
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
def _exp_short_f32(x):
    """exp for |x| <= EXP_SHORT32 only: the results are normal, so 2^n is one factor and
    no clamp or nan patch is needed; equal to _exp_f32 there, bit for bit."""
    n = _rint(x * LOG2E32)
    return (ONE32 + _expm1_poly_f32((x - n * LN2A32) - n * LN2B32)) * _pow2(n)


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
    p = _fma(_fma(_fma(_fma(_fma(_fma(_fma(_fma(LP0, f, LP1), f, LP2), f, LP3), f, LP4), f, LP5), f, LP6),
                  f, LP7), f, LP8)
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
def _trig_short_f32(x):
    """`_trig_reduce_f32` for |x| <= TRIG_SHORT32 (|n| < 2**8) in 4 pieces
    and one two-sum; nan/inf give nan.  Larger |x| is inaccurate, not unsafe."""
    n = _rint(x * TWO_OVER_PI32)
    r = (x - n * PS1_32) - n * PS2_32                # exact (see constants)
    r, e = _two_sum(r, -(n * PS3_32))
    rh, rl = _fast_two_sum(r, e - n * PS4_32)
    q = n - FOUR32 * _floor(n * QUARTER32)
    return rh, rl, q


@njit(**_HELPER)
def _sincos_poly_f32(r, rl):
    """(sin, cos) of r + rl, |r| <= pi/4, rl a tail below ulp(r)."""
    z = r * r
    hz = HALF32 * z
    s = r + _fma(r * z, _fma(_fma(SS3, z, SS2), z, SS1), rl * (ONE32 - hz))
    w = ONE32 - hz
    # w + (((1 - w) - hz) ...) recovers the rounding error of 1 - z/2.
    c = w + (((ONE32 - w) - hz) + _fma(z * z, _fma(_fma(SC3, z, SC2), z, SC1), -(r * rl)))
    return s, c


@njit(**_HELPER)
def _sincos_of_f32(x, r, rl, q):
    """(sin x, cos x) from x's reduction: the quadrant picks and negates."""
    s, c = _sincos_poly_f32(r, rl)
    odd = (q == ONE32) | (q == _f(3.0))
    sv = _select(odd, c, s)
    sv = _select(q >= TWO32, -sv, sv)
    cv = _select(odd, s, c)
    cv = _select((q == ONE32) | (q == TWO32), -cv, cv)
    finite = _fabs(x) <= MAX32                      # inf, nan -> nan
    return _select(x == Z32, x, _select(finite, sv, x - x)), _select(finite, cv, x - x)


@njit(**_HELPER)
def _tan_of_f32(x, r, rl, q):
    s, c = _sincos_poly_f32(r, rl)
    odd = (q == ONE32) | (q == _f(3.0))
    v = _div(_select(odd, -c, s), _select(odd, s, c))
    v = _select(_fabs(x) <= MAX32, v, x - x)
    return _select(x == Z32, x, v)


@njit(**_HELPER)
def _sincos_f32(x):
    r, rl, q = _trig_reduce_f32(x)
    return _sincos_of_f32(x, r, rl, q)


@njit(**_HELPER)
def _sin_f32(x):
    return _sincos_f32(x)[0]


@njit(**_HELPER)
def _cos_f32(x):
    return _sincos_f32(x)[1]


@njit(**_HELPER)
def _tan_f32(x):
    r, rl, q = _trig_reduce_f32(x)
    return _tan_of_f32(x, r, rl, q)


@njit(**_HELPER)
def _sincos_short_f32(x):
    r, rl, q = _trig_short_f32(x)
    return _sincos_of_f32(x, r, rl, q)


@njit(**_HELPER)
def _sin_short_f32(x):
    return _sincos_short_f32(x)[0]


@njit(**_HELPER)
def _cos_short_f32(x):
    return _sincos_short_f32(x)[1]


@njit(**_HELPER)
def _tan_short_f32(x):
    r, rl, q = _trig_short_f32(x)
    return _tan_of_f32(x, r, rl, q)


@njit(**_HELPER)
def _tanh_f32(x):
    # |x| < 0.625: the odd polynomial.  Beyond: 1 - 2/(e + 1), e = exp(2|x|) <= exp(19) (|x| is
    # clamped at 9.5, where tanh rounds to 1), so 2^n needs one factor; the result is >= 0.55,
    # so the error of 2/(e + 1) <= 0.45 costs under one ulp.  Both are computed (no branch).
    # Max 1 ulp, checked over every float32 in [2**-13, 9.6].
    ax = _fabs(x)
    z = x * x
    p = _fma(x * z, _fma(_fma(_fma(_fma(TH0, z, TH1), z, TH2), z, TH3), z, TH4), x)
    t = TWO32 * _select(ax < _f(9.5), ax, _f(9.5))
    n = _rint(t * LOG2E32)
    e = (ONE32 + _expm1_poly_f32((t - n * LN2A32) - n * LN2B32)) * _pow2(n)
    v = _select(ax < TANH_SMALL32, p, _copysign(ONE32 - _div(TWO32, e + ONE32), x))
    return _select((x != x) | (x == Z32), x, v)   # nan; -0.0 (p gives +0.0)


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
    q = _fma(_fma(_fma(_fma(_fma(QF32, z, QE32), z, QD32), z, QC32), z, QB32), z, QA32)
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


exp_f32, expm1_f32 = _export(_exp_f32, _f32t), _export(_expm1_f32, _f32t)
exp_short_f32 = _export(_exp_short_f32, _f32t)
log_f32, log1p_f32 = _export(_log_f32, _f32t), _export(_log1p_f32, _f32t)
sin_f32, cos_f32, tan_f32 = _export(_sin_f32, _f32t), _export(_cos_f32, _f32t), _export(_tan_f32, _f32t)
sincos_f32 = _export(_sincos_f32, _f32t, ret=2)
sin_short_f32, cos_short_f32 = _export(_sin_short_f32, _f32t), _export(_cos_short_f32, _f32t)
tan_short_f32, sincos_short_f32 = _export(_tan_short_f32, _f32t), _export(_sincos_short_f32, _f32t, ret=2)
tanh_f32, sigmoid_f32 = _export(_tanh_f32, _f32t), _export(_sigmoid_f32, _f32t)
pow_f32 = _export(_pow_f32, _f32t)
