"""api.linear_algebra: matmul and its relatives (the array API's main-namespace linear algebra).

`matmul` broadcasts batch dimensions and lifts 1-d operands, then calls the matmul primitive.
"""
from __future__ import annotations

from ..tensor import Tensor, _apply, _as_tensor_checked, _broadcast, _promote, _type_error, broadcast_shapes
from .manipulation import reshape

__all__ = ["matmul"]


def matmul(a, b) -> Tensor:
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
    return reshape(out, shape)
