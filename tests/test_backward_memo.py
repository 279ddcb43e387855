"""The backward memo (`fastad.backward_memo`): a walk over a graph structure seen before rebuilds
the gradient graph from its recipe. It must build exactly the graph the derivative rules build,
and fall back to the rules wherever the key cannot vouch for the recipe."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastad as fa
from fastad import backward_memo
from fastad.graph import explain_lines

UNARY = ["sin", "exp", "tanh", "sqrt_abs", "neg", "square", "relu", "log1p_abs"]
BINARY = ["add", "mul", "sub", "div_safe", "max", "where_gt"]


def _unary(name, a):
    return {"sin": fa.sin, "exp": lambda t: fa.exp(-t * t), "tanh": fa.tanh, "neg": lambda t: -t,
            "sqrt_abs": lambda t: fa.sqrt(fa.abs(t)), "square": lambda t: t ** 2,
            "relu": lambda t: fa.maximum(t, 0.0), "log1p_abs": lambda t: fa.log1p(fa.abs(t))}[name](a)


def _binary(name, a, b):
    return {"add": lambda: a + b, "mul": lambda: a * b, "sub": lambda: a - b,
            "div_safe": lambda: a / (1.5 + b * b), "max": lambda: fa.maximum(a, b),
            "where_gt": lambda: fa.where(a > b, a * 2.0, b)}[name]()


@st.composite
def programs(draw):
    """A random graph over two leaves (one broadcast against the other), with shared values,
    constants, a reduction and sometimes retain_grad on an intermediate."""
    steps = []
    for _ in range(draw(st.integers(1, 8))):
        if draw(st.booleans()):
            steps.append(("u", draw(st.sampled_from(UNARY)), draw(st.integers(0, 50))))
        else:
            steps.append(("b", draw(st.sampled_from(BINARY)), draw(st.integers(0, 50)), draw(st.integers(0, 50))))
    const = draw(st.sampled_from([0.0, -0.0, 1.0, 2.5, -1.0]))
    retain = draw(st.integers(-1, len(steps) - 1))
    return steps, const, retain


def _run(program, seed):
    """Build the program on fresh leaves, backward, and return (gradient graph lines before
    realizing, gradient values, value of the loss, retained intermediate gradient)."""
    steps, const, retain = program
    rng = np.random.default_rng(seed)
    x = fa.asarray(rng.standard_normal((3, 4)).astype(np.float32), requires_grad=True)
    w = fa.asarray(rng.standard_normal(4).astype(np.float32), requires_grad=True)
    vals = [x, w * const, x * w]
    kept = None
    for i, s in enumerate(steps):
        if s[0] == "u":
            v = _unary(s[1], vals[s[2] % len(vals)])
        else:
            v = _binary(s[1], vals[s[2] % len(vals)], vals[s[3] % len(vals)])
        if v.shape != (3, 4):
            v = v + fa.zeros((3, 4))
        if i == retain:
            v.retain_grad()
            kept = v
        vals.append(v)
    loss = fa.sum(vals[-1] * vals[-2]) + fa.sum(vals[-1])
    graphs = []
    loss.backward()
    for t in (x, w):
        graphs.append(None if t.grad is None else tuple(explain_lines([t.grad._node])))
    grads = [None if t.grad is None else t.grad.numpy().copy() for t in (x, w)]
    kept_grad = None if kept is None or kept.grad is None else kept.grad.numpy().copy()
    return graphs, grads, float(loss), kept_grad


def _same(a, b):
    for u, v in zip(a, b):
        if isinstance(u, np.ndarray) or isinstance(v, np.ndarray):
            np.testing.assert_array_equal(u, v)
        else:
            assert u == v


@settings(max_examples=60, deadline=None)
@given(programs(), st.integers(0, 3))
def test_a_replayed_walk_builds_the_graph_the_rules_build(program, seed):
    backward_memo._MEMO.clear()
    backward_memo.enabled = False
    try:
        by_rules = _run(program, seed)
    finally:
        backward_memo.enabled = True
    first = _run(program, seed)          # records
    replayed = _run(program, seed)       # replays
    for got in (first, replayed):
        graphs, grads, loss, kept = got
        assert graphs == by_rules[0]     # the same nodes, in the same structure
        _same(grads, by_rules[1])
        assert loss == by_rules[2] or (np.isnan(loss) and np.isnan(by_rules[2]))
        _same([kept], [by_rules[3]])


def test_the_second_walk_of_a_structure_replays_and_runs_no_rule(monkeypatch):
    backward_memo._MEMO.clear()
    calls = []
    real = backward_memo.replay
    monkeypatch.setattr(backward_memo, "replay", lambda *a: (calls.append(1), real(*a))[1])

    def grad_at(v):
        x = fa.tensor([v, 2.0], requires_grad=True)
        fa.sum(fa.sin(x) * x + 3 * x).backward()
        return x.grad.numpy()
    grad_at(0.5)
    assert calls == []
    for v in (0.25, 1.5):
        np.testing.assert_allclose(grad_at(v), np.cos([v, 2.0]) * [v, 2.0] + np.sin([v, 2.0]) + 3, rtol=1e-6)
    assert len(calls) == 2


@pytest.mark.parametrize("c", [0.0, -0.0, 1.0, 2.0])
def test_constants_that_fold_differently_get_keys_of_their_own(c):
    # x * c folds (c == 1 gives g itself, c == 0 a zero): each value must replay its own graph
    backward_memo._MEMO.clear()
    for cc in (0.0, -0.0, 1.0, 2.0, c):
        x = fa.tensor([1.0, -2.0], requires_grad=True)
        y = fa.sum(1.0 / (x * cc + 1e-30) * 0 + x * cc)
        y.backward()
        np.testing.assert_array_equal(x.grad.numpy(), [cc, cc])
        assert np.array_equal(np.signbit(x.grad.numpy()), np.signbit([cc, cc]))


def test_a_freed_graph_and_an_in_place_change_still_raise_after_a_replay():
    backward_memo._MEMO.clear()
    for _ in range(3):
        x = fa.tensor([1.0, 2.0], requires_grad=True)
        y = fa.sum(x * x)
        y.backward()
        with pytest.raises(RuntimeError, match="backward through the graph a second time"):
            y.backward()
    for _ in range(3):
        x = fa.tensor([1.0, 2.0], requires_grad=True)
        h = x * 2
        y = fa.sum(h * h)
        h += 1
        with pytest.raises(RuntimeError, match="modified by an in-place operation"):
            y.backward()


def test_gradients_accumulate_and_retain_graph_holds_on_replay():
    backward_memo._MEMO.clear()
    for _ in range(3):
        x = fa.tensor([1.0, 2.0], requires_grad=True)
        y = fa.sum(x ** 3)
        y.backward(retain_graph=True)
        y.backward()
        np.testing.assert_allclose(x.grad.numpy(), 2 * 3 * np.array([1.0, 4.0]))


def test_a_weight_gradient_of_x_at_w_transposed_replays_the_same_matmul():
    backward_memo._MEMO.clear()
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(3):
        X = fa.asarray(rng.standard_normal((5, 3)).astype(np.float32))
        W = fa.asarray(rng.standard_normal((4, 3)).astype(np.float32), requires_grad=True)
        fa.sum(fa.tanh(X @ W.T)).backward()
        lines.append(tuple(l.split("=", 1)[1] for l in explain_lines([W.grad._node])))
        ref = (1 - np.tanh(X.numpy() @ W.numpy().T) ** 2).T @ X.numpy()
        np.testing.assert_allclose(W.grad.numpy(), ref, rtol=1e-5, atol=1e-6)
    assert lines[0] == lines[1] == lines[2]


def test_a_lazy_seed_runs_the_rules():
    backward_memo._MEMO.clear()
    for _ in range(2):
        x = fa.tensor([1.0, 2.0], requires_grad=True)
        y = x * 3
        seed = fa.tensor([1.0, 1.0]) * 2      # lazy: a rule could look inside it
        y.backward(gradient=seed)
        np.testing.assert_array_equal(x.grad.numpy(), [6.0, 6.0])
    assert backward_memo._MEMO == {}


def test_a_walk_recorded_with_retain_graph_still_frees_when_replayed_without():
    backward_memo._MEMO.clear()
    x = fa.tensor([1.0, 2.0], requires_grad=True)
    y = fa.sum(fa.sin(x) * x)
    y.backward(retain_graph=True)          # recorded: frees nothing
    y.backward(retain_graph=True)          # replayed
    for _ in range(2):
        x = fa.tensor([1.0, 2.0], requires_grad=True)
        y = fa.sum(fa.sin(x) * x)
        y.backward()                       # replayed: frees the graph
        with pytest.raises(RuntimeError, match="backward through the graph a second time"):
            y.backward()


def test_another_threads_work_during_a_recording_leaves_the_recipe_intact(monkeypatch):
    # while one thread records a walk, another builds and computes graphs of its own: its nodes
    # (some realized by then) must not enter the recording, which would turn the memo off
    import threading
    backward_memo._MEMO.clear()
    real_walk = fa.autodiff._walk
    other_done = threading.Event()

    def other():
        for _ in range(3):
            y = fa.asarray(np.linspace(0, 1, 8)) * 2 + 1
            y.numpy()
        other_done.set()

    def walk_with_interruption(*a, **k):
        t = threading.Thread(target=other)
        t.start()
        t.join()                      # the other thread runs entirely inside this recording
        return real_walk(*a, **k)
    monkeypatch.setattr(fa.autodiff, "_walk", walk_with_interruption)
    x = fa.tensor([0.5, 1.5], requires_grad=True)
    fa.sum(fa.sin(x) * x).backward()
    assert other_done.is_set()
    monkeypatch.setattr(fa.autodiff, "_walk", real_walk)
    (memo,) = backward_memo._MEMO.values()
    assert memo is not backward_memo.RULES
    x = fa.tensor([0.5, 1.5], requires_grad=True)
    fa.sum(fa.sin(x) * x).backward()       # replayed from the recipe
    np.testing.assert_allclose(x.grad.numpy(), np.cos([0.5, 1.5]) * [0.5, 1.5] + np.sin([0.5, 1.5]), rtol=1e-6)
