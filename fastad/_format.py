"""_format: `repr(tensor)` in PyTorch's style: tensor([1.0000, 2.5000], requires_grad=True).

Start at `format_tensor`. Floats print as PyTorch does: "5." when every value
is integral, four decimals otherwise, scientific notation for wide ranges.
"""
from __future__ import annotations

import numpy as np

from . import dtypes as dt

_DEFAULT_SHOWN = {dt.float32, dt.int64, dt.bool}


def _float_formatter(values: np.ndarray):
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return lambda v: _special(v) or f"{v:.4f}"
    amax, amin = np.abs(finite).max(), np.abs(finite).min()
    integral = bool(np.all(np.floor(finite) == finite))
    if integral:
        sci = amax > 1e8
        fmt = (lambda v: f"{v:.4e}") if sci else (lambda v: f"{v:.0f}.")
    else:
        nz = np.abs(finite[finite != 0])
        nzmin = nz.min() if nz.size else amin
        sci = amax > 1e8 or nzmin < 1e-4 or (nzmin > 0 and amax / nzmin > 1000)
        fmt = (lambda v: f"{v:.4e}") if sci else (lambda v: f"{v:.4f}")
    return lambda v: _special(v) or fmt(v)


def _special(v) -> str:
    if np.isnan(v):
        return "nan"
    if np.isinf(v):
        return "inf" if v > 0 else "-inf"
    return ""


def format_values(values: np.ndarray, prefix: str) -> str:
    if values.dtype.kind == "f":
        fmt = _float_formatter(values)
        formatter = {"float_kind": fmt}
    elif values.dtype.kind == "c":
        formatter = {"complex_kind": lambda v: f"{v.real:.4f}{v.imag:+.4f}j"}
    elif values.dtype.kind == "b":
        formatter = {"bool": lambda v: "True" if v else "False"}
    else:
        formatter = {"int": str}
    if values.ndim == 0:
        return formatter[next(iter(formatter))](values[()])
    return np.array2string(values, separator=", ", prefix=prefix, formatter=formatter,
                           threshold=1000, edgeitems=3, max_line_width=80)


def format_tensor(t) -> str:
    prefix = "tensor("
    body = format_values(t.numpy(), prefix)
    extras = []
    if t.device.type != "cpu":
        extras.append(f"device='{t.device}'")
    if t.size == 0 and t.shape != (0,):
        extras.append(f"size={t.shape}")
    if t.dtype not in _DEFAULT_SHOWN or (t.dtype is dt.bool and t.size == 0):
        extras.append(f"dtype=fastad.{t.dtype.name}")
    if t.grad_fn is not None:
        extras.append(f"grad_fn={t.grad_fn!r}")
    elif t.requires_grad:
        extras.append("requires_grad=True")
    return prefix + ", ".join([body] + extras) + ")"
