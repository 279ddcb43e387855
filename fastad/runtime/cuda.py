"""runtime.cuda: run kernels on NVIDIA GPUs through CuPy (RawModule for generated kernels, cuBLAS for matmul).

Start at `CudaBackend.run_kernel`. It renders the kernel (`fastad.codegen.cuda`),
fetches the compiled module from an in-memory cache keyed by the kernel's
structural key, the index width, the fast-math flag and the device (CuPy's
own on-disk cache sits under it, so a new process recompiles nothing it has
seen), and launches it through `fastad.codegen.cuda.execute`, which owns the
argument layout and the reduction strategy. Everything runs on the current
(default) stream; nothing synchronises except copies to the host.

This module imports CuPy at the top: `fastad.runtime.backend_for` imports it
only when a CUDA device is used, so the CPU path never loads CuPy.
"""
from __future__ import annotations

import os
import time

import numpy as np

try:
    import cupy
except ImportError as e:  # pragma: no cover - depends on the machine
    raise ImportError(
        "fastad's CUDA backend needs CuPy, which is not installed: "
        "pip install 'fastad[cuda]' (or a CuPy wheel matching your CUDA, e.g. cupy-cuda12x, cupy-cuda13x)"
    ) from e

from .. import config
from ..codegen import cuda as cg
from ..device import Device
from ..profiling import record_cache_hit, record_compile, record_launch
from . import cuda_probe

__all__ = ["CudaBackend", "require", "is_available", "device_count"]

# FASTAD_CUDA_FAST_MATH=1 builds float32 exp/log/sin/cos from the hardware approximations (docs/CUDA.md)
FAST_MATH = os.environ.get("FASTAD_CUDA_FAST_MATH", "0") == "1"


def is_available() -> bool:
    return cuda_probe.is_available()


def device_count() -> int:
    return cuda_probe.device_count()


def require(device) -> Device:
    """`device` as a Device, after checking that it names a usable GPU; RuntimeError otherwise."""
    dev = Device(device)
    if dev.type != "cuda":
        raise ValueError(f"{dev} is not a CUDA device")
    if not cuda_probe.is_available():
        raise RuntimeError(f"cannot use {dev}: CUDA is not available ({cuda_probe.why_unavailable()})")
    n = cuda_probe.device_count()
    if dev.index >= n:
        raise RuntimeError(f"cannot use {dev}: only {n} CUDA device{'s' if n != 1 else ''} "
                           f"visible (cuda:0 .. cuda:{n - 1})")
    return dev


class CudaBackend:
    """The Backend of `fastad.runtime` for "cuda:N" devices. Buffers are cupy.ndarray."""

    xp = cupy

    def __init__(self):
        self._functions: dict = {}   # (kernel.key, index_bits, fast_math, device index) -> {entry: RawKernel}
        self._modules: dict = {}     # same key -> RawModule (kept alive with its functions)
        self._sm_counts: dict = {}

    # -- devices -------------------------------------------------------------

    require = staticmethod(require)
    is_available = staticmethod(is_available)
    device_count = staticmethod(device_count)

    def _sm_count(self, index: int) -> int:
        n = self._sm_counts.get(index)
        if n is None:
            n = int(cupy.cuda.Device(index).attributes["MultiProcessorCount"])
            self._sm_counts[index] = n
        return n

    @staticmethod
    def _device_index(buffers, device) -> int:
        if device is not None:
            return Device(device).index
        for b in buffers:
            if isinstance(b, cupy.ndarray):
                return b.device.id
        return cupy.cuda.runtime.getDevice()

    # -- host transfers --------------------------------------------------------

    def from_numpy(self, array, device) -> "cupy.ndarray":
        dev = require(device)
        with cupy.cuda.Device(dev.index):
            return cupy.asarray(np.ascontiguousarray(array))

    def to_numpy(self, buffer) -> np.ndarray:
        return cupy.asnumpy(buffer)   # the one place that waits for the GPU

    # -- generated kernels -------------------------------------------------------

    def _get_functions(self, src: cg.CudaSource, bits: int, index: int) -> dict:
        key = src.cache_key(bits, FAST_MATH) + (index,)
        fns = self._functions.get(key)
        if fns is not None:
            record_cache_hit()
            return fns
        t0 = time.perf_counter()
        module = cupy.RawModule(code=src.source, options=src.options(bits, FAST_MATH))
        fns = {e: module.get_function(e) for e in src.entries}   # compiles (or loads CuPy's disk cache)
        record_compile(time.perf_counter() - t0)
        self._modules[key] = module
        self._functions[key] = fns
        return fns

    def run_kernel(self, kernel, shape, inputs, scalars, device=None, plan_overrides=None) -> list:
        """Run `kernel` over iteration `shape`; `inputs` are (flat buffer, element offset, element strides).

        Returns one fresh flat C-contiguous buffer per output (reduced outputs hold
        prod(shape[:ndim-reduce_ndim]) elements). `device` defaults to the inputs' device.
        `plan_overrides` (tests): force_group / force_chunks / force_bits of `CudaSource.plan`.
        """
        index = self._device_index([b for b, _, _ in inputs], device)
        src = cg.render(kernel)
        with cupy.cuda.Device(index):
            outs = cg.execute(src, shape, inputs, scalars, xp=cupy,
                              functions=lambda bits: self._get_functions(src, bits, index),
                              sm_count=self._sm_count(index),
                              deterministic=config.is_deterministic(), **(plan_overrides or {}))
        record_launch(kernel.name, Device("cuda", index), cg._prod(shape), tier="cuda")
        return outs

    # -- library calls -----------------------------------------------------------

    def run_library(self, op_name: str, arg, inputs, device=None):
        """matmul (cuBLAS), embed (zeros + strided write), concat. `inputs` are shaped cupy arrays
        (views allowed); the result is a fresh C-contiguous array. The scheduler records the launch."""
        index = self._device_index(inputs, device)
        with cupy.cuda.Device(index):
            if op_name == "matmul":
                a, b = inputs
                out = cupy.ascontiguousarray(cupy.matmul(a, b))
            elif op_name == "embed":
                shape, slices = arg
                (g,) = inputs
                out = cupy.zeros(tuple(shape), dtype=g.dtype)
                out[tuple(slice(*s) for s in slices)] = g
            elif op_name == "concat":
                out = cupy.concatenate(list(inputs), axis=arg)
            else:
                raise NotImplementedError(f"CUDA backend: no library op {op_name!r}")
        return out
