"""api.fft: the array API's fft extension (`fastad.fft`), numpy's FFT on the CPU and CuPy's on CUDA.

Every transform is the one library op `fft` of the op table, whose static argument
names the transform, its lengths, axes and norm; its reference takes the array
module of its input (numpy or CuPy), as the linalg ops do. fftshift/ifftshift are
rolls, fftfreq/rfftfreq creation functions. Values only: the transforms have no
derivative rule yet (complex gradients are left out, docs/ARRAY_API.md), and a
backward pass through one raises NotImplementedError.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes as dt
from ..ops import LIBRARY, defop
from ..tensor import Tensor, _apply, _cast, normalize_axes
from .linalg_ops import array_module
from .manipulation import roll

__all__ = ["fft", "ifft", "fftn", "ifftn", "rfft", "irfft", "rfftn", "irfftn", "hfft", "ihfft",
           "fftfreq", "rfftfreq", "fftshift", "ifftshift"]

_COMPLEX_OUT = {"fft", "ifft", "fftn", "ifftn", "rfft", "rfftn", "ihfft"}
_REAL_IN = {"rfft", "rfftn", "ihfft"}
_TO_COMPLEX = {dt.float32: dt.complex64, dt.float64: dt.complex128}
_TO_REAL = {dt.complex64: dt.float32, dt.complex128: dt.float64}


def _out_dtype(srcs, arg):
    d = srcs[0].dtype
    return _TO_COMPLEX.get(d, d) if arg[0] in _COMPLEX_OUT else _TO_REAL.get(d, d)


def _shape(srcs, arg):
    func, lengths, axes, _ = arg
    shape = list(srcs[0].shape)
    for i, a in enumerate(axes):
        given = None if lengths is None else lengths[i]
        last = i == len(axes) - 1
        if func in ("rfft", "ihfft", "rfftn") and last:
            shape[a] = (given or shape[a]) // 2 + 1
        elif func in ("irfft", "hfft", "irfftn") and last:
            shape[a] = given or 2 * (shape[a] - 1)
        else:
            shape[a] = given or shape[a]
    return tuple(shape)


def _ref(x, arg):
    func, lengths, axes, norm = arg
    xp = array_module(x)
    if func.endswith("n"):
        out = getattr(xp.fft, func)(x, s=lengths, axes=axes, norm=norm)
    else:
        out = getattr(xp.fft, func)(x, n=None if lengths is None else lengths[0], axis=axes[0], norm=norm)
    want = _TO_COMPLEX.get(dt.to_dtype(x.dtype), x.dtype) if func in _COMPLEX_OUT else \
        _TO_REAL.get(dt.to_dtype(x.dtype), x.dtype)
    return out.astype(want.np if isinstance(want, dt.DType) else want, copy=False)


def _no_gradient(c, g):
    raise NotImplementedError(f"fastad.fft.{c.arg[0]}: FFTs have no derivative rule yet "
                              "(complex gradients are left out; docs/ARRAY_API.md)")


defop("fft", LIBRARY, 1, ref=_ref, shape=_shape, out=_out_dtype, vjp=_no_gradient)


def _input(x, func):
    if not isinstance(x, Tensor):
        raise TypeError(f"fft.{func}: expected a fastad Tensor, got {type(x).__name__}")
    if func in _REAL_IN:
        if x.dtype.kind != "f":
            raise TypeError(f"fft.{func}: needs a real floating-point tensor, not {x.dtype.name}")
        return x
    if x.dtype.kind == "f":
        return _cast(x, _TO_COMPLEX[x.dtype])
    if x.dtype.kind != "c":
        raise TypeError(f"fft.{func}: needs a floating-point tensor, not {x.dtype.name}")
    return x


def _check_norm(norm):
    if norm not in ("backward", "ortho", "forward"):
        raise ValueError(f"fft: norm must be 'backward', 'ortho' or 'forward', got {norm!r}")


def _one(func):
    def transform(x, /, *, n=None, axis=-1, norm="backward"):
        x = _input(x, func)
        _check_norm(norm)
        (a,) = normalize_axes(axis, x.ndim, f"fft.{func}")
        if n is not None and int(n) < 1:
            raise ValueError(f"fft.{func}: n must be positive, got {n}")
        return _apply("fft", x, arg=(func, None if n is None else (int(n),), (a,), norm))
    transform.__name__ = transform.__qualname__ = func
    transform.__doc__ = f"numpy.fft.{func} (CuPy's on CUDA) along `axis`."
    return transform


def _many(func):
    def transform(x, /, *, s=None, axes=None, norm="backward"):
        x = _input(x, func)
        _check_norm(norm)
        if axes is None:
            axes = tuple(range(x.ndim)) if s is None else tuple(range(x.ndim - len(s), x.ndim))
        axes = tuple(normalize_axes(a, x.ndim, f"fft.{func}")[0] for a in axes)
        if s is not None and len(s) != len(axes):
            raise ValueError(f"fft.{func}: s {s} and axes {axes} differ in length")
        lengths = None if s is None else tuple(int(v) for v in s)
        return _apply("fft", x, arg=(func, lengths, axes, norm))
    transform.__name__ = transform.__qualname__ = func
    transform.__doc__ = f"numpy.fft.{func} (CuPy's on CUDA) over `axes`."
    return transform


fft, ifft, rfft, irfft, hfft, ihfft = (_one(n) for n in ("fft", "ifft", "rfft", "irfft", "hfft", "ihfft"))
fftn, ifftn, rfftn, irfftn = (_many(n) for n in ("fftn", "ifftn", "rfftn", "irfftn"))


def _freq(values, dtype, device):
    from ..creation import asarray
    dtype = dt.default_float if dtype is None else dt.to_dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"fftfreq: dtype must be real floating, not {dtype.name}")
    return asarray(values.astype(dtype.np), device=device)


def fftfreq(n, /, *, d=1.0, dtype=None, device=None) -> Tensor:
    """The sample frequencies of an n-point FFT with spacing d."""
    return _freq(np.fft.fftfreq(int(n), d=d), dtype, device)


def rfftfreq(n, /, *, d=1.0, dtype=None, device=None) -> Tensor:
    """The sample frequencies of an n-point real FFT with spacing d."""
    return _freq(np.fft.rfftfreq(int(n), d=d), dtype, device)


def _shift(x, axes, sign):
    axes = tuple(range(x.ndim)) if axes is None else ((axes,) if isinstance(axes, int) else tuple(axes))
    axes = tuple(normalize_axes(a, x.ndim, "fftshift")[0] for a in axes)
    return roll(x, tuple(sign * (x.shape[a] // 2) for a in axes), axis=axes)


def fftshift(x, /, *, axes=None) -> Tensor:
    """The zero frequency moved to the middle (a roll by n // 2 along `axes`)."""
    return _shift(x, axes, 1)


def ifftshift(x, /, *, axes=None) -> Tensor:
    """fftshift's inverse (a roll by -(n // 2))."""
    return _shift(x, axes, -1)
