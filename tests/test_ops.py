"""Every op: value against numpy, gradient against closed forms and float64 finite differences.

Shapes come from hypothesis (0-d to 3-d, broadcasting pairs and triples);
values from a seeded numpy generator inside each op's smooth domain, away
from kinks (|x| >= 0.3 where an op has one at 0) so finite differences hold.
All checks go through `helpers.check_op`.
"""
from __future__ import annotations

import operator

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes

import fastad as fa
from helpers import check_op, unbroadcast

SHAPES = array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
SEEDS = st.integers(0, 2**32 - 1)
FAST = settings(max_examples=25, deadline=None)
PROPERTY = settings(max_examples=30, deadline=None)


def sample(rng, shape, domain="real", dtype=np.float64) -> np.ndarray:
    """Random values inside an op's smooth domain."""
    shape = tuple(shape)
    if domain == "real":
        v = rng.uniform(-2, 2, shape)
    elif domain == "pos":
        v = rng.uniform(0.5, 2, shape)
    elif domain == "nonzero":  # bounded away from the kink at 0
        v = rng.uniform(0.3, 2, shape) * rng.choice([-1.0, 1.0], shape)
    elif domain == "small":  # tan: away from its poles
        v = rng.uniform(-1.2, 1.2, shape)
    elif domain == "gt_m1":  # log1p
        v = rng.uniform(-0.6, 2, shape)
    elif domain == "distinct":  # max/min: no ties, spaced far beyond the finite-difference step
        n = int(np.prod(shape, dtype=np.int64))
        v = ((rng.permutation(n) - n / 2) * 0.25 + 0.1).reshape(shape)
    else:
        raise ValueError(domain)
    return np.asarray(v, dtype)


def _sig(x):
    return 1 / (1 + np.exp(-x))


# name -> (fastad function, numpy reference, domain, derivative dy/dx)
UNARY = {
    "abs": (fa.abs, np.abs, "nonzero", np.sign),
    "abs builtin": (abs, np.abs, "nonzero", np.sign),
    "exp": (fa.exp, np.exp, "real", np.exp),
    "log": (fa.log, np.log, "pos", lambda x: 1 / x),
    "log1p": (fa.log1p, np.log1p, "gt_m1", lambda x: 1 / (1 + x)),
    "expm1": (fa.expm1, np.expm1, "real", np.exp),
    "sqrt": (fa.sqrt, np.sqrt, "pos", lambda x: 0.5 / np.sqrt(x)),
    "square": (fa.square, np.square, "real", lambda x: 2 * x),
    "sin": (fa.sin, np.sin, "real", np.cos),
    "cos": (fa.cos, np.cos, "real", lambda x: -np.sin(x)),
    "tan": (fa.tan, np.tan, "small", lambda x: 1 / np.cos(x) ** 2),
    "tanh": (fa.tanh, np.tanh, "real", lambda x: 1 - np.tanh(x) ** 2),
    "sigmoid": (fa.sigmoid, _sig, "real", lambda x: _sig(x) * (1 - _sig(x))),
    "relu": (fa.relu, lambda x: np.maximum(x, 0), "nonzero", lambda x: (x > 0).astype(float)),
    "sign": (fa.sign, np.sign, "nonzero", np.zeros_like),
    "negative": (fa.negative, np.negative, "real", lambda x: -np.ones_like(x)),
    "unary -": (operator.neg, np.negative, "real", lambda x: -np.ones_like(x)),
    "unary +": (operator.pos, np.positive, "real", np.ones_like),
    "method .exp()": (lambda t: t.exp(), np.exp, "real", np.exp),
    "method .tanh()": (lambda t: t.tanh(), np.tanh, "real", lambda x: 1 - np.tanh(x) ** 2),
}


def _unary_closed(deriv):
    return lambda w, x: [w * deriv(x)]


@pytest.mark.parametrize("name", list(UNARY))
@FAST
@given(shape=SHAPES, seed=SEEDS)
def test_unary_float64(name, shape, seed):
    fn, ref, domain, deriv = UNARY[name]
    x = sample(np.random.default_rng(seed), shape, domain)
    check_op(fn, ref, x, closed_form=_unary_closed(deriv), seed=seed)


@pytest.mark.parametrize("name", list(UNARY))
def test_unary_float32_keeps_dtype(name):
    fn, ref, domain, deriv = UNARY[name]
    x = sample(np.random.default_rng(1), (3, 4), domain, np.float32)
    out = check_op(fn, ref, x, closed_form=_unary_closed(deriv))
    assert out.dtype == fa.float32


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "sin", "tanh", "sigmoid", "log1p", "expm1"])
def test_float_math_on_integers_gives_default_float(name):
    fn, ref = UNARY[name][:2]
    x = np.array([1, 2, 3], np.int32)
    check_op(fn, ref, x, out_dtype=fa.float32)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("name", ["abs", "sign", "negative", "relu", "square"])
def test_integer_unary_keeps_dtype(name, dtype):
    fn, ref = UNARY[name][:2]
    x = np.array([-3, 0, 2, 7], dtype)
    check_op(fn, ref, x, out_dtype=fa.asarray(np.zeros(1, dtype)).dtype)


