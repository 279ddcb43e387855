"""runtime.cpu: run kernels on the CPU, tiered: numpy first, compiled Numba once it pays.

Start at `CpuBackend.run_kernel`. A kernel structure (`Kernel.key`) seen for
the first time and small runs through `interpret` (no compile latency). It is
compiled when it repeats (`settings.jit_after_calls`), when it is large
(`settings.jit_min_elements`), or always under FASTAD_CPU_MODE=jit. Compiled
modules come from `fastad.runtime.cache` (in memory, then on disk).

A compiled kernel is one `body(lo, hi, ...)` function (see
`fastad.codegen.numba`). Sizes of at least `settings.parallel_min_elements`
are split into `CHUNKS` slices of the first dimension, run on a thread pool
(`body` releases the GIL), and reduction partials are combined in slice
order, so results never depend on the thread count. `FASTAD_NUM_THREADS`
(default: NUMBA_NUM_THREADS, i.e. the core count) sets the pool size.
"""
from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import profiling as profile
from .._util import contiguous
from ..config import settings
from ..device import CPU
from .cache import load_kernel_module, numba_cache_hit
from .interpret import interpret

__all__ = ["CpuBackend", "CHUNKS"]

CHUNKS = 64  # slices of a large kernel: fixed, so reductions do not depend on the thread count


def _thread_count() -> int:
    env = os.environ.get("FASTAD_NUM_THREADS") or os.environ.get("NUMBA_NUM_THREADS")
    return max(1, int(env)) if env else (os.cpu_count() or 1)


class _Compiled:
    """A loaded kernel module; `body` is compiled (or loaded from disk) on first use."""

    __slots__ = ("loaded", "body", "full")

    def __init__(self, loaded, kernel):
        from ..codegen.numba import full_reductions
        self.loaded = loaded
        self.full = full_reductions(kernel)
        body = loaded.module.body
        t0 = time.perf_counter()
        _warm(body, kernel)
        seconds = time.perf_counter() - t0
        if numba_cache_hit(body):
            profile.record_cache_hit()
        else:
            profile.record_compile(seconds)
        self.body = body


class CpuBackend:
    xp = np

    def __init__(self):
        self._compiled: dict[str, _Compiled] = {}
        self._seen: dict[str, int] = {}
        self._threads = _thread_count()
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="fastad") if self._threads > 1 else None

    # ---- buffers ----------------------------------------------------------
    def from_numpy(self, array, device=None):
        return array

    def to_numpy(self, buffer):
        return buffer

    # ---- kernels ----------------------------------------------------------
    def run_kernel(self, kernel, shape, inputs, scalars, device=None) -> list:
        elements = math.prod(shape)
        entry = self._compiled.get(kernel.key)
        if entry is None and self._should_compile(kernel, elements):
            entry = self._compiled[kernel.key] = self._compile(kernel)
        if entry is None:
            profile.record_launch(kernel.name, CPU, elements, tier="numpy")
            return interpret(kernel, shape, inputs, scalars)
        outputs = self._alloc_outputs(kernel, shape)
        args = [int(s) for s in shape]
        for (flat, offset, strides), inp in zip(inputs, kernel.inputs):
            args += [flat, int(offset)] + [int(s) for s, c in zip(strides, inp.pattern) if c == "n"]
        args += outputs
        args += [d.np.type(v) for v, d in zip(scalars, kernel.scalars)]
        profile.record_launch(kernel.name, CPU, elements, tier="numba")
        parts = self._launch(entry.body, shape[0], elements, args)
        if entry.full:
            from ..codegen.numba import merge_partials
            for j, k in enumerate(entry.full):
                outputs[k][0] = merge_partials(kernel, k, [p[j] for p in parts])
        return outputs

    def _launch(self, body, rows: int, elements: int, args) -> list:
        """Run body over the rows in slices; partials come back in slice order.
        The split depends only on the size, never on the pool, so results are the same either way."""
        if elements < settings.parallel_min_elements or rows < 2:
            return [body(0, rows, *args)]
        n = min(rows, CHUNKS)
        bounds = [(c * rows // n, (c + 1) * rows // n) for c in range(n)]
        parts = [None] * n
        workers = 1 if self._pool is None else min(self._threads, n)

        def work(w):
            for c in range(w * n // workers, (w + 1) * n // workers):
                parts[c] = body(bounds[c][0], bounds[c][1], *args)

        futures = [self._pool.submit(work, w) for w in range(1, workers)]
        work(0)  # the calling thread takes the first share
        for f in futures:
            f.result()
        return parts

    def _should_compile(self, kernel, elements) -> bool:
        mode = settings.cpu_mode
        if mode == "jit":
            return True
        if mode == "reference":
            return False
        seen = self._seen[kernel.key] = self._seen.get(kernel.key, 0) + 1
        return elements >= settings.jit_min_elements or seen >= settings.jit_after_calls

    @staticmethod
    def _compile(kernel) -> _Compiled:
        from ..codegen.numba import render
        loaded = load_kernel_module(render(kernel), name_hint=kernel.name[3:30])
        return _Compiled(loaded, kernel)

    @staticmethod
    def _alloc_outputs(kernel, shape) -> list:
        n_all = math.prod(shape)
        n_kept = math.prod(shape[: kernel.ndim - kernel.reduce_ndim])
        return [np.empty(n_kept if o.reduce else n_all, dtype=o.dtype.np) for o in kernel.outputs]

    # ---- library calls ----------------------------------------------------
    def run_library(self, op: str, arg, inputs, device=None):
        from ..ops import OPS
        return contiguous(np.asarray(OPS[op].ref(*inputs, arg)))


def _warm(fn, kernel) -> None:
    """Compile (or load) `body` by calling it on a one-element problem."""
    args = [0, 1] + [1] * kernel.ndim
    for inp in kernel.inputs:
        args += [np.zeros(1, inp.dtype.np), 0] + [0] * inp.n_strides
    args += [np.empty(1, o.dtype.np) for o in kernel.outputs]
    args += [d.np.type(0) for d in kernel.scalars]
    with np.errstate(all="ignore"):
        fn(*args)
