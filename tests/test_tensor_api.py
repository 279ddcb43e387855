"""The Tensor API: creation functions, attributes, conversions and the PyTorch-style repr."""
from __future__ import annotations

import numpy as np
import pytest

import fastad as fa


# ---------------------------------------------------------------------------
# Creation
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("data,dtype,shape", [
    (5.0, fa.float32, ()), (5, fa.int64, ()), (True, fa.bool, ()), ([1.0, 2.5], fa.float32, (2,)),
    ([[1, 2], [3, 4]], fa.int64, (2, 2)), ([1, 2.5], fa.float32, (2,)), ([True, False], fa.bool, (2,)),
    ([], fa.float32, (0,)), (np.array([1.0, 2.0]), fa.float64, (2,)), (np.array([1, 2], np.int32), fa.int32, (2,)),
    (np.float64(1.5), fa.float64, ()), (np.zeros((2, 0), np.float32), fa.float32, (2, 0)),
])
@pytest.mark.parametrize("fn", [fa.tensor, fa.asarray])
def test_tensor_and_asarray_infer_dtype(fn, data, dtype, shape):
    t = fn(data)
    assert isinstance(t, fa.Tensor)
    assert t.dtype == dtype and t.shape == shape
    np.testing.assert_array_equal(t.numpy(), np.asarray(data, dtype=dtype.np))
    assert t.is_leaf and not t.requires_grad and t.grad is None


def test_asarray_of_a_tensor_and_explicit_dtypes():
    x = fa.tensor([1.0, 2.0])
    same = fa.asarray(x)  # a new tensor (an in-place update of it must not reach x), same value
    assert same is not x and same.numpy().tolist() == [1.0, 2.0]
    y = fa.asarray(x, dtype=fa.float64)
    assert y.dtype == fa.float64 and y.numpy().tolist() == [1.0, 2.0]
    assert fa.asarray([1, 2], dtype=fa.float32).dtype == fa.float32
    assert fa.asarray([1.7, -2.2], dtype="int32").numpy().tolist() == [1, -2]
    assert fa.tensor(3, dtype=fa.float64).dtype == fa.float64
    assert fa.asarray(np.array([1, 2]), dtype=np.float32).dtype == fa.float32
    assert fa.tensor(x).numpy().tolist() == [1.0, 2.0]


def test_tensor_of_a_tensor_is_a_new_leaf():
    a = fa.tensor([1.0, 2.0], requires_grad=True)
    t = fa.tensor(a * 2)
    assert t.is_leaf and not t.requires_grad and t.numpy().tolist() == [2.0, 4.0]
    u = fa.tensor(a * 2, requires_grad=True)
    assert u.is_leaf and u.requires_grad and u.grad_fn is None
    (u * a).sum().backward()
    assert u.grad.numpy().tolist() == [1.0, 2.0] and a.grad.numpy().tolist() == [2.0, 4.0]


CREATORS = {
    "tensor": lambda **kw: fa.tensor([1.0, 2.0], **kw),
    "asarray": lambda **kw: fa.asarray([1.0, 2.0], **kw),
    "asarray numpy": lambda **kw: fa.asarray(np.array([1.0, 2.0], np.float32), **kw),
    "asarray scalar": lambda **kw: fa.asarray(1.5, **kw),
    "zeros": lambda **kw: fa.zeros(2, **kw), "ones": lambda **kw: fa.ones(2, **kw),
    "empty": lambda **kw: fa.empty(2, **kw), "full": lambda **kw: fa.full((2,), 1.5, **kw),
    "zeros_like": lambda **kw: fa.zeros_like(fa.ones(2), **kw),
    "ones_like": lambda **kw: fa.ones_like(fa.ones(2), **kw),
    "empty_like": lambda **kw: fa.empty_like(fa.ones(2), **kw),
    "full_like": lambda **kw: fa.full_like(fa.ones(2), 1.5, **kw),
    "arange": lambda **kw: fa.arange(0.0, 2.0, **kw), "linspace": lambda **kw: fa.linspace(0, 1, 2, **kw),
    "eye": lambda **kw: fa.eye(2, **kw), "rand": lambda **kw: fa.rand(2, **kw),
    "randn": lambda **kw: fa.randn(2, **kw),
}


