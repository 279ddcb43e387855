"""api.linear_algebra: matmul and its relatives (the array API's main-namespace linear algebra).

`matmul` broadcasts batch dimensions and lifts 1-d operands, then calls the matmul primitive.
"""
from __future__ import annotations

import math

from ..ops import OPS, domain_allows
from ..tensor import Tensor, _apply, _as_tensor_checked, _broadcast, _promote, _type_error, broadcast_shapes
from .manipulation import reshape

__all__ = ["matmul", "matrix_transpose", "tensordot", "vecdot"]


def matmul(a, b) -> Tensor:
    if (type(a) is Tensor and type(b) is Tensor and len(a._node.shape) == 2 and len(b._node.shape) == 2
            and a._node.shape[1] == b._node.shape[0] and a._node.dtype is b._node.dtype
            and a._node.device is b._node.device and domain_allows(OPS["matmul"].domain, a._node.dtype)):
        return _apply("matmul", a, b)   # two matrices that need nothing else (the common case)
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        _type_error("@", a, b)
    # a numpy array or list on either side becomes a tensor, as with the other operators
    a = a if isinstance(a, Tensor) else _as_tensor_checked(a, b, "@")
    b = b if isinstance(b, Tensor) else _as_tensor_checked(b, a, "@")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: operands must have at least one dimension, got shapes {a.shape} and {b.shape}")
    if a.device != b.device:
        raise ValueError(f"matmul: operands are on different devices: {a.device} and {b.device}")
    a2 = reshape(a, (1,) + a.shape) if a.ndim == 1 else a
    b2 = reshape(b, b.shape + (1,)) if b.ndim == 1 else b
    if a2.shape[-1] != b2.shape[-2]:
        raise ValueError(f"matmul: inner dimensions differ: {a.shape} @ {b.shape} "
                         f"({a2.shape[-1]} != {b2.shape[-2]})")
    batch = broadcast_shapes(a2.shape[:-2], b2.shape[:-2], op="matmul")
    a2, b2 = _promote("matmul", a2, b2)
    a2 = _broadcast(a2, batch + a2.shape[-2:])
    b2 = _broadcast(b2, batch + b2.shape[-2:])
    out = _apply("matmul", a2, b2)
    shape = out.shape
    if a.ndim == 1:
        shape = shape[:-2] + shape[-1:]
    if b.ndim == 1:
        shape = shape[:-1]
    return out if shape == out.shape else reshape(out, shape)   # `out` is new already


def matrix_transpose(x: Tensor, /) -> Tensor:
    """The last two axes swapped (`x.mT`)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"matrix_transpose: expected a fastad Tensor, got {type(x).__name__}")
    return x.mT


def tensordot(x1: Tensor, x2: Tensor, /, *, axes=2) -> Tensor:
    """Sum of products over `axes` (an int: the last n of x1 with the first n of x2; or two
    sequences of axes), as one matmul of the permuted, flattened operands."""
    from ..errors import AxisError
    from .manipulation import permute_dims
    if isinstance(axes, int) or hasattr(axes, "__index__"):
        n = int(axes)
        if n < 0 or n > min(x1.ndim, x2.ndim):
            raise ValueError(f"tensordot: axes={n} out of range for shapes {x1.shape} and {x2.shape}")
        a1, a2 = list(range(x1.ndim - n, x1.ndim)), list(range(n))
    else:
        a1, a2 = ([axes_i] if isinstance(axes_i, int) else list(axes_i) for axes_i in axes)
        if len(a1) != len(a2):
            raise ValueError(f"tensordot: axes {axes} pair up different numbers of axes")
        for a, x in ((a1, x1), (a2, x2)):
            for i in a:
                if not -x.ndim <= i < x.ndim:
                    raise AxisError(f"tensordot: axis {i} out of range for shape {x.shape}")
        a1, a2 = [i % x1.ndim for i in a1], [i % x2.ndim for i in a2]
    for i, j in zip(a1, a2):
        if x1.shape[i] != x2.shape[j]:
            raise ValueError(f"tensordot: contracted axes differ: {x1.shape}[{i}] != {x2.shape}[{j}]")
    free1 = [i for i in range(x1.ndim) if i not in a1]
    free2 = [j for j in range(x2.ndim) if j not in a2]
    k = math.prod(x1.shape[i] for i in a1)
    m1 = reshape(permute_dims(x1, free1 + a1), (math.prod(x1.shape[i] for i in free1), k))
    m2 = reshape(permute_dims(x2, a2 + free2), (k, math.prod(x2.shape[j] for j in free2)))
    return reshape(matmul(m1, m2), tuple(x1.shape[i] for i in free1) + tuple(x2.shape[j] for j in free2))


def vecdot(x1: Tensor, x2: Tensor, /, *, axis=-1) -> Tensor:
    """sum(conj(x1) * x2) along `axis` of the broadcast operands."""
    from .elementwise import conj, multiply
    from .reductions import sum
    shape = broadcast_shapes(x1.shape, x2.shape, op="vecdot")
    if not -len(shape) <= axis < len(shape):
        from ..errors import AxisError
        raise AxisError(f"vecdot: axis {axis} out of range for the broadcast shape {shape}")
    ax = axis % len(shape)
    d1 = x1.shape[ax - len(shape) + x1.ndim] if ax - len(shape) + x1.ndim >= 0 else 1
    d2 = x2.shape[ax - len(shape) + x2.ndim] if ax - len(shape) + x2.ndim >= 0 else 1
    if d1 != d2:
        raise ValueError(f"vecdot: sizes along axis {axis} differ: {x1.shape} and {x2.shape}")
    prod = multiply(conj(x1), x2)
    return sum(prod, axis=ax, dtype=prod.dtype)  # the operands' promoted dtype, not the sum's accumulator
