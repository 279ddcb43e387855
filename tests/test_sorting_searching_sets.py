"""sort/argsort, argmax/argmin/count_nonzero/nonzero/searchsorted and the unique_* functions:
values against numpy (NaN, ties, descending stability, dtypes), gradients against finite
differences, the planned (library step) path against the op-by-op reference path, and errors."""
import numpy as np
import pytest

import fastad as fa
from fastad.config import settings
from helpers import check_op

rng = np.random.default_rng(1)


def _np_sort_desc(x, axis):
    """numpy's stable descending order: argsort of the reversed array, read backwards."""
    n = x.shape[axis]
    idx = (n - 1) - np.flip(np.argsort(np.flip(x, axis), axis=axis, kind="stable"), axis)
    return idx


@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("descending", [False, True])
def test_sort_values_and_gradient(axis, descending):
    x = rng.standard_normal((3, 4, 2))
    ref = (lambda a: -np.sort(-a, axis=axis)) if descending else (lambda a: np.sort(a, axis=axis))
    check_op(lambda t: fa.sort(t, axis=axis, descending=descending), ref, x)


def test_sort_second_order_and_float32():
    check_op(lambda t: fa.sort(t), lambda a: np.sort(a), rng.standard_normal(7).astype(np.float32))
    x = fa.tensor(rng.standard_normal(5), requires_grad=True)
    w = fa.tensor(rng.standard_normal(5))
    # sum(w * sort(x)**2): gradient 2 * sort(x)[inv] * w[inv]; its gradient again is linear
    g = fa.grad(lambda t: fa.sum(w * fa.sort(t) ** 2))
    h = fa.grad(lambda t: fa.sum(g(t)))(x).numpy()
    inv = np.argsort(np.argsort(x.numpy(), kind="stable"))
    np.testing.assert_allclose(h, 2 * w.numpy()[inv])


@pytest.mark.parametrize("descending", [False, True])
def test_argsort_stable_with_ties_and_nan(descending):
    x = np.array([[3.0, 1, 2, 1, np.nan, 5, 1, np.nan], [0, 0, -0.0, 1, 1, 2, 2, 0]])
    got = fa.argsort(fa.tensor(x), descending=descending)
    assert got.dtype == fa.int64
    want = _np_sort_desc(x, -1) if descending else np.argsort(x, axis=-1, kind="stable")
    np.testing.assert_array_equal(got.numpy(), want)
    s = fa.sort(fa.tensor(x), descending=descending).numpy()
    np.testing.assert_array_equal(s, np.take_along_axis(x, want, -1))


@pytest.mark.parametrize("dtype", [np.int8, np.uint16, np.int64, np.float32, np.bool_])
def test_sort_dtypes(dtype):
    x = rng.integers(0, 5, size=(4, 6)).astype(dtype)
    got = fa.sort(fa.tensor(x), axis=0)
    assert got.dtype == fa.asarray(x).dtype
    np.testing.assert_array_equal(got.numpy(), np.sort(x, axis=0))
    np.testing.assert_array_equal(fa.argsort(fa.tensor(x)).numpy(), np.argsort(x, kind="stable"))


def test_planned_path_matches_reference_path(monkeypatch):
    """Large inputs run as library steps of a plan; tiny ones op by op. Both agree with numpy."""
    x = rng.standard_normal((40, 30))
    for small in (0, 10 ** 9):
        monkeypatch.setattr(settings, "small_graph_elements", small)
        t = fa.tensor(x) * 1.0
        np.testing.assert_array_equal(fa.sort(t, axis=0).numpy(), np.sort(x, axis=0))
        np.testing.assert_array_equal(fa.argsort(t, descending=True).numpy(), _np_sort_desc(x, -1))
        np.testing.assert_array_equal(fa.argmax(t, axis=1).numpy(), np.argmax(x, axis=1))
        np.testing.assert_array_equal(fa.argmin(t).numpy(), np.argmin(x))
        s = np.sort(x[0])
        np.testing.assert_array_equal(fa.searchsorted(fa.tensor(s), t).numpy(), np.searchsorted(s, x))
        np.testing.assert_array_equal(fa.cumulative_sum(t, axis=1).numpy(), np.cumsum(x, axis=1))