@pytest.mark.parametrize("name", list(CREATORS))
def test_every_creation_function_takes_dtype_device_requires_grad(name):
    make = CREATORS[name]
    plain = make()
    assert plain.dtype == fa.float32 and plain.device == "cpu" and not plain.requires_grad
    t = make(dtype=fa.float64, device="cpu", requires_grad=True)
    assert t.dtype == fa.float64 and t.device == fa.Device("cpu") and t.requires_grad and t.is_leaf
    assert t.numpy().dtype == np.float64
    if name not in ("rand", "randn"):
        np.testing.assert_allclose(t.numpy(), plain.numpy(), rtol=1e-6)
    assert make(dtype=fa.float32, device=fa.Device("cpu")).dtype == fa.float32


def test_tensor_copies_numpy_input():
    a = np.array([1.0, 2.0])
    t = fa.tensor(a)
    u = fa.asarray(a)
    a[0] = 100.0  # later writes to the caller's array must not change the tensors
    assert t.numpy().tolist() == [1.0, 2.0]
    assert u.numpy().tolist() == [1.0, 2.0]


@pytest.mark.parametrize("kw", [{}, {"dtype": fa.float64}, {"dtype": fa.int32}, {"device": "cpu"},
                                {"requires_grad": True}])
def test_filled_creation_functions(kw):
    for fn, fill in ((fa.zeros, 0), (fa.ones, 1), (fa.empty, None)):
        t = fn(2, 3, **kw)
        t2 = fn((2, 3), **kw)
        assert t.shape == t2.shape == (2, 3)
        assert t.dtype == kw.get("dtype", fa.float32)
        assert t.device == fa.Device("cpu") and t.device.type == "cpu"
        assert t.requires_grad == kw.get("requires_grad", False)
        if fill is not None:
            np.testing.assert_array_equal(t.numpy(), np.full((2, 3), fill))
    rg = kw.get("requires_grad", False)
    f = fa.full((2,), 7.0 if rg else 7, **kw)  # an int fill gives int64, which can't require grad
    assert f.dtype == kw.get("dtype", fa.float32 if rg else fa.int64)
    assert f.requires_grad == rg
    np.testing.assert_array_equal(f.numpy(), [7, 7])
    assert fa.full((2,), 2.5).dtype == fa.float32
    assert fa.full((), True).dtype == fa.bool
    assert fa.zeros(0).shape == (0,) and fa.ones(()).shape == ()


def test_like_functions_follow_their_argument():
    x = fa.tensor([[1, 2, 3]], dtype=fa.int32)
    for fn, fill in ((fa.zeros_like, 0), (fa.ones_like, 1), (fa.empty_like, None)):
        t = fn(x)
        assert t.shape == (1, 3) and t.dtype == fa.int32 and t.device == x.device
        if fill is not None:
            np.testing.assert_array_equal(t.numpy(), np.full((1, 3), fill))
        t = fn(x, dtype=fa.float64, device="cpu", requires_grad=True)
        assert t.dtype == fa.float64 and t.requires_grad
    f = fa.full_like(x, 4)
    assert f.dtype == fa.int32 and f.numpy().tolist() == [[4, 4, 4]]
    assert fa.full_like(x, 0.5, dtype=fa.float32).numpy().tolist() == [[0.5, 0.5, 0.5]]


def test_arange_linspace_eye():
    np.testing.assert_array_equal(fa.arange(5).numpy(), np.arange(5))
    assert fa.arange(5).dtype == fa.int64
    np.testing.assert_array_equal(fa.arange(2, 11, 3).numpy(), [2, 5, 8])
    np.testing.assert_array_equal(fa.arange(5, 0, -2).numpy(), [5, 3, 1])
    a = fa.arange(0, 1, 0.25)
    assert a.dtype == fa.float32
    np.testing.assert_allclose(a.numpy(), [0, 0.25, 0.5, 0.75])
    assert fa.arange(3, dtype=fa.float64).dtype == fa.float64
    assert fa.arange(3.0, requires_grad=True).requires_grad
    lin = fa.linspace(0, 1, 5)
    assert lin.dtype == fa.float32 and lin.shape == (5,)
    np.testing.assert_allclose(lin.numpy(), np.linspace(0, 1, 5))
    np.testing.assert_allclose(fa.linspace(-1, 1, 4, dtype=fa.float64, endpoint=False).numpy(),
                               np.linspace(-1, 1, 4, endpoint=False))
    np.testing.assert_array_equal(fa.eye(3).numpy(), np.eye(3))
    np.testing.assert_array_equal(fa.eye(2, 3, k=1).numpy(), np.eye(2, 3, k=1))
    e = fa.eye(2, dtype=fa.int32, device="cpu", requires_grad=False)
    assert e.dtype == fa.int32 and e.device == "cpu"
    assert fa.eye(2, requires_grad=True).requires_grad


