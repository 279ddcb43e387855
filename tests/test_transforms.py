"""Functional transforms: grad, value_and_grad, vjp, jvp, jacobian, hessian and hvp, checked against
closed forms and float64 central finite differences, composed with one another and with tapes."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastad as fa


def f_np(x):
    return np.sum(np.sin(x) * np.exp(-x * x) + np.tanh(3 * x) * x)


def f_fa(x):
    return fa.sum(fa.sin(x) * fa.exp(-x * x) + fa.tanh(3 * x) * x)


def fd_grad(fn, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = eps
        g[i] = (fn(x + e) - fn(x - e)) / (2 * eps)
    return g


def test_grad_of_grad_of_cube_at_two_is_twelve():
    cube = lambda x: x * x * x
    assert fa.grad(fa.grad(cube))(fa.tensor(2.0)).item() == 12.0
    assert fa.grad(fa.grad(fa.grad(cube)))(fa.tensor(2.0)).item() == 6.0


def test_grad_and_value_and_grad_match_finite_differences():
    x = np.array([0.3, -1.2, 0.8, 2.0])
    g = fa.grad(f_fa)(fa.asarray(x))
    np.testing.assert_allclose(g.numpy(), fd_grad(f_np, x), rtol=1e-6, atol=1e-9)
    v, g2 = fa.value_and_grad(f_fa)(fa.asarray(x))
    assert v.item() == pytest.approx(f_np(x)) and np.allclose(g2.numpy(), g.numpy())


def test_grad_argnums_tuple_and_has_aux():
    def loss(w, b, x):
        y = w * x + b
        return fa.sum(y * y), y
    w, b, x = fa.tensor(2.0), fa.tensor(1.0), fa.asarray([1.0, 2.0])
    (gw, gb), aux = fa.grad(loss, argnums=(0, 1), has_aux=True)(w, b, x)
    # d/dw sum((wx+b)^2) = sum(2(wx+b)x) = 2*(3*1 + 5*2) = 26; d/db = 2*(3+5) = 16
    assert gw.item() == 26.0 and gb.item() == 16.0 and aux.tolist() == [3.0, 5.0]
    assert not w.requires_grad       # the caller's tensors are left as they were


def test_grad_errors_are_clear():
    with pytest.raises(ValueError, match="single-element"):
        fa.grad(lambda x: x * 2)(fa.asarray([1.0, 2.0]))
    with pytest.raises(TypeError, match="floating"):
        fa.grad(lambda x: x * 2)(fa.asarray([1, 2]))
    with pytest.raises(ValueError, match="argnums"):
        fa.grad(lambda x: x, argnums=3)(fa.tensor(1.0))


def test_hessian_and_hvp_match_finite_differences():
    x = np.array([0.4, -0.9, 1.3])
    h = fa.hessian(f_fa)(fa.asarray(x)).numpy()
    fd = np.stack([fd_grad(lambda v: fd_grad(f_np, v, 1e-5)[i], x, 1e-5) for i in range(3)])
    assert h.shape == (3, 3)
    np.testing.assert_allclose(h, fd, rtol=1e-4, atol=1e-5)   # nested differences: ~1e-6 noise
    np.testing.assert_allclose(h, h.T, atol=1e-12)
    v = np.array([1.0, -2.0, 0.5])
    value, hv = fa.hvp(f_fa, (fa.asarray(x),), (fa.asarray(v),))
    assert value.item() == pytest.approx(f_np(x))
    np.testing.assert_allclose(hv.numpy(), h @ v, rtol=1e-10)


def test_jacobian_shape_and_values():
    a = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    f = lambda x: fa.tanh(fa.matmul(fa.asarray(a), x))
    x = np.array([0.1, 0.2, -0.3])
    j = fa.jacobian(f)(fa.asarray(x)).numpy()
    assert j.shape == (2, 3)
    np.testing.assert_allclose(j, (1 - np.tanh(a @ x) ** 2)[:, None] * a, rtol=1e-12)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.floats(-2, 2), min_size=1, max_size=5), st.lists(st.floats(-2, 2), min_size=5, max_size=5),
       st.integers(0, 3))
def test_jvp_agrees_with_vjp_on_random_functions(xs, ts, which):
    fns = [lambda x: fa.sin(x) * x, lambda x: fa.exp(-x * x) + fa.tanh(x),
           lambda x: fa.sigmoid(x) * fa.cos(2 * x), lambda x: x * x * x - fa.log1p(x * x)]
    f = fns[which]
    x = fa.asarray(np.array(xs))
    t = fa.asarray(np.array(ts[: len(xs)]))
    u = fa.asarray(np.linspace(-1, 1, len(xs)))
    out, jt = fa.jvp(f, (x,), (t,))
    out2, pull = fa.vjp(f, x)
    (ju,) = pull(u)
    np.testing.assert_allclose(out.numpy(), out2.numpy())
    # <J t, u> == <t, J^T u>
    assert float(np.dot(jt.numpy(), u.numpy())) == pytest.approx(float(np.dot(t.numpy(), ju.numpy())),
                                                                 rel=1e-9, abs=1e-12)


def test_transforms_compose_with_tapes_and_backward():
    x = fa.Variable(2.0, dtype=fa.float64)
    with fa.GradientTape() as tape:
        g = fa.grad(lambda v: v ** 3)(x)     # 3x^2, recorded on the tape
    assert tape.gradient(g, x).item() == 12.0
    y = fa.tensor(3.0, dtype=fa.float64, requires_grad=True)
    fa.grad(lambda v: v * v * v)(y).backward()
    assert y.grad.item() == 18.0


@pytest.mark.parametrize("op,np_d1,np_d2", [
    (fa.exp, np.exp, np.exp),
    (fa.sin, np.cos, lambda x: -np.sin(x)),
    (fa.tanh, lambda x: 1 - np.tanh(x) ** 2, lambda x: -2 * np.tanh(x) * (1 - np.tanh(x) ** 2)),
    (fa.sigmoid, lambda x: 1 / (1 + np.exp(-x)) * (1 - 1 / (1 + np.exp(-x))),
     lambda x: (s := 1 / (1 + np.exp(-x))) * (1 - s) * (1 - 2 * s)),
    (fa.log1p, lambda x: 1 / (1 + x), lambda x: -1 / (1 + x) ** 2),
    (fa.sqrt, lambda x: 0.5 / np.sqrt(x), lambda x: -0.25 * x ** -1.5),
    (lambda x: 1 / x, lambda x: -1 / x ** 2, lambda x: 2 / x ** 3),
    (lambda x: x ** 2.5, lambda x: 2.5 * x ** 1.5, lambda x: 3.75 * x ** 0.5),
    (fa.abs, np.sign, lambda x: 0 * x),
    (lambda x: fa.maximum(x, 0.7 - x), lambda x: np.where(x > 0.35, 1.0, -1.0), lambda x: 0 * x),
])
def test_second_derivatives_through_the_op_table(op, np_d1, np_d2):
    """create_graph works through each op's derivative rule: d2/dx2 against the closed form."""
    x = np.array([0.3, 0.9, 1.7])
    d1 = fa.grad(lambda v: fa.sum(op(v)))(fa.asarray(x))
    d2 = fa.grad(lambda v: fa.sum(fa.grad(lambda w: fa.sum(op(w)))(v)))(fa.asarray(x))
    np.testing.assert_allclose(d1.numpy(), np_d1(x), rtol=1e-12)
    np.testing.assert_allclose(d2.numpy(), np_d2(x), rtol=1e-10, atol=1e-12)
