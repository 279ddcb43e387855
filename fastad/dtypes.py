"""dtypes: fastad's data types and the type-promotion rules.

Start at `DType` and `result_type`. Every dtype of the array API standard is
declared here (bool, signed and unsigned ints, floats, complex), so widening
the op set later needs no change to this module.

Promotion follows the array API table. Where the standard leaves a pairing
undefined, fastad follows PyTorch: an integer mixed with a float gives that
float. Python scalars are *weak*: `float32_tensor * 2.0` stays float32.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "DType", "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
    "uint64", "float32", "float64", "complex64", "complex128", "result_type",
    "to_dtype", "default_float", "default_int", "scalar_dtype", "can_cast", "finfo", "iinfo",
    "accumulator",
]


class DType:
    """One data type. Instances are singletons; compare them with `==` or `is`."""

    __slots__ = ("name", "np", "kind", "itemsize")

    def __init__(self, name: str, kind: str):
        self.name = name
        self.np = np.dtype(name)
        self.kind = kind  # 'b' bool, 'i' signed int, 'u' unsigned int, 'f' real float, 'c' complex
        self.itemsize = self.np.itemsize

    @property
    def is_floating(self) -> builtins_bool:
        return self.kind in "fc"

    @property
    def is_integer(self) -> builtins_bool:
        return self.kind in "iu"

    def __repr__(self) -> str:
        return f"fastad.{self.name}"

    def __reduce__(self):
        return (to_dtype, (self.name,))


builtins_bool = type(True)

bool = DType("bool", "b")  # noqa: A001 - the array API spells it this way
int8, int16, int32, int64 = (DType(f"int{b}", "i") for b in (8, 16, 32, 64))
uint8, uint16, uint32, uint64 = (DType(f"uint{b}", "u") for b in (8, 16, 32, 64))
float32, float64 = DType("float32", "f"), DType("float64", "f")
complex64, complex128 = DType("complex64", "c"), DType("complex128", "c")

ALL = (bool, int8, int16, int32, int64, uint8, uint16, uint32, uint64,
       float32, float64, complex64, complex128)
_BY_NAME = {d.name: d for d in ALL}

default_float = float32
default_int = int64


_BY_NP = {d.np: d for d in ALL}


def to_dtype(spec) -> DType:
    """A DType from a DType, a name, a numpy dtype or a Python/numpy type."""
    if isinstance(spec, DType):
        return spec
    if isinstance(spec, np.dtype) and spec in _BY_NP:
        return _BY_NP[spec]
    if spec is builtins_bool:
        return bool
    if spec is int:
        return default_int
    if spec is float:
        return default_float
    if spec is complex:
        return complex64
    try:
        name = np.dtype(spec).name
    except TypeError:
        raise TypeError(f"not a dtype: {spec!r}") from None
    if name not in _BY_NAME:
        raise TypeError(f"unsupported dtype: {name}")
    return _BY_NAME[name]


def _promote_pair(a: DType, b: DType) -> DType:
    if a is b:
        return a
    if a.kind == "b" or b.kind == "b":
        if a.kind == b.kind:
            return bool
        # bool mixes with anything numeric by taking the other type (PyTorch, numpy).
        return b if a.kind == "b" else a
    if a.kind == b.kind:
        return a if a.itemsize >= b.itemsize else b
    if {a.kind, b.kind} == {"i", "u"}:
        s, u = (a, b) if a.kind == "i" else (b, a)
        if u.itemsize < s.itemsize:
            return s
        if u.itemsize == 8:
            raise TypeError(f"no promotion between {a.name} and {b.name}: no integer type holds both")
        return _BY_NAME[f"int{u.itemsize * 16}"]
    if a.kind in "iu" or b.kind in "iu":
        return a if a.kind in "fc" else b  # int with float -> the float (PyTorch's rule)
    # float with complex: the complex wide enough for both
    f, c = (a, b) if a.kind == "f" else (b, a)
    return complex128 if max(f.itemsize * 2, c.itemsize) == 16 else complex64


def result_type(*dtypes: DType) -> DType:
    """The promoted dtype of several tensor dtypes (array API table)."""
    out = dtypes[0]
    for d in dtypes[1:]:
        out = _promote_pair(out, d)
    return out


def scalar_dtype(value, other: DType) -> DType:
    """The dtype a weak Python scalar takes when combined with a tensor of dtype `other`."""
    if isinstance(value, builtins_bool):
        return other
    if isinstance(value, int):
        return other if other.kind != "b" else default_int
    if isinstance(value, float):
        return other if other.kind in "fc" else default_float
    if isinstance(value, complex):
        if other.kind == "c":
            return other
        return complex128 if other is float64 else complex64
    raise TypeError(f"unsupported scalar type: {type(value).__name__}")


def accumulator(reduce: str, d: DType) -> DType:
    """The dtype a `reduce` ("sum", "prod", "max", "min") of dtype-`d` values accumulates in, on
    every tier (the numpy reference, the interpreter, compiled CPU and CUDA kernels): float32 and
    complex64 sums and products accumulate in double precision and round once at the end. No
    tier can repeat another's order of float32 additions (numpy's pairwise blocks, vector lanes,
    GPU trees); in double precision the orders agree to far below a float32 rounding step, so
    the tiers give the same float32 result (barring a double sum within its own rounding error
    of a float32 rounding boundary)."""
    if reduce in ("sum", "prod"):
        return {"float32": float64, "complex64": complex128}.get(d.name, d)
    return d


def can_cast(src: DType, dst: DType) -> builtins_bool:
    """True when promotion alone turns src into dst (the array API's `can_cast`)."""
    try:
        return result_type(src, dst) is dst
    except TypeError:
        return False


def finfo(dtype):
    return np.finfo(to_dtype(dtype).np)


def iinfo(dtype):
    return np.iinfo(to_dtype(dtype).np)