def test_random_is_reproducible_with_seed():
    fa.random.seed(123)
    a, b = fa.rand(3, 4), fa.randn(2, 2)
    fa.random.seed(123)
    a2, b2 = fa.rand(3, 4), fa.randn((2, 2))
    np.testing.assert_array_equal(a.numpy(), a2.numpy())
    np.testing.assert_array_equal(b.numpy(), b2.numpy())
    assert a.dtype == fa.float32 and a.shape == (3, 4)
    assert 0.0 <= a.numpy().min() and a.numpy().max() < 1.0
    c = fa.rand(3, 4)
    assert not np.array_equal(a.numpy(), c.numpy())  # the stream moves on
    d = fa.randn(5, dtype=fa.float64, device="cpu", requires_grad=True)
    assert d.dtype == fa.float64 and d.requires_grad and d.is_leaf
    big = fa.randn(10000, dtype=fa.float64).numpy()
    assert abs(big.mean()) < 0.05 and abs(big.std() - 1) < 0.05
    with pytest.raises(TypeError):
        fa.rand(2, dtype=fa.int32)


@pytest.mark.parametrize("fn", [
    lambda: fa.tensor([1.0], requires_grad=True), lambda: fa.asarray([1.0], requires_grad=True),
    lambda: fa.zeros(2, requires_grad=True), lambda: fa.ones(2, requires_grad=True),
    lambda: fa.full((2,), 1.0, requires_grad=True), lambda: fa.rand(2, requires_grad=True),
    lambda: fa.randn(2, requires_grad=True), lambda: fa.linspace(0, 1, 3, requires_grad=True),
])
def test_requires_grad_keyword_makes_leaves(fn):
    t = fn()
    assert t.requires_grad and t.is_leaf and t.grad_fn is None and t.grad is None


# ---------------------------------------------------------------------------
# Attributes and conversions
# ---------------------------------------------------------------------------

def test_attributes():
    t = fa.zeros(2, 3, 4, dtype=fa.float64)
    assert t.shape == (2, 3, 4) and isinstance(t.shape, tuple)
    assert t.ndim == 3 and t.size == 24 and t.dtype == fa.float64
    assert t.device == fa.Device("cpu") and str(t.device) == "cpu" and t.device == "cpu"
    s = fa.tensor(1.0)
    assert s.shape == () and s.ndim == 0 and s.size == 1
    assert fa.zeros(0, 5).size == 0
    assert fa.get_default_device() == "cpu"


def test_conversions():
    t = fa.tensor([[1.0, 2.5], [3.0, 4.0]])
    a = t.numpy()
    assert isinstance(a, np.ndarray) and a.dtype == np.float32
    np.testing.assert_array_equal(a, [[1.0, 2.5], [3.0, 4.0]])
    assert np.asarray(t).dtype == np.float32
    assert np.array(t, dtype=np.float64).dtype == np.float64
    np.testing.assert_array_equal(np.add(t, 1), a + 1)
    assert t.tolist() == [[1.0, 2.5], [3.0, 4.0]]
    s = fa.tensor(2.5)
    assert s.item() == 2.5 and isinstance(s.item(), float)
    assert float(s) == 2.5 and int(s) == 2 and bool(s) is True
    assert fa.tensor([7]).item() == 7 and isinstance(fa.tensor(7).item(), int)
    assert bool(fa.tensor([0.0])) is False
    assert fa.tensor(True).item() is True
    assert len(t) == 2 and len(fa.zeros(5, 2)) == 5
    rows = list(t)
    assert len(rows) == 2 and all(isinstance(r, fa.Tensor) for r in rows)
    np.testing.assert_array_equal(rows[1].numpy(), [3.0, 4.0])
    assert [int(v) for v in fa.arange(3)] == [0, 1, 2]
    assert list(range(10))[fa.tensor(3)] == 3  # __index__
    assert float(t.sum()) == 10.5


def test_lazy_value_is_computed_on_read():
    x = fa.tensor([1.0, 2.0])
    y = fa.exp(x) * 2 - 1
    np.testing.assert_allclose(y.numpy(), np.exp([1.0, 2.0]) * 2 - 1, rtol=1e-6)
    np.testing.assert_allclose(y.numpy(), np.exp([1.0, 2.0]) * 2 - 1, rtol=1e-6)  # read twice