# name -> (fastad function, numpy reference, domains, (d/da, d/db) elementwise)
BINARY = {
    "+": (operator.add, np.add, ("real", "real"), lambda a, b: (np.ones_like(a), np.ones_like(b))),
    "-": (operator.sub, np.subtract, ("real", "real"), lambda a, b: (np.ones_like(a), -np.ones_like(b))),
    "*": (operator.mul, np.multiply, ("real", "real"), lambda a, b: (b, a)),
    "/": (operator.truediv, np.divide, ("real", "nonzero"), lambda a, b: (1 / b, -a / b ** 2)),
    "**": (operator.pow, np.power, ("pos", "real"), lambda a, b: (b * a ** (b - 1), a ** b * np.log(a))),
    "//": (operator.floordiv, np.floor_divide, ("real", "nonzero"), lambda a, b: (0 * a, 0 * b)),
    "%": (operator.mod, np.mod, ("real", "nonzero"), lambda a, b: (np.ones_like(a), -np.floor(a / b))),
    "add": (fa.add, np.add, ("real", "real"), lambda a, b: (np.ones_like(a), np.ones_like(b))),
    "subtract": (fa.subtract, np.subtract, ("real", "real"), lambda a, b: (np.ones_like(a), -np.ones_like(b))),
    "multiply": (fa.multiply, np.multiply, ("real", "real"), lambda a, b: (b, a)),
    "divide": (fa.divide, np.divide, ("real", "nonzero"), lambda a, b: (1 / b, -a / b ** 2)),
    "pow": (fa.pow, np.power, ("pos", "real"), lambda a, b: (b * a ** (b - 1), a ** b * np.log(a))),
    "maximum": (fa.maximum, np.maximum, ("real", "real"), lambda a, b: ((a > b) * 1.0, (a < b) * 1.0)),
    "minimum": (fa.minimum, np.minimum, ("real", "real"), lambda a, b: ((a < b) * 1.0, (a > b) * 1.0)),
}


def _binary_closed(partials):
    def closed(w, a, b):
        da, db = partials(np.broadcast_to(a, w.shape), np.broadcast_to(b, w.shape))
        return [unbroadcast(w * da, a.shape), unbroadcast(w * db, b.shape)]
    return closed


@pytest.mark.parametrize("name", list(BINARY))
@FAST
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3), seed=SEEDS)
def test_binary_broadcasting_float64(name, shapes, seed):
    fn, ref, (da, db), partials = BINARY[name]
    rng = np.random.default_rng(seed)
    a, b = sample(rng, shapes.input_shapes[0], da), sample(rng, shapes.input_shapes[1], db)
    out = check_op(fn, ref, a, b, closed_form=_binary_closed(partials), seed=seed)
    assert out.shape == shapes.result_shape


@pytest.mark.parametrize("name", list(BINARY))
def test_binary_float32(name):
    fn, ref, (da, db), partials = BINARY[name]
    rng = np.random.default_rng(2)
    a, b = sample(rng, (2, 3), da, np.float32), sample(rng, (3,), db, np.float32)
    out = check_op(fn, ref, a, b, closed_form=_binary_closed(partials))
    assert out.dtype == fa.float32


@settings(max_examples=40, deadline=None)
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=3), seed=SEEDS,
       name=st.sampled_from(["+", "-", "*", "/", "**", "maximum"]))
def test_property_broadcast_binary(shapes, seed, name):
    """Property: for any broadcastable pair, value == numpy and grad == finite differences (float64)."""
    fn, ref, (da, db), _ = BINARY[name]
    rng = np.random.default_rng(seed)
    a, b = sample(rng, shapes.input_shapes[0], da), sample(rng, shapes.input_shapes[1], db)
    check_op(fn, ref, a, b, seed=seed)


