"""api.elementwise: the array API's elementwise functions (and `where`, `clip`).

Each is a thin frontend over one op-table primitive (`fastad.ops`) or an honest
composition of primitives: Python scalars, type promotion and broadcasting are
done by `fastad.tensor._binary`/`_unary`; start reading there.
"""
from __future__ import annotations

import builtins

from .. import dtypes as dt
from ..device import Device
from ..ops import const
from ..tensor import (Tensor, _apply, _as_tensor, _binary, _cast, _expand_to, _fresh, _unary,
                      broadcast_shapes)

__all__ = ["negative", "positive", "abs", "sign", "relu", "square", "isnan", "isinf", "isfinite",
           "logical_not", "pow", "where", "clip", "astype", "exp", "log", "log1p", "expm1", "sqrt", "sin",
           "cos", "tan", "tanh", "sigmoid", "floor", "ceil", "round", "add", "subtract", "multiply", "divide",
           "floor_divide", "remainder", "maximum", "minimum", "less", "less_equal", "greater", "greater_equal",
           "equal", "not_equal", "logical_and", "logical_or", "logical_xor", "acos", "asin", "atan", "acosh",
           "asinh", "atanh", "sinh", "cosh", "log2", "log10", "trunc", "atan2", "hypot", "copysign",
           "logaddexp", "nextafter", "bitwise_left_shift", "bitwise_right_shift", "bitwise_and", "bitwise_or",
           "bitwise_xor", "bitwise_invert", "signbit", "reciprocal", "real", "imag", "conj"]


def _float_math(name):
    def fn(x):
        return _unary(name, x)
    fn.__name__ = name
    fn.__doc__ = f"Elementwise {name}."
    return fn


exp, log, log1p, expm1, sqrt, sin, cos, tan, tanh, sigmoid = (
    _float_math(n) for n in ("exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tan", "tanh", "sigmoid"))
def _keep_int(name):
    def fn(x):
        if isinstance(x, Tensor) and x.dtype.kind in "iub":
            return _fresh(x)  # integers are already whole; still a new tensor
        return _unary(name, x)
    fn.__name__ = name
    return fn


floor, ceil, round = _keep_int("floor"), _keep_int("ceil"), _keep_int("round")


def negative(x):
    if x.dtype is dt.bool:
        raise TypeError("negative is not defined for bool tensors")
    return _apply("neg", x)


def positive(x):
    if not isinstance(x, Tensor):
        raise TypeError(f"positive: expected a fastad Tensor, got {type(x).__name__}")
    if x.dtype is dt.bool:
        raise TypeError("positive is not defined for bool tensors")
    return _fresh(x)


def abs(x):
    """|x|; for complex x the modulus hypot(real, imag), a real tensor (the array API's dtype rule)."""
    if isinstance(x, Tensor) and x.dtype.kind == "c":
        return hypot(real(x), imag(x))
    return _fresh(x) if isinstance(x, Tensor) and x.dtype is dt.bool else _unary("abs", x)


def sign(x):
    return _unary("sign", x)


def relu(x):
    return _unary("relu", x)


def square(x):
    return multiply(x, x)


def isnan(x):
    return _float_or_false("isnan", x)


def isinf(x):
    return _float_or_false("isinf", x)


def isfinite(x):
    if not x.dtype.is_floating:
        return Tensor(const(True, x.shape, dt.bool, x.device))
    return _apply("isfinite", x)


def _float_or_false(name, x):
    if not x.dtype.is_floating:
        return Tensor(const(False, x.shape, dt.bool, x.device))
    return _apply(name, x)


def logical_not(x):
    if x.dtype is not dt.bool:
        x = _apply("ne", x, Tensor(const(0, x.shape, x.dtype, x.device)))
    return _apply("logical_not", x)


def _binary_fn(name):
    def fn(a, b):
        return _binary(name, a, b)
    fn.__name__ = name
    return fn


add, subtract, multiply, divide = (_binary_fn(n) for n in ("add", "sub", "mul", "div"))
floor_divide, remainder, maximum, minimum = (_binary_fn(n) for n in ("floordiv", "mod", "maximum", "minimum"))
less, less_equal, greater, greater_equal, equal, not_equal = (
    _binary_fn(n) for n in ("lt", "le", "gt", "ge", "eq", "ne"))


def _logical(name):
    def fn(a, b):
        a = a if isinstance(a, Tensor) else _as_tensor(a, b)
        b = b if isinstance(b, Tensor) else _as_tensor(b, a)
        return _binary(name, _cast(a, dt.bool), _cast(b, dt.bool))
    fn.__name__ = name
    return fn


logical_and, logical_or, logical_xor = (_logical(n) for n in ("logical_and", "logical_or", "logical_xor"))


def pow(a, b) -> Tensor:
    """`a ** b`; small constant exponents become cheaper ops (x**2 is x*x)."""
    if isinstance(a, Tensor) and isinstance(b, (int, float)) and not isinstance(b, builtins.bool):
        if a.dtype.is_floating or (isinstance(b, int) and b >= 0):
            if b == 1:
                return _fresh(a)
            if b == 2:
                return multiply(a, a)
            if b == 0.5 and a.dtype.is_floating:
                return sqrt(a)
            if b == -1 and a.dtype.is_floating:
                return divide(1, a)
        if a.dtype.kind in "iu" and isinstance(b, int) and b < 0:
            raise ValueError("integers to negative integer powers are not allowed")
    return _binary("pow", a, b)


