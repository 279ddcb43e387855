"""codegen.numba: render a `Kernel` as Python source for `numba.njit`.

Start at `render`. The module it returns defines one function,
`body(lo, hi, ...)`: the whole kernel over rows lo..hi of the first iteration
dimension, compiled with `nogil=True`, without fast-math (every operation rounds as numpy's;
a reduction's steps alone are reassociable, `mathlib.acc_add`, so LLVM vectorizes them)
and without Numba's runtime (`_nrt=False`), and
`SIGNATURE`, the Numba types it is compiled for. Every argument is a C scalar
or a data pointer (`CPointer`), so the compiled native function can be called
through ctypes: `int32 f(void *ret, void **excinfo, lo, hi, ...)` in Numba's
calling convention, returning 0 (or -2, "returned None") on success and
another status when the kernel raised. It is compiled without Python or cfunc
wrappers, so its object code refers to no Python or Numba runtime symbol and
can be cached and loaded without Numba (`fastad.runtime.native`). A slice writes the partial
results of reductions over the whole iteration space (`full_reductions`) to
one pointer argument each. The CPU runtime splits the first
dimension into a fixed number of chunks that depends only on the size, runs
them on a thread pool, and combines partials in chunk order: results are
bit-identical run to run and independent of the thread count. Numba's own
`prange` is not used: its parfor passes cost about a second of compile time
per kernel (measured), which the thread pool avoids.

Argument order follows `fastad.kernel_ir` (shape, inputs, outputs, scalars),
after `lo, hi`, then one partial-result pointer per full reduction; buffers
are passed as pointers to their first element (`c_arguments` lists the C
types). Bool scalars travel as uint8, complex scalars as (real, imag). Indices are cast to unsigned, so Numba skips negative-index
wrap-around, which otherwise stops LLVM from vectorizing. Intrinsics
(`exp(...)` in the op table's kernel expressions) map per dtype to
`fastad.codegen.mathlib` (inlined by LLVM, with its own strict fp flags) or
to Numba built-ins (`fastad.codegen.numba_exprs`). Two rewrites of the body use mathlib's variants: sin and cos of one value
become one `sincos` call (`shared_calls`), and a 1-D kernel with trig calls on cheap arguments
loops over blocks of `_BLOCK`, running the short-reduction versions on a block whose arguments
all lie in their range (`_short_calls`; docs/MATHLIB.md). A 2-D reduction over a dim that no
input reads contiguously, while one reads the kept dim contiguously, runs in column form
(`_column_loops`): loops interchanged over tiles of accumulators on the stack, so the inner
loop reads contiguous values into independent accumulators and vectorizes.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np

from .. import dtypes as dt
from ..kernel_ir import Kernel
from ..ops import OPS
from .numba_exprs import INTRINSIC, MATHLIB, NP_FUNCS, expression, np_type

__all__ = ["render", "full_reductions", "merge_partials", "accumulator_dtype", "c_arguments", "element_cost"]


def _stmt_source(kernel: Kernel, i: int, index_of) -> str:
    st = kernel.body[i]
    if st.op == "load":
        load = f"in{st.arg}[{index_of(st.arg)}]"
        return f"({load} != 0)" if st.dtype is dt.bool else load  # bool buffers are read as bytes
    if st.op == "scalar":
        return f"sc{st.arg}"
    args = [f"v{s}" for s in st.srcs]
    in_dtype = kernel.body[st.srcs[-1]].dtype if st.srcs else st.dtype
    expr = expression(OPS[st.op].expr, args, in_dtype, st.dtype)
    if OPS[st.op].out == "same" and st.dtype.kind in "iu" and st.op in ("add", "sub", "mul", "neg", "pow",
                                                                        "floordiv", "mod", "abs"):
        expr = f"{np_type(st.dtype)}({expr})"  # Numba widens small ints; keep numpy's wrap-around
    return expr


def _acc_type(reduce: str, d: dt.DType) -> str:
    # float32 sums and products accumulate in float64 on every tier (`dtypes.accumulator`)
    return np_type(dt.accumulator(reduce, d))


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


def _update(reduce: str, acc: str, v: str, acc_type: str = "") -> str:
    """One reduction step. Float sums and products go through `acc_add`/`acc_mul`, the kernel's
    only reassociable arithmetic (so the loop vectorizes); `acc_type` is the accumulator's type."""
    if reduce in ("sum", "prod"):
        if acc_type in ("np.float32", "np.float64"):
            return f"{acc} = {'acc_add' if reduce == 'sum' else 'acc_mul'}({acc}, {acc_type}({v}))"
        return f"{acc} {'+' if reduce == 'sum' else '*'}= {v}"
    cmp = ">" if reduce == "max" else "<"
    return f"{acc} = {v} if {v} {cmp} {acc} else {acc}"