# Python scalars (weak) on either side, and the reflected operators
SCALAR_FORMS = [
    ("x + 2.0", lambda x: x + 2.0, lambda x: x + 2.0, "real"),
    ("2.0 + x", lambda x: 2.0 + x, lambda x: 2.0 + x, "real"),
    ("x - 2.5", lambda x: x - 2.5, lambda x: x - 2.5, "real"),
    ("2.5 - x", lambda x: 2.5 - x, lambda x: 2.5 - x, "real"),
    ("x * 3", lambda x: x * 3, lambda x: x * 3, "real"),
    ("3 * x", lambda x: 3 * x, lambda x: 3 * x, "real"),
    ("x / 2", lambda x: x / 2, lambda x: x / 2, "real"),
    ("2 / x", lambda x: 2 / x, lambda x: 2 / x, "nonzero"),
    ("x ** 3", lambda x: x ** 3, lambda x: x ** 3, "real"),
    ("x ** 2", lambda x: x ** 2, lambda x: x ** 2, "real"),
    ("x ** 1", lambda x: x ** 1, lambda x: x ** 1, "real"),
    ("x ** 0.5", lambda x: x ** 0.5, lambda x: x ** 0.5, "pos"),
    ("x ** -1", lambda x: x ** -1, lambda x: x ** -1.0, "nonzero"),
    ("x ** -1.5", lambda x: x ** -1.5, lambda x: x ** -1.5, "pos"),
    ("2.0 ** x", lambda x: 2.0 ** x, lambda x: 2.0 ** x, "real"),
    ("x // 0.7", lambda x: x // 0.7, lambda x: x // 0.7, "real"),
    ("1.3 // x", lambda x: 1.3 // x, lambda x: 1.3 // x, "nonzero"),
    ("x % 0.7", lambda x: x % 0.7, lambda x: x % 0.7, "real"),
    ("maximum(x, 0.5)", lambda x: fa.maximum(x, 0.5), lambda x: np.maximum(x, 0.5), "real"),
    ("minimum(0.5, x)", lambda x: fa.minimum(0.5, x), lambda x: np.minimum(0.5, x), "real"),
    ("x + array", lambda x: x + np.array([1.0, 2.0, 3.0]), lambda x: x + np.array([1.0, 2.0, 3.0]), "real"),
    ("array * x", lambda x: np.array([1.0, 2.0, 3.0]) * x, lambda x: np.array([1.0, 2.0, 3.0]) * x, "real"),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("label,fn,ref,domain", SCALAR_FORMS, ids=[f[0] for f in SCALAR_FORMS])
def test_scalar_and_reflected_forms(label, fn, ref, domain, dtype):
    x = sample(np.random.default_rng(3), (2, 3), domain, dtype)
    expected_dtype = fa.float64 if "array" in label else fa.asarray(np.zeros(1, dtype)).dtype
    out = check_op(fn, ref, x, out_dtype=expected_dtype)
    assert out.dtype == expected_dtype


def test_pow_special_exponents():
    # d/dx x**0 is 0 everywhere, also at x == 0 (not 0 * 0**-1 = nan)
    x = fa.tensor([0.0, 1.5, -2.0], requires_grad=True)
    (x ** 0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 0.0])
    # a ** b with a tensor exponent: d/db is 0 where a == 0 and b >= 0 (PyTorch's convention)
    a = fa.tensor([0.0, 2.0], requires_grad=True)
    b = fa.tensor([2.0, 3.0], requires_grad=True)
    (a ** b).sum().backward()
    np.testing.assert_allclose(b.grad.numpy(), [0.0, 8 * np.log(2.0)], rtol=1e-5)
    np.testing.assert_allclose(a.grad.numpy(), [0.0, 12.0], rtol=1e-5)


def test_pow_constant_exponent_leaf_gets_gradient():
    # a leaf made by fastad.full is a constant node; it still needs its gradient
    b = fa.full((2,), 2.0, requires_grad=True)
    a = fa.tensor([2.0, 3.0])
    (a ** b).sum().backward()
    np.testing.assert_allclose(b.grad.numpy(), [4 * np.log(2), 9 * np.log(3)], rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_integer_arithmetic(dtype):
    a = np.array([[7, -7, 3], [0, 5, -2]], dtype)
    b = np.array([2, -3, 4], dtype)
    int_dtype = fa.asarray(np.zeros(1, dtype)).dtype
    for fn, ref in [(operator.add, np.add), (operator.sub, np.subtract), (operator.mul, np.multiply),
                    (operator.floordiv, np.floor_divide), (operator.mod, np.mod),
                    (fa.maximum, np.maximum), (fa.minimum, np.minimum), (operator.neg, np.negative)]:
        args = (a,) if fn is operator.neg else (a, b)
        check_op(fn, ref, *args, out_dtype=int_dtype)
    # true division of integers gives the default float; integer powers stay integer
    check_op(operator.truediv, np.true_divide, a, b, out_dtype=fa.float32)
    check_op(lambda x: x ** 2, lambda x: x ** 2, a, out_dtype=int_dtype)
    check_op(lambda x: 2 ** x, lambda x: 2 ** x, np.abs(a), out_dtype=int_dtype)
    check_op(lambda x: x * 2, lambda x: x * 2, a, out_dtype=int_dtype)


# ---------------------------------------------------------------------------
# Comparisons and logical ops: bool results, never differentiable
# ---------------------------------------------------------------------------

COMPARISONS = {
    "<": (operator.lt, np.less), "<=": (operator.le, np.less_equal), ">": (operator.gt, np.greater),
    ">=": (operator.ge, np.greater_equal), "==": (operator.eq, np.equal), "!=": (operator.ne, np.not_equal),
    "less": (fa.less, np.less), "less_equal": (fa.less_equal, np.less_equal), "greater": (fa.greater, np.greater),
    "greater_equal": (fa.greater_equal, np.greater_equal), "equal": (fa.equal, np.equal),
    "not_equal": (fa.not_equal, np.not_equal),
}


@pytest.mark.parametrize("name", list(COMPARISONS))
@FAST
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3), seed=SEEDS)
def test_comparisons(name, shapes, seed):
    fn, ref = COMPARISONS[name]
    rng = np.random.default_rng(seed)
    # small integers as floats: plenty of equal pairs
    a = rng.integers(-2, 3, shapes.input_shapes[0]).astype(np.float32)
    b = rng.integers(-2, 3, shapes.input_shapes[1]).astype(np.float32)
    check_op(fn, ref, a, b, grad=False, out_dtype=fa.bool)
    ta, tb = fa.tensor(a, requires_grad=True), fa.tensor(b, requires_grad=True)
    out = fn(ta, tb)
    assert out.dtype == fa.bool and not out.requires_grad and out.grad_fn is None
    with pytest.raises(RuntimeError):
        out.sum().backward()


@pytest.mark.parametrize("name", ["<", ">=", "==", "!="])
def test_comparisons_with_scalars_and_mixed_dtypes(name):
    fn, ref = COMPARISONS[name]
    a = np.array([1.0, 2.0, 3.0], np.float32)
    check_op(lambda x: fn(x, 2), lambda x: ref(x, 2), a, grad=False, out_dtype=fa.bool)
    check_op(lambda x: fn(2.0, x), lambda x: ref(2.0, x), a, grad=False, out_dtype=fa.bool)
    i = np.array([1, 2, 3], np.int32)
    check_op(fn, ref, a, i, grad=False, out_dtype=fa.bool)


LOGICAL = {
    "&": (operator.and_, np.logical_and), "|": (operator.or_, np.logical_or), "^": (operator.xor, np.logical_xor),
    "logical_and": (fa.logical_and, np.logical_and), "logical_or": (fa.logical_or, np.logical_or),
    "logical_xor": (fa.logical_xor, np.logical_xor),
}


@pytest.mark.parametrize("name", list(LOGICAL))
@FAST
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3), seed=SEEDS)
def test_logical_binary(name, shapes, seed):
    fn, ref = LOGICAL[name]
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, shapes.input_shapes[0]).astype(bool)
    b = rng.integers(0, 2, shapes.input_shapes[1]).astype(bool)
    check_op(fn, ref, a, b, grad=False, out_dtype=fa.bool)


