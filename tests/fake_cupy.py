"""fake_cupy: a numpy stand-in for the parts of CuPy that fastad's CUDA runtime uses (test helper).

Arrays are `FakeArray` (numpy arrays tagged with the device they were allocated on:
CuPy's current device at the time, as in CuPy). Module images are the rendered source,
which `Module.load` compiles with g++ under the host emulation (tests/cuda_emulation.py).
A launch receives each array's data pointer only, as a CUDA kernel does, so strided
buffers read the wrong memory here exactly as on a GPU; and like a GPU, a launch, a
matmul or a concatenate refuses arrays of another device than the current one.
"""
from __future__ import annotations

import hashlib
import pathlib
import types

import numpy as np

from cuda_emulation import Emulator, build

_current = [0]
DEVICES = 2


class Device:
    def __init__(self, index=None):
        self.id = _current[0] if index is None else int(index)
        if not 0 <= self.id < DEVICES:
            raise ValueError(f"fake cupy: no device {self.id}")
        self._prev = []

    def __enter__(self):
        self._prev.append(_current[0])
        _current[0] = self.id
        return self

    def __exit__(self, *exc):
        _current[0] = self._prev.pop()

    attributes = property(lambda self: {"MultiProcessorCount": 4})
    compute_capability = "90"


class FakeArray(np.ndarray):
    def __array_finalize__(self, obj):
        self.device_id = getattr(obj, "device_id", _current[0])

    @property
    def device(self):
        return Device(self.device_id)

    def copy(self, order="C"):            # CuPy copies onto the current device
        return _tag(np.array(self, order=order, copy=True))

    def __dlpack_device__(self):
        return (2, self.device_id)

    def __dlpack__(self, stream=None, max_version=None, dl_device=None, copy=None):
        return ("fake-dlpack", self)


ndarray = FakeArray


def _tag(a) -> FakeArray:
    out = np.asarray(a).view(FakeArray)
    out.device_id = _current[0]
    return out


def _same_device(*arrays):
    for a in arrays:
        if isinstance(a, FakeArray) and a.device_id != _current[0]:
            raise RuntimeError(f"fake cupy: an array on device {a.device_id} used on device {_current[0]}")


def asarray(a, dtype=None):
    if isinstance(a, FakeArray) and (dtype is None or np.dtype(dtype) == a.dtype):
        return a
    return _tag(np.array(a, dtype=dtype, copy=True))


def array(a, dtype=None, order="K", copy=True):
    return _tag(np.array(a, dtype=dtype, order=order, copy=True))


def ascontiguousarray(a, dtype=None):
    if isinstance(a, FakeArray) and a.flags.c_contiguous and a.ndim and dtype is None:
        return a
    return _tag(np.ascontiguousarray(a, dtype=dtype))


def zeros(shape, dtype=float):
    return _tag(np.zeros(shape, dtype))


def empty(shape, dtype=float):
    return _tag(np.empty(shape, dtype))


def full(shape, value, dtype=None):
    return _tag(np.full(shape, value, dtype))


def arange(*args, dtype=None):
    return _tag(np.arange(*args, dtype=dtype))


def broadcast_to(a, shape):
    return np.broadcast_to(a, shape).view(FakeArray)     # a view: stays on a's device


def matmul(a, b):
    _same_device(a, b)
    return _tag(np.matmul(a, b))


def concatenate(arrays, axis=0):
    _same_device(*arrays)
    return _tag(np.concatenate([np.asarray(a) for a in arrays], axis=axis))


def asnumpy(a):
    return np.array(np.asarray(a), copy=True)


class Producer:
    """A CuPy array as fastad sees it: a DLPack producer, not a numpy array (FakeArray is one)."""

    def __init__(self, array: FakeArray):
        self.array = array

    def __dlpack_device__(self):
        return (2, self.array.device_id)

    def __dlpack__(self, **kw):
        return ("fake-dlpack", self.array)


def from_dlpack(x):
    if isinstance(x, Producer):
        return x.array                     # shares memory, as DLPack does
    if isinstance(x, FakeArray):
        return x
    raise TypeError("fake cupy: from_dlpack takes Producers and FakeArrays")


class _Function:
    def __init__(self, emulator, bits, name, device):
        self.emulator, self.bits, self.name, self.device = emulator, bits, name, device

    def __call__(self, grid, block, args):
        if _current[0] != self.device:
            raise RuntimeError(f"fake cupy: a kernel of device {self.device} launched on device {_current[0]}")
        _same_device(*[a for a in args if isinstance(a, np.ndarray)])
        LAUNCHES.append((self.name, grid))
        self.emulator.functions(self.bits)[self.name](grid, block, args)


class Module:
    """Loads an 'image' (the rendered source plus its options, from `fake_compile`) with g++."""
    workdir: pathlib.Path = None
    _libs: dict = {}

    def load(self, image: bytes):
        source, _, opts = image.decode().partition("\0OPTIONS\0")
        bits = 64 if "-DFA_INDEX_BITS=64" in opts.split("\0") else 32
        key = hashlib.sha256(image).hexdigest()[:16]
        lib = Module._libs.get(key)
        if lib is None:
            lib, err = build([source], Module.workdir, f"fake-{key}", bits)
            assert lib is not None, err
            Module._libs[key] = lib
        self.emulator, self.bits, self.device = Emulator({bits: lib}), bits, _current[0]

    def get_function(self, name):
        return _Function(self.emulator, self.bits, name, self.device)


COMPILED: list = []      # (source, options) of every compile the runtime asked for
LAUNCHES: list = []


def fake_compile(source, *, options=None, ptx=False):
    COMPILED.append((source, tuple(options)))
    return (source + "\0OPTIONS\0" + "\0".join(options)).encode()


cuda = types.SimpleNamespace(
    Device=Device,
    runtime=types.SimpleNamespace(getDevice=lambda: _current[0], getDeviceCount=lambda: DEVICES),
    function=types.SimpleNamespace(Module=Module),
)
