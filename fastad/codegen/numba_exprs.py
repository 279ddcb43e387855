"""codegen.numba_exprs: the Numba source of each op-table intrinsic, for `fastad.codegen.numba`.

Start at `expression`: an op's kernel expression (`fastad.ops`) is a format template such as
`({0} + {1})`, or an intrinsic call such as `exp({0})`, which `_call` writes out for the
operand dtype: a `fastad.codegen.mathlib` function (vectorizable exp, sin, ... of float32
and float64), a Numba built-in, or an expression with numpy's special cases spelled out
(maximum's NaN, integer shifts, casts). Each returns one Python expression over the
operands' names; the renderer assigns it to the statement's value.
"""
from __future__ import annotations

import re

from .. import dtypes as dt

__all__ = ["expression", "np_type", "MATHLIB", "NP_FUNCS", "INTRINSIC"]

MATHLIB = ("exp", "log", "log1p", "expm1", "sin", "cos", "tan", "tanh", "sigmoid")
INTRINSIC = re.compile(r"\b([a-z_][a-z0-9_]*)\(")
# intrinsics computed by numpy's scalar ufunc of this name inside Numba
NP_FUNCS = {"acos": "arccos", "asin": "arcsin", "atan": "arctan", "acosh": "arccosh", "asinh": "arcsinh",
             "atanh": "arctanh", "sinh": "sinh", "cosh": "cosh", "log2": "log2", "log10": "log10",
             "trunc": "trunc", "atan2": "arctan2", "hypot": "hypot", "copysign": "copysign",
             "nextafter": "nextafter", "logaddexp": "logaddexp"}


def np_type(d: dt.DType) -> str:
    return "np.bool_" if d is dt.bool else f"np.{d.name}"


