"""inline_math: the mathlib functions re-wrapped for inlining at Numba-IR level into generated kernels.

Start at the loop below. LLVM does not reliably inline several mathlib calls
into one large kernel loop, and a loop with an opaque call does not vectorize
(measured: sin*exp in one loop 356 ms at N=10M instead of 28 ms). Inlining
each function's Numba IR into the kernel fixes that. The kernels are then
compiled with `fastmath={"reassoc"}` (needed to vectorize reductions); the
accuracy of every function under that flag is checked in tests/test_mathlib.py.
"""
import numba

from . import mathlib

__all__ = list(mathlib.__all__)

for _name in mathlib.__all__:
    _fn = getattr(mathlib, _name)
    # intrinsics (no Python body) are emitted inline by construction
    globals()[_name] = (numba.njit(inline="always", error_model="numpy")(_fn.py_func)
                        if hasattr(_fn, "py_func") else _fn)
del _name, _fn
