"""interpret: run a `Kernel` with whole-array numpy (or CuPy) calls instead of compiling it.

Start at `interpret`. This is the first tier of CPU execution: a kernel seen
for the first time runs here (no compile latency), and keeps running here while
its compiled version is built in the background (`fastad.runtime.cpu`). It
follows the exact semantics of `fastad.kernel_ir` (views, statements,
outputs), so tests can compare the two.

Large numpy problems run in blocks of about `BLOCK` elements along the first
dimension: every statement's temporary then stays small and in cache, instead
of one fresh array of the full size per statement (a chain of 38 statements at
N = 10M would otherwise touch 1.5 GB of new memory). Blocks of 8192 elements
keep even 8-byte temporaries under glibc's 128 KB mmap threshold, so they are
recycled from the heap rather than mapped afresh (each new 4 KB page costs a
page fault). Measured for the chain's value+grad at N = 10M, one thread, under
load: 0.6-0.9 s in blocks of 4096-8192, 1.8 s in blocks of 16384, 2.2-3.0 s in
blocks of 65536, 3.5-11 s as whole arrays. Reductions over the whole space
combine the block results in block order (float32 sums in float64).
"""
from __future__ import annotations

import math

import numpy as np

from ..ops import OPS

__all__ = ["interpret", "BLOCK"]

_REDUCERS = {"sum": "sum", "prod": "prod", "max": "max", "min": "min"}
BLOCK = 1 << 13   # elements per block of a large numpy problem (see the module docstring)


def interpret(kernel, shape: tuple, inputs: list, scalars: list, xp=np, run_blocks=None) -> list:
    """Flat output arrays for `kernel` over iteration `shape`; inputs are (flat, offset, strides).
    `run_blocks(f, n)`: calls f(0) .. f(n-1), possibly on several threads (numpy releases the GIL);
    default: in order on this thread. Results do not depend on it."""
    shape = tuple(int(d) for d in shape)
    views = [_strided(flat, offset, strides, shape, xp) for flat, offset, strides in inputs]
    n = math.prod(shape)
    if xp is not np or n <= 2 * BLOCK or shape[0] < 2:
        return [_cast(v, o, xp) for v, o in zip(_evaluate(kernel, shape, views, scalars, xp), kernel.outputs)]
    rows, inner = shape[0], n // shape[0]
    n_outer = kernel.ndim - kernel.reduce_ndim
    kept = math.prod(shape[1:n_outer]) if n_outer else 0   # reduced-output elements per row
    outs = [None if (o.reduce and not n_outer) else np.empty(kept * rows if o.reduce else n, o.dtype.np)
            for o in kernel.outputs]
    step = max(1, BLOCK // max(inner, 1))
    blocks = range(0, rows, step)
    partials = [[None] * len(blocks) for _ in kernel.outputs]

    def block(b):
        lo = blocks[b]
        hi = min(rows, lo + step)
        sub = (hi - lo,) + shape[1:]
        for k, (v, o) in enumerate(zip(_evaluate(kernel, sub, [w[lo:hi] for w in views], scalars, np),
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
            parts = np.asarray(partials[k])
            if parts.dtype == np.float32 and o.reduce in ("sum", "prod"):
                parts = parts.astype(np.float64)   # as the compiled tier: float32 partials combine in float64
            with np.errstate(all="ignore"):
                outs[k] = _cast(getattr(np, _REDUCERS[o.reduce])(parts), o, np)
    return outs


def _evaluate(kernel, shape: tuple, views: list, scalars: list, xp) -> list:
    """Each output over `shape`: flat stores, reduced values before the cast to the output dtype."""
    values = []
    with np.errstate(all="ignore"):
        for st in kernel.body:
            if st.op == "load":
                values.append(views[st.arg])
            elif st.op == "scalar":
                values.append(xp.asarray(scalars[st.arg], dtype=st.dtype.np))
            else:
                args = [values[s] for s in st.srcs]
                values.append(xp.asarray(OPS[st.op].ref(*args, st.arg), dtype=st.dtype.np))
        outs = []
        axes = tuple(range(kernel.ndim - kernel.reduce_ndim, kernel.ndim))
        for o in kernel.outputs:
            v = xp.broadcast_to(values[o.value], shape)
            if o.reduce:
                v = getattr(xp, _REDUCERS[o.reduce])(v, axis=axes)
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
