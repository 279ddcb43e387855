"""codegen.numba: render a `Kernel` as Python source for `numba.njit`.

Start at `render`. The module it returns defines two entry points with the
argument order of `fastad.kernel_ir` (shape, inputs, outputs, scalars):
`kernel_parallel` (outermost loop is `prange`) and `kernel_serial` (plain
loops, for small sizes where thread start-up costs more than it saves). Both
read the same runtime arguments. Indices are cast to unsigned so Numba skips
negative-index wrap-around (which otherwise stops LLVM from vectorizing).
Whole-space reductions are prange reductions: deterministic for a fixed
thread count.

Intrinsics (`exp(...)` in the op table's kernel expressions) map per dtype to
`fastad.codegen.mathlib` (vectorizable float math) or to Numba built-ins.
Reduction loops are compiled with `fastmath={"reassoc"}` so LLVM can
vectorize the accumulation; mathlib keeps its own strict flags after inlining.
"""
from __future__ import annotations

import re

import numpy as np

from .. import dtypes as dt
from ..kernel_ir import Kernel
from ..ops import OPS

__all__ = ["render"]

_MATHLIB = ("exp", "log", "log1p", "expm1", "sin", "cos", "tan", "tanh", "sigmoid")
_INTRINSIC = re.compile(r"\b([a-z_][a-z0-9_]*)\(")


def _np_type(d: dt.DType) -> str:
    return "np.bool_" if d is dt.bool else f"np.{d.name}"


def _call(name: str, args: list, d: dt.DType, out: dt.DType) -> str:
    """Numba source for intrinsic `name` on `args` of input dtype `d` (output dtype `out`)."""
    x = args[0]
    T = _np_type(d)
    sfx = {"float32": "f32", "float64": "f64"}.get(d.name)
    if name in _MATHLIB and sfx:
        return f"{name}_{sfx}({x})"
    if name == "pow":
        return f"pow_{sfx}({x}, {args[1]})" if sfx else f"({x} ** {args[1]})"
    if name in _MATHLIB:  # complex: Numba's cmath
        return f"cmath.{name}({x})" if name in ("exp", "log", "sin", "cos", "tan", "tanh") else \
            f"{T}({name}_f64(np.float64({x})))"
    simple = {
        "sqrt": f"np.sqrt({x})", "abs": f"abs({x})", "sign": f"{T}(np.sign({x}))",
        "floor": f"np.floor({x})", "ceil": f"np.ceil({x})", "round": f"np.rint({x})",
        "isnan": f"({x} != {x})", "isinf": f"np.isinf({x})", "isfinite": f"np.isfinite({x})",
        "logical_not": f"(not {x})",
        "relu": f"({x} if not ({x} <= {T}(0)) else {T}(0))",
    }
    if name in simple:
        return simple[name]
    if name == "cast":
        return f"({x} != 0)" if out is dt.bool else f"{_np_type(out)}({x})"
    a, b = args[0], args[1] if len(args) > 1 else None
    if name == "maximum":
        return f"({a} if ({a} >= {b}) or ({a} != {a}) else {b})"
    if name == "minimum":
        return f"({a} if ({a} <= {b}) or ({a} != {a}) else {b})"
    if name == "where":
        return f"({args[1]} if {a} else {args[2]})"
    if name == "floordiv":
        return f"np.floor({a} / {b})" if d.is_floating else f"({a} // {b})"
    if name == "mod":
        return f"({a} % {b})"
    raise NotImplementedError(f"numba renderer: no intrinsic {name!r} for {d.name}")


def _expr(template: str, args: list, d: dt.DType, out: dt.DType) -> str:
    m = _INTRINSIC.match(template)
    if m and template.endswith(")"):
        return _call(m.group(1), args, d, out)
    return template.format(*args)


def _stmt_source(kernel: Kernel, i: int, index_of) -> str:
    st = kernel.body[i]
    if st.op == "load":
        return f"in{st.arg}[{index_of(st.arg)}]"
    if st.op == "scalar":
        return f"sc{st.arg}"
    args = [f"v{s}" for s in st.srcs]
    in_dtype = kernel.body[st.srcs[-1]].dtype if st.srcs else st.dtype
    expr = _expr(OPS[st.op].expr, args, in_dtype, st.dtype)
    if OPS[st.op].out == "same" and st.dtype.kind in "iu" and st.op in ("add", "sub", "mul", "neg", "pow",
                                                                        "floordiv", "mod", "abs"):
        expr = f"{_np_type(st.dtype)}({expr})"  # Numba widens small ints; keep numpy's wrap-around
    return expr


