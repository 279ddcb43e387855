"""interpret: run a `Kernel` with whole-array numpy (or CuPy) calls instead of compiling it.

Start at `interpret`. This is the first tier of CPU execution: a kernel seen
for the first time runs here (no compile latency); once its structure repeats
or it is large, the backend compiles it. It follows the exact semantics of
`fastad.kernel_ir` (views, statements, outputs), so tests can compare the two.
"""
from __future__ import annotations

import numpy as np

from ..ops import OPS

__all__ = ["interpret"]

_REDUCERS = {"sum": "sum", "prod": "prod", "max": "max", "min": "min"}


def interpret(kernel, shape: tuple, inputs: list, scalars: list, xp=np) -> list:
    """Flat output arrays for `kernel` over iteration `shape`; inputs are (flat, offset, strides)."""
    shape = tuple(int(d) for d in shape)
    values = []
    with np.errstate(all="ignore"):
        for st in kernel.body:
            if st.op == "load":
                flat, offset, strides = inputs[st.arg]
                values.append(_strided(flat, offset, strides, shape, xp))
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
            outs.append(xp.ascontiguousarray(xp.asarray(v, dtype=o.dtype.np)).reshape(-1))
    return outs


def _strided(flat, offset, strides, shape, xp):
    if flat.size == 0 or 0 in shape:
        return xp.zeros(shape, flat.dtype)
    isz = flat.dtype.itemsize
    base = flat[offset:]
    if xp is np:
        return np.lib.stride_tricks.as_strided(base, shape, tuple(s * isz for s in strides), writeable=False)
    return xp.lib.stride_tricks.as_strided(base, shape, tuple(s * isz for s in strides))
