"""fastad.compile: capture a step once, replay it; same results as the uncaptured loop, guards that
retrace on a new signature, dynamic float arguments, state read from tensors, eager optimizer steps,
clear errors for what can't be captured, flat memory."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import fastad as fa


def _data(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return [fa.asarray(rng.standard_normal(5).astype(np.float32)) for _ in range(n)]


def _sgd_step(w):
    def step(x, lr):
        loss = fa.sum((x * w - 1.0) ** 2)
        loss.backward()
        with fa.no_grad():
            w.sub_(lr * w.grad)
        w.grad = None
        return loss
    return step


def test_replay_100_steps_matches_the_uncaptured_loop_and_lr_changes_do_not_retrace():
    xs = _data()
    w0 = np.linspace(-1, 1, 5).astype(np.float32)
    results = []
    for compiled in (False, True):
        w = fa.asarray(w0, requires_grad=True)
        step = _sgd_step(w)
        f = fa.compile(step) if compiled else step
        with fa.profile() as p:
            losses = [f(xs[i % 6], 0.05 / (1 + i)).item() for i in range(100)]
        results.append((losses, w.numpy().copy(), p))
    (l0, w_eager, _), (l1, w_comp, p) = results
    np.testing.assert_allclose(l1, l0, rtol=1e-6)
    np.testing.assert_allclose(w_comp, w_eager, rtol=1e-6)
    assert p.traces == 1 and p.replays == 99


def test_new_shapes_or_dtypes_retrace_and_old_ones_replay():
    f = fa.compile(lambda x: fa.sum(fa.sin(x) * x))
    with fa.profile() as p:
        a = f(fa.asarray(np.ones(4, np.float32)))
        f(fa.asarray(np.ones(4, np.float32)))
        b = f(fa.asarray(np.ones(7, np.float32)))
        c = f(fa.asarray(np.ones(4, np.float64)))
        f(fa.asarray(np.ones(7, np.float32)))
    assert (p.traces, p.replays) == (3, 2)
    assert a.item() == pytest.approx(4 * np.sin(1.0), rel=1e-6)
    assert b.item() == pytest.approx(7 * np.sin(1.0), rel=1e-6) and c.dtype == fa.float64


def test_int_arguments_are_static_and_retrace():
    f = fa.compile(lambda x, k: x * k)
    x = fa.asarray([1.0, 2.0])
    with fa.profile() as p:
        assert f(x, 2).tolist() == [2.0, 4.0]
        assert f(x, 3).tolist() == [3.0, 6.0]
        assert f(x, 3).tolist() == [3.0, 6.0]
    assert (p.traces, p.replays) == (2, 1)


def test_state_changed_outside_is_seen_and_outputs_are_new_values():
    w = fa.asarray([1.0, 2.0])
    f = fa.compile(lambda x: (x * w, {"total": fa.sum(x * w)}))
    x = fa.asarray([3.0, 4.0])
    y, d = f(x)
    assert y.tolist() == [3.0, 8.0] and d["total"].item() == 11.0
    w.copy_(fa.asarray([10.0, 0.0]))          # an update made outside the compiled function
    y, d = f(x)
    assert y.tolist() == [30.0, 0.0] and d["total"].item() == 30.0
    assert y.grad_fn is None


def test_nn_and_optimizer_steps_replay_like_eager():
    rng = np.random.default_rng(1)
    xs = [fa.asarray(rng.standard_normal((16, 6)).astype(np.float32)) for _ in range(4)]
    ys = [fa.asarray(rng.integers(0, 3, 16)) for _ in range(4)]
    runs = []
    for compiled in (False, True):
        fa.random.seed(3)
        model = fa.nn.Sequential(fa.nn.Linear(6, 8), fa.nn.ReLU(), fa.nn.Linear(8, 3))
        opt = fa.optim.Adam(model.parameters(), lr=0.02)
        sched = fa.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)

        def step(x, y):
            opt.zero_grad()
            loss = fa.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            sched.step()
            return loss
        f = fa.compile(step) if compiled else step
        with fa.profile() as p:
            losses = [f(xs[i % 4], ys[i % 4]).item() for i in range(12)]
        runs.append((losses, [q.numpy().copy() for q in model.parameters()], p, opt))
    (l0, p0, _, opt0), (l1, p1, prof, opt1) = runs
    np.testing.assert_allclose(l1, l0, rtol=1e-5)
    for a, b in zip(p0, p1):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
    assert prof.traces == 1 and prof.replays == 11
    assert opt1.param_groups[0]["lr"] == opt0.param_groups[0]["lr"]        # the schedule moved on
    assert opt1.state_dict()["state"][0]["step"] == opt0.state_dict()["state"][0]["step"] == 12


def test_a_replay_launches_the_kernels_of_one_eager_step():
    w = fa.asarray(np.ones(300, np.float32), requires_grad=True)
    x = fa.asarray(np.linspace(0, 1, 300).astype(np.float32))
    step = _sgd_step(w)
    step(x, 0.1)
    fa.realize(w)
    with fa.profile() as eager:
        step(x, 0.1)
        fa.realize(w)                # the in-place update, which eager mode leaves pending
    f = fa.compile(_sgd_step(w))
    f(x, 0.1)
    with fa.profile() as replay:
        f(x, 0.1)
    assert replay.replays == 1 and replay.launched == eager.launched == 2


def test_reading_values_inside_a_compiled_function_is_a_clear_error():
    f = fa.compile(lambda x: x * 2 if x.sum() > 0 else x)
    with pytest.raises(fa.CompileError, match="frozen"):
        f(fa.asarray([1.0, 2.0]))
    g = fa.compile(lambda x: float(fa.sum(x)))
    with pytest.raises(fa.CompileError):
        g(fa.asarray([1.0]))
    with pytest.raises(TypeError):
        fa.compile(3)


def test_memory_stays_flat_over_many_replays():
    w = fa.asarray(np.ones(64, np.float32), requires_grad=True)
    x = fa.asarray(np.linspace(0, 1, 64).astype(np.float32))
    f = fa.compile(_sgd_step(w))
    for _ in range(50):
        f(x, 0.01)
    tracemalloc.start()
    for _ in range(300):
        f(x, 0.01)
    base, _ = tracemalloc.get_traced_memory()
    for _ in range(2000):
        f(x, 0.01)
    now, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert now - base < 64 * 1024, f"memory grew by {now - base} bytes over 2000 replays"


def test_a_returned_grad_is_the_tensors_grad_itself_on_every_replay():
    # eager `return x.grad` hands back the very object in x.grad; a replay must too (straight-line
    # replay of compiled kernels, and the general path where a kernel is not compiled yet)
    def grad_of_square(x):
        y = x ** 2
        y.backward()
        return x.grad
    step = fa.compile(grad_of_square)
    with fa.profile() as p:
        for v in (5.0, -1.5, 0.25, 3.0):
            x = fa.tensor(v, requires_grad=True)
            g = step(x)
            assert g is x.grad
            assert float(g) == 2 * v
    assert p.traces == 1 and p.replays == 3
