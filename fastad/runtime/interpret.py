"""interpret: run a `Kernel` with whole-array numpy (or CuPy) calls instead of compiling it.

Start at `interpret`. This is the first tier of CPU execution: a kernel seen
for the first time runs here (no compile latency), and keeps running here while
its compiled version is built in the background (`fastad.runtime.cpu`). It
follows the exact semantics of `fastad.kernel_ir` (views, statements,
outputs), so tests can compare the two.

Large numpy problems run in blocks of about `BLOCK` elements along the first
dimension, and each block's statements write into a few scratch buffers that
are reused from block to block (`_plan`: a value is dropped after its last
use, an op with a `ref_out` writes into a free buffer of its dtype). So the
temporaries stay in cache and nothing of a block's size is allocated per
statement; fresh arrays per statement cost a page fault per 4 KB, and holding
one per statement (38 for the chain) made every array operation 5-10x slower.
Measured for the chain's value+grad at N = 10M, float32, one thread: 0.16 s of
array operations in blocks of 65536 (numpy's own sin, exp, tanh, cos take
0.1 s of it), against 0.47 s with a fresh array per statement in blocks of
8192. Reductions over the whole space combine the block results in block
order, in the accumulator's dtype (`dtypes.accumulator`: float32 sums in float64).
"""
from __future__ import annotations

import math
import threading

import numpy as np

from ..numpy_refs import reduction
from ..ops import OPS
from .buffers import pool as buffer_pool

__all__ = ["interpret", "BLOCK"]

BLOCK = 1 << 16   # elements per block of a large numpy problem (see the module docstring)


