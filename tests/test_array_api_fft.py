"""fastad.fft (the array API's fft extension): values, dtypes and shapes against numpy.fft, and the
clear error of a backward pass through a transform (no derivative rule yet)."""
from __future__ import annotations

import numpy as np
import pytest

import fastad as fa

rng = np.random.default_rng(2)
X = rng.standard_normal((4, 6))
Z = (X + 1j * rng.standard_normal((4, 6))).astype(np.complex64)

CASES = [
    ("fft", Z, {}), ("ifft", Z, {"n": 9, "axis": 0, "norm": "ortho"}), ("rfft", X, {"n": 5}),
    ("irfft", Z, {"n": 7}), ("hfft", Z, {"axis": 0}), ("ihfft", X, {"norm": "forward"}),
    ("fftn", Z, {"s": (3, 5), "axes": (0, 1)}), ("ifftn", Z, {"axes": (1, 0)}), ("rfftn", X, {"axes": (0,)}),
    ("irfftn", Z, {}),
]


@pytest.mark.parametrize("name,x,kw", CASES, ids=[c[0] for c in CASES])
def test_transforms_match_numpy(name, x, kw):
    got = getattr(fa.fft, name)(fa.asarray(x), **kw)
    want = getattr(np.fft, name)(x, **kw)
    assert got.dtype.np == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got.numpy(), want, rtol=2e-4, atol=2e-4)


def test_helpers_match_numpy():
    np.testing.assert_array_equal(fa.fft.fftshift(fa.asarray(X)).numpy(), np.fft.fftshift(X))
    np.testing.assert_array_equal(fa.fft.ifftshift(fa.asarray(X), axes=(1,)).numpy(),
                                  np.fft.ifftshift(X, axes=(1,)))
    assert fa.fft.fftfreq(5, d=0.5).dtype is fa.float32
    np.testing.assert_allclose(fa.fft.rfftfreq(6, dtype=fa.float64).numpy(), np.fft.rfftfreq(6))


def test_bad_inputs_and_backward_raise_clearly():
    with pytest.raises(TypeError):
        fa.fft.rfft(fa.asarray(Z))
    with pytest.raises(ValueError):
        fa.fft.fft(fa.asarray(Z), norm="sideways")
    t = fa.asarray(X, requires_grad=True)
    with pytest.raises(NotImplementedError, match="derivative rule"):
        fa.fft.irfft(fa.fft.rfft(t)).sum().backward()