def _identity(reduce: str, d: dt.DType) -> str:
    T = _np_type(d)
    if reduce in ("sum", "prod") and d is dt.float32:
        T = "np.float64"  # accumulate float32 sums in float64: vectorizes as well, far less rounding
    if reduce == "sum":
        return f"{T}(0)"
    if reduce == "prod":
        return f"{T}(1)"
    if d.kind == "b":
        return "False" if reduce == "max" else "True"
    if d.kind in "iu":
        info = np.iinfo(d.np)
        return f"{T}({info.min if reduce == 'max' else info.max})"
    return f"{T}(-np.inf)" if reduce == "max" else f"{T}(np.inf)"


def _update(reduce: str, acc: str, v: str) -> str:
    """The accumulation statement, in a form Numba's prange recognises as a reduction."""
    if reduce == "sum":
        return f"{acc} += {v}"
    if reduce == "prod":
        return f"{acc} *= {v}"
    return f"{acc} = {reduce}({acc}, {v})"


def render(kernel: Kernel) -> str:
    """Python source of a module defining `kernel_parallel` and `kernel_serial`."""
    return _HEADER + _entry(kernel, parallel=True) + "\n\n" + _entry(kernel, parallel=False) + "\n"


_HEADER = """import math, cmath
import numpy as np
import numba
from numba import prange
from numba import uint64 as U
from fastad.codegen.inline_math import *

"""


def _signature(kernel: Kernel) -> list:
    args = [f"s{d}" for d in range(kernel.ndim)]
    for k, inp in enumerate(kernel.inputs):
        args += [f"in{k}", f"o{k}"] + [f"st{k}_{d}" for d, c in enumerate(inp.pattern) if c == "n"]
    args += [f"out{k}" for k in range(len(kernel.outputs))]
    args += [f"sc{k}" for k in range(len(kernel.scalars))]
    return args


def _entry(kernel: Kernel, parallel: bool) -> str:
    """One entry point. The outermost loop is a prange (parallel) or range (serial); reductions over
    the whole iteration space are prange reductions, partial ones accumulate per output element."""
    nd, rnd = kernel.ndim, kernel.reduce_ndim
    n_outer = nd - rnd
    reductions = [k for k, o in enumerate(kernel.outputs) if o.reduce]
    extrema = [k for k in reductions if kernel.outputs[k].reduce in ("max", "min")
               and kernel.outputs[k].dtype.is_floating]
    flags = 'fastmath={"reassoc"}, '
    name = "kernel_parallel" if parallel else "kernel_serial"
    lines = [f"@numba.njit(parallel={parallel}, cache=True, error_model='numpy', {flags}nogil=True)",
             f"def {name}({', '.join(_signature(kernel))}):"]

    def index_of(k):
        # unsigned indices: Numba then skips negative-index wrap-around, which blocks vectorization
        terms = [f"o{k}"]
        for d, c in enumerate(kernel.inputs[k].pattern):
            if c == "1":
                terms.append(f"i{d}")
            elif c == "n":
                terms.append(f"i{d} * st{k}_{d}")
        return f"U({' + '.join(terms)})"

    def flat_index(dims):
        if not dims:
            return "0"
        idx = f"i{dims[0]}"
        for d in dims[1:]:
            idx = f"({idx}) * s{d} + i{d}"
        return f"U({idx})"

    body = [f"v{i} = {_stmt_source(kernel, i, index_of)}" for i in range(len(kernel.body))]
    body += [f"out{k}[{flat_index(list(range(nd)))}] = v{o.value}"
             for k, o in enumerate(kernel.outputs) if not o.reduce]
    body += [_update(kernel.outputs[k].reduce, f"acc{k}", f"v{kernel.outputs[k].value}") for k in reductions]
    # numpy's max/min propagate nan; Numba's max/min do not, so count nans alongside
    body += [f"nan{k} += v{kernel.outputs[k].value} != v{kernel.outputs[k].value}" for k in extrema]
    rng = "prange" if parallel else "range"
    ind = "    "

    def inits(indent):
        out = []
        for k in reductions:
            o = kernel.outputs[k]
            out.append(indent + f"acc{k} = {_identity(o.reduce, o.dtype)}")
        out += [indent + f"nan{k} = 0" for k in extrema]
        return out

    def finish(indent, index):
        out = []
        for k in reductions:
            value = f"acc{k}" if k not in extrema else f"acc{k} if nan{k} == 0 else np.nan"
            value = f"{_np_type(kernel.outputs[k].dtype)}({value})"
            out.append(indent + f"out{k}[{index}] = {value}")
        return out

    if n_outer == 0:
        lines += inits(ind)
    for d in range(nd):
        if d == n_outer and n_outer > 0:
            lines += inits(ind)
        lines.append(ind + f"for i{d} in {rng if d == 0 else 'range'}(s{d}):")
        ind += "    "
    lines += [ind + s for s in body]
    if reductions:
        outer_ind = "    " * (n_outer + 1)
        lines += finish(outer_ind, flat_index(list(range(n_outer))) if n_outer else "0")
    return "\n".join(lines)