def interpret(kernel, shape: tuple, inputs: list, scalars: list, xp=np, run_blocks=None) -> list:
    """Flat output arrays for `kernel` over iteration `shape`; inputs are (flat, offset, strides).
    `run_blocks(f, n)`: calls f(0) .. f(n-1), possibly on several threads (numpy releases the GIL);
    default: in order on this thread. Results do not depend on it."""
    shape = tuple(int(d) for d in shape)
    views = [_strided(flat, offset, strides, shape, xp) for flat, offset, strides in inputs]
    n = math.prod(shape)
    program, slot_dtypes = _compile(kernel, scalars, xp, into=xp is np)
    if xp is not np or n <= 2 * BLOCK or shape[0] < 2:
        bufs = [np.empty(shape, d) for d in slot_dtypes]   # fresh: an output may be returned in its slot
        return [_cast(v, o, xp) for v, o in zip(_evaluate(kernel, program, shape, views, bufs, xp), kernel.outputs)]
    rows, inner = shape[0], n // shape[0]
    n_outer = kernel.ndim - kernel.reduce_ndim
    kept = math.prod(shape[1:n_outer]) if n_outer else 0   # reduced-output elements per row
    outs = [None if (o.reduce and not n_outer) else buffer_pool.empty(kept * rows if o.reduce else n, o.dtype.np)
            for o in kernel.outputs]
    step = max(1, BLOCK // max(inner, 1))
    blocks = range(0, rows, step)
    partials = [[None] * len(blocks) for _ in kernel.outputs]
    scratch = {}   # per thread: one buffer of a whole block per slot

    def block(b):
        lo = blocks[b]
        hi = min(rows, lo + step)
        sub = (hi - lo,) + shape[1:]
        bufs = scratch.get(threading.get_ident())
        if bufs is None:
            bufs = scratch[threading.get_ident()] = [np.empty((step,) + shape[1:], d) for d in slot_dtypes]
        if hi - lo < step:
            bufs = [buf[:hi - lo] for buf in bufs]
        for k, (v, o) in enumerate(zip(_evaluate(kernel, program, sub, [w[lo:hi] for w in views], bufs, np),
                                       kernel.outputs)):
            if outs[k] is None:
                partials[k][b] = v
            else:
                width = kept if o.reduce else inner
                outs[k][lo * width:hi * width] = _cast(v, o, np)

    if run_blocks is None:
        for b in range(len(blocks)):
            block(b)
    else:
        run_blocks(block, len(blocks))
    for k, o in enumerate(kernel.outputs):
        if outs[k] is None:
            parts = np.asarray(partials[k])   # (in the accumulator's dtype: float64 for float32 sums)
            with np.errstate(all="ignore"):
                outs[k] = _cast(getattr(np, o.reduce)(parts), o, np)
    return outs


_LOAD, _CONST, _INTO, _REF = range(4)


_PLANS: dict = {}   # (kernel key, into) -> `_plan`'s result, which costs ~200 us for 40 statements
_MAX_PLANS = 512


def _compile(kernel, scalars: list, xp, into: bool):
    """The kernel body as a list of steps (kind, fn, srcs, arg, dtype, slot, dead) and the dtype of
    each scratch slot: the kernel's plan (cached by its key) with this call's scalar-only values
    (`_CONST`), which are computed once here, not once per block."""
    key = (kernel.key, into)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _plan(kernel, into)
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.pop(next(iter(_PLANS)))   # the oldest plan
        _PLANS[key] = plan
    steps, slot_dtypes, const_at = plan
    program, consts = list(steps), {}
    with np.errstate(all="ignore"):
        for i in const_at:
            _, fn, srcs, arg, dt, _, dead = steps[i]
            consts[i] = (xp.asarray(scalars[arg], dtype=dt) if fn is None else
                         xp.asarray(fn(*[consts[s] for s in srcs], arg), dtype=dt))
            program[i] = (_CONST, None, (), consts[i], dt, None, dead)
    return program, slot_dtypes


def _plan(kernel, into: bool):
    """The steps of `_compile` without this call's scalars (a `_CONST` step holds the op's
    reference, or None and the scalar's index), the slot dtypes, and where the `_CONST` steps are.

    * With `into` (numpy arrays), an op with a `ref_out` that gives the statement's dtype on these
      operands writes into a scratch slot (`_INTO`): no allocation per block. The rest call the
      op's reference (`_REF`).
    * `dead`: the values nothing later reads, dropped after the step. A slot is reused once no live
      value holds it; a `_REF` value may be a view of its operands, so it holds their slots too.
    Without this a block held one fresh temporary per statement: 38 live 32 KB arrays made each
    array operation 5-10x slower (out of cache, and the heap trimmed and refaulted between blocks)."""
    body = kernel.body
    last = {o.value: len(body) for o in kernel.outputs}
    for i, st in enumerate(body):
        for s in st.srcs:
            last[s] = max(last.get(s, -1), i)
    dead = [[] for _ in body]
    for value, i in last.items():
        if i < len(body):
            dead[i].append(value)
    steps, consts, holds, refs, free, slot_dtypes = [], set(), [], [], {}, []
    for i, st in enumerate(body):
        dt = st.dtype.np
        held = set()
        if st.op == "load":
            step = (_LOAD, None, (), st.arg, dt, None)
        elif st.op == "scalar":
            consts.add(i)
            step = (_CONST, None, (), st.arg, dt, None)
        elif all(s in consts for s in st.srcs):
            consts.add(i)
            step = (_CONST, OPS[st.op].ref, st.srcs, st.arg, dt, None)
        else:
            ref_out = OPS[st.op].ref_out
            if into and ref_out is not None and _writes_dtype(ref_out, [body[s].dtype.np for s in st.srcs], dt):
                pool = free.setdefault(dt, [])
                slot = pool.pop() if pool else len(slot_dtypes)
                if slot == len(slot_dtypes):
                    slot_dtypes.append(dt)
                    refs.append(0)
                held = {slot}
                step = (_INTO, ref_out, st.srcs, None, dt, slot)
            else:
                held = set().union(*[holds[s] for s in st.srcs])
                step = (_REF, OPS[st.op].ref, st.srcs, st.arg, dt, None)
        holds.append(held)
        for slot in held:
            refs[slot] += 1
        for v in dead[i]:
            for slot in holds[v]:
                refs[slot] -= 1
                if refs[slot] == 0:
                    free.setdefault(slot_dtypes[slot], []).append(slot)
        steps.append(step + (dead[i],))
    return steps, slot_dtypes, sorted(consts)


def _writes_dtype(into, operand_dtypes: list, dt) -> bool:
    """Whether `into` (an op's ref_out) on real operands of these dtypes gives `dt` itself, so that
    writing into an array of `dt` changes nothing."""
    if "c" in [d.kind for d in operand_dtypes + [dt]]:
        return False
    if not isinstance(into, np.ufunc):
        return all(d == dt for d in operand_dtypes)
    if into.nout != 1 or into.nin != len(operand_dtypes):
        return False
    try:
        return into.resolve_dtypes(tuple(operand_dtypes) + (None,))[-1] == dt
    except (TypeError, ValueError):   # no loop for these dtypes: the reference decides what happens
        return False


def _evaluate(kernel, program: list, shape: tuple, views: list, bufs: list, xp) -> list:
    """Each output over `shape`: flat stores, reduced values before the cast to the output dtype."""
    values = []
    append = values.append
    with np.errstate(all="ignore"):
        for kind, fn, srcs, arg, dt, slot, dead in program:
            if kind == _INTO:
                append(fn(*[values[s] for s in srcs], out=bufs[slot]))
            elif kind == _REF:
                append(xp.asarray(fn(*[values[s] for s in srcs], arg), dtype=dt))
            elif kind == _LOAD:
                append(views[arg])
            else:
                append(arg)
            for s in dead:
                values[s] = None
        outs = []
        axes = tuple(range(kernel.ndim - kernel.reduce_ndim, kernel.ndim))
        for o in kernel.outputs:
            v = xp.broadcast_to(values[o.value], shape)
            if o.reduce:
                v = reduction(o.reduce, v, axes, xp)   # (in the accumulator's dtype: float32 sums in float64)
            outs.append(v)
    return outs


def _cast(v, o, xp):
    with np.errstate(all="ignore"):
        return xp.ascontiguousarray(xp.asarray(v, dtype=o.dtype.np)).reshape(-1)


def _strided(flat, offset, strides, shape, xp):
    if flat.size == 0 or 0 in shape:
        return xp.zeros(shape, flat.dtype)
    isz = flat.dtype.itemsize
    base = flat[offset:]
    if xp is np:
        return np.lib.stride_tricks.as_strided(base, shape, tuple(s * isz for s in strides), writeable=False)
    return xp.lib.stride_tricks.as_strided(base, shape, tuple(s * isz for s in strides))
