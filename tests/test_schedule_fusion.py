"""Producer-consumer fusion in the scheduler (fastad.schedule._joins): a root that reads other roots
of a kernel only at the point that kernel computes joins it, so the producer is computed once,
stored, and used for the consumer in the same pass. Reads through a view, a permuted reduction,
or another dependency of the same depth keep separate kernels. Values match numpy on the numpy
tier and compiled, whichever kernels the plan has."""
import numpy as np
import pytest
from hypothesis import given, settings as hsettings, strategies as st

import fastad as fa
from fastad.config import settings
from fastad.schedule import KernelStep, plan

X = np.linspace(-2, 2, 3000).astype(np.float32).reshape(30, 100)


def _kernels(*tensors):
    return [s for s in plan([t._node for t in tensors]).steps if isinstance(s, KernelStep)]


def test_a_consumer_joins_its_producers_kernel():
    x = fa.asarray(X)
    a = fa.exp(x) * 2
    b = fa.sin(a) + a            # reads a where a is computed
    c = fa.sum(b * a, axis=1)    # a row reduction reading both in order
    (k,) = _kernels(a, b, c)
    assert len(k.kernel.outputs) == 3 and [o.reduce for o in k.kernel.outputs] == [None, None, "sum"]
    loads = [s for s in k.kernel.body if s.op == "load"]
    assert len(loads) == 1        # only x: a is computed in the kernel, not read back
    assert sum(s.op == "exp" for s in k.kernel.body) == 1   # once, for all three outputs


@pytest.mark.parametrize("consumer", [
    lambda a: fa.flip(a, axis=1) + 1,            # another point of a
    lambda a: a + fa.sum(a, axis=1, keepdims=True),   # a broadcast reduction of a
    lambda a: fa.sum(a, axis=0),                 # a permuted (column) reduction
    lambda a: fa.matmul(a, fa.ones((100, 3))),   # a library call
])
def test_reads_at_another_point_keep_separate_steps(consumer):
    a = fa.exp(fa.asarray(X)) * 2
    b = consumer(a)
    steps = plan([a._node, b._node]).steps
    assert len(steps) >= 2


def test_a_consumer_with_another_dependency_of_the_same_depth_does_not_join():
    x = fa.asarray(X)
    a = fa.exp(x) * 2
    s = fa.sum(x, axis=1, keepdims=True)     # another root, independent of a
    b = a * s                                 # reads a at its point, s through a broadcast
    kernels = _kernels(a, s, b)
    assert not any(len(k.outputs) == 3 for k in kernels)


def _graph(x, ops):
    """A chain of producer/consumer roots, values bounded; every intermediate is requested."""
    outs, v = [], x
    for op in ops:
        v = {"exp": lambda t: fa.exp(fa.tanh(t)), "mul": lambda t: fa.sin(t) * t * 0.5 + 1, "sin": fa.sin,
             "flip": lambda t: fa.flip(t, axis=1) * 0.5, "sum": lambda t: t - fa.mean(t, axis=1, keepdims=True),
             "tanh": fa.tanh}[op](v)
        outs.append(v)
    return outs


def _reference(x, ops):
    outs, v = [], x.astype(np.float64)
    for op in ops:
        v = {"exp": lambda t: np.exp(np.tanh(t)), "mul": lambda t: np.sin(t) * t * 0.5 + 1, "sin": np.sin,
             "flip": lambda t: np.flip(t, axis=1) * 0.5, "sum": lambda t: t - t.mean(axis=1, keepdims=True),
             "tanh": np.tanh}[op](v)
        outs.append(v)
    return outs


@hsettings(max_examples=15, deadline=None)
@given(st.lists(st.sampled_from(["exp", "mul", "sin", "flip", "sum", "tanh"]), min_size=1, max_size=6),
       st.sampled_from(["reference", "jit"]))
def test_chains_of_requested_roots_match_numpy_on_every_tier(ops, mode):
    old = settings.cpu_mode, settings.small_graph_elements
    settings.cpu_mode, settings.small_graph_elements = mode, 0
    try:
        x = fa.asarray(X)
        outs = _graph(x, ops)
        fa.realize(*outs)
        for got, want in zip(outs, _reference(X, ops)):
            np.testing.assert_allclose(got.numpy(), want, rtol=2e-4, atol=1e-4)
    finally:
        settings.cpu_mode, settings.small_graph_elements = old
