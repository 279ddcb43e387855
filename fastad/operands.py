"""operands: how the frontend prepares operands before `tensor._apply` builds a node.

Start at `_binary`. Python scalars become weakly typed constants (`_as_tensor`),
shapes broadcast with explicit `reshape`/`expand` nodes (`broadcast_shapes`,
`_broadcast`), dtypes promote with explicit `cast` nodes (`_promote`), and
axes are normalised with typed errors (`normalize_axes`). `fastad.tensor`
re-exports these names: the api modules import them from there.
"""
from __future__ import annotations

import builtins

import numpy as np

from . import dtypes as dt
from .autodiff import active_tapes
from .errors import AxisError
from .ops import OPS, const, domain_allows
from .tensor import _SCALARS, Tensor, _apply, _type_error


def _as_tensor(x, like: Tensor) -> Tensor:
    """Tensors pass through; Python scalars become weakly typed constants on `like`'s device."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, _SCALARS) and not isinstance(x, np.ndarray):
        if isinstance(x, np.generic):
            return Tensor(const(x.item(), (), dt.to_dtype(x.dtype), like.device))
        return Tensor(const(x, (), dt.scalar_dtype(x, like.dtype), like.device))
    if isinstance(x, (np.ndarray, list, tuple)):
        from .creation import asarray as _asarray
        return _asarray(x, device=like.device)
    raise TypeError(f"unsupported operand type: {type(x).__name__} (expected a fastad Tensor or a number)")


def broadcast_shapes(*shapes, op="broadcast") -> tuple:
    ndim = builtins.max(len(s) for s in shapes)
    out = []
    for i in range(ndim):
        d = 1
        for s in shapes:
            j = i - ndim + len(s)
            if j >= 0 and s[j] != 1:
                if d != 1 and s[j] != d:
                    raise ValueError(f"{op}: shapes {' and '.join(str(tuple(s)) for s in shapes)} "
                                     "cannot be broadcast")
                d = s[j]
        out.append(d)
    return tuple(out)


def _broadcast(x: Tensor, shape) -> Tensor:
    """`x` broadcast to any `shape` a caller gives (ints of any integer type); `expand`'s shape
    rule raises where `x` does not broadcast to it."""
    if x._node.shape == shape:
        return x
    shape = tuple(int(d) for d in shape)
    if x.shape == shape:
        return x
    if len(shape) < x.ndim:
        raise ValueError(f"broadcast_to: cannot broadcast {x.shape} to {shape}")
    if x.ndim < len(shape):
        x = _apply("reshape", x, arg=(1,) * (len(shape) - x.ndim) + x.shape)
    return _apply("expand", x, arg=shape)


def _expand_to(x: Tensor, shape: tuple) -> Tensor:
    """`x` broadcast to `shape`, a tuple of ints known to be its broadcast (from `broadcast_shapes`;
    `_broadcast` checks a shape from elsewhere)."""
    node = x._node
    xs = node.shape
    if xs == shape:
        return x
    if node.op == "const" and x._ctx is None and not x._leaf_requires_grad and not active_tapes:
        # an untracked constant: the constant of the new shape that folding reshape and expand gives
        return Tensor(const(node.arg, shape, node.dtype, node.device))
    if len(xs) < len(shape):
        x = _apply("reshape", x, arg=(1,) * (len(shape) - len(xs)) + xs)
    return _apply("expand", x, arg=shape)


def _common_dtype(op: str, dtypes) -> dt.DType:
    """The dtype `op` computes in: the promoted type, made floating for ops defined on floats."""
    try:
        common = dt.result_type(*dtypes)
    except TypeError as e:
        raise TypeError(f"{op}: {e}") from None
    domain = OPS[op].domain
    if domain == "float" and not common.is_floating:
        common = dt.default_float
    elif domain == "numeric" and common is dt.bool:
        common = dt.default_int if op not in ("maximum", "minimum") else common
    return common


def _promote(op: str, *xs: Tensor) -> tuple:
    """Cast tensors to their common dtype (floats only for ops defined on floats)."""
    first = xs[0]._node.dtype
    if domain_allows(OPS[op].domain, first):
        for x in xs[1:]:
            if x._node.dtype is not first:
                break
        else:
            return xs   # one dtype that the op takes as it is: nothing to promote
    common = _common_dtype(op, [x.dtype for x in xs])
    return tuple(x if x.dtype is common else _apply("cast", x, arg=common) for x in xs)


def _binary(name: str, a, b) -> Tensor:
    # fast path: two tensors of one dtype the op takes, on one device: at most a broadcast to do
    if (type(a) is Tensor and type(b) is Tensor and a._node.dtype is b._node.dtype
            and a._node.device is b._node.device and domain_allows(OPS[name].domain, a._node.dtype)):
        if a._node.shape == b._node.shape:
            return _apply(name, a, b)
        shape = broadcast_shapes(a._node.shape, b._node.shape, op=name)
        return _apply(name, _expand_to(a, shape), _expand_to(b, shape))
    # fast path for `tensor op python_number`: the constant is made at the final shape and dtype
    if type(b) in (int, float) and isinstance(a, Tensor):
        common = _common_dtype(name, (a.dtype, dt.scalar_dtype(b, a.dtype)))
        a = a if a.dtype is common else _apply("cast", a, arg=common)
        return _apply(name, a, Tensor(const(b, a.shape, common, a.device)))
    if type(a) in (int, float) and isinstance(b, Tensor):
        common = _common_dtype(name, (b.dtype, dt.scalar_dtype(a, b.dtype)))
        b = b if b.dtype is common else _apply("cast", b, arg=common)
        return _apply(name, Tensor(const(a, b.shape, common, b.device)), b)
    if not isinstance(a, Tensor):
        if not isinstance(b, Tensor):
            _type_error(name, a, b)
        a = _as_tensor_checked(a, b, name)
    else:
        b = _as_tensor_checked(b, a, name)
    if a.device != b.device:
        raise ValueError(f"{name}: operands are on different devices: {a.device} and {b.device}")
    shape = a.shape if a.shape == b.shape else broadcast_shapes(a.shape, b.shape, op=name)
    a, b = _promote(name, a, b)
    return _apply(name, _expand_to(a, shape), _expand_to(b, shape))


def _as_tensor_checked(x, like, name):
    try:
        return _as_tensor(x, like)
    except TypeError:
        _type_error(name, x, like)


def _unary(name: str, x) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a fastad Tensor, got {type(x).__name__}")
    (x,) = _promote(name, x)
    return _apply(name, x)


def _cast(x: Tensor, dtype) -> Tensor:
    """`x` converted to `dtype`, or `x` itself when it already is (for internal use)."""
    dtype = dt.to_dtype(dtype)
    return x if x.dtype is dtype else _apply("cast", x, arg=dtype)


def normalize_axes(axis, ndim: int, op: str) -> tuple:
    """Sorted, non-negative, unique axes; a bad axis raises AxisError (an IndexError and a ValueError)."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not isinstance(a, (int, np.integer)) or isinstance(a, builtins.bool):
            raise TypeError(f"{op}: axis must be an int or a tuple of ints, got {a!r}")
        if not -ndim <= a < ndim:
            raise AxisError(f"{op}: axis {a} is out of bounds for a tensor of {ndim} dimensions")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: repeated axis in {axis!r}")
    return tuple(sorted(out))


def asarray(obj, dtype=None, device=None, copy=None):
    from .creation import asarray as _asarray
    return _asarray(obj, dtype=dtype, device=device, copy=copy)
