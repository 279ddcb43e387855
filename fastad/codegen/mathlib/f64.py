"""mathlib.f64: the float64 functions (fdlibm polynomials), the same structure as f32.py.

Start at `_exp_f64`.  The public names at the end are exported through `_core._export`;
methods and accuracy: docs/MATHLIB.md.
"""
import numpy as np
from numba import njit

from ._core import (_HELPER, _clamp, _copysign, _div, _export, _f64t, _fabs, _fast_two_sum, _floor, _frexp_sqrt2,
                    _h, _pow2, _rint, _select, _two_sum)

Z64, ONE64, TWO64, HALF64, QUARTER64, FOUR64 = 0.0, 1.0, 2.0, 0.5, 0.25, 4.0
INF64, NAN64 = np.inf, np.nan
TINY64 = np.finfo(np.float64).tiny                 # 2**-1022
MAX64 = np.finfo(np.float64).max
TWO54_64, M54_64 = 2.0 ** 54, -54.0
LOG2E64 = 1.4426950408889634
# fdlibm's split: LN2HI has 32 bits, so n*LN2HI is exact for |n| < 2**21.
LN2HI64, LN2LO64 = 6.93147180369123816490e-01, 1.90821492927058770002e-10
SPLIT64 = 134217729.0                              # Veltkamp: 2**27 + 1

# exp/expm1 f64 (fdlibm e_exp.c): exp(r) = 1 + r + r c / (2 - c), c = r - r^2 P(r^2).
XP1, XP2, XP3 = 1.66666666666666019037e-01, -2.77777777770155933842e-03, 6.61375632143793436117e-05
XP4, XP5 = -1.65339022054652515390e-06, 4.13813679705723846039e-08

EXP_SHORT64 = 708.0           # exp(+-708) and its 2^n (|n| <= 1021) are normal

# log f64 (fdlibm e_log.c): s = f/(2+f), log(1+f) = f - hfsq + s (hfsq + R(s^2)).
LG1, LG2, LG3 = 6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01
LG4, LG5, LG6 = 2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01
LG7 = 1.479819860511658591e-01

# sin/cos f64 (fdlibm k_sin.c / k_cos.c).
DS1, DS2, DS3 = -1.66666666666666324348e-01, 8.33333333332248946124e-03, -1.98412698298579493134e-04
DS4, DS5, DS6 = 2.75573137070700676789e-06, -2.50507602534068634195e-08, 1.58969099521155010221e-10
DC1, DC2, DC3 = 4.16666666666666019037e-02, -1.38888888888741095749e-03, 2.48015872894767294178e-05
DC4, DC5, DC6 = -2.75573143513906633035e-07, 2.08757232129817482790e-09, -1.13596475577881948265e-11

# Trig range reduction: see the float32 constants (f32.py); here |n| < 2**27 (|x| < 2.1e8).
TWO_OVER_PI64 = 0.6366197723675814
PA64, PB64, PC64, PD64, PE64 = (_h(s) for s in (
    "0x1.921fb5p+0", "0x1.110b46p-26", "0x1.1a6262p-54", "0x1.3145cp-78", "0x1.b839a252049c1p-104"))
TRIG_LIMIT64 = 2.1e8
RCLAMP64 = 0.8
# The short reduction (|x| <= TRIG_SHORT64, |n| < 2**20): PS1 has 33 bits, PS2 ends on bit
# 2**-52, PS3 has 33 bits (exact products, one two-sum), PS4 rounds.
PS1_64, PS2_64, PS3_64, PS4_64 = (_h(s) for s in ("0x1.921fb544p+0", "0x1.0b46p-34", "0x1.1a626331p-54",
                                                  "0x1.1701b839a252p-88"))
TRIG_SHORT64 = 1e6

