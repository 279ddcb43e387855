"""Regression tests for the 14 confirmed core bugs, one test named after each, plus the classes
behind them: the aliasing rule (every function returns a new tensor, copies never share a buffer,
buffers are immutable), one answer per op at every size, no recursion limits, and TensorFlow's
GradientTape semantics (nesting, persistence, watch_accessed_variables, recording only inside the
block, unconnected sources, structures of targets and sources)."""
from __future__ import annotations

import numpy as np
import pytest

import fastad as fa
from fastad.config import settings


@pytest.fixture
def jit(monkeypatch):
    monkeypatch.setattr(settings, "cpu_mode", "jit")
    monkeypatch.setattr(settings, "background_compile", False, raising=False)


# ---- aliasing and silent data corruption ------------------------------------------------------

def test_bug01_clone_tensor_and_copy_true_never_share_memory():
    a = fa.asarray(np.zeros(3, np.float32))
    a.numpy()
    for c in (a.clone(), fa.tensor(a), fa.asarray(a, copy=True), fa.astype(a, fa.float32, copy=True),
              fa.reshape(a, (3,), copy=True)):
        assert not np.shares_memory(c.numpy(), a.numpy())
        with pytest.raises(ValueError):
            c.numpy()[0] = 42          # buffers are immutable: a write can't reach any tensor
        np.testing.assert_array_equal(a.numpy(), [0, 0, 0])
    y = a + 0
    y += 1                              # rebinds y only
    np.testing.assert_array_equal(a.numpy(), [0, 0, 0])
    np.testing.assert_array_equal(y.numpy(), [1, 1, 1])


def test_bug01_clone_keeps_the_gradient_path():
    x = fa.tensor([1.0, 2.0], requires_grad=True)
    (x.clone() * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3, 3])


@pytest.mark.parametrize("make", [
    lambda x: x.sum(), lambda x: x.prod(), lambda x: x.max(), lambda x: x.min(),
    lambda x: fa.sum(x, axis=()), lambda x: x ** 1, lambda x: +x, lambda x: fa.positive(x),
    lambda x: fa.astype(x, x.dtype), lambda x: fa.reshape(x, x.shape), lambda x: fa.permute_dims(x, ()),
    lambda x: fa.broadcast_to(x, x.shape), lambda x: fa.squeeze(x), lambda x: x[...],
    lambda x: fa.asarray(x), lambda x: fa.clip(x), lambda x: x.to_device("cpu"),
    lambda x: fa.concat([fa.reshape(x, (1,))]),
])
def test_bug02_functions_return_a_new_tensor_not_their_input(make):
    x = fa.tensor(5.0)
    s = make(x)
    assert s is not x
    s += 1
    assert x.item() == 5.0 and s.item() == 6.0


@pytest.mark.parametrize("fn", [fa.floor, fa.ceil, fa.round])
def test_bug02_rounding_integers_returns_a_new_tensor(fn):
    x = fa.asarray([1, 2])
    y = fn(x)
    assert y is not x
    y += 1
    assert x.tolist() == [1, 2] and y.tolist() == [2, 3]


def test_bug03_numpy_is_read_only_and_writes_never_change_computed_values():
    x = fa.asarray(np.array([1.0, 2.0], np.float32))
    y = x * 2
    with pytest.raises(ValueError):
        x.numpy()[0] = 100
    np.testing.assert_array_equal(y.numpy(), [2, 4])
    z = fa.zeros(3)
    assert not z.numpy().flags.writeable   # one rule for constants and buffers alike
    w = np.array(x)                        # a writable copy on request
    w[0] = 7
    assert x.numpy()[0] == 1
    # the caller's array is copied by default: its later writes reach no tensor
    src = np.array([1.0, 2.0], np.float32)
    t = fa.asarray(src)
    u = t * 2
    src[0] = 50
    np.testing.assert_array_equal(u.numpy(), [2, 4])


