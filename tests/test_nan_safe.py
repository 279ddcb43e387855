"""NaN-safe gradients: a zero cotangent gives an exactly zero gradient even where the local
derivative is infinite or NaN (the unselected branch of `where`, singular points of sqrt, log,
pow, div), while a genuine NaN or infinity with a nonzero cotangent still shows."""
from __future__ import annotations

import numpy as np
import pytest

import fastad as fa

X = np.array([-2.0, -0.0, 0.0, 0.5, 4.0])


def grad_of(fn, x=X):
    t = fa.asarray(x, requires_grad=True)
    fa.sum(fn(t)).backward()
    return t.grad.numpy()


@pytest.mark.parametrize("fn,expect", [
    # the classic failure: where(x > 0, sqrt(x), 0) at x <= 0
    (lambda x: fa.where(x > 0, fa.sqrt(x), 0.0), np.where(X > 0, 0.5 / np.sqrt(np.abs(X) + (X <= 0)), 0)),
    (lambda x: fa.where(x > 0, fa.log(x), 0.0), np.where(X > 0, 1 / np.where(X > 0, X, 1), 0)),
    (lambda x: fa.where(x != 0, 1 / x, 0.0), np.where(X != 0, -1 / np.where(X != 0, X, 1) ** 2, 0)),
    (lambda x: fa.where(x > 0, x ** 0.3, 0.0), np.where(X > 0, 0.3 * np.where(X > 0, X, 1) ** -0.7, 0)),
    # exp(1000 * 4) overflows to inf in the unselected branch: inf * 0 would be NaN
    (lambda x: fa.where(x < 0.1, fa.exp(1000 * x), 0.0), np.where(X < 0.1, 1000 * np.exp(np.minimum(1000 * X, 0)), 0)),
])
def test_unselected_branch_contributes_exactly_zero(fn, expect):
    g = grad_of(fn)
    assert np.isfinite(g).all()
    np.testing.assert_allclose(g, expect, rtol=1e-12)


def test_zero_cotangent_through_a_mask_multiplication():
    # a mask multiplied in: cotangent 0 reaches sqrt at 0 (d/dx sqrt(0) = inf)
    g = grad_of(lambda x: fa.sqrt(fa.abs(x)) * (x > 1))
    np.testing.assert_array_equal(g, [0, 0, 0, 0, 0.25])


def test_genuine_nan_and_inf_still_show():
    with np.errstate(all="ignore"):
        g = grad_of(lambda x: fa.sqrt(x))
    assert np.isnan(g[0]) and np.isinf(g[1]) and np.isinf(g[2]) and g[4] == 0.25
    g = grad_of(lambda x: fa.log(x))
    assert np.isinf(g[1]) and np.isinf(g[2])     # d/dx log x = 1/x at zero


def test_clip_and_maximum_boundaries_stay_finite():
    x = np.array([0.0, 1.0, 2.0, 3.0])
    g = grad_of(lambda t: fa.clip(fa.sqrt(t), 1.0, 1.5), x)
    assert np.isfinite(g).all()
    np.testing.assert_allclose(g, [0, 0.5, 1 / (2 * np.sqrt(2)), 0])
    g = grad_of(lambda t: fa.maximum(fa.sqrt(t), 1.0), x)
    np.testing.assert_allclose(g, [0, 0.25, 1 / (2 * np.sqrt(2)), 1 / (2 * np.sqrt(3))])


def test_nan_safety_holds_on_the_compiled_tier(monkeypatch):
    from fastad.config import settings
    monkeypatch.setattr(settings, "cpu_mode", "jit")
    monkeypatch.setattr(settings, "background_compile", False, raising=False)
    x = np.tile(X, 200)
    g = grad_of(lambda t: fa.where(t > 0, fa.sqrt(t), 0.0), x)
    assert np.isfinite(g).all() and (g[x <= 0] == 0).all()


def test_the_chain_value_and_gradient_is_still_one_kernel():
    x = fa.asarray(np.linspace(-2, 2, 1000).astype(np.float32), requires_grad=True)
    loss = fa.sum(fa.sin(x) * fa.exp(-x * x) + fa.tanh(3 * x) * x + 1 / (1 + fa.exp(-x)))
    with fa.profile() as p:
        loss.backward()
    assert p.launched == 1