def render(kernel: Kernel) -> str:
    """Python source of a module defining `body(lo, hi, ...)` and its `SIGNATURE`."""
    # the mathlib hash is part of the source, hence of the cache key: cached kernels inline its code
    return (_HEADER.format(mathlib=mathlib_hash()) + f"SIGNATURE = ({_numba_signature(kernel)})\n\n"
            + _body(kernel) + "\n")


_HEADER = """# mathlib {mathlib}
import math, cmath
import numpy as np
import numba
from numba import uint64 as U, types as T
from fastad.codegen.mathlib import *

"""


@functools.lru_cache(maxsize=None)
def mathlib_hash() -> str:
    """sha256 prefix of the mathlib package's sources, read from the files: rendering must not
    import Numba. Equal to `mathlib.SOURCE_HASH` (the same rule, in `mathlib.source_hash`)."""
    h = hashlib.sha256()
    try:
        for p in sorted((Path(__file__).parent / "mathlib").glob("*.py")):
            h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    except OSError:
        return "unknown"
    return h.hexdigest()[:16]


def _scalar_params(kernel: Kernel, k: int) -> list:
    d = kernel.scalars[k]
    if d.kind == "c":
        return [f"sc{k}_re", f"sc{k}_im"]
    return [f"sc{k}_u8"] if d is dt.bool else [f"sc{k}"]


def c_arguments(kernel: Kernel) -> list:
    """C type of each argument of `body` after lo, hi: "ptr" (a buffer's first element),
    or a numpy dtype name for a scalar passed by value (shape, offsets and strides are "int64")."""
    args = ["int64"] * kernel.ndim
    for inp in kernel.inputs:
        args += ["ptr", "int64"] + ["int64"] * inp.n_strides
    args += ["ptr"] * len(kernel.outputs)
    for d in kernel.scalars:
        args += ["uint8"] if d is dt.bool else [{"complex64": "float32", "complex128": "float64"}.get(d.name,
                                                                                                    d.name)] * (
            2 if d.kind == "c" else 1)
    return args + ["ptr"] * len(full_reductions(kernel))


def _numba_type(d) -> str:
    # a bool buffer is passed as uint8: Numba cannot store its 1-bit booleans through a pointer
    return "numba.uint8" if d is dt.bool else f"numba.{d.name}"


def _stored(value: str, d) -> str:
    return f"np.uint8({value})" if d is dt.bool else value


def _numba_signature(kernel: Kernel) -> str:
    types = ["numba.int64", "numba.int64"]
    ptr = iter([f"T.CPointer({_numba_type(i.dtype)})" for i in kernel.inputs]
               + [f"T.CPointer({_numba_type(o.dtype)})" for o in kernel.outputs]
               + [f"T.CPointer({_numba_type(dt.to_dtype(accumulator_dtype(kernel, k)))})"
                  for k in full_reductions(kernel)])
    for c in c_arguments(kernel):
        types.append(next(ptr) if c == "ptr" else f"numba.{c}")
    return ", ".join(types) + ","


def _signature(kernel: Kernel) -> list:
    args = [f"s{d}" for d in range(kernel.ndim)]
    for k, inp in enumerate(kernel.inputs):
        args += [f"in{k}", f"o{k}"] + [f"st{k}_{d}" for d, c in enumerate(inp.pattern) if c == "n"]
    args += [f"out{k}" for k in range(len(kernel.outputs))]
    for k in range(len(kernel.scalars)):
        args += _scalar_params(kernel, k)
    return args + [f"part{j}" for j in range(len(full_reductions(kernel)))]


def full_reductions(kernel: Kernel) -> list:
    """Reduced outputs of a kernel that reduces its whole iteration space (combined across chunks)."""
    if kernel.ndim > kernel.reduce_ndim:
        return []
    return [k for k, o in enumerate(kernel.outputs) if o.reduce]


