"""codegen.numba: render a `Kernel` as Python source for `numba.njit`.

Start at `render`. The module it returns defines:

* `body(lo, hi, ...)`: the whole kernel over rows lo..hi of the first
  iteration dimension, compiled serially with `fastmath={"reassoc"}` (so LLVM
  vectorizes reductions) and returning the partial results of reductions over
  the whole iteration space;
* `kernel_parallel` / `kernel_serial`: run `body` over `CHUNKS` fixed slices,
  under `prange` or in order, then combine partials in order. The fixed split
  makes both bit-identical and independent of the thread count. Keeping the
  heavy loop out of the `prange` body also keeps Numba's parfor passes cheap
  (measured: the chain kernel compiles in about a third of the time).

Argument order follows `fastad.kernel_ir` (shape, inputs, outputs, scalars).
Indices are cast to unsigned, so Numba skips negative-index wrap-around, which
otherwise stops LLVM from vectorizing. Intrinsics (`exp(...)` in the op
table's kernel expressions) map per dtype to `fastad.codegen.mathlib`, inlined
at Numba-IR level (`inline_math`), or to Numba built-ins.
"""
from __future__ import annotations

import re

import numpy as np

from .. import dtypes as dt
from ..kernel_ir import Kernel
from ..ops import OPS

__all__ = ["render", "CHUNKS"]

CHUNKS = 64  # work split: fixed, so results do not depend on the thread count

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


def _acc_type(reduce: str, d: dt.DType) -> str:
    # float32 sums and products accumulate in float64: they vectorize as well, with far less rounding
    return "np.float64" if reduce in ("sum", "prod") and d is dt.float32 else _np_type(d)


def _identity(reduce: str, d: dt.DType) -> str:
    T = _acc_type(reduce, d)
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
    if reduce == "sum":
        return f"{acc} += {v}"
    if reduce == "prod":
        return f"{acc} *= {v}"
    cmp = ">" if reduce == "max" else "<"
    return f"{acc} = {v} if {v} {cmp} {acc} else {acc}"


def _merge(reduce: str, acc: str, v: str) -> str:
    """Combine two partial results; for max/min a nan partial wins (numpy propagates nan)."""
    if reduce in ("sum", "prod"):
        return _update(reduce, acc, v)
    cmp = ">" if reduce == "max" else "<"
    return f"{acc} = {v} if ({v} {cmp} {acc}) or ({v} != {v}) else {acc}"


def render(kernel: Kernel) -> str:
    """Python source of a module defining `body`, `kernel_parallel` and `kernel_serial`."""
    return "\n\n".join([_HEADER + _body(kernel), _entry(kernel, True), _entry(kernel, False)]) + "\n"


_HEADER = """import math, cmath
import numpy as np
import numba
from numba import prange
from numba import uint64 as U
from fastad.codegen.inline_math import *

CHUNKS = %d

""" % CHUNKS


def _signature(kernel: Kernel) -> list:
    args = [f"s{d}" for d in range(kernel.ndim)]
    for k, inp in enumerate(kernel.inputs):
        args += [f"in{k}", f"o{k}"] + [f"st{k}_{d}" for d, c in enumerate(inp.pattern) if c == "n"]
    args += [f"out{k}" for k in range(len(kernel.outputs))]
    args += [f"sc{k}" for k in range(len(kernel.scalars))]
    return args


def _full_reductions(kernel: Kernel) -> list:
    """Reduced outputs of a kernel that reduces its whole iteration space (combined across chunks)."""
    if kernel.ndim > kernel.reduce_ndim:
        return []
    return [k for k, o in enumerate(kernel.outputs) if o.reduce]


