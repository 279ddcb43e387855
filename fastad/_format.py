"""_format: `repr(tensor)` in PyTorch's style: tensor([1.0000, 2.5000], requires_grad=True).

Start at `format_tensor`. Floats print as PyTorch does: "5." when every value
is integral, four decimals otherwise, scientific notation for wide ranges;
every element is padded to the widest one (`tensor([ 1., 10.])`).
"""
from __future__ import annotations

import numpy as np

from . import dtypes as dt

_DEFAULT_SHOWN = {dt.float32, dt.int64, dt.bool}


def _float_formatter(values: np.ndarray):
    """PyTorch's choice of format, made from the nonzero finite values (`values` may be a summary)."""
    nz = np.abs(values[np.isfinite(values) & (values != 0)])
    if nz.size == 0:
        return lambda v: _special(v) or f"{v:.0f}."
    amax, nzmin = nz.max(), nz.min()
    integral = bool(np.all(np.floor(nz) == nz))
    sci = amax > 1e8 or amax / nzmin > 1000 or (not integral and nzmin < 1e-4)
    fmt = (lambda v: f"{v:.4e}") if sci else (lambda v: f"{v:.0f}.") if integral else (lambda v: f"{v:.4f}")
    return lambda v: _special(v) or fmt(v)


def _special(v) -> str:
    if np.isnan(v):
        return "nan"
    if np.isinf(v):
        return "inf" if v > 0 else "-inf"
    return ""


def _summary(values: np.ndarray, edge: int = 3) -> np.ndarray:
    """The elements a summarised print shows: `edge` from each end of every long axis."""
    for ax, d in enumerate(values.shape):
        if d > 2 * edge:
            values = np.concatenate([values.take(range(edge), ax), values.take(range(d - edge, d), ax)], ax)
    return values


def format_values(values: np.ndarray, prefix: str) -> str:
    shown = _summary(values) if values.size > 1000 else values
    if values.dtype.kind == "f":
        fmt, key = _float_formatter(shown), "float_kind"
        # as in PyTorch, the column width comes from the nonzero finite values only
        measured = shown[np.isfinite(shown) & (shown != 0)]
    elif values.dtype.kind == "c":
        fmt, key, measured = (lambda v: f"{v.real:.4f}{v.imag:+.4f}j"), "complex_kind", shown
    elif values.dtype.kind == "b":
        fmt, key, measured = (lambda v: "True" if v else "False"), "bool", shown
    else:
        fmt, key, measured = str, "int", shown
    width = max((len(fmt(v)) for v in measured.flat), default=0)
    if values.ndim == 0:
        return fmt(values[()]).rjust(width)
    return np.array2string(values, separator=", ", prefix=prefix, formatter={key: lambda v: fmt(v).rjust(width)},
                           threshold=1000, edgeitems=3, max_line_width=80)


def format_tensor(t) -> str:
    prefix = "tensor("
    body = format_values(t.numpy(), prefix)
    extras = []
    if t.device.type != "cpu":
        extras.append(f"device='{t.device}'")
    if t.size == 0 and t.shape != (0,):
        extras.append(f"size={t.shape}")
    # an empty tensor has no elements to tell an int64 from a float32: PyTorch names every non-default dtype
    if t.dtype not in _DEFAULT_SHOWN or (t.size == 0 and t.dtype is not dt.float32):
        extras.append(f"dtype=fastad.{t.dtype.name}")
    if t.grad_fn is not None:
        extras.append(f"grad_fn={t.grad_fn!r}")
    elif t.requires_grad:
        extras.append("requires_grad=True")
    return prefix + ", ".join([body] + extras) + ")"
