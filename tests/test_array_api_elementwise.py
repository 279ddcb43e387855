"""The array API's elementwise functions added for the 2024.12 standard: values against numpy,
the spec's special cases (NaN, +-inf, signed zeros), dtype rules, and derivative rules checked
against float64 central finite differences. (tests/test_tiers.py runs the same op-table entries
on every CPU tier with special values; this file checks the frontend and the gradients.)"""
from __future__ import annotations

import math

import numpy as np
import pytest

import fastad as fa
from tests.helpers import check_op

rng = np.random.default_rng(0)
U = lambda lo, hi, shape=(3, 4): rng.uniform(lo, hi, shape)  # noqa: E731

UNARY = [  # (name, numpy function, input range for values and gradients)
    ("acos", np.arccos, (-0.9, 0.9)), ("asin", np.arcsin, (-0.9, 0.9)), ("atan", np.arctan, (-3, 3)),
    ("acosh", np.arccosh, (1.2, 4)), ("asinh", np.arcsinh, (-3, 3)), ("atanh", np.arctanh, (-0.9, 0.9)),
    ("sinh", np.sinh, (-3, 3)), ("cosh", np.cosh, (-3, 3)), ("log2", np.log2, (0.2, 5)),
    ("log10", np.log10, (0.2, 5)), ("reciprocal", np.reciprocal, (0.5, 3)),
]


@pytest.mark.parametrize("name,ref,rng_", UNARY, ids=[u[0] for u in UNARY])
def test_unary_value_and_gradient(name, ref, rng_):
    check_op(getattr(fa, name), ref, U(*rng_))


BINARY = [("atan2", np.arctan2), ("hypot", np.hypot), ("logaddexp", np.logaddexp)]


@pytest.mark.parametrize("name,ref", BINARY, ids=[b[0] for b in BINARY])
def test_binary_value_and_gradient(name, ref):
    check_op(getattr(fa, name), ref, U(0.3, 3), U(-3, 3))


def test_copysign_gradient_is_the_sign_product():
    a, b = U(-2, 2), U(-2, 2)
    check_op(fa.copysign, np.copysign, a, b,
             closed_form=lambda w, a, b: (w * np.sign(a) * np.sign(b), np.zeros_like(b)))


def test_step_functions_have_zero_gradient():
    x = fa.asarray(U(-3, 3), requires_grad=True)
    (fa.trunc(x).sum() + fa.nextafter(x, fa.asarray(0.0)).sum() * 0).backward()
    assert np.array_equal(x.grad.numpy(), np.zeros((3, 4), np.float32))


SPECIAL = [  # spec special cases: (name, inputs, expected)
    ("acos", [2.0, np.nan, 1.0], [np.nan, np.nan, 0.0]),
    ("asin", [-0.0, 0.0, -2.0], [-0.0, 0.0, np.nan]),
    ("atanh", [1.0, -1.0, -0.0], [np.inf, -np.inf, -0.0]),
    ("acosh", [0.5, 1.0, np.inf], [np.nan, 0.0, np.inf]),
    ("asinh", [-np.inf, -0.0], [-np.inf, -0.0]),
    ("sinh", [-0.0, -np.inf], [-0.0, -np.inf]),
    ("cosh", [-np.inf, -0.0], [np.inf, 1.0]),
    ("log2", [0.0, -1.0, np.inf], [-np.inf, np.nan, np.inf]),
    ("log10", [-0.0, 1.0], [-np.inf, 0.0]),
    ("trunc", [-0.5, np.inf, -0.0], [-0.0, np.inf, -0.0]),
    ("reciprocal", [0.0, -0.0, np.inf], [np.inf, -np.inf, 0.0]),
]


@pytest.mark.parametrize("name,x,want", SPECIAL, ids=[s[0] for s in SPECIAL])
@pytest.mark.parametrize("dtype", [fa.float32, fa.float64])
def test_unary_special_cases(name, x, want, dtype):
    got = getattr(fa, name)(fa.asarray(x, dtype=dtype)).numpy()
    np.testing.assert_array_equal(got, np.asarray(want, dtype.np))
    zero = np.asarray(want) == 0
    np.testing.assert_array_equal(np.signbit(got[zero]), np.signbit(np.asarray(want)[zero]))  # signed zeros


