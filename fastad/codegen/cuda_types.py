"""codegen.cuda_types: the C side of fastad's dtypes for the CUDA renderer, and its C templates.

Start at `CTYPES` (the C type of each dtype: the built-in types, and for complex64 /
complex128 the `fa_c64` / `fa_c128` structs of `fastad/kernels/complex.cu`) and
`acc_dtype` (the accumulator of a reduced output). `template` reads the `.cu`
files in `fastad/kernels/` that `fastad.codegen.cuda` pastes above each kernel.
Nothing here imports CuPy.
"""
from __future__ import annotations

import functools
import importlib.resources
import os
import pathlib

import numpy as np

from ..dtypes import accumulator

__all__ = ["CTYPES", "ACC_TYPES", "ATOMIC_DTYPES", "COMPLEX_CTYPES", "COMPLEX_OPS", "COMPLEX_REDUCE", "ctype", "acc_dtype", "acc_ctype",
           "identity", "kernel_template_dir", "template"]

# C type of every dtype the renderer supports (complex: see COMPLEX_CTYPES below)
CTYPES = {
    "bool": "bool", "int8": "signed char", "int16": "short", "int32": "int", "int64": "long long",
    "uint8": "unsigned char", "uint16": "unsigned short", "uint32": "unsigned int",
    "uint64": "unsigned long long", "float32": "float", "float64": "double",
}
# accumulator dtype of a reduced output of each dtype (reduce.cu handles these four C types);
# float32 and complex64 sums and products are the exception, see `acc_dtype`
ACC_TYPES = {
    "bool": "uint64", "int8": "int64", "int16": "int64", "int32": "int64", "int64": "int64",
    "uint8": "uint64", "uint16": "uint64", "uint32": "uint64", "uint64": "uint64",
    "float32": "float32", "float64": "float64",
}
# output dtypes that reduce.cu can combine atomically (finish 1)
ATOMIC_DTYPES = frozenset({"float32", "float64", "int64", "uint64"})
# the complex structs of complex.cu (layout {re, im}: CuPy's and numpy's interleaved complex)
COMPLEX_CTYPES = {"complex64": "fa_c64", "complex128": "fa_c128"}
CTYPES.update(COMPLEX_CTYPES)
ACC_TYPES.update({"complex64": "complex64", "complex128": "complex128"})
# ops whose complex operands complex.cu implements (numpy's semantics); any other op on a complex
# operand is refused at render time. Ordering (lt, maximum, ...), rounding and the real-only binary
# functions have no complex meaning in the array API; `abs` of a complex tensor is real, so the
# frontend forms it as hypot(real, imag).
COMPLEX_OPS = frozenset({
    "neg", "add", "sub", "mul", "div", "pow", "eq", "ne", "where", "nan_guard", "copy", "cast",
    "real", "imag", "conj", "sign", "isnan", "isinf", "isfinite",
    "exp", "expm1", "log", "log1p", "log2", "log10", "sqrt", "sigmoid",
    "sin", "cos", "tan", "sinh", "cosh", "tanh", "asin", "acos", "atan", "asinh", "acosh", "atanh",
})
COMPLEX_REDUCE = frozenset({"sum", "prod"})   # max/min: the array API orders no complex values


def kernel_template_dir() -> pathlib.Path | None:
    """$FASTAD_KERNEL_DIR when set (a folder holding elementwise.cu and reduce.cu), else None:
    the templates then come from the package itself (`fastad/kernels/`, package data)."""
    env = os.environ.get("FASTAD_KERNEL_DIR")
    return pathlib.Path(env) if env else None


def template(name: str) -> str:
    folder = kernel_template_dir()
    if folder is not None:
        return _read_file(str(folder / name))
    return _read_resource(name)


@functools.lru_cache(maxsize=None)
def _read_file(path: str) -> str:
    try:
        return pathlib.Path(path).read_text()
    except OSError as e:
        raise FileNotFoundError(f"fastad's CUDA template {path} cannot be read ($FASTAD_KERNEL_DIR): {e}") from None


@functools.lru_cache(maxsize=None)
def _read_resource(name: str) -> str:
    # importlib.resources finds package data wherever pip put the package (--user, --prefix, --target, a zip)
    try:
        return importlib.resources.files("fastad.kernels").joinpath(name).read_text()
    except (OSError, ModuleNotFoundError) as e:
        raise FileNotFoundError(f"fastad's CUDA template {name} is missing from the installed package "
                                f"(fastad/kernels/): {e}") from None



def ctype(d) -> str:
    """The C type of dtype `d`; NotImplementedError for a dtype the renderer has no type for."""
    try:
        return CTYPES[d.name]
    except KeyError:
        raise NotImplementedError(f"the CUDA renderer does not support dtype {d.name}") from None


def acc_dtype(reduce: str, d) -> str:
    """Name of the accumulator dtype of a `reduce` output of dtype `d`. float32 and complex64 sums
    and products accumulate in double precision, as on every tier (`dtypes.accumulator`); the
    double add is free next to the memory traffic. Integer reductions accumulate in 64 bits."""
    wide = accumulator(reduce, d)
    return wide.name if wide is not d else ACC_TYPES[d.name]


def acc_ctype(o) -> str:
    """The C type of the accumulator of reduced output `o`."""
    return CTYPES[acc_dtype(o.reduce, o.dtype)]


def identity(reduce: str, dtype) -> object:
    """The start value of a reduction as a Python number (what an atomic output is filled with)."""
    if reduce == "sum":
        return 0
    if reduce == "prod":
        return 1
    if dtype.is_floating:
        return -np.inf if reduce == "max" else np.inf
    info = np.iinfo(dtype.np) if dtype.kind != "b" else None
    if info is None:
        return reduce == "min"
    return int(info.min) if reduce == "max" else int(info.max)