def _invariant_statements(kernel: Kernel) -> set:
    """Statements whose value is the same at every point: scalars, broadcast loads, ops on those."""
    out = set()
    for i, st in enumerate(kernel.body):
        if st.op == "scalar" or (st.op == "load" and set(kernel.inputs[st.arg].pattern) <= {"0"}) or (
                st.op not in ("load", "scalar") and all(s in out for s in st.srcs)):
            out.add(i)
    return out


def _body(kernel: Kernel) -> str:
    """`body(lo, hi, ...)`: the kernel over rows lo..hi of its first dimension; returns full-reduction partials."""
    nd, rnd = kernel.ndim, kernel.reduce_ndim
    n_outer = nd - rnd
    reductions = [k for k, o in enumerate(kernel.outputs) if o.reduce]
    extrema = [k for k in reductions if kernel.outputs[k].reduce in ("max", "min")
               and kernel.outputs[k].dtype.is_floating]
    # no Python or cfunc wrapper: the runtime calls the native function itself (see the module docstring)
    lines = ["@numba.njit(cache=True, error_model='numpy', nogil=True, _nrt=False, "
             "no_cpython_wrapper=True, no_cfunc_wrapper=True)",
             f"def body(lo, hi, {', '.join(_signature(kernel))}):"]
    for k, d in enumerate(kernel.scalars):
        if d.kind == "c":
            lines.append(f"    sc{k} = {np_type(d)}(complex(sc{k}_re, sc{k}_im))")
        elif d is dt.bool:
            lines.append(f"    sc{k} = sc{k}_u8 != 0")

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

    # statements that read no loop index are computed once, before the loops; besides the saved
    # work, LLVM takes minutes over some mathlib bodies (pow) left loop-invariant inside a loop
    invariant = _invariant_statements(kernel)
    hoisted = [f"v{i} = {_stmt_source(kernel, i, index_of)}" for i in sorted(invariant)]
    shared = shared_calls(kernel, invariant)
    # calls with a short-range version and an argument that is cheap to compute twice: a block
    # whose arguments all lie within those ranges runs a loop with the short versions
    short = _short_calls(kernel, invariant) if nd == 1 and (n_outer == 0 or not reductions) else {}
    # float32 sums and products of a 1-D kernel: the values of a block of _BLOCK go to a float32
    # tile, which a second loop adds up in float64. In one loop the float64 accumulator would set
    # the vector width for the whole body (4 lanes, not 8), which halved the speed of the math
    blocked = [k for k in reductions if nd == 1 and n_outer == 0 and kernel.outputs[k].dtype is dt.float32
               and kernel.outputs[k].reduce in ("sum", "prod")]

    def loop_body(fast: bool, updates: bool = True) -> list:
        out = []
        for i in range(len(kernel.body)):
            if i in invariant or (i in shared and i != min(shared[i][1])):
                continue  # hoisted, or computed by the first statement of its shared group
            if i in shared or i in short:
                name, group = shared.get(i, (kernel.body[i].op, (i,)))
                src = kernel.body[i].srcs[0]
                call = f"{name}{'_short' if fast and i in short else ''}_f{_SFX[kernel.body[i].dtype.name]}"
                out.append(f"{', '.join(f'v{j}' for j in group)} = {call}(v{src})")
            else:
                out.append(f"v{i} = {_stmt_source(kernel, i, index_of)}")
        # a donated output is stored through its input's pointer at the index it was read from:
        # one base address, so LLVM vectorizes without an overlap test (which would fail, and fall
        # back to scalar code, had the same buffer come in as a separate output pointer)
        out += [(f"in{o.into}[{index_of(o.into)}]" if o.into is not None else
                 f"out{k}[{flat_index(list(range(nd)))}]") + f" = {_stored(f'v{o.value}', o.dtype)}"
                for k, o in enumerate(kernel.outputs) if not o.reduce]
        if not updates:
            return out
        out += [f"tile{k}[j] = v{o.value}" if k in blocked else
                _update(o.reduce, f"acc{k}", f"v{o.value}", _acc_type(o.reduce, o.dtype))
                for k, o in ((k, kernel.outputs[k]) for k in reductions)]
        # the max/min update above drops nans; count them so the result can still be nan, as in numpy
        return out + [f"nan{k} += v{kernel.outputs[k].value} != v{kernel.outputs[k].value}" for k in extrema]

    stmts = loop_body(False)

    def inits(indent):
        out = [indent + f"acc{k} = {_identity(kernel.outputs[k].reduce, kernel.outputs[k].dtype)}"
               for k in reductions]
        return out + [indent + f"nan{k} = 0" for k in extrema]

    def result(k):
        return f"acc{k}" if k not in extrema else f"acc{k} if nan{k} == 0 else np.nan"

    full = full_reductions(kernel)
    if hoisted:
        # an empty slice must not read its (possibly empty) inputs
        lines.append("    if hi <= lo:")
        lines += [f"        part{j}[0] = "
                  + _stored(_identity(kernel.outputs[k].reduce, kernel.outputs[k].dtype), kernel.outputs[k].dtype)
                  for j, k in enumerate(full)]
        lines.append("        return")
        lines += ["    " + h for h in hoisted]
    if column_form(kernel):
        return "\n".join(lines + _column_loops(kernel, loop_body(False, updates=False), reductions, extrema))
    ind = "    "
    if n_outer == 0:
        lines += inits(ind)
    if short or blocked:
        lines += [ind + f"tile{k} = stack_array({_BLOCK}, np.float32)" for k in blocked]
        lines += [ind + f"for b0 in range(lo, hi, {_BLOCK}):", ind + f"    b1 = min(b0 + {_BLOCK}, hi)"]
        loop = [ind + "    for j in range(b1 - b0):", ind + "        i0 = b0 + j"]
        if short:
            # one pass over the block computes the arguments (cheap by construction) and whether
            # any lies beyond its function's short range (inf and nan too)
            need = sorted(_slice(kernel, set(short.values()), invariant))
            lines += [ind + "    far = False"] + loop
            lines += [ind + f"        v{i} = {_stmt_source(kernel, i, index_of)}" for i in need]
            lines += [ind + f"        far |= not (abs(v{a}) <= {limit}{_SFX[kernel.body[a].dtype.name]})"
                      for a, limit in sorted({(a, _SHORT[kernel.body[i].op]) for i, a in short.items()})]
            lines += [ind + "    if far:"] + ["    " + ln for ln in loop]
            lines += [ind + "            " + s for s in stmts]
            lines += [ind + "    else:"] + ["    " + ln for ln in loop]
            lines += [ind + "            " + s for s in loop_body(True)]
        else:
            lines += loop + [ind + "        " + s for s in stmts]
        for k in blocked:
            lines += [ind + "    for j in range(b1 - b0):",
                      ind + "        " + _update(kernel.outputs[k].reduce, f"acc{k}", f"tile{k}[j]", "np.float64")]
        lines += [f"    part{j}[0] = {_stored(result(k), kernel.outputs[k].dtype)}" for j, k in enumerate(full)]
        return "\n".join(lines)
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
            lines.append(out_ind + f"out{k}[{flat_index(list(range(n_outer)))}] = "
                         + _stored(f"{np_type(o.dtype)}({result(k)})", o.dtype))
    lines += [f"    part{j}[0] = {_stored(result(k), kernel.outputs[k].dtype)}" for j, k in enumerate(full)]
    return "\n".join(lines)


