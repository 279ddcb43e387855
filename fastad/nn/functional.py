"""nn.functional: activations and losses written with fastad's primitives (PyTorch's names and semantics).

Start at `cross_entropy`. Everything here composes op-table primitives, so
forward and backward fuse like any other graph. The stable forms subtract a
detached row maximum: its gradient is exactly zero, so detaching it changes
no gradient and spares the backward pass the maximum's tie-splitting rule.
`cross_entropy` is `logsumexp(z) - z[label]` on the shifted logits z, whose
backward is the fused `g * (softmax - onehot)`: one elementwise kernel over
the logits, with no reduction of its own.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from ..tensor import Tensor, _unary
from ..tensor import equal as _equal, exp as _exp, log as _log, matmul as _matmul, max as _max, mean as _mean
from ..tensor import relu as _relu, reshape as _reshape, sigmoid as _sigmoid, sum as _sum, tanh as _tanh
from ..tensor import where as _where

__all__ = ["relu", "gelu", "tanh", "sigmoid", "erf", "softmax", "log_softmax", "cross_entropy", "mse_loss",
           "linear"]

_REDUCTIONS = ("mean", "sum", "none")


def _float_tensor(x, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a fastad Tensor, got {type(x).__name__}")
    if not x.dtype.is_floating:
        raise TypeError(f"{name}: expected a floating point tensor, got {x.dtype.name}")
    return x


def relu(x: Tensor) -> Tensor:
    return _relu(x)


def tanh(x: Tensor) -> Tensor:
    return _tanh(x)


def sigmoid(x: Tensor) -> Tensor:
    return _sigmoid(x)


def erf(x: Tensor) -> Tensor:
    """The error function (an op-table primitive)."""
    return _unary("erf", x)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """x * Phi(x): exactly, through erf (approximate="none", PyTorch's default), or its tanh approximation."""
    _float_tensor(x, "gelu")
    if approximate == "none":
        return x * 0.5 * (1 + erf(x * (1 / math.sqrt(2))))
    if approximate == "tanh":
        inner = (x + 0.044715 * (x * x * x)) * math.sqrt(2 / math.pi)
        return 0.5 * x * (1 + _tanh(inner))
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


def _shifted(x: Tensor, dim: int) -> Tensor:
    """x minus its (detached) maximum along dim: the exponentials below cannot overflow."""
    return x - _max(x.detach(), axis=dim, keepdims=True)


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    _float_tensor(x, "softmax")
    e = _exp(_shifted(x, dim))
    return e / _sum(e, axis=dim, keepdims=True)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """x - logsumexp(x) along dim, computed without overflow; its backward is g - softmax * sum(g)."""
    _float_tensor(x, "log_softmax")
    z = _shifted(x, dim)
    return z - _log(_sum(_exp(z), axis=dim, keepdims=True))


def _reduce(loss: Tensor, reduction: str, name: str) -> Tensor:
    if reduction == "mean":
        # the 1/n scale inside the sum: the reduction's kernel applies it (mean() would add a kernel)
        return _sum(loss * (1.0 / loss.size)) if loss.size else _mean(loss)
    if reduction == "sum":
        return _sum(loss)
    if reduction == "none":
        return loss
    raise ValueError(f"{name}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


@functools.lru_cache(maxsize=64)
def _classes(n: int, device) -> Tensor:
    """0..n-1 as a (1, n) int64 row on `device` (immutable, so one per size serves every call)."""
    from ..creation import asarray
    return asarray(np.arange(n, dtype=np.int64).reshape(1, n), device=device)


def cross_entropy(input: Tensor, target, reduction: str = "mean") -> Tensor:
    """Cross entropy of logits `input` (N, C) against integer class labels `target` (N,).

    Stable for any logits. Labels outside [0, C) raise IndexError where they can be
    checked without a device sync (labels already computed on the CPU)."""
    x = _float_tensor(input, "cross_entropy")
    if x.ndim != 2:
        raise ValueError(f"cross_entropy: expected logits of shape (N, C), got {x.shape}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"cross_entropy: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    n, c = x.shape
    if not isinstance(target, Tensor):
        from ..creation import asarray
        target = asarray(np.asarray(target), device=x.device)
    if target.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: target must hold integer class labels, got {target.dtype.name}")
    if target.shape != (n,):
        raise ValueError(f"cross_entropy: target shape {target.shape} does not match the {n} rows of the logits")
    if target.device != x.device:
        raise ValueError(f"cross_entropy: logits on {x.device}, target on {target.device}")
    buf = target._node.buffer
    if buf is not None and target.device.type == "cpu" and n:
        lo, hi = int(buf.min()), int(buf.max())
        if lo < 0 or hi >= c:
            raise IndexError(f"cross_entropy: target {lo if lo < 0 else hi} is out of bounds for {c} classes")
    if c == 0:
        raise ValueError(f"cross_entropy: logits of shape {x.shape} have no classes (the row maximum of "
                         "nothing is undefined)")
    z = _shifted(x, 1)
    lse = _log(_sum(_exp(z), axis=1))
    onehot = _equal(_classes(c, x.device), _reshape(target, (n, 1)))
    picked = _sum(_where(onehot, z, 0.0), axis=1)
    return _reduce(lse - picked, reduction, "cross_entropy")


def mse_loss(input: Tensor, target, reduction: str = "mean") -> Tensor:
    """Mean squared error; `input` and `target` must have the same shape."""
    x = _float_tensor(input, "mse_loss")
    if not isinstance(target, Tensor):
        from ..creation import asarray
        target = asarray(target, dtype=x.dtype, device=x.device)
    if target.shape != x.shape:
        raise ValueError(f"mse_loss: input shape {x.shape} and target shape {target.shape} differ")
    d = x - target
    return _reduce(d * d, reduction, "mse_loss")


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x @ weight.T + bias (weight is (out_features, in_features))."""
    y = _matmul(x, weight.mT)
    return y if bias is None else y + bias


