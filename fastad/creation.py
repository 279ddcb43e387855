"""creation: functions that make tensors (tensor, asarray, zeros, arange, eye, rand, ...).

Start at `asarray`. Data is copied into a buffer on the requested device
(with `copy=False`, a numpy array that needs no conversion is shared instead:
the tensor then sees the caller's later writes, as that API promises);
`zeros`, `ones`, `full` and `empty` make constant nodes that take no memory
until something needs their elements. Every function takes `dtype=`,
`device=` and `requires_grad=`.
"""
from __future__ import annotations

import numbers

import numpy as np

from ._util import contiguous

from . import dtypes as dt
from .device import CPU, to_device
from .graph import Node
from .ops import const
from .tensor import Tensor, _fresh

__all__ = ["tensor", "asarray", "from_numpy", "zeros", "ones", "full", "empty", "zeros_like",
           "ones_like", "full_like", "empty_like", "arange", "linspace", "eye", "from_dlpack", "meshgrid", "tril", "triu"]

# Python data (not numpy arrays) takes fastad's defaults: float32, int64, complex64.
_PY_DEFAULTS = {"float64": dt.float32, "int64": dt.int64, "complex128": dt.complex64, "bool": dt.bool}


def _scalar_leaf(value, dtype, requires_grad: bool) -> Tensor:
    """`tensor(5.0)`, `asarray(5.0)` on the CPU, as a scalar loop makes them: one array, one node."""
    return _finish(Node("buffer", (), (), dtype, CPU, None, np.array(value, dtype.np)), requires_grad)


def _finish(node: Node, requires_grad: bool) -> Tensor:
    t = Tensor(node)
    if requires_grad:
        if node.dtype.kind == "f":
            t._leaf_requires_grad = True   # what requires_grad_ sets for a real floating dtype
        else:
            t.requires_grad_(True)         # its error for integer, bool and complex dtypes
    return t


def buffer_node(array: np.ndarray, device, shared: bool = False) -> Node:
    """A computed node holding `array` (copied to `device` when that is not the CPU).
    `shared`: the caller's memory must be used as it is (asarray(copy=False))."""
    device = to_device(device)
    if shared and device.type != "cpu":
        raise ValueError(f"asarray(copy=False): host memory can't be shared with {device}; a copy is needed")
    dtype = dt.to_dtype(array.dtype)
    if device.type == "cpu":
        buf = contiguous(array)  # kernels read buffers as C-contiguous
    else:
        from .runtime import backend_for
        buf = backend_for(device).from_numpy(contiguous(array), device)
    return Node("buffer", (), tuple(array.shape), dtype, device, buffer=buf)


_SCALAR_DEFAULTS = {float: dt.float32, int: dt.int64, bool: dt.bool}


def _host_array(obj, dtype) -> np.ndarray:
    default = _SCALAR_DEFAULTS.get(type(obj))
    if default is not None:  # the common `tensor(5.0)`: skip numpy's type inference
        return np.array(obj, dtype=(default if dtype is None else dt.to_dtype(dtype)).np)
    if isinstance(obj, np.ndarray) or isinstance(obj, np.generic):
        arr = np.array(obj)
        if dtype is None:
            dt.to_dtype(arr.dtype)  # unsupported dtypes fail here with a clear message
    else:
        try:
            arr = np.array(obj)
        except (ValueError, TypeError) as e:
            raise TypeError(f"cannot make a tensor from {type(obj).__name__}: {e}") from None
        if arr.dtype == object or arr.dtype.kind in "USV":
            raise TypeError(f"cannot make a tensor from {type(obj).__name__} holding {arr.dtype}")
        if dtype is None and arr.dtype.name in _PY_DEFAULTS:
            arr = arr.astype(_PY_DEFAULTS[arr.dtype.name].np)
    if dtype is not None:
        arr = arr.astype(dt.to_dtype(dtype).np)
    return contiguous(arr)


