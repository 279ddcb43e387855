"""codegen: renderers that turn a `fastad.kernel_ir.Kernel` into source code.

One module per target: `numba` (Python source for numba.njit) and `cuda`
(CUDA C for CuPy RawModule). `mathlib` holds the vectorizable math that the
Numba renderer calls.
"""
