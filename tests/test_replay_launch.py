"""Replays of compiled kernels through bound launchers and packed-argument trampolines equal eager runs.

`fastad.compile` replays a compiled CPU kernel through `CpuBackend.replay_launcher`, which binds
every static argument once and, for kernels that run in one slice, calls them through a trampoline
(`fastad.runtime.trampoline`). These tests compile real kernels (jit mode) and compare every
replay with the eager result, for each kind of argument the trampolines pack.
"""
import ctypes

import numpy as np
import pytest

import fastad as fa
from fastad.config import settings
from fastad.runtime import trampoline
from fastad.runtime.cpu import data_address
from test_compile import _sgd_step


@pytest.fixture
def jit(monkeypatch):
    monkeypatch.setattr(settings, "cpu_mode", "jit")
    yield


def _launchers(compiled):
    """The bound launch of every kernel step of the compiled function's programs."""
    return [st[8][0] for prog in compiled.programs.values() for st in prog.steps if st[0] == 0]


def _check_replays(fn, *args, calls=3):
    expected = fn(*args)
    compiled = fa.compile(fn)
    for _ in range(calls):
        got = compiled(*args)
        for e, g in zip(expected if isinstance(expected, tuple) else (expected,),
                        got if isinstance(got, tuple) else (got,)):
            np.testing.assert_array_equal(g.numpy(), e.numpy())
            assert g.dtype == e.dtype and g.shape == e.shape
    launchers = _launchers(compiled)
    assert launchers and all(launch is not None for launch in launchers)
    return compiled


def _value_and_grad(loss):
    """A step returning loss(x) and its gradient, leaving x.grad cleared (the compiled form rebinds it)."""
    def vg(x):
        y = loss(x)
        y.backward()
        g = x.grad
        x.grad = None
        return y, g
    return vg


def test_the_data_address_reader_agrees_with_ctypes():
    assert trampoline.usable()
    for a in [np.arange(5.0), np.zeros((3, 4), np.float32)[1:], np.arange(10, dtype=np.int16)[3:7], np.empty(0)]:
        assert data_address(a) == a.ctypes.data


@pytest.mark.parametrize("kind,value", [("int64", -7), ("int32", -3), ("uint8", 1), ("int8", -2),
                                        ("float64", -0.1), ("float32", 3.5), ("uint64", 2**64 - 1)])
def test_scalars_pack_to_their_bit_patterns(kind, value):
    slot = trampoline.pack_scalar(value, kind)
    raw = np.array([slot], np.int64).view(np.uint8)
    width = np.dtype(kind).itemsize
    assert raw[:width].view(kind)[0] == np.array(value).astype(kind)


def test_a_value_and_gradient_with_a_full_reduction(jit):
    x = fa.asarray(np.linspace(-2, 2, 1000, dtype=np.float32), requires_grad=True)
    _check_replays(_value_and_grad(lambda x: fa.sum(fa.sin(x) * fa.exp(-x * x) + fa.tanh(3 * x) * x)), x)


def test_a_zero_dimensional_step(jit):
    def grad_of_square(x):
        y = x ** 2
        y.backward()
        return x.grad
    compiled = fa.compile(grad_of_square)
    for v in (5.0, -1.5, 0.25):
        x = fa.tensor(v, requires_grad=True)
        assert float(compiled(x)) == 2 * v
    assert all(launch is not None for launch in _launchers(compiled))


@pytest.mark.parametrize("dtype", ["float64", "int32", "int64", "uint8", "complex64"])
def test_scalar_arguments_of_every_kind(jit, dtype):
    a = fa.asarray((np.arange(24) % 7).astype(dtype).reshape(4, 6))
    scale = {"complex64": 1.5 - 2j, "uint8": 3}.get(dtype, 3)

    def f(a):
        return a * scale + 2, fa.sum(a, axis=1)
    _check_replays(f, a)


def test_bool_scalars_and_masks(jit):
    a = fa.asarray(np.linspace(-1, 1, 50))

    def f(a):
        return fa.where(a > 0, a, fa.zeros_like(a)) + (a < 0.5) * 1.0
    _check_replays(f, a)


