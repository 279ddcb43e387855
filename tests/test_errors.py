"""Errors are typed and name the op and its operands."""
from __future__ import annotations

import operator

import numpy as np
import pytest

import fastad as fa


@pytest.mark.parametrize("op", [operator.add, operator.sub, operator.mul, operator.truediv, operator.pow,
                                operator.lt, operator.eq, fa.maximum, fa.logical_and])
def test_non_broadcastable_shapes(op):
    a, b = fa.ones(2, 3), fa.ones(4)
    if op is fa.logical_and:
        a, b = a > 0, b > 0
    with pytest.raises(ValueError) as e:
        op(a, b)
    assert "(2, 3)" in str(e.value) and "(4,)" in str(e.value)


def test_non_broadcastable_in_other_ops():
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)|\(2,\).*\(3,\)"):
        fa.where(fa.ones(3) > 0, fa.ones(3), fa.ones(2))
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        fa.broadcast_to(fa.ones(2, 3), (3, 3))
    with pytest.raises(ValueError):
        fa.broadcast_to(fa.ones(2, 3), (3,))
    with pytest.raises(ValueError) as e:
        fa.ones(2, 2, 3) @ fa.ones(3, 3, 2)  # batch dims 2 and 3
    assert "(2,)" in str(e.value) and "(3,)" in str(e.value)


def test_broadcast_shapes_function():
    assert fa.broadcast_shapes((2, 1), (3,)) == (2, 3)
    with pytest.raises(ValueError):
        fa.broadcast_shapes((2,), (3,))


def test_backward_through_a_freed_graph():
    x = fa.tensor(2.0, requires_grad=True)
    y = fa.exp(x) * x
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()
    with fa.GradientTape() as tape:
        tape.watch(x)
        z = x * x
    tape.gradient(z, x)
    with pytest.raises(RuntimeError, match="persistent"):
        tape.gradient(z, x)


@pytest.mark.parametrize("dtype", [fa.int32, fa.int64, fa.bool])
def test_requires_grad_on_non_floats(dtype):
    with pytest.raises(TypeError, match=dtype.name):
        fa.ones(2, dtype=dtype, requires_grad=True)
    t = fa.ones(2, dtype=dtype)
    with pytest.raises(TypeError, match=dtype.name):
        t.requires_grad_()
    with pytest.raises(TypeError):
        t.requires_grad = True
    assert not t.requires_grad
    with pytest.raises(TypeError):
        fa.tensor([1, 2], requires_grad=True)
    with pytest.raises(TypeError):
        fa.arange(3, requires_grad=True)


@pytest.mark.parametrize("call", [
    lambda x: fa.sum(x, axis=2), lambda x: fa.sum(x, axis=-3), lambda x: x.mean(axis=(0, 5)),
    lambda x: fa.max(x, axis=3), lambda x: x.min(axis=-4), lambda x: fa.prod(x, axis=2),
    lambda x: fa.squeeze(x, axis=2), lambda x: fa.expand_dims(x, axis=4), lambda x: fa.expand_dims(x, axis=-4),
    lambda x: fa.concat([x, x], axis=2), lambda x: fa.stack([x, x], axis=3),
    lambda x: fa.permute_dims(x, (0, 5)), lambda x: x.unsqueeze(-5),
], ids=["sum 2", "sum -3", "mean (0,5)", "max 3", "min -4", "prod 2", "squeeze 2", "expand_dims 4",
        "expand_dims -4", "concat 2", "stack 3", "permute (0,5)", "unsqueeze -5"])
def test_bad_axis(call):
    x = fa.ones(2, 3)
    with pytest.raises(fa.AxisError) as e:
        call(x)
    assert isinstance(e.value, IndexError) and isinstance(e.value, ValueError)


def test_other_axis_errors():
    x = fa.ones(2, 3)
    with pytest.raises(ValueError, match="repeated"):
        fa.sum(x, axis=(0, -2))
    with pytest.raises(ValueError):
        fa.squeeze(x, axis=0)  # size 2, not 1
    with pytest.raises(ValueError):
        fa.permute_dims(x, (0, 0))
    with pytest.raises(TypeError):
        fa.sum(x, axis=1.0)
    with pytest.raises(ValueError):
        fa.ones(2, 2, 2).T


@pytest.mark.parametrize("a,b", [((2, 3), (2, 3)), ((3,), (4,)), ((2, 3), (4,)), ((5,), (4, 2)),
                                 ((2, 2, 3), (2, 4, 2))])