_BLOCK = 256   # elements per block: of the short-range trig check, of a float32 tile (1 KB, in L1)
_TILE = 512    # kept indices per tile of the column form (accumulators in the stack frame: 4 KiB at 8 bytes)
_NARROW = 6    # narrower tiles of the column form run the row form (measured crossover: 4-8 kept indices)


def column_form(kernel: Kernel) -> bool:
    """Whether to render the loops interchanged (`_column_loops`): one kept and one reduced dim,
    inputs contiguous along the kept dim and none along the reduced one (a sum over axis 0 of a
    C-contiguous matrix), and accumulators that the stack tile can hold (real numbers)."""
    if kernel.ndim != 2 or kernel.reduce_ndim != 1:
        return False
    reduced = [o for o in kernel.outputs if o.reduce]
    pats = [inp.pattern for inp in kernel.inputs]
    return (bool(reduced) and any(p[0] == "1" for p in pats) and not any(p[1] == "1" for p in pats)
            and all(o.dtype.kind in "iuf" for o in reduced))


def _column_loops(kernel: Kernel, stmts: list, reductions: list, extrema: list) -> list:
    """The column form of a 2-D reduction over dim 1: per tile of kept indices i0, a tile of
    accumulators in the stack frame (`mathlib.stack_array`), a pass over the reduced index i1
    whose inner loop runs over the tile's contiguous i0 (independent accumulators: it vectorizes),
    then the tile's results. A tile narrower than `_NARROW` (few kept indices, or a narrow slice)
    runs the row form instead: a short inner loop per i1 costs more than the strided reads. Each
    output accumulates over i1 in order either way, so results do not depend on the tiling; a
    float max/min keeps a NaN once it has seen one (a NaN value replaces the accumulator, nothing
    replaces a NaN) and reports numpy's NaN, as the row form's NaN count does."""
    lines = []
    # max/min read one tile and write another, swapped per i1: LLVM turns a select stored back to
    # the address it loaded from into a masked store, whose reload in the next pass stalls (4x slower)
    swap = [k for k in reductions if kernel.outputs[k].reduce in ("max", "min")]

    def update(k):
        o, v = kernel.outputs[k], f"v{kernel.outputs[k].value}"
        if o.reduce not in ("max", "min"):
            return _update(o.reduce, f"acc{k}", v, _acc_type(o.reduce, o.dtype))
        cond = f"{v} {'>' if o.reduce == 'max' else '<'} acc{k}"
        return f"acc{k} = select({f'({cond}) | ({v} != {v})' if k in extrema else cond}, {v}, acc{k})"

    def result(k, acc):
        o = kernel.outputs[k]
        # x - 0 is x, NaN and -0.0 included
        res = f"{acc} - z{k}" if k not in extrema else f"{acc} if {acc} == {acc} else np.nan"
        return f"out{k}[U(i0)] = " + _stored(f"{np_type(o.dtype)}({res})", o.dtype)

    for k in reductions:
        o = kernel.outputs[k]
        T = _acc_type(o.reduce, o.dtype)
        # identities and a zero LLVM cannot see: the init loop is not a memset nor the copy-out a memcpy
        lines += [f"    tile{k} = stack_array({_TILE}, {T})", f"    id{k} = opaque({_identity(o.reduce, o.dtype)})",
                  f"    z{k} = opaque({T}(0))"]
        if k in swap:
            lines += [f"    back{k} = stack_array({_TILE}, {T})",
                      f"    res{k} = tile{k} if s1 % 2 == 0 else back{k}"]
        else:
            lines.append(f"    res{k} = tile{k}")
    lines += [f"    for t0 in range(lo, hi, {_TILE}):", f"        nt = min(t0 + {_TILE}, hi) - t0",
              f"        if nt < {_NARROW}:", "            for j in range(nt):", "                i0 = t0 + j"]
    lines += [f"                acc{k} = id{k}" for k in reductions]
    lines.append("                for i1 in range(s1):")
    lines += ["                    " + s for s in stmts + [update(k) for k in reductions]]
    lines += ["                " + result(k, f"acc{k}") for k in reductions]
    lines += ["            continue", "        for j in range(nt):"]
    lines += [f"            tile{k}[j] = id{k}" for k in reductions]
    lines.append("        for i1 in range(s1):")
    for k in reductions:
        if k in swap:
            lines += [f"            src{k} = tile{k} if i1 % 2 == 0 else back{k}",
                      f"            dst{k} = back{k} if i1 % 2 == 0 else tile{k}"]
        else:
            lines.append(f"            src{k} = dst{k} = tile{k}")
    lines += ["            for j in range(nt):", "                i0 = t0 + j"]
    lines += ["                " + s for s in stmts]
    for k in reductions:
        lines += [f"                acc{k} = src{k}[j]", "                " + update(k), f"                dst{k}[j] = acc{k}"]
    lines += ["        for j in range(nt):", "            i0 = t0 + j"]
    lines += ["            " + result(k, f"res{k}[j]") for k in reductions]
    return lines