def test_logical_not_and_numeric_truthiness():
    a = np.array([True, False, True])
    check_op(operator.invert, np.logical_not, a, grad=False, out_dtype=fa.bool)
    check_op(fa.logical_not, np.logical_not, a, grad=False, out_dtype=fa.bool)
    x = np.array([0.0, -1.5, 2.0], np.float32)
    y = np.array([3, 0, 1], np.int64)
    check_op(fa.logical_not, np.logical_not, x, grad=False, out_dtype=fa.bool)
    check_op(fa.logical_and, np.logical_and, x, y, grad=False, out_dtype=fa.bool)
    check_op(fa.logical_or, np.logical_or, x, y, grad=False, out_dtype=fa.bool)


# ---------------------------------------------------------------------------
# where and clip
# ---------------------------------------------------------------------------

@FAST
@given(shapes=mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=3), seed=SEEDS)
def test_where_broadcasting(shapes, seed):
    rng = np.random.default_rng(seed)
    c = rng.integers(0, 2, shapes.input_shapes[0]).astype(bool)
    a, b = sample(rng, shapes.input_shapes[1]), sample(rng, shapes.input_shapes[2])

    def closed(w, c, a, b):
        cb = np.broadcast_to(c, w.shape)
        return [None, unbroadcast(w * cb, a.shape), unbroadcast(w * ~cb, b.shape)]
    check_op(fa.where, np.where, c, a, b, closed_form=closed, seed=seed)


def test_where_forms():
    x = sample(np.random.default_rng(4), (3, 4), "nonzero")
    check_op(lambda t: fa.where(t > 0, t, 0.0), lambda t: np.where(t > 0, t, 0.0), x)
    check_op(lambda t: fa.where(t > 0, 1.0, t * 2), lambda t: np.where(t > 0, 1.0, t * 2), x)
    # scalar branches take the tensor's dtype; the condition may be numeric
    c = fa.tensor([1, 0, 2])
    out = fa.where(c, 1.0, 0.0)
    assert out.dtype == fa.float32
    np.testing.assert_array_equal(out.numpy(), [1.0, 0.0, 1.0])
    f32, f64 = fa.tensor([1.0, 2.0]), fa.tensor([3.0, 4.0], dtype=fa.float64)
    assert fa.where(fa.tensor([True, False]), f32, f64).dtype == fa.float64


CLIPS = [
    ("clip(x, -0.5, 0.5)", lambda x: fa.clip(x, -0.5, 0.5), lambda x: np.clip(x, -0.5, 0.5)),
    ("clip(x, min=-0.5)", lambda x: fa.clip(x, min=-0.5), lambda x: np.maximum(x, -0.5)),
    ("clip(x, max=0.5)", lambda x: fa.clip(x, max=0.5), lambda x: np.minimum(x, 0.5)),
    ("clip(x, lo, hi) tensors", lambda x, lo, hi: fa.clip(x, lo, hi), lambda x, lo, hi: np.clip(x, lo, hi)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("label,fn,ref", CLIPS, ids=[c[0] for c in CLIPS])
def test_clip(label, fn, ref, dtype):
    rng = np.random.default_rng(5)
    x = sample(rng, (4, 3), "real", dtype)
    if "tensors" in label:
        lo, hi = rng.uniform(-1, -0.2, (3,)).astype(dtype), rng.uniform(0.2, 1, (4, 1)).astype(dtype)
        check_op(fn, ref, x, lo, hi)
    else:
        # gradient passes where lo <= x <= hi, 0 elsewhere
        def closed(w, x):
            lo = -0.5 if "-0.5" in label else -np.inf
            hi = 0.5 if label != "clip(x, min=-0.5)" else np.inf
            return [w * ((x >= lo) & (x <= hi))]
        check_op(fn, ref, x, closed_form=closed)


def test_clip_integers_keep_dtype():
    x = np.arange(-3, 4, dtype=np.int32)
    check_op(lambda t: fa.clip(t, -1, 2), lambda t: np.clip(t, -1, 2), x, out_dtype=fa.int32)


# ---------------------------------------------------------------------------
# Reductions
# ---------------------------------------------------------------------------

REDUCTIONS = {
    "sum": (np.sum, "real"), "mean": (np.mean, "real"), "max": (np.max, "distinct"),
    "min": (np.min, "distinct"), "prod": (np.prod, "nonzero"),
}


def _reduction_closed(name, axes, keepdims):
    def closed(w, x):
        ax = tuple(range(x.ndim)) if axes is None else tuple(a % x.ndim for a in axes)
        wk = w if keepdims else np.expand_dims(w, ax) if ax else w
        wk = np.broadcast_to(wk, x.shape)
        if name == "sum":
            return [wk]
        if name == "mean":
            return [wk / max(1, int(np.prod([x.shape[a] for a in ax])))]
        if name == "prod":
            return [wk * np.prod(x, axis=ax, keepdims=True) / x]
        ext = (np.max if name == "max" else np.min)(x, axis=ax, keepdims=True)
        return [wk * (x == ext)]
    return closed


@st.composite
def shape_and_axis(draw):
    shape = draw(array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4))
    ndim = len(shape)
    form = draw(st.sampled_from(["none", "int", "tuple"])) if ndim else "none"
    if form == "none":
        axis = None
    elif form == "int":
        axis = draw(st.integers(-ndim, ndim - 1))
    else:
        picked = draw(st.lists(st.integers(0, ndim - 1), unique=True, max_size=ndim))
        axis = tuple(a - ndim if draw(st.booleans()) else a for a in picked)  # mix negative axes in
    return shape, axis, draw(st.booleans())


@pytest.mark.parametrize("method", [False, True], ids=["function", "method"])
@pytest.mark.parametrize("name", list(REDUCTIONS))
@PROPERTY
@given(case=shape_and_axis(), seed=SEEDS)
def test_reductions(name, method, case, seed):
    """Property: any axis (None, int, tuple, negative) and keepdims: value == numpy, grad == FD (float64)."""
    shape, axis, keepdims = case
    ref, domain = REDUCTIONS[name]
    x = sample(np.random.default_rng(seed), shape, domain)
    if method:
        fn = lambda t: getattr(t, name)(axis=axis, keepdims=keepdims)  # noqa: E731
    else:
        fn = lambda t: getattr(fa, name)(t, axis=axis, keepdims=keepdims)  # noqa: E731
    axes = None if axis is None else (axis,) if isinstance(axis, int) else axis
    check_op(fn, lambda a: ref(a, axis=axis, keepdims=keepdims), x,
             closed_form=_reduction_closed(name, axes, keepdims), seed=seed)


@pytest.mark.parametrize("name", list(REDUCTIONS))
def test_reductions_float32(name):
    ref, domain = REDUCTIONS[name]
    x = sample(np.random.default_rng(6), (3, 5, 2), domain, np.float32)
    for axis in (None, 1, (0, -1), -2):
        out = check_op(lambda t: getattr(fa, name)(t, axis=axis), lambda a: ref(a, axis=axis), x,
                       closed_form=_reduction_closed(name, None if axis is None else np.atleast_1d(axis),
                                                     False))
        assert out.dtype == fa.float32


@pytest.mark.parametrize("name,fn", [("max", fa.max), ("min", fa.min)])
def test_extremum_ties_split_the_gradient(name, fn):
    v = 3.0 if name == "max" else -3.0
    x = fa.tensor([[1.0, v, v, 0.5], [v, v, v, v]], requires_grad=True)
    fn(x, axis=1).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [[0, 0.5, 0.5, 0], [0.25] * 4])
    y = fa.tensor([2.0, 2.0], requires_grad=True)
    fa.maximum(y[0], y[1]).backward()
    np.testing.assert_allclose(y.grad.numpy(), [0.5, 0.5])


