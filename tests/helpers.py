"""Shared test helper: `check_op`, the one oracle check for an op's value and gradient.

It builds fastad tensors from numpy inputs, compares the op's value with a
numpy reference, then runs `backward` with a random upstream gradient `w` and
compares every float input's `.grad` with

* the closed form, when one is given: `closed_form(w, *inputs)` returns one
  gradient per input (None for inputs without one), and
* float64 central finite differences of `sum(w * np_fn(*inputs))`.

The finite differences always run on the numpy reference in float64 (never on
fastad), so they cost no graph builds or kernel compiles and stay an
independent oracle. Tolerances follow the tensors' dtype, loose enough for a
JIT backend's float32 arithmetic (different summation order, libm).
"""
from __future__ import annotations

import numpy as np

import fastad as fa

__all__ = ["check_op", "unbroadcast"]

_RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-7}


def unbroadcast(g: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum a gradient of a broadcast result back to an input's `shape` (for closed forms)."""
    g = np.asarray(g, dtype=np.float64)
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for i, d in enumerate(shape):
        if d == 1 and g.shape[i] != 1:
            g = g.sum(axis=i, keepdims=True)
    return np.broadcast_to(g, shape)


def _finite_differences(np_fn, inputs: list, i: int, w: np.ndarray, eps: float) -> np.ndarray:
    """d/d(inputs[i]) of sum(w * np_fn(*inputs)) by central differences, all in float64."""
    xs = [a.astype(np.float64) if a.dtype.kind == "f" else a for a in inputs]
    x = xs[i]
    grad = np.zeros(x.shape, np.float64)
    for j in np.ndindex(x.shape):
        old = x[j]
        x[j] = old + eps
        up = np.sum(w * np.asarray(np_fn(*xs), np.float64))
        x[j] = old - eps
        down = np.sum(w * np.asarray(np_fn(*xs), np.float64))
        x[j] = old
        grad[j] = (up - down) / (2 * eps)
    return grad


def check_op(fa_fn, np_fn, *inputs, grad: bool = True, closed_form=None, out_dtype=None,
             rtol: float | None = None, atol: float | None = None, fd_eps: float = 1e-6, seed: int = 0):
    """Check `fa_fn(*tensors)` against `np_fn(*arrays)` (value, dtype, shape) and, with `grad`, its gradient.

    `inputs` are numpy arrays; each becomes a tensor of the same dtype, requiring grad when it
    is a float and `grad` is set. The reference value is `np_fn` on the inputs widened to
    float64. `out_dtype` (a fastad dtype) defaults to what numpy gives on the original inputs.
    Returns the output tensor.
    """
    inputs = [np.asarray(a) for a in inputs]
    tensors = [fa.tensor(a, requires_grad=grad and a.dtype.kind == "f") for a in inputs]
    out = fa_fn(*tensors)
    assert isinstance(out, fa.Tensor), f"expected a fastad Tensor, got {type(out).__name__}"

    wide = [a.astype(np.float64) if a.dtype.kind == "f" else a for a in inputs]
    with np.errstate(all="ignore"):
        expected = np.asarray(np_fn(*wide))
        if out_dtype is None:
            out_dtype = fa.asarray(np.asarray(np_fn(*inputs))).dtype
    assert out.dtype == out_dtype, f"dtype {out.dtype} != expected {out_dtype}"
    got = out.numpy()
    assert got.shape == expected.shape, f"shape {got.shape} != expected {expected.shape}"
    assert got.dtype == out_dtype.np
    tol = _RTOL.get(got.dtype, 0.0) if rtol is None else rtol
    if got.dtype.kind == "f":
        np.testing.assert_allclose(got, expected.astype(got.dtype), rtol=tol,
                                   atol=tol if atol is None else atol, equal_nan=True, err_msg="forward value")
    else:
        np.testing.assert_array_equal(got, expected.astype(got.dtype), err_msg="forward value")

    if not grad or not any(a.dtype.kind == "f" for a in inputs):
        return out
    assert out.requires_grad, "output of a differentiable op on tensors requiring grad must require grad"
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.5, 1.5, size=out.shape) * rng.choice([-1.0, 1.0], size=out.shape)
    out.backward(gradient=fa.tensor(w, dtype=out.dtype))
    forms = closed_form(w, *wide) if closed_form is not None else [None] * len(inputs)
    for i, (a, t) in enumerate(zip(inputs, tensors)):
        if a.dtype.kind != "f":
            continue
        assert t.grad is not None, f"input {i} got no gradient"
        assert t.grad.dtype == t.dtype and t.grad.shape == t.shape, f"input {i}: gradient dtype/shape"
        g = t.grad.numpy().astype(np.float64)
        # float32 gradients carry float32 rounding; float64 ones are compared with the FD error budget
        g_rtol = 1e-4 if a.dtype == np.float32 else 1e-6
        g_atol = 1e-4 if a.dtype == np.float32 else 1e-7
        if forms[i] is not None:
            np.testing.assert_allclose(g, np.broadcast_to(forms[i], a.shape), rtol=g_rtol, atol=g_atol,
                                       err_msg=f"gradient of input {i} vs closed form")
        fd = _finite_differences(np_fn, inputs, i, w, fd_eps)
        np.testing.assert_allclose(g, fd, rtol=max(g_rtol, 1e-5), atol=max(g_atol, 1e-6),
                                   err_msg=f"gradient of input {i} vs finite differences")
    return out
