"""random: seedable random tensors (`fastad.random.seed`, `rand`, `randn`, `uniform`, `normal`).

Start at `seed`. One numpy Generator per process draws on the host; the
result is then placed on the requested device.
"""
from __future__ import annotations

import numpy as np

from . import dtypes as dt
from .creation import _finish, _shape_args, buffer_node

__all__ = ["seed", "rand", "randn", "uniform", "normal"]

_rng = np.random.default_rng()


def seed(value: int) -> None:
    """Reset the generator so that later draws repeat."""
    global _rng
    _rng = np.random.default_rng(value)


def _draw(values: np.ndarray, dtype, device, requires_grad):
    dtype = dt.to_dtype(dtype or dt.default_float)
    if not dtype.is_floating:
        raise TypeError(f"random tensors are floating point, not {dtype.name}")
    return _finish(buffer_node(values.astype(dtype.np), device), requires_grad)


def rand(*shape, dtype=None, device=None, requires_grad=False):
    """Uniform samples in [0, 1)."""
    return _draw(_rng.random(_shape_args(shape)), dtype, device, requires_grad)


def randn(*shape, dtype=None, device=None, requires_grad=False):
    """Standard normal samples."""
    return _draw(_rng.standard_normal(_shape_args(shape)), dtype, device, requires_grad)


def uniform(low=0.0, high=1.0, shape=(), *, dtype=None, device=None, requires_grad=False):
    return _draw(_rng.uniform(low, high, _shape_args((shape,))), dtype, device, requires_grad)


def normal(mean=0.0, std=1.0, shape=(), *, dtype=None, device=None, requires_grad=False):
    return _draw(_rng.normal(mean, std, _shape_args((shape,))), dtype, device, requires_grad)
