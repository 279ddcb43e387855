"""fastad: a JIT-compiled autodiff backend. Lazy graph -> derivative rules -> fused kernels.

Start reading at `fastad.tensor` (the frontend), then `fastad.ops` (the one op
table), `fastad.autodiff`, `fastad.schedule`, `fastad.codegen` and
`fastad.runtime`. docs/ARCHITECTURE.md draws the pipeline.

This module is the public namespace: a PyTorch-style `Tensor`, a TensorFlow-
style `GradientTape`, and array API functions (`fastad.exp`, `fastad.sum`, ...).
"""
from __future__ import annotations

__version__ = "0.1.0"

from . import dtypes as _dt
from .dtypes import (bool, int8, int16, int32, int64, uint8, uint16, uint32, uint64,  # noqa: A004
                     float32, float64, complex64, complex128, result_type, can_cast, finfo, iinfo)
from .device import Device, get_default_device, set_default_device
from .errors import AxisError
from .autodiff import no_grad, enable_grad, set_grad_enabled, is_grad_enabled
from .tensor import (Tensor, exp, log, log1p, expm1, sqrt, sin, cos, tan, tanh, sigmoid, relu, abs, sign,
                     square, floor, ceil, round, isnan, isinf, isfinite, negative, positive, add, subtract,
                     multiply, divide, floor_divide, remainder, pow, maximum, minimum, less, less_equal,
                     greater, greater_equal, equal, not_equal, logical_and, logical_or, logical_xor,
                     logical_not, where, clip, sum, prod, max, min, mean, reshape, permute_dims, expand_dims,
                     squeeze, broadcast_to, broadcast_shapes, concat, stack, matmul, astype)
from .creation import (tensor, asarray, from_numpy, from_dlpack, zeros, ones, full, empty, zeros_like,
                       ones_like, full_like, empty_like, arange, linspace, eye)
from . import random
from .random import rand, randn
from .tape import GradientTape, Variable
from .profiling import profile
from .config import set_deterministic, is_deterministic
from . import cuda
from .explain import explain
from .realize import realize_tensors as realize
from .transforms import grad, value_and_grad, vjp, jvp, jacobian, hessian, hvp
from .capture import compile
from .errors import CompileError

e, pi, inf, nan, newaxis = 2.718281828459045, 3.141592653589793, float("inf"), float("nan"), None
__array_api_version__ = "2024.12"

# the rest of the array API's main namespace, by section of the standard (fastad/api/, docs/ARRAY_API.md)
from .api.elementwise import (acos, asin, atan, acosh, asinh, atanh, sinh, cosh, log2, log10, trunc, atan2,
                              hypot, copysign, logaddexp, nextafter, bitwise_and, bitwise_or, bitwise_xor,
                              bitwise_invert, bitwise_left_shift, bitwise_right_shift, signbit, reciprocal,
                              real, imag, conj)
from .api.manipulation import broadcast_arrays, flip, moveaxis, repeat, roll, tile, unstack
from .api.indexing import take, take_along_axis
from .api.utility import all, any, diff  # noqa: A004 - the array API's names
from .api.linear_algebra import matrix_transpose, tensordot, vecdot
from .api.info import __array_namespace_info__
from .api.data_types import result_type, can_cast, finfo, iinfo  # also take tensors and Python scalars
from .creation import meshgrid, tril, triu
from .api import fft  # the fft extension


def isdtype(dtype, kind) -> "builtins.bool":  # noqa: F821
    """The array API's dtype-kind test."""
    d = _dt.to_dtype(dtype)
    if isinstance(kind, tuple):
        return next((True for k in kind if isdtype(d, k)), False)  # `any` is the array API's here
    if isinstance(kind, _dt.DType):
        return d is kind
    kinds = {"bool": "b", "signed integer": "i", "unsigned integer": "u", "integral": "iu",
             "real floating": "f", "complex floating": "c", "numeric": "iufc"}
    if kind not in kinds:
        raise ValueError(f"isdtype: unknown kind {kind!r}")
    return d.kind in kinds[kind]

# training: optimizers, layers and checkpoints (docs/TRAINING.md)
from . import optim, nn
from .serialization import save, load

# the array API's linalg extension, sorting, searching, sets and statistics (docs/LINALG.md)
from .api import linalg
from .api.sorting import sort, argsort
from .api.searching import argmax, argmin, count_nonzero, nonzero, searchsorted
from .api.sets import unique_all, unique_counts, unique_inverse, unique_values
from .api.statistics import cumulative_sum, cumulative_prod, std, var