def test_reduction_dtypes():
    i32 = fa.tensor([[1, 2], [3, 4]], dtype=fa.int32)
    b = fa.tensor([True, False, True])
    assert fa.sum(i32).dtype == fa.int64 and fa.sum(i32).item() == 10
    assert fa.prod(i32).dtype == fa.int64 and fa.prod(i32).item() == 24
    assert fa.sum(b).dtype == fa.int64 and fa.sum(b).item() == 2
    assert fa.max(i32).dtype == fa.int32 and fa.max(i32).item() == 4
    assert fa.min(i32, axis=0).dtype == fa.int32
    assert fa.mean(i32).dtype == fa.float32 and fa.mean(i32).item() == 2.5
    assert fa.sum(i32, dtype=fa.float64).dtype == fa.float64
    assert fa.sum(fa.ones(3, dtype=fa.float64)).dtype == fa.float64
    assert fa.sum(fa.zeros(0)).item() == 0.0
    assert np.isnan(fa.mean(fa.zeros(0)).item())
    assert fa.sum(fa.ones(2, 3), axis=()).shape == (2, 3)


# ---------------------------------------------------------------------------
# matmul
# ---------------------------------------------------------------------------

MATMUL_SHAPES = [
    ((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((2, 3), (3, 4)), ((1, 1), (1, 1)),
    ((5, 2, 3), (3, 4)), ((3,), (5, 3, 4)), ((5, 2, 3), (3,)), ((5, 2, 3), (5, 3, 4)),
    ((1, 2, 3), (4, 1, 3, 2)), ((2, 1, 2, 3), (3, 3, 2)),
]


def _matmul_closed(w, a, b):
    if a.ndim < 2 or b.ndim < 2:
        return [None, None]  # 1-D cases: finite differences only
    ga = np.matmul(w, np.swapaxes(b, -1, -2))
    gb = np.matmul(np.swapaxes(a, -1, -2), w)
    return [unbroadcast(ga, a.shape), unbroadcast(gb, b.shape)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("form", ["@", "matmul"])
@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES, ids=[f"{a}@{b}" for a, b in MATMUL_SHAPES])
def test_matmul(sa, sb, form, dtype):
    rng = np.random.default_rng(7)
    a, b = sample(rng, sa, "real", dtype), sample(rng, sb, "real", dtype)
    fn = operator.matmul if form == "@" else fa.matmul
    out = check_op(fn, np.matmul, a, b, closed_form=_matmul_closed,
                   rtol=1e-4 if dtype == np.float32 else None)
    assert out.shape == np.matmul(a, b).shape


def test_matmul_integers_and_mixed():
    a = np.arange(6, dtype=np.int64).reshape(2, 3)
    b = np.arange(12, dtype=np.int32).reshape(3, 4)
    check_op(operator.matmul, np.matmul, a, b, out_dtype=fa.int64)
    out = fa.tensor(a) @ fa.tensor(b.astype(np.float32))
    assert out.dtype == fa.float32
    np.testing.assert_allclose(out.numpy(), a @ b)
    # numpy on the left defers to the tensor
    r = np.ones((2, 2)) @ fa.ones(2, 2)
    assert isinstance(r, fa.Tensor)


@pytest.fixture
def split_products(monkeypatch):
    from fastad.config import settings as fastad_settings
    monkeypatch.setattr(fastad_settings, "matmul_row_blocks", 2)


@pytest.mark.parametrize("transposed,columns", [(False, 128), (True, 128), (True, 512)])
def test_a_large_product_runs_in_row_blocks_with_the_same_bits_on_any_thread_count(split_products, monkeypatch,
                                                                                    transposed, columns):
    """`numpy_refs.matmul` splits a large float product into row blocks (on the CPU backend's
    threads); the split depends on the shapes only, so the pool never changes a bit, and every
    tier (numpy reference, compiled graph, fa.compile) uses the same reference."""
    from fastad import numpy_refs
    rng = np.random.default_rng(3)
    a = rng.standard_normal((300, 256) if transposed else (256, 300)).astype(np.float32)
    a = a.T if transposed else a
    b = rng.standard_normal((300, columns)).astype(np.float32)
    assert numpy_refs.matmul_row_blocks(a, b) == 2
    blocks = np.concatenate([np.matmul(a[:128], b), np.matmul(a[128:], b)])
    from fastad.device import CPU
    from fastad.runtime import backend_for
    backend = backend_for(CPU)   # the CPU backend exists: its pool (if it has one) runs the blocks
    assert (numpy_refs.run_blocks is not None) == (backend._pool is not None)
    on_pool = numpy_refs.matmul(a, b)
    monkeypatch.setattr(numpy_refs, "run_blocks", None)
    in_turn = numpy_refs.matmul(a, b)
    np.testing.assert_array_equal(on_pool, blocks)
    np.testing.assert_array_equal(in_turn, blocks)
    np.testing.assert_allclose(on_pool, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal((fa.asarray(a) @ fa.asarray(b)).numpy(), blocks)


def test_gradients_through_a_split_product(split_products):
    rng = np.random.default_rng(4)
    a = fa.asarray(rng.standard_normal((256, 300)), requires_grad=True)
    b = fa.asarray(rng.standard_normal((300, 128)), requires_grad=True)
    w = rng.standard_normal((256, 128))
    fa.sum((a @ b) * fa.asarray(w)).backward()
    np.testing.assert_allclose(a.grad.numpy(), w @ b.numpy().T, rtol=1e-12)
    np.testing.assert_allclose(b.grad.numpy(), a.numpy().T @ w, rtol=1e-12)


def test_which_products_split(split_products, monkeypatch):
    from fastad import numpy_refs
    from fastad.config import _matmul_row_blocks
    big = np.ones((256, 300), np.float32), np.ones((300, 128), np.float32)
    assert numpy_refs.matmul_row_blocks(*big) == 2
    assert numpy_refs.matmul_row_blocks(np.ones((8, 8), np.float32), np.ones((8, 8), np.float32)) == 1
    assert numpy_refs.matmul_row_blocks(big[0].astype(np.int64), big[1].astype(np.int64)) == 1   # not BLAS
    assert numpy_refs.matmul_row_blocks(np.ones((100, 300, 300)), np.ones((300, 300))) == 1   # batched
    assert numpy_refs.matmul_row_blocks(np.ones((100, 2000)), np.ones((2000, 100))) == 1   # too few rows
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    assert _matmul_row_blocks("auto") == 1          # BLAS splits products over its own threads
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    assert _matmul_row_blocks("auto") == (2 if (__import__("os").cpu_count() or 1) > 1 else 1)
    assert _matmul_row_blocks("3") == 3


# ---------------------------------------------------------------------------
# Movement
# ---------------------------------------------------------------------------

MOVEMENT = [
    ("reshape", [(2, 3, 4)], lambda x: fa.reshape(x, (6, 4)), lambda x: x.reshape(6, 4)),
    ("reshape -1", [(2, 3, 4)], lambda x: fa.reshape(x, (4, -1, 2)), lambda x: x.reshape(4, -1, 2)),
    ("reshape to 0-d", [(1, 1)], lambda x: fa.reshape(x, ()), lambda x: x.reshape(())),
    ("reshape from 0-d", [()], lambda x: x.reshape(1, 1, 1), lambda x: x.reshape(1, 1, 1)),
    ("method reshape args", [(2, 3, 4)], lambda x: x.reshape(3, 8), lambda x: x.reshape(3, 8)),
    ("method reshape tuple", [(2, 3, 4)], lambda x: x.reshape((3, -1)), lambda x: x.reshape((3, -1))),
    ("flatten", [(2, 3, 4)], lambda x: x.flatten(), lambda x: x.reshape(-1)),
    ("permute_dims", [(2, 3, 4)], lambda x: fa.permute_dims(x, (2, 0, 1)), lambda x: x.transpose(2, 0, 1)),
    ("permute_dims negative", [(2, 3, 4)], lambda x: fa.permute_dims(x, (-1, 0, -2)),
     lambda x: x.transpose(2, 0, 1)),
    ("method permute", [(2, 3, 4)], lambda x: x.permute(1, 2, 0), lambda x: x.transpose(1, 2, 0)),
    (".T 2-d", [(2, 3)], lambda x: x.T, lambda x: x.T),
    (".T 1-d", [(3,)], lambda x: x.T, lambda x: x.T),
    (".mT", [(4, 2, 3)], lambda x: x.mT, lambda x: np.swapaxes(x, -1, -2)),
    ("transpose", [(2, 3, 4)], lambda x: x.transpose(0, 2), lambda x: np.swapaxes(x, 0, 2)),
    ("expand_dims 0", [(2, 3)], lambda x: fa.expand_dims(x, axis=0), lambda x: np.expand_dims(x, 0)),
    ("expand_dims -1", [(2, 3)], lambda x: fa.expand_dims(x, axis=-1), lambda x: np.expand_dims(x, -1)),
    ("unsqueeze 1", [(2, 3)], lambda x: x.unsqueeze(1), lambda x: np.expand_dims(x, 1)),
    ("squeeze all", [(1, 3, 1, 2)], lambda x: fa.squeeze(x), lambda x: np.squeeze(x)),
    ("squeeze int", [(1, 3, 1)], lambda x: fa.squeeze(x, axis=-1), lambda x: np.squeeze(x, -1)),
    ("squeeze tuple", [(1, 3, 1)], lambda x: fa.squeeze(x, axis=(0, 2)), lambda x: np.squeeze(x, (0, 2))),
    ("method squeeze", [(3, 1)], lambda x: x.squeeze(1), lambda x: np.squeeze(x, 1)),
    ("broadcast_to", [(3, 1)], lambda x: fa.broadcast_to(x, (2, 3, 4)), lambda x: np.broadcast_to(x, (2, 3, 4))),
    ("broadcast_to same", [(2, 3)], lambda x: fa.broadcast_to(x, (2, 3)), lambda x: x),
    ("broadcast_to 0-d", [()], lambda x: fa.broadcast_to(x, (2, 2)), lambda x: np.broadcast_to(x, (2, 2))),
    ("expand", [(1, 3)], lambda x: x.expand(4, 3), lambda x: np.broadcast_to(x, (4, 3))),
    ("concat axis 0", [(2, 3), (1, 3), (4, 3)], lambda *xs: fa.concat(xs), lambda *xs: np.concatenate(xs)),
    ("concat axis -1", [(2, 3), (2, 1)], lambda *xs: fa.concat(xs, axis=-1),
     lambda *xs: np.concatenate(xs, axis=-1)),
    ("concat axis None", [(2, 3), (4,)], lambda *xs: fa.concat(xs, axis=None),
     lambda *xs: np.concatenate(xs, axis=None)),
    ("concat single", [(2, 3)], lambda *xs: fa.concat(list(xs), axis=1), lambda *xs: np.concatenate(xs, 1)),
    ("stack axis 0", [(2, 3), (2, 3), (2, 3)], lambda *xs: fa.stack(xs), lambda *xs: np.stack(xs)),
    ("stack axis -1", [(2, 3), (2, 3)], lambda *xs: fa.stack(xs, axis=-1), lambda *xs: np.stack(xs, -1)),
    ("stack axis 1", [(2,), (2,)], lambda *xs: fa.stack(xs, axis=1), lambda *xs: np.stack(xs, 1)),
    ("stack 0-d", [(), ()], lambda *xs: fa.stack(xs), lambda *xs: np.stack(xs)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("label,shapes,fn,ref", MOVEMENT, ids=[m[0] for m in MOVEMENT])
def test_movement(label, shapes, fn, ref, dtype):
    rng = np.random.default_rng(8)
    xs = [sample(rng, s, "real", dtype) for s in shapes]
    # movement is linear: the gradient is w moved back, e.g. summed over broadcast axes
    check_op(fn, ref, *xs)


def test_concat_mixed_dtypes_promote():
    out = fa.concat([fa.tensor([1, 2]), fa.tensor([0.5], dtype=fa.float64)])
    assert out.dtype == fa.float64
    np.testing.assert_array_equal(out.numpy(), [1.0, 2.0, 0.5])
    assert fa.stack([fa.tensor([True]), fa.tensor([2], dtype=fa.int32)]).dtype == fa.int32


@st.composite
def basic_index(draw):
    shape = draw(array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5))
    index = []
    for d in shape:
        kind = draw(st.sampled_from(["int", "slice", "full"]))
        if kind == "int":
            index.append(draw(st.integers(-d, d - 1)))
        elif kind == "slice":
            bound = st.none() | st.integers(-d - 2, d + 2)
            step = st.none() | st.sampled_from([-3, -2, -1, 1, 2, 3])
            index.append(slice(draw(bound), draw(bound), draw(step)))
        else:
            index.append(slice(None))
    # drop trailing entries (implicit full slices), or replace a run with an Ellipsis
    form = draw(st.sampled_from(["all", "prefix", "ellipsis"]))
    if form == "prefix":
        index = index[:draw(st.integers(0, len(index)))]
    elif form == "ellipsis":
        i = draw(st.integers(0, len(index)))
        j = draw(st.integers(i, len(index)))
        index = index[:i] + [Ellipsis] + index[j:]
    for _ in range(draw(st.integers(0, 2))):  # new axes anywhere
        index.insert(draw(st.integers(0, len(index))), None)
    index = tuple(index) if len(index) != 1 or draw(st.booleans()) else index[0]
    return shape, index


@PROPERTY
@given(case=basic_index(), seed=SEEDS)
def test_getitem_basic_indexing(case, seed):
    """Property: ints, slices (negative steps, out-of-range bounds), None and Ellipsis match numpy,
    and the gradient scatters back to the indexed positions."""
    shape, index = case
    x = sample(np.random.default_rng(seed), shape)
    check_op(lambda t: t[index], lambda a: a[index], x, seed=seed)


GETITEM_CASES = [
    ((4, 3), 1), ((4, 3), -1), ((4, 3), (slice(None, None, -1),)), ((4, 3), (slice(-1, 0, -2), 1)),
    ((2, 3, 4), (None, Ellipsis, slice(1, 3))), ((2, 3, 4), (Ellipsis, None)), ((2, 3, 4), (0, 0, 0)),
    ((2, 3, 4), (slice(5, 1),)), ((2, 3, 4), (1, Ellipsis, -1)), ((3,), Ellipsis), ((), ()), ((), None),
]


@pytest.mark.parametrize("shape,index", GETITEM_CASES, ids=[repr(i) for _, i in GETITEM_CASES])
def test_getitem_examples(shape, index):
    x = sample(np.random.default_rng(9), shape, "real", np.float32)
    check_op(lambda t: t[index], lambda a: a[index], x)


def test_getitem_fanout_accumulates():
    x = fa.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x[0] * 2 + x[0] + x[::-1][0] + x[1:].sum()).backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 1.0, 2.0])


def test_getitem_with_numpy_and_tensor_integers():
    x = fa.arange(6).reshape(2, 3)
    assert x[np.int64(1), fa.tensor(2)].item() == 5


@pytest.mark.parametrize("label,shapes,fn,ref", [
    ("mul", [(0, 3), (3,)], lambda a, b: a * b, lambda a, b: a * b),
    ("sum axis 0", [(0, 3)], lambda a: fa.sum(a, axis=0), lambda a: np.sum(a, axis=0)),
    ("sum all", [(2, 0)], lambda a: fa.sum(a), np.sum),
    ("matmul inner 0", [(2, 0), (0, 3)], operator.matmul, np.matmul),
    ("reshape", [(0, 3)], lambda a: a.reshape(3, 0), lambda a: a.reshape(3, 0)),
    ("slice empty", [(4,)], lambda a: a[3:1], lambda a: a[3:1]),
    ("concat with empty", [(0, 2), (3, 2)], lambda a, b: fa.concat([a, b]), lambda a, b: np.concatenate([a, b])),
], ids=lambda v: v if isinstance(v, str) else "")
def test_zero_size(label, shapes, fn, ref):
    xs = [sample(np.random.default_rng(10), s) for s in shapes]
    check_op(fn, ref, *xs)


# ---------------------------------------------------------------------------
# Casts and type promotion
# ---------------------------------------------------------------------------

def test_astype_gradient_flows_back_in_the_source_dtype():
    x = np.array([1.5, -2.0, 3.25], np.float32)
    out = check_op(lambda t: fa.astype(t, fa.float64) * 2, lambda a: a * 2, x, out_dtype=fa.float64)
    assert out.dtype == fa.float64
    check_op(lambda t: t.astype(fa.float32), lambda a: a, x.astype(np.float64), out_dtype=fa.float32)
    # casting to an integer cuts the graph
    t = fa.tensor(x, requires_grad=True)
    assert not t.astype(fa.int32).requires_grad


_ORDER = {"bool": 0, "int32": 1, "int64": 2, "float32": 3, "float64": 4}
DTYPES = [fa.bool, fa.int32, fa.int64, fa.float32, fa.float64]


def _expected_promotion(a, b):
    """The array API table for same-kind pairs; bool takes the other type; int with float gives the float."""
    if a is b:
        return a
    return a if _ORDER[a.name] > _ORDER[b.name] else b


@pytest.mark.parametrize("a", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("b", DTYPES, ids=lambda d: d.name)
def test_type_promotion(a, b):
    ta, tb = fa.ones(2, dtype=a), fa.ones(2, dtype=b)
    expected = _expected_promotion(a, b)
    assert fa.result_type(a, b) == expected
    assert (ta == tb).dtype == fa.bool
    if a is fa.bool and b is fa.bool:
        return
    assert fa.maximum(ta, tb).dtype == expected
    assert (ta * tb).dtype == expected
    assert (ta - tb).dtype == expected
    np.testing.assert_array_equal((ta * tb).numpy(), np.ones(2))
    assert (ta / tb).dtype == (expected if expected.is_floating else fa.float32)


SCALAR_PROMOTION = [
    (fa.float32, 2.0, fa.float32), (fa.float32, 2, fa.float32), (fa.float32, True, fa.float32),
    (fa.float64, 2.0, fa.float64), (fa.float64, 2, fa.float64),
    (fa.int32, 2, fa.int32), (fa.int32, 2.0, fa.float32), (fa.int64, True, fa.int64),
    (fa.bool, 2, fa.int64), (fa.bool, 1.5, fa.float32), (fa.bool, True, fa.bool),
]


@pytest.mark.parametrize("dtype,scalar,expected", SCALAR_PROMOTION,
                         ids=[f"{d.name}-{s!r}" for d, s, _ in SCALAR_PROMOTION])
def test_python_scalars_are_weak(dtype, scalar, expected):
    t = fa.ones(3, dtype=dtype)
    if dtype is fa.bool and scalar is True:
        assert (t & scalar).dtype == fa.bool
        return
    for out in (t * scalar, scalar * t, t + scalar, scalar + t, fa.maximum(t, scalar)):
        assert out.dtype == expected, out
    np.testing.assert_allclose((t * scalar).numpy(), np.ones(3) * scalar)


def test_float32_tensor_times_python_float_stays_float32_with_gradient():
    x = fa.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2.0 + 0.5
    assert y.dtype == fa.float32
    y.sum().backward()
    assert x.grad.dtype == fa.float32
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])


def test_mixed_float_gradients_come_back_in_each_leaf_dtype():
    a = fa.tensor([1.0, 2.0], requires_grad=True)
    b = fa.tensor([3.0, 4.0], dtype=fa.float64, requires_grad=True)
    y = a * b
    assert y.dtype == fa.float64
    y.sum().backward()
    assert a.grad.dtype == fa.float32 and b.grad.dtype == fa.float64
    np.testing.assert_array_equal(a.grad.numpy(), [3.0, 4.0])
    np.testing.assert_array_equal(b.grad.numpy(), [1.0, 2.0])