def _body(kernel: Kernel) -> str:
    """`body(lo, hi, ...)`: the kernel over rows lo..hi of its first dimension; returns full-reduction partials."""
    nd, rnd = kernel.ndim, kernel.reduce_ndim
    n_outer = nd - rnd
    reductions = [k for k, o in enumerate(kernel.outputs) if o.reduce]
    extrema = [k for k in reductions if kernel.outputs[k].reduce in ("max", "min")
               and kernel.outputs[k].dtype.is_floating]
    lines = ["@numba.njit(cache=True, error_model='numpy', fastmath={\"reassoc\"}, nogil=True)",
             f"def body(lo, hi, {', '.join(_signature(kernel))}):"]

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

    stmts = [f"v{i} = {_stmt_source(kernel, i, index_of)}" for i in range(len(kernel.body))]
    stmts += [f"out{k}[{flat_index(list(range(nd)))}] = v{o.value}"
              for k, o in enumerate(kernel.outputs) if not o.reduce]
    stmts += [_update(kernel.outputs[k].reduce, f"acc{k}", f"v{kernel.outputs[k].value}") for k in reductions]
    # the max/min update above drops nans; count them so the result can still be nan, as in numpy
    stmts += [f"nan{k} += v{kernel.outputs[k].value} != v{kernel.outputs[k].value}" for k in extrema]

    def inits(indent):
        out = [indent + f"acc{k} = {_identity(kernel.outputs[k].reduce, kernel.outputs[k].dtype)}"
               for k in reductions]
        return out + [indent + f"nan{k} = 0" for k in extrema]

    def result(k):
        return f"acc{k}" if k not in extrema else f"acc{k} if nan{k} == 0 else np.nan"

    ind = "    "
    if n_outer == 0:
        lines += inits(ind)
    lines += [ind + "for j in range(hi - lo):", ind + "    i0 = lo + j"]
    ind += "    "
    if n_outer == 1:
        lines += inits(ind)
    for d in range(1, nd):
        lines.append(ind + f"for i{d} in range(s{d}):")
        ind += "    "
        if d == n_outer - 1 and n_outer > 1:
            lines += inits(ind)
    lines += [ind + s for s in stmts]
    if reductions and n_outer:
        out_ind = "    " * (n_outer + 1)
        for k in reductions:
            o = kernel.outputs[k]
            lines.append(out_ind + f"out{k}[{flat_index(list(range(n_outer)))}] = {_np_type(o.dtype)}({result(k)})")
    full = _full_reductions(kernel)
    lines.append("    return (" + "".join(f"{result(k)}, " for k in full) + ")" if full else "    return 0")
    return "\n".join(lines)


def _entry(kernel: Kernel, parallel: bool) -> str:
    """The entry point: `body` over CHUNKS slices of the first dimension, in parallel or in order.
    Both variants chunk alike, so they give bit-identical results."""
    sig = _signature(kernel)
    name = "kernel_parallel" if parallel else "kernel_serial"
    full = _full_reductions(kernel)
    lines = [f"@numba.njit(parallel={parallel}, cache=True, error_model='numpy', nogil=True)",
             f"def {name}({', '.join(sig)}):",
             "    nch = min(s0, CHUNKS) if s0 > 0 else 1"]
    for k in full:
        o = kernel.outputs[k]
        T = _acc_type(o.reduce, o.dtype)
        lines.append(f"    part{k} = np.empty(nch, dtype={'np.bool_' if o.dtype is dt.bool else T})")
    lines.append(f"    for c in {'prange' if parallel else 'range'}(nch):")
    call = f"body(c * s0 // nch, (c + 1) * s0 // nch, {', '.join(sig)})"
    if full:
        lines.append(f"        r = {call}")
        lines += [f"        part{k}[c] = r[{j}]" for j, k in enumerate(full)]
    else:
        lines.append(f"        {call}")
    for k in full:
        o = kernel.outputs[k]
        lines.append(f"    acc = part{k}[0]")
        lines.append("    for c in range(1, nch):")
        lines.append("        " + _merge(o.reduce, "acc", f"part{k}[c]"))
        lines.append(f"    out{k}[0] = {_np_type(o.dtype)}(acc)")
    return "\n".join(lines)