def where(condition, x1, x2) -> Tensor:
    if isinstance(condition, Tensor):
        like = condition
    elif isinstance(x1, Tensor):
        like = x1
    elif isinstance(x2, Tensor):
        like = x2
    else:
        raise TypeError("where: at least one argument must be a fastad Tensor")
    if not isinstance(x1, Tensor) and not isinstance(x2, Tensor):
        x1 = _as_tensor(x1, like)
        x2 = _as_tensor(x2, x1)
    else:
        x1 = _as_tensor(x1, x2 if isinstance(x2, Tensor) else like)
        x2 = _as_tensor(x2, x1)
    c = _as_tensor(condition, like)
    if not (c.device is x1.device is x2.device):
        devices = {t.device for t in (c, x1, x2)}
        raise ValueError(f"where: operands are on different devices: {', '.join(map(str, devices))}")
    if c.dtype is not dt.bool:
        c = _cast(c, dt.bool)
    shape = broadcast_shapes(c.shape, x1.shape, x2.shape, op="where")
    if x1.dtype is not x2.dtype:
        common = dt.result_type(x1.dtype, x2.dtype)
        x1, x2 = _cast(x1, common), _cast(x2, common)
    return _apply("where", _expand_to(c, shape), _expand_to(x1, shape), _expand_to(x2, shape))


def clip(x: Tensor, min=None, max=None) -> Tensor:
    """Clamp to [min, max]: min first, then max, as numpy and PyTorch do (so min > max gives max
    everywhere). The gradient passes where min <= x <= max (PyTorch's convention)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"clip: expected a fastad Tensor, got {type(x).__name__}")
    out = x
    if min is not None:
        out = where(less(out, min), _as_tensor(min, x) if not isinstance(min, Tensor) else min, out)
    if max is not None:
        out = where(greater(out, max), _as_tensor(max, x) if not isinstance(max, Tensor) else max, out)
    if out is x:
        return _fresh(x)
    if out.dtype is not x.dtype and dt.can_cast(x.dtype, out.dtype) is False:
        out = _cast(out, x.dtype)
    return out



def astype(x: Tensor, dtype, /, *, copy: builtins.bool = True, device=None) -> Tensor:
    """`x` as `dtype`. With copy=False and nothing to convert, `x` itself (the array API's rule);
    otherwise a new tensor, and with copy=True one with a buffer of its own."""
    if not isinstance(x, Tensor):
        raise TypeError(f"astype: expected a fastad Tensor, got {type(x).__name__}")
    dtype = dt.to_dtype(dtype)
    if device is not None and Device(device) != x.device:
        x = _apply("copy_to", x, arg=Device(device))
    if x.dtype is dtype:
        return _apply("copy", x) if copy else x
    return _apply("cast", x, arg=dtype)


# ---- the rest of the standard's elementwise functions ------------------------------------
acos, asin, atan, acosh, asinh, atanh, sinh, cosh, log2, log10 = (
    _float_math(n) for n in ("acos", "asin", "atan", "acosh", "asinh", "atanh", "sinh", "cosh", "log2", "log10"))
trunc = _keep_int("trunc")
atan2, hypot, copysign, logaddexp, nextafter = (
    _binary_fn(n) for n in ("atan2", "hypot", "copysign", "logaddexp", "nextafter"))
bitwise_left_shift, bitwise_right_shift = _binary_fn("bitwise_left_shift"), _binary_fn("bitwise_right_shift")


def _bitwise(name, logical):
    def fn(x1, x2, /):
        a = x1 if isinstance(x1, Tensor) else None
        b = x2 if isinstance(x2, Tensor) else None
        if (a is not None and a.dtype is dt.bool and (b is None or b.dtype is dt.bool)) or \
                (b is not None and b.dtype is dt.bool and a is None):
            return _binary(logical, x1, x2)  # on bools the bitwise op is the logical one
        return _binary(name, x1, x2)
    fn.__name__ = name
    return fn


bitwise_and = _bitwise("bitwise_and", "logical_and")
bitwise_or = _bitwise("bitwise_or", "logical_or")
bitwise_xor = _bitwise("bitwise_xor", "logical_xor")


def bitwise_invert(x, /):
    if isinstance(x, Tensor) and x.dtype is dt.bool:
        return _apply("logical_not", x)
    return _unary("bitwise_invert", x)


def signbit(x, /):
    """True where the sign bit is set (-0.0 and NaNs with the sign bit included)."""
    if isinstance(x, Tensor) and not x.dtype.is_floating:
        return less(x, 0) if x.dtype.kind == "i" else Tensor(const(False, x.shape, dt.bool, x.device))
    return _unary("signbit", x)


def reciprocal(x, /):
    """1 / x (a division: the same value and gradient as `divide(1, x)`)."""
    return divide(1.0, x)


def real(x, /):
    """The real part (a new tensor equal to `x` for real dtypes)."""
    if isinstance(x, Tensor) and x.dtype.kind != "c":
        return _fresh(x)
    return _apply("real", x)


def imag(x, /):
    """The imaginary part (zeros for real dtypes)."""
    if isinstance(x, Tensor) and x.dtype.kind != "c":
        return Tensor(const(0, x.shape, x.dtype, x.device))
    return _apply("imag", x)


def conj(x, /):
    """The complex conjugate (a new tensor equal to `x` for real dtypes)."""
    if isinstance(x, Tensor) and x.dtype.kind != "c":
        return _fresh(x)
    return _apply("conj", x)