def test_argmax_argmin():
    x = np.array([[1.0, 5, 5, -1], [np.nan, 2, np.nan, 0], [0, 0, 0, 0]])
    for fn, ref in ((fa.argmax, np.argmax), (fa.argmin, np.argmin)):
        for axis in (None, 0, 1, -1):
            for keep in (False, True):
                got = fn(fa.tensor(x), axis=axis, keepdims=keep)
                assert got.dtype == fa.int64
                np.testing.assert_array_equal(got.numpy(), ref(x, axis=axis, keepdims=keep))
        assert fn(fa.tensor(np.array(3.0))).item() == 0
    xi = rng.integers(-5, 5, size=(3, 4)).astype(np.int16)
    np.testing.assert_array_equal(fa.argmax(fa.tensor(xi), axis=0).numpy(), np.argmax(xi, axis=0))
    t = fa.tensor(x, requires_grad=True)
    assert not fa.argmax(t).requires_grad
    with pytest.raises(ValueError, match="empty"):
        fa.argmax(fa.zeros((0, 3)), axis=0)
    with pytest.raises(fa.AxisError):
        fa.argmin(fa.tensor(x), axis=2)


def test_count_nonzero():
    x = np.array([[0.0, 1, -0.0, np.nan], [2, 0, 0, 3]])
    for axis in (None, 0, 1, (0, 1)):
        for keep in (False, True):
            got = fa.count_nonzero(fa.tensor(x), axis=axis, keepdims=keep)
            assert got.dtype == fa.int64
            np.testing.assert_array_equal(got.numpy(), np.count_nonzero(x, axis=axis, keepdims=keep))
    b = np.array([True, False, True])
    assert fa.count_nonzero(fa.tensor(b)).item() == 2


def test_nonzero():
    x = np.array([[0, 1, 0], [2, 0, 3]], np.int32)
    got = fa.nonzero(fa.tensor(x))
    assert isinstance(got, tuple) and len(got) == 2
    for g, w in zip(got, np.nonzero(x)):
        assert g.dtype == fa.int64
        np.testing.assert_array_equal(g.numpy(), w)
    lazy = fa.tensor(np.arange(5.0)) - 2.0     # a pending graph is realised first
    np.testing.assert_array_equal(fa.nonzero(lazy)[0].numpy(), [0, 1, 3, 4])
    assert fa.nonzero(fa.zeros((3,)))[0].shape == (0,)
    with pytest.raises(ValueError, match="0-d"):
        fa.nonzero(fa.tensor(1.0))


@pytest.mark.parametrize("side", ["left", "right"])
def test_searchsorted(side):
    x1 = np.array([1.0, 2, 2, 3, np.nan])
    x2 = np.array([[0.0, 2, 2.5], [3, 4, np.nan]])
    got = fa.searchsorted(fa.tensor(x1), fa.tensor(x2), side=side)
    assert got.dtype == fa.int64
    np.testing.assert_array_equal(got.numpy(), np.searchsorted(x1, x2, side=side))
    perm = np.array([3, 0, 4, 1, 2])
    shuffled = np.empty_like(x1)
    shuffled[perm] = x1
    got = fa.searchsorted(fa.tensor(shuffled), fa.tensor(x2), side=side, sorter=fa.tensor(perm))
    np.testing.assert_array_equal(got.numpy(), np.searchsorted(shuffled, x2, side=side, sorter=perm))
    # mixed dtypes promote
    got = fa.searchsorted(fa.tensor(np.array([1, 3, 5], np.int32)), fa.tensor(np.array([2.5, 5.0])), side=side)
    np.testing.assert_array_equal(got.numpy(), np.searchsorted([1, 3, 5], [2.5, 5.0], side=side))


def test_searchsorted_python_scalar():
    got = fa.searchsorted(fa.tensor(np.array([0, 3, 5], np.uint8)), 4)
    assert got.shape == () and got.item() == 2
    assert fa.searchsorted(fa.tensor([0.5, 1.5]), 1.5, side="right").item() == 2


def test_searchsorted_errors():
    with pytest.raises(ValueError, match="1-d"):
        fa.searchsorted(fa.zeros((2, 2)), fa.zeros(2))
    with pytest.raises(ValueError, match="side"):
        fa.searchsorted(fa.zeros(2), fa.zeros(2), side="middle")
    with pytest.raises(TypeError, match="Tensor"):
        fa.searchsorted([1, 2], fa.zeros(2))


