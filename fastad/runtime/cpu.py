"""runtime.cpu: run kernels on the CPU, tiered: numpy first, compiled Numba once it pays.

Start at `CpuBackend.run_kernel`. A kernel structure (`Kernel.key`) seen for
the first time and small runs through `interpret` (no compile latency). It is
compiled when it repeats (`settings.jit_after_calls`), when it is large
(`settings.jit_min_elements`), when its module is already in the disk cache,
or always under FASTAD_CPU_MODE=jit. Compiled modules come from
`fastad.runtime.cache` (in memory, then on disk). Sizes below
`settings.parallel_min_elements` run the serial entry point.
"""
from __future__ import annotations

import math
import time

import numpy as np

from .. import profiling as profile
from ..config import settings
from ..device import CPU
from .._util import contiguous
from .cache import load_kernel_module, numba_cache_hit
from .interpret import interpret

__all__ = ["CpuBackend"]


class _Compiled:
    """A loaded kernel module; each entry point is compiled (or loaded from disk) on first use."""

    __slots__ = ("loaded", "ready")

    def __init__(self, loaded):
        self.loaded = loaded
        self.ready: dict[str, object] = {}

    def entry(self, kernel, parallel: bool):
        name = "kernel_parallel" if parallel else "kernel_serial"
        fn = self.ready.get(name)
        if fn is None:
            fn = getattr(self.loaded.module, name)
            t0 = time.perf_counter()
            _warm(fn, kernel)
            seconds = time.perf_counter() - t0
            if numba_cache_hit(fn):
                profile.record_cache_hit()
            else:
                profile.record_compile(seconds)
            self.ready[name] = fn
        return fn


class CpuBackend:
    xp = np

    def __init__(self):
        self._compiled: dict[str, _Compiled] = {}
        self._seen: dict[str, int] = {}

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
            entry = self._compile(kernel)
        if entry is None:
            profile.record_launch(kernel.name, CPU, elements, tier="numpy")
            return interpret(kernel, shape, inputs, scalars)
        outputs = self._alloc_outputs(kernel, shape)
        args = [int(s) for s in shape]
        for (flat, offset, strides), inp in zip(inputs, kernel.inputs):
            args += [flat, int(offset)] + [int(s) for s, c in zip(strides, inp.pattern) if c == "n"]
        args += outputs
        args += [d.np.type(v) for v, d in zip(scalars, kernel.scalars)]
        fn = entry.entry(kernel, parallel=elements >= settings.parallel_min_elements)
        profile.record_launch(kernel.name, CPU, elements, tier="numba")
        try:
            fn(*args)
        except Exception as e:  # compile/lowering failures surface here on first call
            raise RuntimeError(f"fastad: kernel {kernel.name} failed: {e}\n{kernel.describe()}") from e
        return outputs

    def _should_compile(self, kernel, elements) -> bool:
        mode = settings.cpu_mode
        if mode == "jit":
            return True
        if mode == "reference":
            return False
        seen = self._seen[kernel.key] = self._seen.get(kernel.key, 0) + 1
        return elements >= settings.jit_min_elements or seen >= settings.jit_after_calls

    def _compile(self, kernel) -> _Compiled:
        from ..codegen.numba import render
        loaded = load_kernel_module(render(kernel), name_hint=kernel.name[3:30])
        entry = self._compiled[kernel.key] = _Compiled(loaded)
        return entry

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
    """Compile (or load) an entry point by calling it on a one-element problem."""
    args = [1] * kernel.ndim
    for inp in kernel.inputs:
        args += [np.zeros(1, inp.dtype.np), 0] + [0] * inp.n_strides
    args += [np.empty(1, o.dtype.np) for o in kernel.outputs]
    args += [d.np.type(0) for d in kernel.scalars]
    with np.errstate(all="ignore"):
        fn(*args)