def _call(name: str, args: list, d: dt.DType, out: dt.DType) -> str:
    """Numba source for intrinsic `name` on `args` of input dtype `d` (output dtype `out`)."""
    x = args[0]
    T = np_type(d)
    sfx = {"float32": "f32", "float64": "f64"}.get(d.name)
    if name in MATHLIB and sfx:
        return f"{name}_{sfx}({x})"
    if name == "pow":
        # integers: numpy's wrap-around power, raising on negative exponents as numpy does at any size
        return f"pow_{sfx}({x}, {args[1]})" if sfx else (
            f"ipow(np.int64({x}), np.int64({args[1]}))" if d.kind == "i" else f"upow({x}, {args[1]})")
    if name == "expm1" and d.kind == "c":  # numpy's complex expm1; exp(z) - 1 off the finite nonzero values
        return (f"({T}(complex(math.expm1({x}.real) * math.cos({x}.imag) - 2.0 * math.sin({x}.imag / 2) ** 2, "
                f"math.exp({x}.real) * math.sin({x}.imag))) if cmath.isfinite({x}) and {x} != 0 else cmath.exp({x}) - 1)")
    if name == "tanh" and d.kind == "c":  # the op table's rule at an infinite real part (signs of the parts)
        return (f"({T}(complex(math.copysign(1.0, {x}.real), math.copysign(0.0, {x}.imag))) "
                f"if math.isinf({x}.real) and math.isfinite({x}.imag) else cmath.tanh({x}))")
    if name in ("exp", "log", "sin", "cos", "tan", "tanh") and d.kind == "c":
        return f"cmath.{name}({x})"  # complex: Numba's cmath (no mathlib version)
    simple = {
        "sqrt": f"np.sqrt({x})", "erf": f"math.erf({x})", "abs": f"abs({x})", "sign": _sign(x, d),
        "floor": f"np.floor({x})", "ceil": f"np.ceil({x})", "round": f"np.rint({x})",
        "isnan": f"({x} != {x})", "isinf": f"np.isinf({x})", "isfinite": f"np.isfinite({x})",
        "logical_not": f"(not {x})",
        "relu": f"({x} if not ({x} <= {T}(0)) else {T}(0))",
    }
    if name in simple:
        return simple[name]
    if name in NP_FUNCS:  # numpy's scalar ufuncs in Numba (libm), cast back: they may widen
        return f"{T}(np.{NP_FUNCS[name]}({', '.join(args)}))"
    if name in ("real", "imag"):
        return f"{x}.{name}" if d.kind == "c" else (x if name == "real" else f"{T}(0)")
    if name == "conj":
        return f"{x}.conjugate()" if d.kind == "c" else x
    if name == "signbit":
        return f"(math.copysign(1.0, {x}) < 0)"
    if name == "bitwise_invert":
        return f"{T}(~{x})"
    if name in ("lshift", "rshift"):  # numpy: a count outside [0, bits) gives 0, or -1 (>> of a negative)
        a, b, bits = args[0], args[1], 8 * d.np.itemsize
        fill = f"({T}(-1) if {a} < 0 else {T}(0))" if name == "rshift" and d.kind == "i" else f"{T}(0)"
        op = "<<" if name == "lshift" else ">>"
        return f"({T}({a} {op} {b}) if {b} >= 0 and {b} < {bits} else {fill})"
    if name == "cast":
        if out is dt.bool:
            return f"({x} != 0)"
        if d.kind in "fc" and out.kind in "iu":   # numpy_refs.cast: via int64 (its minimum beyond), wrapped
            r = f"{x}.real" if d.kind == "c" else x
            F = "np.float64" if d in (dt.float64, dt.complex128) else "np.float32"
            lim = f"{F}(9223372036854775808.0)"
            i64 = (f"select(({r} >= -{lim}) & ({r} < {lim}), np.int64({r}), "
                   f"np.int64(-9223372036854775807 - 1))")
            if out is dt.uint64:
                return f"select(({r} >= {lim}) & ({r} < {F}(2) * {lim}), np.uint64({r}), np.uint64({i64}))"
            return f"{np_type(out)}({i64})"
        return f"{np_type(out)}({x})"
    a, b = args[0], args[1] if len(args) > 1 else None
    # numpy: a when it wins or is NaN, else b (so b on ties: maximum(0.0, -0.0) is -0.0)
    if name == "maximum":
        return f"({a} if ({a} > {b}) or ({a} != {a}) else {b})"
    if name == "minimum":
        return f"({a} if ({a} < {b}) or ({a} != {a}) else {b})"
    if name == "where":
        return f"({args[1]} if {a} else {args[2]})"
    if name == "nan_guard":
        return f"({b} if {a} != 0 else {a})"
    if name == "floordiv" and sfx:  # an infinite operand: the array API's a / b (the op table's rule)
        return f"(({a} / {b}) if (np.isinf({a}) or np.isinf({b})) else floordiv_{sfx}({a}, {b}))"
    if name == "mod" and sfx:
        return f"{name}_{sfx}({a}, {b})"  # numpy's divmod: the two agree, as the gradient of mod needs
    if name == "floordiv" and d.kind == "i":  # numpy: x // -1 wraps (INT_MIN // -1 is INT_MIN)
        return f"(({a} // {b}) if {b} != -1 else {T}(0) - {a})"
    if name == "floordiv":
        return f"({a} // {b})"
    if name == "mod":
        return f"({a} % {b})"
    raise NotImplementedError(f"numba renderer: no intrinsic {name!r} for {d.name}")


def _sign(x: str, d: dt.DType) -> str:
    """numpy's sign: -1, 0 or 1 (+0.0 for both zeros, NaN for NaN; 0 or 1 for unsigned)."""
    T = np_type(d)
    if d.kind == "u":
        return f"{T}({x} > 0)"
    if d.kind == "f":
        return f"({x} if {x} != {x} else {T}(({x} > 0) - ({x} < 0)))"
    return f"{T}(np.sign({x}))"


def expression(template: str, args: list, d: dt.DType, out: dt.DType) -> str:
    m = INTRINSIC.match(template)
    if m and template.endswith(")"):
        return _call(m.group(1), args, d, out)
    return template.format(*args)