def test_sort_errors():
    with pytest.raises(fa.AxisError):
        fa.sort(fa.zeros((2, 3)), axis=2)
    with pytest.raises(ValueError, match="0-d"):
        fa.argsort(fa.tensor(1.0))
    with pytest.raises(TypeError, match="Tensor"):
        fa.sort(np.zeros(3))


def test_unique():
    x = np.array([[2.0, 1, 2], [np.nan, 1, np.nan]])
    a = fa.unique_all(fa.tensor(x))
    assert a._fields == ("values", "indices", "inverse_indices", "counts")
    w = np.unique_all(x)
    np.testing.assert_array_equal(a.values.numpy(), w.values)          # each NaN is its own value
    np.testing.assert_array_equal(a.indices.numpy(), w.indices)
    np.testing.assert_array_equal(a.inverse_indices.numpy(), w.inverse_indices)
    assert a.inverse_indices.shape == x.shape
    np.testing.assert_array_equal(a.counts.numpy(), w.counts)
    for t in (a.indices, a.inverse_indices, a.counts):
        assert t.dtype == fa.int64
    c = fa.unique_counts(fa.tensor(x))
    assert c._fields == ("values", "counts")
    np.testing.assert_array_equal(c.counts.numpy(), np.unique_counts(x).counts)
    i = fa.unique_inverse(fa.tensor(x))
    assert i._fields == ("values", "inverse_indices")
    np.testing.assert_array_equal(i.inverse_indices.numpy(), np.unique_inverse(x).inverse_indices)
    xi = np.array([3, 1, 3, 3], np.uint8)
    v = fa.unique_values(fa.tensor(xi))
    assert v.dtype == fa.uint8
    np.testing.assert_array_equal(v.numpy(), [1, 3])
    assert fa.unique_values(fa.zeros((0,))).shape == (0,)
    t = fa.tensor(x, requires_grad=True)
    assert not fa.unique_values(t).requires_grad
    with pytest.raises(TypeError, match="Tensor"):
        fa.unique_values([1, 2])


# ---------------------------------------------------------------------------
# Properties (hypothesis): small integer-valued floats give many ties and NaNs
# ---------------------------------------------------------------------------

from hypothesis import given, settings as hsettings, strategies as st  # noqa: E402

_values = st.lists(st.one_of(st.integers(-3, 3).map(float), st.just(float("nan"))), min_size=1, max_size=12)


@hsettings(max_examples=40, deadline=None)
@given(_values, st.booleans())
def test_property_sort_is_a_stable_permutation(vals, descending):
    x = np.array(vals)
    idx = fa.argsort(fa.tensor(x), descending=descending).numpy()
    assert sorted(idx.tolist()) == list(range(len(x)))              # a permutation
    s = x[idx]
    key = np.where(np.isnan(s), 100.0, s)                            # NaN ranks above every number
    steps = np.diff(key)
    assert np.all(steps <= 0) if descending else np.all(steps >= 0)  # ordered
    same = steps == 0
    assert np.all(np.diff(idx)[same] > 0)                            # equal keys keep their order
    np.testing.assert_array_equal(fa.sort(fa.tensor(x), descending=descending).numpy(), s)


@hsettings(max_examples=40, deadline=None)
@given(_values)
def test_property_unique_reconstructs_input(vals):
    x = np.array(vals)
    r = fa.unique_all(fa.tensor(x))
    values, inverse, counts, first = (r.values.numpy(), r.inverse_indices.numpy(), r.counts.numpy(),
                                      r.indices.numpy())
    np.testing.assert_array_equal(values[inverse], x)                # NaN == NaN here (array_equal)
    assert counts.sum() == len(x)
    np.testing.assert_array_equal(x[first], values)
    assert np.isnan(values).sum() == np.isnan(x).sum()               # every NaN is distinct


@hsettings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-5, 5), min_size=1, max_size=12), st.sampled_from(["left", "right"]))
def test_property_searchsorted_keeps_order(vals, side):
    x1 = np.sort(np.array(vals, np.int64))
    x2 = np.arange(-6, 7)
    idx = fa.searchsorted(fa.tensor(x1), fa.tensor(x2), side=side).numpy()
    for v, i in zip(x2, idx):
        left, right = x1[:i], x1[i:]
        assert np.all(left < v if side == "left" else left <= v)
        assert np.all(right >= v if side == "left" else right > v)