# pow: see the float32 constants.
# f64: 2s and (2/3) s^3 in double-double, the rest (<2e-4 of the value) in double.
Q64 = tuple(2.0 / (2 * i + 5) for i in range(12))  # 2/5, 2/7, ..., 2/27
QA64, QB64, QC64, QD64, QE64, QF64, QG64, QH64, QI64, QJ64, QK64, QL64 = Q64
TWO3H64 = 2.0 / 3.0
TWO3L64 = float.fromhex("0x1.5555555555555p-55")  # 2/3 - TWO3H64
LN2H64 = LN2HI64
LN2L64 = LN2LO64
POW_YMAX64 = 2.0 ** 64


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
def _exp_short_f64(x):
    """exp for |x| <= EXP_SHORT64 only (normal results, one 2^n factor); see _exp_short_f32."""
    n, hi, lo, q = _exp_reduce_f64(x)
    return (ONE64 - ((lo - q) - hi)) * _pow2(n)


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
def _trig_short_f64(x):
    """`_trig_reduce_f64` for |x| <= TRIG_SHORT64 (|n| < 2**20); see _trig_short_f32."""
    n = _rint(x * TWO_OVER_PI64)
    r = (x - n * PS1_64) - n * PS2_64                # exact
    r, e = _two_sum(r, -(n * PS3_64))
    rh, rl = _fast_two_sum(r, e - n * PS4_64)
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
def _sincos_of_f64(x, r, rl, q):
    """(sin x, cos x) from x's reduction: the quadrant picks and negates."""
    s, c = _sincos_poly_f64(r, rl)
    odd = (q == ONE64) | (q == 3.0)
    sv = _select(odd, c, s)
    sv = _select(q >= TWO64, -sv, sv)
    cv = _select(odd, s, c)
    cv = _select((q == ONE64) | (q == TWO64), -cv, cv)
    finite = _fabs(x) <= MAX64                      # inf, nan -> nan
    return _select(x == Z64, x, _select(finite, sv, x - x)), _select(finite, cv, x - x)


@njit(**_HELPER)
def _tan_of_f64(x, r, rl, q):
    s, c = _sincos_poly_f64(r, rl)
    odd = (q == ONE64) | (q == 3.0)
    v = _div(_select(odd, -c, s), _select(odd, s, c))
    v = _select(_fabs(x) <= MAX64, v, x - x)
    return _select(x == Z64, x, v)


@njit(**_HELPER)
def _sincos_f64(x):
    r, rl, q = _trig_reduce_f64(x)
    return _sincos_of_f64(x, r, rl, q)


@njit(**_HELPER)
def _sin_f64(x):
    return _sincos_f64(x)[0]


@njit(**_HELPER)
def _cos_f64(x):
    return _sincos_f64(x)[1]


@njit(**_HELPER)
def _tan_f64(x):
    r, rl, q = _trig_reduce_f64(x)
    return _tan_of_f64(x, r, rl, q)


@njit(**_HELPER)
def _sincos_short_f64(x):
    r, rl, q = _trig_short_f64(x)
    return _sincos_of_f64(x, r, rl, q)


@njit(**_HELPER)
def _sin_short_f64(x):
    return _sincos_short_f64(x)[0]


@njit(**_HELPER)
def _cos_short_f64(x):
    return _sincos_short_f64(x)[1]


@njit(**_HELPER)
def _tan_short_f64(x):
    r, rl, q = _trig_short_f64(x)
    return _tan_of_f64(x, r, rl, q)


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


exp_f64, expm1_f64 = _export(_exp_f64, _f64t), _export(_expm1_f64, _f64t)
exp_short_f64 = _export(_exp_short_f64, _f64t)
log_f64, log1p_f64 = _export(_log_f64, _f64t), _export(_log1p_f64, _f64t)
sin_f64, cos_f64, tan_f64 = _export(_sin_f64, _f64t), _export(_cos_f64, _f64t), _export(_tan_f64, _f64t)
sincos_f64 = _export(_sincos_f64, _f64t, ret=2)
sin_short_f64, cos_short_f64 = _export(_sin_short_f64, _f64t), _export(_cos_short_f64, _f64t)
tan_short_f64, sincos_short_f64 = _export(_tan_short_f64, _f64t), _export(_sincos_short_f64, _f64t, ret=2)
tanh_f64, sigmoid_f64 = _export(_tanh_f64, _f64t), _export(_sigmoid_f64, _f64t)
pow_f64 = _export(_pow_f64, _f64t)