def test_bug13_asarray_copy_false_shares_a_c_contiguous_array():
    src = np.zeros(3, np.float32)
    t = fa.asarray(src, copy=False)
    assert np.shares_memory(t.numpy(), src)
    assert src.flags.writeable             # the caller's array stays theirs
    with pytest.raises(ValueError, match="copy"):
        fa.asarray(src[::2], copy=False)   # not contiguous
    with pytest.raises(ValueError, match="copy"):
        fa.asarray(src, dtype=fa.float64, copy=False)
    with pytest.raises(ValueError, match="copy"):
        fa.asarray([1.0, 2.0], copy=False)


# ---- one answer at every size (numpy tier vs compiled tier) --------------------------------

@pytest.mark.parametrize("n", [10, 1000, 70000])
def test_bug04_float_floor_division_matches_numpy_at_every_size(n, jit):
    a = np.ones(n)
    got = (fa.asarray(a) // 0.1).numpy()
    np.testing.assert_array_equal(got, a // 0.1)            # 9.0, not floor(1 / 0.1) = 10
    np.testing.assert_array_equal((fa.asarray(a) % 0.1).numpy(), a % 0.1)


def test_bug04_mod_gradient_uses_numpy_floor_division():
    x = fa.asarray(np.full(1000, 1.0), requires_grad=True)
    d = fa.asarray(np.full(1000, 0.1), requires_grad=True)
    (x % d).sum().backward()
    np.testing.assert_array_equal(d.grad.numpy(), -(np.full(1000, 1.0) // 0.1))


@pytest.mark.parametrize("n", [4, 1000, 100_000])
def test_bug05_integer_power_with_negative_exponent_raises_at_every_size(n, jit):
    base, exp = fa.asarray(np.full(n, 2)), fa.asarray(np.full(n, -1))
    with pytest.raises(ValueError, match="negative integer powers"):
        (base ** exp).numpy()
    np.testing.assert_array_equal((base ** fa.asarray(np.full(n, 3))).numpy(), np.full(n, 8))


# ---- crashes -----------------------------------------------------------------------------------

def test_bug06_ten_thousand_chained_ops_forward_and_backward():
    x = fa.asarray(np.ones(1000, np.float32), requires_grad=True)   # above the small-graph limit
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.float32(1.0001) ** 10_000, rtol=1e-3)
    z = fa.asarray(np.zeros(300, np.float32))
    for _ in range(10_000):
        z = z + 1
    assert z.numpy()[0] == 10_000


def test_bug07_maximum_minimum_on_bool():
    a, b = fa.asarray([True, False, False]), fa.asarray([False, False, True])
    assert fa.maximum(a, b).tolist() == [True, False, True] and fa.maximum(a, b).dtype == fa.bool
    assert fa.minimum(a, b).tolist() == [False, False, False]


# ---- GradientTape semantics (TensorFlow's documented behaviour) ---------------------------

def test_bug08_nested_tapes_inner_gradient_keeps_the_outer_graph():
    x = fa.Variable(3.0)
    with fa.GradientTape() as outer:
        with fa.GradientTape() as inner:
            y = x * x
        assert inner.gradient(y, x).item() == 6.0
    assert outer.gradient(y, x).item() == 6.0


def test_bug09_second_order_through_nested_tapes():
    x = fa.Variable(3.0)
    with fa.GradientTape() as t2:
        with fa.GradientTape() as t1:
            y = x * x * x
        g = t1.gradient(y, x)
    assert g.item() == 27.0
    assert t2.gradient(g, x).item() == 18.0


def test_bug10_watch_accessed_variables_false_is_honoured():
    x, w = fa.Variable(3.0), fa.Variable(2.0)
    with fa.GradientTape(watch_accessed_variables=False) as t:
        t.watch(w)
        y = x * x * w
    gx, gw = t.gradient(y, [x, w])
    assert gx is None and gw.item() == 9.0


def test_bug11_ops_after_the_block_are_not_recorded():
    x = fa.Variable(3.0)
    with fa.GradientTape(persistent=True) as t:
        t.watch(x)
        y = x * x
    z = y * x
    assert t.gradient(z, x) is None
    assert t.gradient(y, x).item() == 6.0


def test_tape_persistence_and_single_use():
    x = fa.Variable(2.0)
    with fa.GradientTape() as t:
        y = x ** 3
    assert t.gradient(y, x).item() == 12.0
    with pytest.raises(RuntimeError, match="once"):
        t.gradient(y, x)
    with fa.GradientTape(persistent=True) as p:
        y = x ** 3
        z = x * 5
    assert p.gradient(y, x).item() == 12.0 and p.gradient(z, x).item() == 5.0


def test_tape_unconnected_sources_structures_and_targets():
    a, b, c = fa.Variable(1.0), fa.Variable(2.0), fa.Variable(4.0)
    with fa.GradientTape(persistent=True) as t:
        y1, y2 = a * b, b * 3
    g = t.gradient([y1, y2], {"a": a, "b": b, "c": c})
    assert set(g) == {"a", "b", "c"} and g["c"] is None
    assert g["a"].item() == 2.0 and g["b"].item() == 4.0      # a list of targets is their sum
    zero = t.gradient(y1, c, unconnected_gradients="zero")
    assert zero.item() == 0.0
    og = t.gradient(y1, a, output_gradients=fa.tensor(10.0))
    assert og.item() == 20.0


def test_tape_watches_plain_tensors_and_stop_recording():
    x = fa.tensor([1.0, 2.0])
    with fa.GradientTape(persistent=True) as t:
        t.watch(x)
        y = (x * x).sum()
        with t.stop_recording():
            z = (x * x).sum()
    np.testing.assert_array_equal(t.gradient(y, x).numpy(), [2, 4])
    assert t.gradient(z, x) is None
    assert not x.requires_grad


def test_tape_gradient_of_an_integer_watch_is_a_type_error():
    with fa.GradientTape() as t:
        with pytest.raises(TypeError):
            t.watch(fa.asarray([1, 2]))


# ---- errors and semantics at the edges ----------------------------------------------------

def test_bug12_clip_applies_min_then_max():
    x = fa.asarray([0.0, 2.0, 5.0], requires_grad=True)
    y = fa.clip(x, 3.0, 1.0)
    np.testing.assert_array_equal(y.numpy(), np.clip([0.0, 2.0, 5.0], 3.0, 1.0))
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 0, 0])   # PyTorch: min <= x <= max never holds
    lo, hi = fa.asarray([3.0, 3.0, 3.0]), fa.asarray([1.0, 1.0, 1.0])
    np.testing.assert_array_equal(fa.clip(x, lo, hi).numpy(), [1, 1, 1])
    z = fa.asarray([0.0, 2.0, 5.0], requires_grad=True)
    fa.clip(z, 1.0, 4.0).sum().backward()
    np.testing.assert_array_equal(z.grad.numpy(), [0, 1, 0])


def test_bug14_out_of_range_python_int_raises():
    with pytest.raises(OverflowError):
        fa.asarray([1]) + 2 ** 63
    with pytest.raises(OverflowError):
        fa.asarray(np.array([1], np.uint8)) + 300
    assert (fa.asarray([1]) + (2 ** 63 - 2)).tolist() == [2 ** 63 - 1]


# ---- higher order through backward(create_graph=True) --------------------------------------

def test_create_graph_gives_a_differentiable_gradient():
    x = fa.tensor(2.0, requires_grad=True)
    (x ** 3).backward(create_graph=True)
    g = x.grad
    assert g.grad_fn is not None and g.item() == 12.0
    x.grad = None
    g.backward()
    assert x.grad.item() == 12.0      # d/dx 3x^2 at 2


def test_create_graph_second_derivative_matches_finite_differences():
    xs = np.array([0.3, -0.7, 1.1])
    x = fa.asarray(xs, requires_grad=True)
    fa.sum(fa.sin(x) * fa.exp(x) + fa.tanh(x) * x).backward(create_graph=True)
    g = x.grad
    x.grad = None
    fa.sum(g).backward()

    def d1(v):
        return np.cos(v) * np.exp(v) + np.sin(v) * np.exp(v) + (1 - np.tanh(v) ** 2) * v + np.tanh(v)
    eps = 1e-6
    np.testing.assert_allclose(x.grad.numpy(), (d1(xs + eps) - d1(xs - eps)) / (2 * eps), rtol=1e-5)
