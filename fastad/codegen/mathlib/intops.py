"""mathlib.intops: floor division and remainder with numpy's exact float semantics, and integer
power, for the Numba kernels (public names floordiv_f32/_f64, mod_f32/_f64, ipow, upow).

numpy defines float `//` and `%` through one divmod (fmod, moved to the
divisor's sign, the quotient snapped to a whole number), so 1 // 0.1 is 9,
not floor(1 / 0.1) = 10, and `a == (a // b) * b + a % b` holds as far as
rounding allows. The gradient of `%` uses `//`, so both must follow it.
"""
import numpy as np
from numba import njit

from ._core import _HELPER, _copysign, _div, _export, _f32t, _f64t, _floor, _select


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