def test_broadcast_and_offset_inputs(jit):
    a = fa.asarray(np.arange(60, dtype=np.float32).reshape(5, 12))
    b = fa.asarray(np.arange(12, dtype=np.float32))

    def f(a, b):
        return a[1:, 2:] * b[2:] - b[:10]
    _check_replays(f, a, b)


def test_sliced_runs_on_the_pool_match(jit, monkeypatch):
    monkeypatch.setattr(settings, "parallel_min_elements", 64)
    x = fa.asarray(np.linspace(-3, 3, 4000), requires_grad=True)
    _check_replays(_value_and_grad(lambda x: fa.sum(fa.tanh(x) * x)), x)


def test_a_raising_kernel_raises_numpys_error_on_replay(jit):
    a = fa.asarray(np.arange(1, 6, dtype=np.int64))
    e = fa.asarray(np.array([1, 2, 3, 4, 5], np.int64))
    f = fa.compile(lambda a, e: a ** e)
    np.testing.assert_array_equal(f(a, e).numpy(), np.arange(1, 6) ** np.arange(1, 6))
    np.testing.assert_array_equal(f(a, e).numpy(), np.arange(1, 6) ** np.arange(1, 6))
    bad = fa.asarray(np.array([1, -2, 3, 4, 5], np.int64))
    with pytest.raises(ValueError, match="negative"):
        f(a, bad)


def test_trampolines_are_shared_between_kernels_of_one_signature():
    kinds = ("ptr", "ptr", "int64", "int64", "int64", "obj", "int64", "obj")
    assert trampoline.caller(kinds) is trampoline.caller(kinds)
    assert ctypes.cast(trampoline.caller(kinds), ctypes.c_void_p).value


def test_small_kernels_launch_through_a_builtin_and_large_ones_through_ctypes(jit, monkeypatch):
    """A builtin call keeps the GIL while the kernel runs, so only short kernels take it; both
    ways run the same trampoline and give the same results."""
    import sys
    loss = _value_and_grad(lambda x: fa.sum(fa.tanh(x) * x + fa.exp(-x)))
    x = fa.asarray(np.linspace(-1, 1, 200).astype(np.float32), requires_grad=True)
    calls = []
    for limit in (trampoline.GIL_HELD_MAX_ELEMENTS, 0):
        monkeypatch.setattr(trampoline, "GIL_HELD_MAX_ELEMENTS", limit)
        (launch,) = _launchers(_check_replays(loss, x))
        calls.append(launch.__globals__["call"])
        packed = launch.packed
        before = sys.getrefcount(packed), sys.getrefcount(0)
        for _ in range(50):
            launch([x._node.buffer])
        assert (sys.getrefcount(packed), sys.getrefcount(0)) == before   # nothing leaks a reference
    builtin, foreign = calls
    assert type(builtin).__name__ == "builtin_function_or_method"
    assert isinstance(foreign, ctypes._CFuncPtr)


def test_a_bound_caller_reads_the_kernel_address_from_its_self():
    kinds = ("ptr", "ptr", "int64", "int64", "int64", "obj", "int64", "obj")
    one, two = trampoline.bound_caller(kinds, 4096), trampoline.bound_caller(kinds, 8192)
    assert one is not two and one.__self__[0] == 4096 and two.__self__[0] == 8192


def test_a_broadcast_constant_read_from_state_is_not_read_as_a_full_buffer(jit):
    w = fa.asarray(np.ones(64, np.float32), requires_grad=True)
    x = fa.asarray(np.arange(64, dtype=np.float32))
    w.grad = x * 2
    f = fa.compile(lambda x: fa.sin(x) * w.grad)
    np.testing.assert_allclose(f(x).numpy(), np.sin(x.numpy()) * (x.numpy() * 2), rtol=1e-6, atol=1e-6)
    w.grad = fa.zeros(64)                      # a constant: no buffer, read back as a broadcast value
    np.testing.assert_array_equal(f(x).numpy(), np.zeros(64, np.float32))
    w.grad = fa.full(64, 3.0)
    np.testing.assert_allclose(f(x).numpy(), np.sin(x.numpy()) * 3, rtol=1e-6, atol=1e-6)


