"""device: where a tensor lives ("cpu", "cuda", "cuda:N") and the default device.

Start at `Device` and `to_device`. CUDA availability is probed lazily through
`fastad.runtime.cuda`, so importing fastad never imports CuPy.
"""
from __future__ import annotations

import re

__all__ = ["Device", "to_device", "get_default_device", "set_default_device"]

_SPEC = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


class Device:
    """A device: `type` is "cpu" or "cuda", `index` the GPU ordinal (0 for the CPU)."""

    __slots__ = ("type", "index")
    _interned: dict = {}
    _by_spec: dict = {}   # an exact spec string -> its Device

    def __new__(cls, spec="cpu", index: int | None = None):
        if isinstance(spec, Device):
            return spec
        if not isinstance(spec, str):
            raise TypeError(f"device must be a string or fastad.Device, got {type(spec).__name__}")
        m = _SPEC.match(spec.strip().lower())
        if not m:
            raise ValueError(f"unknown device {spec!r}: expected 'cpu', 'cuda' or 'cuda:N'")
        kind, idx = m.group(1), m.group(2)
        if kind == "cpu" and (idx not in (None, "0") or index not in (None, 0)):
            raise ValueError(f"unknown device {spec!r}: the CPU has no index")
        ordinal = int(idx) if idx is not None else (index or 0)
        key = (kind, ordinal)
        dev = cls._interned.get(key)
        if dev is None:
            dev = object.__new__(cls)
            object.__setattr__(dev, "type", kind)
            object.__setattr__(dev, "index", ordinal)
            cls._interned[key] = dev
        if index is None and spec == m.group(0):   # spelled as parsed: `to_device` finds it without parsing
            cls._by_spec[spec] = dev
        return dev

    def __setattr__(self, name, value):
        raise AttributeError("Device is immutable")

    def __repr__(self) -> str:
        return f"device(type='{self.type}', index={self.index})" if self.type == "cuda" \
            else "device(type='cpu')"

    def __str__(self) -> str:
        return "cpu" if self.type == "cpu" else f"cuda:{self.index}"

    def __eq__(self, other) -> bool:
        if isinstance(other, str):
            try:
                other = Device(other)
            except ValueError:
                return False
        return self is other

    __hash__ = object.__hash__   # devices are interned: equal ones are the same object (a C-level hash)

    def __reduce__(self):
        return (Device, (str(self),))


CPU = Device("cpu")
_default = CPU


def to_device(spec) -> Device:
    """A Device from None (the default device), a string or a Device."""
    if spec is None:
        return _default
    if type(spec) is Device:
        return spec
    if type(spec) is str:
        dev = Device._by_spec.get(spec)   # "cpu", "cuda": no __new__ call
        if dev is not None:
            return dev
    return Device(spec)


def get_default_device() -> Device:
    return _default


def set_default_device(spec) -> None:
    """Make `spec` the device that creation functions use when given none."""
    global _default
    dev = Device(spec)
    if dev.type == "cuda":
        from .runtime import cuda
        cuda.require(dev)
    _default = dev
