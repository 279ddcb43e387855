"""cuda_emulation: run rendered CUDA kernels on the CPU (test helper, no GPU needed).

`EMULATION` is a small shim that lets g++ compile the generated CUDA C as host
C++ (one thread per block, FA_WARP=1, sequential atomics); `build` compiles
sources into a shared library and `Emulator` launches its entries through
`fastad.codegen.cuda.execute`, the launch protocol the GPU runtime uses
(complex scalars travel by value as ctypes structs {re, im}, as complex.cu's types).
"""
from __future__ import annotations

import ctypes
import shutil
import subprocess

import numpy as np

from fastad.codegen import cuda as cg

EMULATION = r"""
#define FA_WARP 1
#include <math.h>
#include <string.h>
#define __device__
#define __global__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(n)
#define __align__(n) alignas(n)
struct fa_dim3 { unsigned int x, y, z; };
static fa_dim3 threadIdx = {0, 0, 0}, blockIdx = {0, 0, 0}, blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
extern "C" void fa_emu_set(unsigned int bx, unsigned int by, unsigned int gx, unsigned int gy) {
    blockIdx.x = bx; blockIdx.y = by; gridDim.x = gx; gridDim.y = gy;
}
inline void __syncthreads() {}
template <typename T> inline T __shfl_down_sync(unsigned int, T v, int) { return v; }
inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
inline float __uint_as_float(unsigned int i) { float f; memcpy(&f, &i, 4); return f; }
inline unsigned int __float_as_uint(float f) { unsigned int i; memcpy(&i, &f, 4); return i; }
inline double __longlong_as_double(long long i) { double d; memcpy(&d, &i, 8); return d; }
inline long long __double_as_longlong(double d) { long long i; memcpy(&i, &d, 8); return i; }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
template <typename T> inline T atomicAdd(T* p, T v) { T o = *p; *p = o + v; return o; }
template <typename T> inline T atomicMax(T* p, T v) { T o = *p; if (v > o) *p = v; return o; }
template <typename T> inline T atomicMin(T* p, T v) { T o = *p; if (v < o) *p = v; return o; }
template <typename T> inline T atomicCAS(T* p, T cmp, T v) { T o = *p; if (o == cmp) *p = v; return o; }
"""

_CTYPES = {
    "bool": ctypes.c_bool, "int8": ctypes.c_int8, "int16": ctypes.c_int16, "int32": ctypes.c_int32,
    "int64": ctypes.c_int64, "uint8": ctypes.c_uint8, "uint16": ctypes.c_uint16, "uint32": ctypes.c_uint32,
    "uint64": ctypes.c_uint64, "float32": ctypes.c_float, "float64": ctypes.c_double,
}


class _Complex64(ctypes.Structure):      # complex.cu's fa_c64 by value: {float re, im}
    _fields_ = [("re", ctypes.c_float), ("im", ctypes.c_float)]


class _Complex128(ctypes.Structure):     # fa_c128: {double re, im}
    _fields_ = [("re", ctypes.c_double), ("im", ctypes.c_double)]


_COMPLEX = {"complex64": _Complex64, "complex128": _Complex128}


def _scalar_arg(a):
    """A numpy scalar as the C value the kernel takes (complex: the {re, im} struct)."""
    if a.dtype.kind == "c":
        return _COMPLEX[a.dtype.name](a.real, a.imag)
    return _CTYPES[a.dtype.name](a.item())


class Emulator:
    """Runs rendered kernels compiled as host C++: `functions(bits)` for `cg.execute`."""

    def __init__(self, libs: dict):
        self.libs = {bits: ctypes.CDLL(str(p)) for bits, p in libs.items()}
        self.launches = []

    def functions(self, bits):
        lib = self.libs[bits]
        emu = self

        class Entries:
            def __getitem__(self, name):
                fn = getattr(lib, name)
                fn.restype = None

                def launch(grid, block, args):
                    assert block == (1, 1, 1), block
                    emu.launches.append((name, grid))
                    cargs = [ctypes.c_void_p(a.ctypes.data) if isinstance(a, np.ndarray)
                             else _scalar_arg(a) for a in args]
                    for by in range(grid[1]):
                        for bx in range(grid[0]):
                            lib.fa_emu_set(bx, by, grid[0], grid[1])
                            fn(*cargs)
                return launch
        return Entries()

    def run(self, kernel, shape, inputs, scalars=(), deterministic=False, sm_count=2, **force):
        return cg.execute(cg.render(kernel), shape, inputs, scalars, xp=np, functions=self.functions,
                          sm_count=sm_count, deterministic=deterministic, block=1, warp=1, **force)


def _gxx():
    return shutil.which("g++") or shutil.which("c++")




def build(sources, out_dir, name: str = "emulated", bits: int = 32):
    """Compile `sources` (deduplicated) with the shim into out_dir/<name>.so: (path, None) or (None, error)."""
    cxx = _gxx()
    if cxx is None:
        return None, "no C++ compiler"
    code, lib = out_dir / f"{name}.cpp", out_dir / f"{name}.so"
    code.write_text(EMULATION + "\n".join(dict.fromkeys(sources)))
    res = subprocess.run([cxx, "-std=c++17", "-O0", "-fwrapv", "-shared", "-fPIC", "-x", "c++",
                          f"-DFA_INDEX_BITS={bits}", "-w", str(code), "-o", str(lib)],
                         capture_output=True, text=True)
    return (lib, None) if res.returncode == 0 else (None, res.stderr[-20000:])