def test_a_program_of_compiled_kernels_replays_as_one_straight_line_function(jit):
    xs = [fa.asarray(np.linspace(-1, 1, 50).astype(np.float32) * (i + 1)) for i in range(6)]
    w_eager = fa.asarray(np.ones(50, np.float32), requires_grad=True)
    w = fa.asarray(np.ones(50, np.float32), requires_grad=True)
    eager, compiled = _sgd_step(w_eager), fa.compile(_sgd_step(w))
    for i, x in enumerate(xs * 2):
        lr = 0.01 / (i + 1)                     # a float argument: a 0-d tensor inside, read per call
        np.testing.assert_array_equal(compiled(x, lr).numpy(), eager(x, lr).numpy())
        np.testing.assert_array_equal(w.numpy(), w_eager.numpy())
    [program] = compiled.programs.values()
    assert program.straight is not None and "MISS" in program.straight.source
    assert w.grad is None


def test_the_straight_line_replay_falls_back_for_lazy_arguments(jit):
    x = fa.asarray(np.linspace(-1, 1, 40))
    f = fa.compile(lambda x: fa.tanh(x) * 2)
    f(x)
    f(x)
    [program] = f.programs.values()
    assert program.straight is not None
    lazy = x * 3                                  # no value yet: the general path realises it first
    assert lazy._node.buffer is None
    np.testing.assert_allclose(f(lazy).numpy(), np.tanh(x.numpy() * 3) * 2, rtol=1e-12)