# functions of one argument that one mathlib helper computes together (one range reduction and
# polynomial pair), as {op: (helper, position in the helper's tuple)}
_SHARED = {"sin": ("sincos", 0), "cos": ("sincos", 1)}
# ops with a short-range mathlib version (name_short_f32, exact within |x| <= LIMIT32/64), by
# the name of that limit; only trig saves enough to pay for the second copy of the loop, so the
# switch exists when a trig call takes part, and other short versions then join it
_SHORT = {"sin": "TRIG_SHORT", "cos": "TRIG_SHORT", "tan": "TRIG_SHORT", "exp": "EXP_SHORT"}
_SWITCH = ("sin", "cos", "tan")
_EXPENSIVE = set(MATHLIB) | set(NP_FUNCS) | {"pow", "floordiv", "mod", "erf"}
_SFX = {"float32": "32", "float64": "64"}


def _float_arg(kernel: Kernel, i: int) -> bool:
    st = kernel.body[i]
    return len(st.srcs) == 1 and st.dtype.name in _SFX and kernel.body[st.srcs[0]].dtype is st.dtype


def shared_calls(kernel: Kernel, invariant=frozenset()) -> dict:
    """{statement: (helper, its group in the helper's tuple order)} for loop statements that one
    mathlib helper computes together, e.g. sin and cos of the same value (sincos). This is
    common-subexpression sharing on the kernel body, whatever graph produced it."""
    by_key = {}
    for i, st in enumerate(kernel.body):
        if st.op in _SHARED and i not in invariant and _float_arg(kernel, i):
            helper, pos = _SHARED[st.op]
            by_key.setdefault((helper, st.srcs[0]), {}).setdefault(pos, []).append(i)
    out = {}
    for (helper, _), members in by_key.items():
        width = 1 + max(p for h, p in _SHARED.values() if h == helper)
        if len(members) == width and all(len(v) == 1 for v in members.values()):
            group = tuple(members[p][0] for p in range(width))
            out.update({j: (helper, group) for j in group})
    return out


