"""Array API indexing, manipulation, utility, creation and namespace functions added for the
2024.12 standard: values against numpy, the spec's dtype and shape rules, and gradients
(float64 central finite differences through tests/helpers.py's check_op)."""
from __future__ import annotations

import inspect

import numpy as np
import pytest

import fastad as fa
from tests.helpers import check_op

rng = np.random.default_rng(1)
X = rng.standard_normal((3, 4, 5))


# ---- indexing --------------------------------------------------------------------------------

INDICES = [
    (np.array([2, 0, 2]),), (slice(None), np.array([[0, 3], [1, 1]])), (np.array([0, 2]), slice(1, 3), np.array([4, 0])),
    (Ellipsis, np.array([-1, 0])), (None, np.array([1])), (X[..., 0] > 0,), (X > 0.5,), (1, X[0, :, 0] > 0),
]


@pytest.mark.parametrize("index", INDICES, ids=range(len(INDICES)))
def test_advanced_getitem_matches_numpy_and_scatters_gradients(index):
    fa_index = tuple(fa.asarray(i) if isinstance(i, np.ndarray) else i for i in index)
    check_op(lambda x: x[fa_index], lambda x: x[index], X)


def test_getitem_repeated_indices_add_their_gradients():
    x = fa.asarray([1.0, 2.0, 3.0], requires_grad=True)
    x[fa.asarray([0, 0, 2, 0])].sum().backward()
    assert x.grad.numpy().tolist() == [3.0, 0.0, 1.0]


def test_bad_advanced_indices_raise():
    x = fa.ones((2, 3))
    with pytest.raises(IndexError):
        x[fa.asarray([0.0])]
    with pytest.raises(IndexError):
        x[fa.asarray([2])]


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_take_matches_numpy_with_negative_indices(axis):
    idx = np.array([0, -1, 1, 1])
    check_op(lambda x: fa.take(x, fa.asarray(idx), axis=axis), lambda x: np.take(x, idx, axis=axis), X)


def test_take_needs_an_axis_beyond_1d():
    with pytest.raises(ValueError):
        fa.take(fa.ones((2, 2)), fa.asarray([0]))
    assert fa.take(fa.asarray([5.0, 6.0]), fa.asarray([1])).numpy().tolist() == [6.0]


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_take_along_axis_matches_numpy(axis):
    shape = list(X.shape)
    shape[axis] = 6
    idx = rng.integers(-X.shape[axis], X.shape[axis], shape)
    check_op(lambda x: fa.take_along_axis(x, fa.asarray(idx), axis=axis),
             lambda x: np.take_along_axis(x, np.where(idx < 0, idx + X.shape[axis], idx), axis=axis), X)


def test_setitem_matches_numpy_and_rebinds_only_the_target():
    ref = np.zeros((3, 4))
    x = fa.zeros((3, 4), dtype=fa.float64)
    alias = x[...]
    for index, value in [((1,), 5.0), ((slice(None), 2), np.arange(3.0)), ((ref == 0,), 7.0),
                         ((np.array([0, 0]), np.array([1, 1])), np.array([8.0, 9.0]))]:
        fa_index = tuple(fa.asarray(i) if isinstance(i, np.ndarray) else i for i in index)
        x[fa_index] = fa.asarray(value) if isinstance(value, np.ndarray) else value
        ref[index] = value
        np.testing.assert_array_equal(x.numpy(), ref)
    assert np.all(alias.numpy() == 0)   # a tensor made from the old value keeps it
    assert x.dtype is fa.float64


def test_setitem_gradients_flow_to_value_and_the_unwritten_part():
    w = rng.standard_normal(5)
    v = rng.standard_normal(2)

    def f(x, val):
        y = x * 1.0
        y[fa.asarray([1, 3])] = val
        return y * fa.asarray(np.arange(1.0, 6.0))

    def ref(x, val):
        y = x.copy()
        y[[1, 3]] = val
        return y * np.arange(1.0, 6.0)
    check_op(f, ref, w, v)