def test_matmul_inner_dimension_mismatch(a, b):
    with pytest.raises(ValueError) as e:
        fa.ones(*a) @ fa.ones(*b)
    assert "matmul" in str(e.value) and str(a) in str(e.value) and str(b) in str(e.value)


def test_matmul_needs_at_least_one_dimension():
    with pytest.raises(ValueError):
        fa.tensor(2.0) @ fa.ones(2)


@pytest.mark.parametrize("other", ["a", object(), None, {1: 2}, b"x"], ids=["str", "object", "None", "dict", "bytes"])
@pytest.mark.parametrize("op", [operator.add, operator.sub, operator.mul, operator.truediv, operator.pow,
                                operator.floordiv, operator.matmul, operator.lt])
def test_unsupported_operand_types(op, other):
    x = fa.ones(2)
    with pytest.raises(TypeError) as e:
        op(x, other)
    assert type(other).__name__ in str(e.value)
    with pytest.raises(TypeError):
        op(other, x)


def test_unsupported_operands_in_functions():
    with pytest.raises(TypeError):
        fa.exp("a")
    with pytest.raises(TypeError):
        fa.sum([1.0, 2.0])
    with pytest.raises(TypeError):
        fa.maximum(fa.ones(2), "a")
    with pytest.raises(TypeError):
        fa.tensor("abc")
    with pytest.raises(TypeError):
        fa.tensor([object()])
    with pytest.raises(TypeError):
        fa.zeros(2, dtype="not-a-dtype")


def test_op_domain_errors():
    with pytest.raises(TypeError):
        -fa.tensor([True])
    with pytest.raises(TypeError):
        ~fa.tensor([1.0])
    with pytest.raises(TypeError):
        fa.ones(2) & fa.ones(2)  # bitwise ops take integers and bools, not floats
    with pytest.raises(ValueError):
        fa.arange(1, 3) ** -1  # integers to negative integer powers
    with pytest.raises(ValueError):
        fa.max(fa.zeros(0))  # no identity
    with pytest.raises(TypeError):
        fa.ones(2, dtype=fa.uint64) + fa.ones(2, dtype=fa.int64)  # no integer type holds both


def test_indexing_errors():
    x = fa.ones(2, 3)
    with pytest.raises(IndexError):
        x[2]
    with pytest.raises(IndexError):
        x[0, -4]
    with pytest.raises(IndexError):
        x[0, 0, 0]
    with pytest.raises(IndexError):
        x[..., 0, ...]
    with pytest.raises(IndexError):
        x[fa.tensor([0.5, 1.0])]  # array indices must be integers or bools
    with pytest.raises(TypeError):
        x["a"]
    w = fa.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError):
        w[0] = 1.0  # item assignment to a leaf that requires grad (as every in-place update)


def test_shape_errors():
    x = fa.ones(2, 3)
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        x.reshape(4, 2)
    with pytest.raises(ValueError):
        x.reshape(-1, -1)
    with pytest.raises(ValueError):
        fa.concat([fa.ones(2, 3), fa.ones(2, 2)])
    with pytest.raises(ValueError):
        fa.concat([fa.ones(2, 3), fa.ones(3)])
    with pytest.raises(ValueError):
        fa.stack([fa.ones(2), fa.ones(3)])
    with pytest.raises(ValueError):
        fa.concat([])
    with pytest.raises(ValueError):
        fa.zeros(-1)


def test_conversion_errors():
    with pytest.raises(ValueError):
        float(fa.ones(2))
    with pytest.raises(ValueError):
        fa.ones(2).item()
    with pytest.raises(ValueError):
        bool(fa.ones(2))
    with pytest.raises(TypeError):
        len(fa.tensor(1.0))
    with pytest.raises(TypeError):
        iter(fa.tensor(1.0))
    with pytest.raises(TypeError):
        [1, 2][fa.tensor(1.0)]  # only integer tensors are indices


def test_device_errors():
    with pytest.raises(ValueError):
        fa.zeros(2, device="tpu")
    with pytest.raises(ValueError):
        fa.zeros(2, device="cpu:1")
    with pytest.raises(TypeError):
        fa.zeros(2, device=3)


def test_errors_leave_the_graph_usable():
    x = fa.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError):
        x + fa.ones(3)
    with pytest.raises(RuntimeError):
        (x * 2).backward()
    y = (x * 2).sum()
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])