def test_binary_special_cases():
    f = lambda fn, a, b: getattr(fa, fn)(fa.asarray(a, dtype=fa.float64), fa.asarray(b, dtype=fa.float64)).numpy()  # noqa: E731
    np.testing.assert_array_equal(f("atan2", [0.0, -0.0, 0.0, -0.0], [0.0, 0.0, -0.0, -0.0]),
                                  [0.0, -0.0, math.pi, -math.pi])
    np.testing.assert_array_equal(f("hypot", [np.inf, np.nan], [np.nan, -np.inf]), [np.inf, np.inf])
    np.testing.assert_array_equal(f("logaddexp", [np.inf, -np.inf, np.nan], [np.inf, -np.inf, 1.0]),
                                  [np.inf, -np.inf, np.nan])
    np.testing.assert_array_equal(np.signbit(f("copysign", [1.0, np.nan, 2.0], [-0.0, -1.0, 0.0])),
                                  [True, True, False])
    assert f("nextafter", [0.0], [1.0])[0] == np.nextafter(0.0, 1.0)


def test_signbit_sees_negative_zero_and_nan_sign():
    x = np.array([-0.0, 0.0, -np.nan, np.nan, -np.inf, 1.0], np.float32)
    np.testing.assert_array_equal(fa.signbit(fa.asarray(x)).numpy(), np.signbit(x))
    assert fa.signbit(fa.asarray([-3, 0, 2])).numpy().tolist() == [True, False, False]


INT_DTYPES = [fa.int8, fa.int16, fa.int32, fa.int64, fa.uint8, fa.uint16, fa.uint32, fa.uint64]


@pytest.mark.parametrize("dtype", INT_DTYPES, ids=lambda d: d.name)
def test_bitwise_functions_match_numpy(dtype):
    info = np.iinfo(dtype.np)
    a = np.array([0, 1, 5, info.max, info.min, 77], dtype.np)
    b = np.array([3, 0, 9, 1, 2, 7], dtype.np)
    ta, tb = fa.asarray(a), fa.asarray(b)
    for name, ref in (("bitwise_and", np.bitwise_and), ("bitwise_or", np.bitwise_or),
                      ("bitwise_xor", np.bitwise_xor), ("bitwise_left_shift", np.left_shift),
                      ("bitwise_right_shift", np.right_shift)):
        got = getattr(fa, name)(ta, tb)
        assert got.dtype is dtype
        np.testing.assert_array_equal(got.numpy(), ref(a, b), err_msg=name)
    np.testing.assert_array_equal(fa.bitwise_invert(ta).numpy(), np.invert(a))
    # shift counts at or past the bit width: 0, or -1 for a negative value shifted right (numpy)
    big = np.full(6, 8 * a.itemsize, dtype.np)
    np.testing.assert_array_equal(fa.bitwise_left_shift(ta, fa.asarray(big)).numpy(), np.left_shift(a, big))
    np.testing.assert_array_equal(fa.bitwise_right_shift(ta, fa.asarray(big)).numpy(), np.right_shift(a, big))


def test_bitwise_on_bool_is_logical_and_floats_raise():
    t, f_ = fa.asarray([True, True, False]), fa.asarray([True, False, False])
    assert (t & f_).numpy().tolist() == [True, False, False]
    assert fa.bitwise_xor(t, f_).dtype is fa.bool
    assert (~t).numpy().tolist() == [False, False, True]
    with pytest.raises(TypeError):
        fa.bitwise_and(fa.asarray([1.0]), fa.asarray([2.0]))
    with pytest.raises(TypeError):
        fa.bitwise_left_shift(t, f_)