def test_setitem_on_a_leaf_that_requires_grad_raises_and_no_grad_allows_it():
    w = fa.asarray([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError):
        w[0] = 0.0
    with fa.no_grad():
        w[0] = 0.0
    assert w.numpy().tolist() == [0.0, 2.0]


# ---- manipulation --------------------------------------------------------------------------

MANIP = [
    ("flip", lambda x: fa.flip(x), lambda x: np.flip(x)),
    ("flip12", lambda x: fa.flip(x, axis=(1, 2)), lambda x: np.flip(x, (1, 2))),
    ("moveaxis", lambda x: fa.moveaxis(x, 0, -1), lambda x: np.moveaxis(x, 0, -1)),
    ("moveaxis2", lambda x: fa.moveaxis(x, (0, 2), (2, 0)), lambda x: np.moveaxis(x, (0, 2), (2, 0))),
    ("roll", lambda x: fa.roll(x, 7), lambda x: np.roll(x, 7)),
    ("roll_axes", lambda x: fa.roll(x, (1, -2), axis=(0, 2)), lambda x: np.roll(x, (1, -2), axis=(0, 2))),
    ("repeat", lambda x: fa.repeat(x, 2, axis=1), lambda x: np.repeat(x, 2, axis=1)),
    ("repeat_counts", lambda x: fa.repeat(x, fa.asarray([2, 0, 1]), axis=0),
     lambda x: np.repeat(x, [2, 0, 1], axis=0)),
    ("repeat_flat", lambda x: fa.repeat(x, 2), lambda x: np.repeat(x, 2)),
    ("tile", lambda x: fa.tile(x, (2, 1, 1, 3)), lambda x: np.tile(x, (2, 1, 1, 3))),
    ("tile_short", lambda x: fa.tile(x, (2,)), lambda x: np.tile(x, 2)),
    ("unstack", lambda x: fa.stack(fa.unstack(x, axis=1), axis=0), lambda x: np.moveaxis(x, 1, 0)),
    ("broadcast_arrays", lambda x: fa.broadcast_arrays(x, fa.ones((2, 1, 1, 1), dtype=fa.float64))[0],
     lambda x: np.broadcast_to(x, (2,) + x.shape)),
    ("diff", lambda x: fa.diff(x, axis=1, n=2), lambda x: np.diff(x, axis=1, n=2)),
    ("diff_pre", lambda x: fa.diff(x, prepend=fa.zeros((3, 4, 1), dtype=fa.float64)),
     lambda x: np.diff(x, prepend=np.zeros((3, 4, 1)))),
    ("tril", lambda x: fa.tril(x, k=1), lambda x: np.tril(x, 1)),
    ("triu", lambda x: fa.triu(x, k=-1), lambda x: np.triu(x, -1)),
    ("matrix_transpose", lambda x: fa.matrix_transpose(x), lambda x: np.swapaxes(x, -1, -2)),
    ("vecdot", lambda x: fa.vecdot(x, x[0]), lambda x: (x * x[0]).sum(-1)),
    ("tensordot", lambda x: fa.tensordot(x, x, axes=([1, 2], [1, 2])),
     lambda x: np.tensordot(x, x, axes=([1, 2], [1, 2]))),
]


@pytest.mark.parametrize("name,fn,ref", MANIP, ids=[m[0] for m in MANIP])
def test_manipulation_values_and_gradients(name, fn, ref):
    check_op(fn, ref, X)


def test_meshgrid_matches_numpy():
    a, b, c = np.arange(3.0), np.arange(4.0), np.arange(2.0)
    for indexing in ("xy", "ij"):
        got = fa.meshgrid(fa.asarray(a), fa.asarray(b), fa.asarray(c), indexing=indexing)
        for g, want in zip(got, np.meshgrid(a, b, c, indexing=indexing)):
            np.testing.assert_array_equal(g.numpy(), want)
    with pytest.raises(ValueError):
        fa.meshgrid(fa.asarray(a), indexing="yx")


def test_all_any_follow_the_spec():
    x = fa.asarray([[0.0, float("nan")], [1.0, 2.0]])
    assert fa.all(x, axis=1).numpy().tolist() == [False, True]
    assert fa.any(x, axis=0, keepdims=True).shape == (1, 2)
    assert bool(fa.all(fa.zeros((0,)))) and not bool(fa.any(fa.zeros((0,))))   # empty: True / False
    assert fa.any(fa.asarray([False, True])).dtype is fa.bool


def test_creation_signatures_take_the_shape_as_the_spec_says():
    for fn in (fa.zeros, fa.ones, fa.empty):
        assert fn(shape=(2, 3)).shape == (2, 3) and fn(2, 3).shape == (2, 3) and fn(()).shape == ()
    assert list(inspect.signature(fa.reshape).parameters)[:2] == ["x", "shape"]


# ---- namespace -----------------------------------------------------------------------------

def test_array_namespace_and_info():
    x = fa.ones(2)
    assert x.__array_namespace__() is fa and x.__array_namespace__(api_version="2023.12") is fa
    with pytest.raises(ValueError):
        x.__array_namespace__(api_version="2099.01")
    info = fa.__array_namespace_info__()
    assert info.capabilities()["boolean indexing"] is True
    assert info.default_device() == fa.get_default_device()
    assert info.default_dtypes()["indexing"] is fa.int64
    assert set(info.dtypes(kind="integral").values()) == {fa.int8, fa.int16, fa.int32, fa.int64, fa.uint8,
                                                          fa.uint16, fa.uint32, fa.uint64}
    assert fa.Device("cpu") in info.devices()
    with pytest.raises(ValueError):
        info.dtypes(kind="strange")