def asarray(obj, /, *, dtype=None, device=None, copy=None, requires_grad=False) -> Tensor:
    """A tensor from a Python scalar, (nested) list, numpy array, DLPack object or fastad tensor."""
    default = _SCALAR_DEFAULTS.get(type(obj))
    if default is not None and copy is not False and dtype is None and to_device(device) is CPU:
        return _scalar_leaf(obj, default, requires_grad)
    if isinstance(obj, Tensor):
        out = obj
        if dtype is not None and dt.to_dtype(dtype) is not out.dtype:
            if copy is False:
                raise ValueError(f"asarray(copy=False): converting {out.dtype.name} to "
                                 f"{dt.to_dtype(dtype).name} needs a copy")
            out = out.astype(dtype)
        if device is not None and to_device(device) != out.device:
            if copy is False:
                raise ValueError(f"asarray(copy=False): moving to {to_device(device)} needs a copy")
            out = out.to(device)
        if out is obj and copy is False:  # the array API: never copy, so `obj` itself (as astype)
            pass
        elif out is obj:  # otherwise always a new tensor; with copy=True one with a buffer of its own
            out = out.clone() if copy else _fresh(out)
        if requires_grad and not out.requires_grad:
            out.requires_grad_(True)
        return out
    if not isinstance(obj, (np.ndarray, np.generic, list, tuple, numbers.Number)) and hasattr(obj, "__dlpack__"):
        return from_dlpack(obj, device=device, copy=copy)
    if copy is False:
        return _finish(buffer_node(_shared_array(obj, dtype), device, shared=True), requires_grad)
    arr = _host_array(obj, dtype)
    if isinstance(obj, np.ndarray) and np.shares_memory(arr, obj):
        arr = arr.copy()  # later writes to the caller's array must not change a lazy graph
    return _finish(buffer_node(arr, device), requires_grad)


def _shared_array(obj, dtype) -> np.ndarray:
    """`obj` itself as a buffer (asarray(copy=False)), or a ValueError saying why a copy is needed."""
    if not isinstance(obj, np.ndarray):
        raise ValueError(f"asarray(copy=False): a {type(obj).__name__} must be copied into a tensor")
    if dtype is not None and np.dtype(dt.to_dtype(dtype).np) != obj.dtype:
        raise ValueError(f"asarray(copy=False): converting {obj.dtype} to {dt.to_dtype(dtype).name} needs a copy")
    dt.to_dtype(obj.dtype)  # unsupported dtypes fail here with a clear message
    if not obj.flags.c_contiguous:
        raise ValueError("asarray(copy=False): the array is not C-contiguous, so a copy is needed")
    view = obj.view()
    view.flags.writeable = False  # nobody writes through the tensor; the caller's array stays writable
    return view


def tensor(data, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A tensor holding a copy of `data` (PyTorch's `torch.tensor`): always a new leaf."""
    default = _SCALAR_DEFAULTS.get(type(data))
    if default is not None and dtype is None and to_device(device) is CPU:
        return _scalar_leaf(data, default, requires_grad)
    if isinstance(data, Tensor):
        data = data.detach()  # as torch.tensor(t): a copy outside t's graph, requires_grad as asked
    return asarray(data, dtype=dtype, device=device, copy=True, requires_grad=requires_grad)


def from_numpy(array: np.ndarray) -> Tensor:
    return asarray(array)


def from_dlpack(x, /, *, device=None, copy=None) -> Tensor:
    """A tensor sharing memory with a DLPack producer (numpy, CuPy, PyTorch, ...)."""
    kind, index = x.__dlpack_device__()
    if int(kind) == 1:  # kDLCPU
        arr = np.from_dlpack(x)
        node = buffer_node(arr.copy() if copy else arr, "cpu")
    elif int(kind) == 2:  # kDLCUDA
        from .runtime.cuda import import_dlpack
        arr = import_dlpack(x, index, copy)   # C-contiguous on cuda:index: kernels get a pointer, not strides
        dev = to_device(f"cuda:{index}")
        node = Node("buffer", (), tuple(arr.shape), dt.to_dtype(arr.dtype.name), dev, buffer=arr)
    else:
        raise ValueError(f"from_dlpack: unsupported device type {kind}")
    t = Tensor(node)
    return t.to(device) if device is not None else t


def _shape(shape) -> tuple:
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    shape = tuple(int(d) for d in shape)
    if any(d < 0 for d in shape):
        raise ValueError(f"negative dimension in shape {shape}")
    return shape


def _shape_args(shape) -> tuple:
    """A shape given as one sequence (the array API's `zeros((2, 3))`) or as ints (`zeros(2, 3)`)."""
    return _shape(shape[0] if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)) else shape)