def test_operators_bitwise_reflected_and_in_place():
    x = fa.asarray(np.array([6, 3], np.int32))
    assert (x & 5).numpy().tolist() == [4, 1] and (5 | x).numpy().tolist() == [7, 7]
    assert (1 << x).numpy().tolist() == [64, 8] and (x >> 1).numpy().tolist() == [3, 1]
    x <<= 2
    x ^= 1
    x %= 7
    assert x.numpy().tolist() == [4, 6] and x.dtype is fa.int32
    m = fa.asarray(np.eye(2))
    m @= fa.asarray([[1.0, 2.0], [3.0, 4.0]])
    assert m.numpy().tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_real_imag_conj():
    z = np.array([1 + 2j, -3 - 0.5j], np.complex64)
    assert fa.real(fa.asarray(z)).dtype is fa.float32
    np.testing.assert_array_equal(fa.real(fa.asarray(z)).numpy(), z.real)
    np.testing.assert_array_equal(fa.imag(fa.asarray(z)).numpy(), z.imag)
    np.testing.assert_array_equal(fa.conj(fa.asarray(z)).numpy(), np.conj(z))
    x = fa.asarray([1.5, -2.0])
    assert fa.real(x).numpy().tolist() == [1.5, -2.0] and fa.imag(x).numpy().tolist() == [0.0, 0.0]
    assert fa.conj(x) is not x


def test_integer_inputs_promote_to_the_default_float():
    assert fa.acos(fa.asarray([0, 1])).dtype is fa.float32
    assert fa.trunc(fa.asarray([3, -2])).dtype is fa.int64
    assert fa.atan2(fa.asarray([1.0], dtype=fa.float64), 1).dtype is fa.float64


def test_complex_parts_compile_and_run_in_numba_kernels(monkeypatch):
    """About compiling: complex arithmetic, conj, real and imag in one compiled CPU kernel."""
    from fastad.config import settings
    monkeypatch.setattr(settings, "cpu_mode", "jit")
    monkeypatch.setattr(settings, "background_compile", False, raising=False)
    monkeypatch.setattr(settings, "small_graph_elements", 0)
    z = (np.exp(1j * np.arange(600.0)) * 3).astype(np.complex128)
    t = fa.asarray(z)
    with fa.profile() as prof:
        got = fa.real(fa.conj(t) * t) + fa.imag(t * 2)
        np.testing.assert_allclose(got.numpy(), (np.conj(z) * z).real + (z * 2).imag, rtol=1e-12)
    assert "numba" in str(prof)


def test_complex_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="complex gradients"):
        fa.asarray([1 + 1j], requires_grad=True)


def test_complex_expm1_special_cases():
    inf, nan = np.inf, np.nan
    z = np.array([complex(inf, 0), complex(-inf, inf), complex(inf, inf), complex(-inf, nan), complex(nan, 0),
                  complex(-0.0, 0.0)])
    got = fa.expm1(fa.asarray(z, dtype=fa.complex128)).numpy()
    want = np.array([complex(inf, 0), complex(-1, 0), complex(inf, nan), complex(-1, 0), complex(nan, 0), 0j])
    np.testing.assert_array_equal(got.real, want.real)
    np.testing.assert_array_equal(got.imag, want.imag)
    assert not np.signbit(got[-1].real)   # expm1(-0 + 0j) is +0 + 0j
    small = np.array([1e-9 + 2e-9j])
    np.testing.assert_allclose(fa.expm1(fa.asarray(small)).numpy(), np.expm1(small), rtol=1e-6)


def test_abs_of_complex_is_the_real_modulus():
    z = np.array([3 + 4j, complex(np.inf, np.nan), complex(-0.0, 0.0)], np.complex64)
    got = fa.abs(fa.asarray(z))
    assert got.dtype is fa.float32
    np.testing.assert_array_equal(got.numpy(), np.array([5.0, np.inf, 0.0], np.float32))


def test_complex_tanh_at_infinite_real_part_keeps_the_signs_of_the_parts():
    z = np.array([complex(np.inf, 2.0), complex(-np.inf, -2.0), complex(np.inf, -0.5)], np.complex64)
    assert np.signbit(fa.tanh(fa.asarray(z[2])).numpy().imag)   # 0-d too
    got = fa.tanh(fa.asarray(z)).numpy()
    np.testing.assert_array_equal(got.real, [1.0, -1.0, 1.0])
    np.testing.assert_array_equal(np.signbit(got.imag), [False, True, True])
    assert np.all(got.imag == 0)