def test_array_namespace():
    assert fa.ones(2).__array_namespace__() is fa
    assert fa.isdtype(fa.float32, "real floating") and not fa.isdtype(fa.int32, "real floating")
    assert fa.isdtype(fa.int64, ("integral", "bool"))


# ---------------------------------------------------------------------------
# repr: mirrors PyTorch
# ---------------------------------------------------------------------------

REPRS = [
    (lambda: fa.tensor(5.0), "tensor(5.)"),
    (lambda: fa.tensor(2.5), "tensor(2.5000)"),
    (lambda: fa.tensor(-3), "tensor(-3)"),
    (lambda: fa.tensor(True), "tensor(True)"),
    (lambda: fa.tensor([1.0, 2.5]), "tensor([1.0000, 2.5000])"),
    (lambda: fa.tensor([1.0, 2.0]), "tensor([1., 2.])"),
    (lambda: fa.tensor([1.0, 10.0]), "tensor([ 1., 10.])"),
    (lambda: fa.tensor([-1.5, 2.0]), "tensor([-1.5000,  2.0000])"),
    (lambda: fa.tensor([[1.0, 2.0], [3.0, 4.0]]), "tensor([[1., 2.],\n        [3., 4.]])"),
    (lambda: fa.tensor([[1.5, -2.0], [3.0, 4.0]]), "tensor([[ 1.5000, -2.0000],\n        [ 3.0000,  4.0000]])"),
    (lambda: fa.tensor([1, 2, 3]), "tensor([1, 2, 3])"),
    (lambda: fa.tensor([1, -10]), "tensor([  1, -10])"),
    (lambda: fa.tensor([True, False]), "tensor([ True, False])"),
    (lambda: fa.tensor([1.0, 2.0], dtype=fa.float64), "tensor([1., 2.], dtype=fastad.float64)"),
    (lambda: fa.tensor([1, 2], dtype=fa.int32), "tensor([1, 2], dtype=fastad.int32)"),
    (lambda: fa.tensor(1.5, dtype=fa.float64), "tensor(1.5000, dtype=fastad.float64)"),
    (lambda: fa.tensor([1e-5, 1.0]), "tensor([1.0000e-05, 1.0000e+00])"),
    (lambda: fa.tensor([1e10, 1.0]), "tensor([1.0000e+10, 1.0000e+00])"),
    (lambda: fa.tensor([1.0, 2000.0]), "tensor([1.0000e+00, 2.0000e+03])"),
    (lambda: fa.tensor([float("nan"), 1.0, float("inf")]), "tensor([nan, 1., inf])"),
    (lambda: fa.tensor([float("nan"), 1.5]), "tensor([   nan, 1.5000])"),
    (lambda: fa.tensor([]), "tensor([])"),
    (lambda: fa.zeros(0, dtype=fa.int64), "tensor([], dtype=fastad.int64)"),
    (lambda: fa.zeros(2, 0), "tensor([], size=(2, 0))"),
    (lambda: fa.tensor([1.0, 2.0], requires_grad=True), "tensor([1., 2.], requires_grad=True)"),
    (lambda: fa.tensor([1.0, 2.0], requires_grad=True) * 2, "tensor([2., 4.], grad_fn=<MulBackward>)"),
    (lambda: fa.tensor([1.0, 2.0], requires_grad=True).sum(), "tensor(3., grad_fn=<SumBackward>)"),
    (lambda: fa.tensor([1.0, 2.0], dtype=fa.float64, requires_grad=True) + 1,
     "tensor([2., 3.], dtype=fastad.float64, grad_fn=<AddBackward>)"),
    (lambda: fa.ones(2, 2, 2), "tensor([[[1., 1.],\n         [1., 1.]],\n\n        [[1., 1.],\n         [1., 1.]]])"),
]


@pytest.mark.parametrize("make,expected", REPRS, ids=[r for _, r in REPRS])
def test_repr(make, expected):
    t = make()
    assert repr(t) == expected
    assert str(t) == expected


def test_repr_of_detached_and_no_grad_results():
    x = fa.tensor([1.0], requires_grad=True)
    assert repr(x.detach()) == "tensor([1.])"
    with fa.no_grad():
        assert repr(x * 2) == "tensor([2.])"


def test_repr_summarizes_large_tensors():
    text = repr(fa.arange(5000))
    assert text.startswith("tensor([   0,    1,    2,") and "..." in text and text.endswith("4999])")
    assert len(text) < 200
