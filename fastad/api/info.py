"""api.info: `fastad.__array_namespace_info__()`, the array API's inspection object.

It reports what fastad supports (boolean indexing and data-dependent shapes: yes,
computed eagerly), its default device and dtypes, and the devices and dtypes there are.
"""
from __future__ import annotations

from .. import dtypes as dt
from ..device import Device, get_default_device

__all__ = ["__array_namespace_info__"]

_ALL = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
        "float32", "float64", "complex64", "complex128")
_KINDS = {"bool": "b", "signed integer": "i", "unsigned integer": "u", "integral": "iu",
          "real floating": "f", "complex floating": "c", "numeric": "iufc"}


class Info:
    """The namespace's capabilities, default device and dtypes, devices and dtypes."""

    def capabilities(self) -> dict:
        return {"boolean indexing": True, "data-dependent shapes": True, "max dimensions": None}

    def default_device(self) -> Device:
        return get_default_device()

    def default_dtypes(self, *, device=None) -> dict:
        return {"real floating": dt.default_float, "complex floating": dt.complex64,
                "integral": dt.default_int, "indexing": dt.int64}

    def devices(self) -> list:
        from ..runtime import cuda_probe
        n = cuda_probe.device_count() if cuda_probe.is_available() else 0
        return [Device("cpu")] + [Device(f"cuda:{i}") for i in range(n)]

    def dtypes(self, *, device=None, kind=None) -> dict:
        out = {n: getattr(dt, n) for n in _ALL}
        if kind is None:
            return out
        kinds = kind if isinstance(kind, tuple) else (kind,)
        keep = set()
        for k in kinds:
            if isinstance(k, dt.DType):
                keep.add(k.name)
            elif k in _KINDS:
                keep |= {n for n, d in out.items() if d.kind in _KINDS[k]}
            else:
                raise ValueError(f"dtypes: unknown kind {k!r}")
        return {n: d for n, d in out.items() if n in keep}


def __array_namespace_info__() -> Info:
    return Info()