def full(shape, fill_value, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    if dtype is None:
        if isinstance(fill_value, bool):
            dtype = dt.bool
        elif isinstance(fill_value, int):
            dtype = dt.default_int
        elif isinstance(fill_value, complex):
            dtype = dt.complex64
        else:
            dtype = dt.default_float
    return _finish(const(fill_value, _shape(shape), dt.to_dtype(dtype), to_device(device)), requires_grad)


def zeros(shape, *more, dtype=None, device=None, requires_grad=False) -> Tensor:
    return full(_shape_args((shape,) + more), 0, dtype=dtype or dt.default_float, device=device, requires_grad=requires_grad)


def ones(shape, *more, dtype=None, device=None, requires_grad=False) -> Tensor:
    return full(_shape_args((shape,) + more), 1, dtype=dtype or dt.default_float, device=device, requires_grad=requires_grad)


def empty(shape, *more, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Zeros (fastad has no uninitialised memory to hand out). `empty(2, 3)` or `empty((2, 3))`."""
    return zeros(shape, *more, dtype=dtype, device=device, requires_grad=requires_grad)


def _like(x: Tensor, dtype, device):
    return x.shape, dtype or x.dtype, device or x.device


def full_like(x, fill_value, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    shape, dtype, device = _like(x, dtype, device)
    return full(shape, fill_value, dtype=dtype, device=device, requires_grad=requires_grad)


def zeros_like(x, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    return full_like(x, 0, dtype=dtype, device=device, requires_grad=requires_grad)


def ones_like(x, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    return full_like(x, 1, dtype=dtype, device=device, requires_grad=requires_grad)


def empty_like(x, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    return zeros_like(x, dtype=dtype, device=device, requires_grad=requires_grad)


def arange(start, /, stop=None, step=1, *, dtype=None, device=None, requires_grad=False) -> Tensor:
    if stop is None:
        start, stop = 0, start
    if step == 0:
        raise ValueError("arange: step must not be zero")
    if dtype is None:
        dtype = dt.default_int if all(isinstance(v, int) for v in (start, stop, step)) else dt.default_float
    dtype = dt.to_dtype(dtype)
    arr = np.arange(start, stop, step, dtype=np.float64 if dtype.is_floating else None).astype(dtype.np)
    return _finish(buffer_node(arr, device), requires_grad)


def linspace(start, stop, /, num, *, dtype=None, device=None, endpoint=True, requires_grad=False) -> Tensor:
    dtype = dt.to_dtype(dtype or dt.default_float)
    arr = np.linspace(start, stop, int(num), endpoint=endpoint, dtype=np.float64).astype(dtype.np)
    return _finish(buffer_node(arr, device), requires_grad)


def eye(n_rows, n_cols=None, /, *, k=0, dtype=None, device=None, requires_grad=False) -> Tensor:
    dtype = dt.to_dtype(dtype or dt.default_float)
    arr = np.eye(int(n_rows), None if n_cols is None else int(n_cols), k=k, dtype=dtype.np)
    return _finish(buffer_node(arr, device), requires_grad)


def meshgrid(*arrays, indexing: str = "xy") -> list:
    """Coordinate grids from 1-d tensors ("xy": Cartesian, the first two axes swapped; "ij": matrix)."""
    from .tensor import _broadcast
    if indexing not in ("xy", "ij"):
        raise ValueError(f"meshgrid: indexing must be 'xy' or 'ij', got {indexing!r}")
    for a in arrays:
        if not isinstance(a, Tensor) or a.ndim != 1:
            raise ValueError("meshgrid: every input must be a 1-d fastad Tensor")
    if len({a.dtype for a in arrays}) > 1:
        raise ValueError("meshgrid: all inputs must have the same dtype")
    shape = [a.shape[0] for a in arrays]
    if indexing == "xy" and len(arrays) > 1:
        shape[0], shape[1] = shape[1], shape[0]
    out = []
    for i, a in enumerate(arrays):
        ax = (1 if i == 0 else 0 if i == 1 else i) if indexing == "xy" and len(arrays) > 1 else i
        view = a.reshape(tuple(a.shape[0] if k == ax else 1 for k in range(len(arrays))))
        out.append(_fresh(_broadcast(view, tuple(shape))))
    return out


def _triangle(x, k, lower: bool, name: str):
    from .api.elementwise import where
    if not isinstance(x, Tensor) or x.ndim < 2:
        raise ValueError(f"{name}: expected a fastad Tensor of at least 2 dimensions")
    n, m = x.shape[-2:]
    keep = np.tri(n, m, int(k), dtype=bool)          # j <= i + k
    keep = keep if lower else ~np.tri(n, m, int(k) - 1, dtype=bool)
    zero = Tensor(const(0, (), x.dtype, x.device))
    return where(asarray(keep, device=x.device), x, zero)


def tril(x, /, *, k: int = 0):
    """`x` with the elements above the k-th diagonal zeroed (the gradient passes where kept)."""
    return _triangle(x, k, True, "tril")


def triu(x, /, *, k: int = 0):
    """`x` with the elements below the k-th diagonal zeroed (the gradient passes where kept)."""
    return _triangle(x, k, False, "triu")