def test_eager_launches_reuse_bound_arguments_per_layout_with_any_constants(jit, monkeypatch):
    from fastad.runtime.cpu import CpuBackend
    binds = []
    original = CpuBackend._bind_launch
    monkeypatch.setattr(CpuBackend, "_bind_launch",
                        lambda self, *a, **k: binds.append(a[-1]) or original(self, *a, **k))
    x = fa.asarray(np.linspace(-1, 1, 300))
    results = {}
    for scale in (2.125, 3.375, 2.125, 3.375):     # one kernel structure, two constants
        results.setdefault(scale, []).append((fa.tanh(x) * scale + 1).numpy())
    for scale, outs in results.items():
        np.testing.assert_allclose(outs[0], np.tanh(x.numpy()) * scale + 1, rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(outs[0], outs[1])
    assert len(binds) == 1                          # bound once; a new constant only repacks
    sliced = x[10:]                                 # a new layout (an offset): a new binding, right values
    np.testing.assert_allclose((fa.tanh(sliced) * 2.125 + 1).numpy(), np.tanh(x.numpy()[10:]) * 2.125 + 1, atol=1e-15,
                               rtol=1e-13)
    assert len(binds) == 2


@pytest.mark.parametrize("size,sliced", [(300, False), (40_000, True)])
def test_constants_that_change_every_launch_are_never_stale(jit, monkeypatch, size, sliced):
    """A learning rate or a bias correction changes at every step: each launch, on ctypes, on a
    trampoline and through the slice driver, computes with its own constants, and the launch
    stays bound (one binding per path, not one per value)."""
    from fastad.runtime import cpu
    if sliced:
        monkeypatch.setattr(settings, "parallel_min_elements", 4096)
    x = fa.asarray(np.linspace(-1, 1, size).astype(np.float32))
    xs = x.numpy()
    kinds = []
    original = cpu.CpuBackend._bind_launch
    monkeypatch.setattr(cpu.CpuBackend, "_bind_launch",
                        lambda self, *a, **k: kinds.append(k["trampolines"]) or original(self, *a, **k))
    for step in range(2, 3 * cpu.TRAMPOLINE_AFTER):   # (x * 1.0 would fold to x: another kernel)
        scale, shift = 1.0 / step, -0.5 * step
        got = (x * scale + shift).numpy()
        np.testing.assert_array_equal(got, xs * np.float32(scale) + np.float32(shift))
    assert kinds == [False, True]


def test_threads_launching_one_layout_with_their_own_constants(jit):
    """Eager launches of one layout from several threads, each with its own constant, swap the
    layout's binding back and forth; every result still uses its own thread's constant."""
    import threading
    x = fa.asarray(np.linspace(-1, 1, 200).astype(np.float32))
    xs = x.numpy()
    errors = []

    def worker(k):
        for _ in range(200):
            got = (x * float(k) + 0.25).numpy()
            if not np.array_equal(got, xs * np.float32(k) + np.float32(0.25)):
                errors.append(k)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(1, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_an_eager_launch_that_repeats_moves_to_a_trampoline_with_the_same_results(jit, monkeypatch):
    from fastad.runtime.cpu import CpuBackend, TRAMPOLINE_AFTER
    how = []
    original = CpuBackend._bind_launch
    monkeypatch.setattr(CpuBackend, "_bind_launch",
                        lambda self, *a, trampolines: how.append(trampolines) or original(self, *a,
                                                                                       trampolines=trampolines))
    x = fa.asarray(np.linspace(-1, 1, 300).astype(np.float32))
    values = [(fa.cos(x) * 1.5 + fa.sin(x)).numpy() for _ in range(TRAMPOLINE_AFTER + 4)]
    assert how == [False, True]                     # ctypes first, a trampoline once it repeats
    for v in values[1:]:
        np.testing.assert_array_equal(v, values[0])
    np.testing.assert_allclose(values[0], np.cos(x.numpy()) * 1.5 + np.sin(x.numpy()), rtol=1e-6, atol=1e-7)


def test_without_a_trampoline_replays_go_through_ctypes(jit, monkeypatch):
    def broken(kinds):
        raise RuntimeError("this LLVM cannot parse the trampoline")
    monkeypatch.setattr(trampoline, "_CALLERS", {})
    monkeypatch.setattr(trampoline, "_build", broken)
    x = fa.asarray(np.linspace(-1, 1, 100).astype(np.float32), requires_grad=True)
    _check_replays(_value_and_grad(lambda x: fa.sum(fa.tanh(x) * x)), x)
    assert trampoline.caller(("ptr", "ptr", "int64", "int64")) is None


def test_one_launch_called_from_several_threads_at_once(jit):
    """A trampoline launch packs its arguments into an array of its own for each call in flight
    (the spare arrays are shared by the calls that follow), so concurrent replays never see
    each other's buffers."""
    import threading
    compiled = _check_replays(_value_and_grad(lambda x: fa.sum(fa.tanh(x) * x)),
                              fa.asarray(np.linspace(-1, 1, 64, dtype=np.float32), requires_grad=True))
    (launch,) = _launchers(compiled)
    inputs = [np.linspace(-k, k, 64, dtype=np.float32) for k in range(1, 9)]
    want = [(np.sum(np.tanh(x) * x, dtype=np.float64), np.tanh(x) + x * (1 - np.tanh(x) ** 2)) for x in inputs]
    errors = []

    def worker(k):
        for _ in range(300):
            value, grad = launch([inputs[k]])
            if not (abs(float(value) - want[k][0]) < 1e-4 and np.allclose(grad, want[k][1], atol=1e-5)):
                errors.append(k)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_a_value_no_replay_reads_goes_to_scratch_and_the_rest_stays_right(jit):
    # y is realized by y.backward() while tracing, but nothing reads it afterwards: its launch
    # writes it into a scratch array made once instead of allocating it every call
    def grad_of(x):
        y = fa.sum(fa.sin(x) * x)
        y.backward()
        return x.grad
    step = fa.compile(grad_of)
    for k in range(6):
        x = fa.asarray(np.linspace(-1, 1, 50).astype(np.float32) * (k + 1), requires_grad=True)
        g = step(x)
        v = x.numpy()
        np.testing.assert_allclose(g.numpy(), np.cos(v) * v + np.sin(v), rtol=1e-5, atol=1e-6)
    (prog,) = step.programs.values()
    assert prog.straight is not None
    from fastad.replay import unread_outputs
    steps, rebinds, outputs, _ = prog.resolved
    (unread,) = unread_outputs(steps, rebinds, outputs)
    assert len(unread) == 1                          # the loss value
    got = prog.straight.__globals__["L0"]([x._node.buffer])
    assert [r is None for r in got] == [j in unread for j in range(len(got))]
