"""var, std, cumulative_sum and cumulative_prod: values against numpy (correction, keepdims,
include_initial, dtypes, special cases), gradients against finite differences, and errors."""
import numpy as np
import pytest

import fastad as fa
from helpers import check_op

rng = np.random.default_rng(2)
X = rng.standard_normal((3, 4, 2))


@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2)])
@pytest.mark.parametrize("correction", [0, 1, 0.5])
@pytest.mark.parametrize("keepdims", [False, True])
def test_var_std(axis, correction, keepdims):
    for fn, ref in ((fa.var, np.var), (fa.std, np.std)):
        check_op(lambda t: fn(t, axis=axis, correction=correction, keepdims=keepdims),
                 lambda a: ref(a, axis=axis, ddof=correction, keepdims=keepdims), X)


def test_var_std_special_cases():
    one = fa.tensor(np.array([2.0]))
    with np.errstate(all="ignore"):
        assert np.isnan(fa.var(one, correction=1).item())          # 0 / 0, as numpy
        assert np.isnan(fa.var(fa.zeros((0,))).item())
        assert np.isinf(fa.var(fa.tensor([1.0, 3.0]), correction=2).item())
    assert np.isnan(fa.std(fa.tensor([1.0, np.nan])).item())
    np.testing.assert_allclose(fa.var(fa.tensor(X.astype(np.float32))).numpy(), np.var(X), rtol=1e-5)
    assert fa.var(fa.tensor(X.astype(np.float32))).dtype == fa.float32
    # std at zero variance: value 0 and gradient 0 (not NaN)
    x = fa.full((4,), 3.0, dtype=fa.float64, requires_grad=True)
    fa.std(x).backward()
    assert fa.std(x).item() == 0
    np.testing.assert_array_equal(x.grad.numpy(), 0)


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("include_initial", [False, True])
def test_cumulative(axis, include_initial):
    def ref(fn, start):
        def r(a):
            out = fn(a, axis=axis)
            if include_initial:
                shape = list(a.shape)
                shape[axis] = 1
                out = np.concatenate([np.full(shape, start, a.dtype), out], axis=axis)
            return out
        return r
    check_op(lambda t: fa.cumulative_sum(t, axis=axis, include_initial=include_initial), ref(np.cumsum, 0), X)
    pos = rng.uniform(0.5, 1.5, size=(3, 4, 2))      # nonzero: cumprod's rule divides by x
    check_op(lambda t: fa.cumulative_prod(t, axis=axis, include_initial=include_initial), ref(np.cumprod, 1), pos)


@pytest.mark.parametrize("zeros", [[2], [0], [1, 3], [4, 5], [0, 1, 2, 3, 4, 5]])
def test_cumulative_prod_gradient_with_zeros(zeros):
    x = rng.uniform(0.5, 1.5, size=(2, 6)) * rng.choice([-1.0, 1.0], size=(2, 6))
    x[0, zeros] = 0.0
    check_op(lambda t: fa.cumulative_prod(t, axis=1), lambda a: np.cumprod(a, axis=1), x)
    check_op(lambda t: fa.cumulative_prod(t, axis=0), lambda a: np.cumprod(a, axis=0), x.T)


def test_cumulative_dtypes_and_1d():
    x = np.array([1, 2, 3, 4], np.int8)
    s = fa.cumulative_sum(fa.tensor(x))
    assert s.dtype == fa.int64
    np.testing.assert_array_equal(s.numpy(), np.cumsum(x))
    p = fa.cumulative_prod(fa.tensor(x.astype(np.uint8)))
    assert p.dtype == fa.uint64
    np.testing.assert_array_equal(p.numpy(), np.cumprod(x))
    b = fa.cumulative_sum(fa.tensor(np.array([True, False, True])))
    np.testing.assert_array_equal(b.numpy(), [1, 1, 2])
    f32 = fa.cumulative_sum(fa.tensor(x), dtype=fa.float32)
    assert f32.dtype == fa.float32
    e = fa.cumulative_sum(fa.zeros((0,)), include_initial=True)
    np.testing.assert_array_equal(e.numpy(), [0.0])
    check_op(lambda t: fa.cumulative_sum(t), np.cumsum, rng.standard_normal(6).astype(np.float32))


def test_cumulative_second_order():
    # (at an exact zero the rule is piecewise: its own derivative misses the zero's factor; docs/LINALG.md)
    xs = rng.uniform(0.5, 1.5, size=5)
    x = fa.tensor(xs, requires_grad=True)
    g = fa.grad(lambda t: fa.sum(fa.cumulative_prod(t)))
    h = fa.grad(lambda t: fa.sum(g(t)))(x).numpy()
    eps = 1e-6

    def first(a):   # d/da sum(cumprod(a)) in closed form
        return np.array([sum(np.prod(np.delete(a[:k + 1], i)) for k in range(i, len(a))) for i in range(len(a))])
    fd = np.array([(first(xs + eps * e).sum() - first(xs - eps * e).sum()) / (2 * eps) for e in np.eye(5)])
    np.testing.assert_allclose(h, fd, rtol=1e-5)


def test_errors():
    with pytest.raises(ValueError, match="axis is required"):
        fa.cumulative_sum(fa.zeros((2, 2)))
    with pytest.raises(fa.AxisError):
        fa.cumulative_prod(fa.zeros((2, 2)), axis=3)
    with pytest.raises(TypeError, match="floating"):
        fa.var(fa.tensor(np.array([1, 2, 3])))
    with pytest.raises(fa.AxisError):
        fa.std(fa.zeros((2,)), axis=1)
    with pytest.raises(TypeError, match="Tensor"):
        fa.var([1.0, 2.0])


def test_planned_path_matches_reference_path(monkeypatch):
    """Large graphs run cumsum/cumprod as library steps of a plan, tiny ones op by op: same values
    and gradients (zeros included)."""
    from fastad.config import settings
    x = rng.uniform(0.5, 1.5, size=(30, 20))
    x[3, 5] = x[7, 0] = x[7, 9] = 0.0
    w = rng.standard_normal(x.shape)
    got = []
    for small in (0, 10 ** 9):
        monkeypatch.setattr(settings, "small_graph_elements", small)
        t = fa.tensor(x, requires_grad=True)
        out = fa.cumulative_prod(t, axis=1) + fa.cumulative_sum(t, axis=0) + fa.std(t, axis=0, correction=1)
        fa.sum(out * fa.tensor(w)).backward()
        np.testing.assert_allclose(out.numpy(), np.cumprod(x, 1) + np.cumsum(x, 0) + np.std(x, 0, ddof=1),
                                   rtol=1e-12)
        got.append(t.grad.numpy())
    np.testing.assert_allclose(got[0], got[1], rtol=1e-12, atol=1e-12)