def _slice(kernel: Kernel, values: set, invariant: set) -> set:
    """The loop statements that `values` depend on (themselves included)."""
    need, todo = set(), list(values)
    while todo:
        i = todo.pop()
        if i in need or i in invariant:
            continue
        need.add(i)
        todo += kernel.body[i].srcs
    return need


def _expensive(kernel: Kernel, i: int) -> bool:
    op = kernel.body[i].op
    m = op not in ("load", "scalar") and INTRINSIC.match(OPS[op].expr)
    return bool(m) and m.group(1) in _EXPENSIVE


def element_cost(kernel: Kernel) -> float:
    """The kernel's single-thread time per point of its iteration space, in units of a float32
    copy's (8 bytes moved): the scale the CPU runtime cuts launches into slices on, since a
    thread hand-off costs as much as ~100 us of work here. Bytes moved, plus each statement in
    the loop, a call in `_EXPENSIVE` weighing as much as ~40 bytes moved and another op as ~1
    (measured on the chain and poly kernels: 4.6 and 0.3 ns per element, a copy 0.16 ns)."""
    invariant = _invariant_statements(kernel)
    moved = sum(inp.dtype.itemsize for inp in kernel.inputs if set(inp.pattern) != {"0"})
    moved += sum(o.dtype.itemsize for o in kernel.outputs if not o.reduce)
    shared = shared_calls(kernel, invariant)
    work = 0.0
    for i, st in enumerate(kernel.body):
        if i in invariant or st.op in ("load", "scalar") or (i in shared and i != min(shared[i][1])):
            continue
        work += 40.0 if _expensive(kernel, i) else 1.0
    return (moved + work) / 8.0


def _short_calls(kernel: Kernel, invariant: set) -> dict:
    """{statement: its argument} for the loop's calls with a short-range version whose argument
    slice has no expensive call, so computing it twice per block (range check, then the loop)
    costs little; empty unless a trig call is among them (see _SWITCH)."""
    out = {}
    for i, st in enumerate(kernel.body):
        if st.op in _SHORT and i not in invariant and _float_arg(kernel, i):
            a = st.srcs[0]
            if not any(_expensive(kernel, j) for j in _slice(kernel, {a}, invariant)):
                out[i] = a
    return out if any(kernel.body[i].op in _SWITCH for i in out) else {}


def accumulator_dtype(kernel: Kernel, k: int) -> np.dtype:
    """The numpy dtype of output k's partial results."""
    o = kernel.outputs[k]
    return dt.accumulator(o.reduce, o.dtype).np if o.reduce else o.dtype.np


def merge_partials(kernel: Kernel, k: int, parts: list):
    """Combine the chunk partials of reduction `k`, in chunk order (host side): scalars of a full
    reduction, or arrays of per-column partials (`CpuBackend._launch_split`). A NaN in max/min
    wins, as in the kernel."""
    op = kernel.outputs[k].reduce
    acc = parts[0]
    with np.errstate(all="ignore"):
        for p in parts[1:]:
            if op == "sum":
                acc = acc + p
            elif op == "prod":
                acc = acc * p
            else:
                take = (p != p) | (p > acc if op == "max" else p < acc)
                acc = np.where(take, p, acc) if np.ndim(take) else (p if take else acc)
    return acc
