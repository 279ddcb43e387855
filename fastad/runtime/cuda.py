"""runtime.cuda: run kernels on NVIDIA GPUs through CuPy (NVRTC-compiled generated kernels, cuBLAS for matmul).

Start at `CudaBackend.run_kernel`. It renders the kernel (`fastad.codegen.cuda`),
fetches the loaded module from an in-memory cache keyed by the kernel's
structural key, the index width, the fast-math flag and the device, and
launches it through `fastad.codegen.cuda.execute`, which owns the argument
layout and the reduction strategy. Everything runs on the current stream of
the node's device; nothing synchronises except copies to the host.

Compiling: `codegen.cuda.compile_with_nvrtc` with `codegen.cuda.nvrtc_options`
(the flags the offline tests check), the image loaded with
`cupy.cuda.function.Module`. CuPy's RawModule is not used because it appends
-ftz=true, which flushes subnormals to zero. Images are cached on disk under
`fastad.runtime.cache.cache_dir()/cuda-nvrtc<version>/`, written atomically.

Buffers: every buffer this backend hands a kernel is a C-contiguous CuPy
array. A kernel receives only a pointer, so `c_contiguous` (used by
`from_dlpack` and `asarray`) copies strided producers' arrays, and
`run_kernel` refuses nothing but copies any strided buffer it is given.

This module imports CuPy at the top: `fastad.runtime.backend_for` imports it
only when a CUDA device is used, so the CPU path never loads CuPy.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
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
from .._util import contiguous
from ..codegen import cuda as cg
from ..device import Device
from ..ops import py_slices
from ..profiling import record_cache_hit, record_compile, record_launch
from . import cache, cuda_probe

__all__ = ["CudaBackend", "require", "is_available", "device_count", "c_contiguous", "import_dlpack",
           "compile_image"]

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


def c_contiguous(array, *, copy: bool | None = None):
    """`array` (a CuPy array) as a C-contiguous array on its own device, keeping its shape (0-d stays
    0-d). A strided array (a column, a reversed or broadcast view) is copied: kernels get a pointer
    only. copy=True always copies; copy=False raises ValueError when a copy is needed."""
    with array.device:
        if array.flags.c_contiguous:
            return array.copy() if copy else array
        if copy is False:
            raise ValueError(f"a strided array (strides {array.strides}) cannot be shared without a copy: "
                             "fastad's CUDA kernels read C-contiguous buffers")
        return cupy.array(array, order="C", copy=True)


def import_dlpack(x, index: int, copy: bool | None = None):
    """A C-contiguous CuPy array on cuda:`index` from a DLPack producer (see `c_contiguous` for `copy`)."""
    with cupy.cuda.Device(index):
        return c_contiguous(cupy.from_dlpack(x), copy=copy)


def compile_image(source: str, options: tuple, *, refresh: bool = False) -> bytes:
    """The NVRTC image (cubin, or PTX for a compute_XX arch) of `source`, from the disk cache when there
    (refresh=True: compile anew and replace the cached file, e.g. one the driver refused to load).

    Keyed by sha256 of the source, the options and the NVRTC version; published atomically, so
    concurrent processes never read a partial file."""
    version = cg.nvrtc_version()
    key = hashlib.sha256("\0".join((source, *options, repr(version))).encode()).hexdigest()
    folder = cache.cache_dir() / f"cuda-nvrtc{version[0]}.{version[1]}"
    path = folder / f"{key[:40]}.img"
    try:
        data = b"" if refresh else path.read_bytes()
        if data:
            return data
    except OSError:
        pass
    data = cg.compile_with_nvrtc(source, options=options)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        pass   # a read-only cache only costs recompiles
    return data


class CudaBackend:
    """The Backend of `fastad.runtime` for "cuda:N" devices. Buffers are C-contiguous cupy.ndarray."""

    xp = cupy
    block, warp = cg.BLOCK, 32     # the host emulation in the tests runs 1, 1

    def __init__(self):
        self._functions: dict = {}   # (kernel.key, index_bits, fast_math, device index) -> {entry: Function}
        self._modules: dict = {}     # same key -> Module (kept alive with its functions)
        self._sm_counts: dict = {}
        self._archs: dict = {}

    # -- devices -------------------------------------------------------------

    require = staticmethod(require)
    is_available = staticmethod(is_available)
    device_count = staticmethod(device_count)

    @staticmethod
    def device_scope(device):
        """Context manager making `device` CuPy's current device (allocations and copies land there)."""
        return cupy.cuda.Device(Device(device).index)

    def _sm_count(self, index: int) -> int:
        n = self._sm_counts.get(index)
        if n is None:
            n = int(cupy.cuda.Device(index).attributes["MultiProcessorCount"])
            self._sm_counts[index] = n
        return n

    def _arch(self, index: int) -> str:
        arch = self._archs.get(index)
        if arch is None:
            cc = cupy.cuda.Device(index).compute_capability
            arch = self._archs[index] = cg.nvrtc_arch(cc, cg.nvrtc_supported_archs())
        return arch

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
            return cupy.asarray(contiguous(np.asarray(array)))   # 0-d stays 0-d

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
        options = cg.nvrtc_options(bits, FAST_MATH, self._arch(index))
        with cupy.cuda.Device(index):
            module = cupy.cuda.function.Module()
            try:
                module.load(compile_image(src.source, options))
            except Exception:  # a damaged cache file: compile again and replace it
                module = cupy.cuda.function.Module()
                module.load(compile_image(src.source, options, refresh=True))
            fns = {e: module.get_function(e) for e in src.entries}
        record_compile(time.perf_counter() - t0)
        self._modules[key] = module
        self._functions[key] = fns
        return fns

    def launch(self, src: cg.CudaSource, shape, inputs, scalars, index: int, **plan_overrides) -> list:
        """Plan and launch rendered `src` on cuda:`index` (no profiling record): the flat outputs."""
        with cupy.cuda.Device(index):
            inputs = [(b if b.flags.c_contiguous else cupy.ascontiguousarray(b), off, st)
                      for b, off, st in inputs]   # a kernel gets a pointer, never strides
            return cg.execute(src, shape, inputs, scalars, xp=cupy,
                              functions=lambda bits: self._get_functions(src, bits, index),
                              sm_count=self._sm_count(index),
                              deterministic=config.is_deterministic(), block=self.block, warp=self.warp,
                              **plan_overrides)

    def run_kernel(self, kernel, shape, inputs, scalars, device=None, plan_overrides=None) -> list:
        """Run `kernel` over iteration `shape`; `inputs` are (flat buffer, element offset, element strides).

        Returns one fresh flat C-contiguous buffer per output (reduced outputs hold
        prod(shape[:ndim-reduce_ndim]) elements). `device` defaults to the inputs' device.
        `plan_overrides` (tests): force_group / force_chunks / force_bits of `CudaSource.plan`.
        """
        index = self._device_index([b for b, _, _ in inputs], device)
        outs = self.launch(cg.render(kernel), shape, inputs, scalars, index, **(plan_overrides or {}))
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
                out = c_contiguous(cupy.matmul(a, b))   # vector @ vector stays 0-d
            elif op_name == "embed":
                shape, slices = arg
                (g,) = inputs
                out = cupy.zeros(tuple(shape), dtype=g.dtype)
                out[py_slices(slices)] = g      # the op table's slice reading, negative steps included
            elif op_name == "concat":
                out = cupy.concatenate(list(inputs), axis=arg)
            else:   # the other library ops (linalg, sorting, ...): references written for numpy and CuPy
                from ..ops import OPS
                out = c_contiguous(OPS[op_name].ref(*inputs, arg))
        return out
