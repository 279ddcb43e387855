"""The slice driver (fastad.runtime.trampoline.slice_driver): a launch that repeats runs its slices
through one native call per thread, which claims slices with an atomic counter, without the GIL.
Its results equal the Python-claimed slices' and one thread's bit for bit; a raising kernel still
gets numpy's error; a pool thread that wakes after the caller has run every slice finds nothing."""
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastad as fa
from fastad.config import settings
from fastad.device import CPU
from fastad.runtime import backend_for, trampoline
from fastad.runtime.cpu import TRAMPOLINE_AFTER

N = 300_001   # above the parallel threshold for the chain below: many slices, an uneven last one


@pytest.fixture
def jit(monkeypatch):
    monkeypatch.setattr(settings, "cpu_mode", "jit")
    backend = backend_for(CPU)
    backend._launchers.clear()   # bind the launches of this test afresh
    yield backend
    backend._launchers.clear()


def _chain(x):
    """A costly kernel with an elementwise output and two full reductions (sum, max)."""
    y = fa.sin(x) * fa.exp(-x * x) + fa.tanh(3 * x) * x
    s, m = fa.sum(y), fa.max(y)
    fa.realize(y, s, m)
    return np.array(y.numpy()), float(s), float(m)


def _repeat(fn, x, times=TRAMPOLINE_AFTER + 2):
    for _ in range(times):
        out = fn(x)
    return out


def test_driven_slices_match_python_slices_and_one_thread(jit, monkeypatch):
    backend = jit
    x = fa.asarray(np.random.default_rng(0).uniform(-3, 3, N).astype(np.float32))
    driven = []
    real_drive = backend._drive
    monkeypatch.setattr(backend, "_drive", lambda *a: driven.append(1) or real_drive(*a))
    with_driver = _repeat(_chain, x)
    assert driven, "a repeated multi-slice launch runs through the slice driver"
    backend._launchers.clear()
    monkeypatch.setattr(trampoline, "slice_driver", lambda *a: None)
    driven.clear()
    python_claims = _repeat(_chain, x)
    assert not driven
    backend._launchers.clear()
    monkeypatch.setattr(backend, "_pool", None)
    one_thread = _repeat(_chain, x)
    for a, b, c in zip(with_driver, python_claims, one_thread):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes() == np.asarray(c).tobytes()
    y = np.sin(x.numpy().astype(np.float64)) * np.exp(-x.numpy().astype(np.float64) ** 2) \
        + np.tanh(3 * x.numpy().astype(np.float64)) * x.numpy()
    np.testing.assert_allclose(with_driver[0], y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(with_driver[1], y.sum(), rtol=1e-5)
    assert with_driver[2] == np.float32(y.max()) or abs(with_driver[2] - y.max()) < 1e-6


def test_a_raising_kernel_gets_numpys_error_through_the_driver(jit):
    base = fa.asarray(np.full(N, 3, np.int64))
    ok = fa.asarray(np.full(N, 2, np.int64))
    for _ in range(TRAMPOLINE_AFTER + 2):   # the launch binds through the driver
        np.testing.assert_array_equal((base ** ok).numpy(), 9)
    bad = np.full(N, 2, np.int64)
    bad[N - 5] = -1
    with pytest.raises(ValueError, match="negative"):
        (base ** fa.asarray(bad)).numpy()   # as numpy: integers to negative integer powers


class _LatePool(ThreadPoolExecutor):
    """A pool whose threads start their work only once `release` is set (or after 10 s)."""

    def __init__(self):
        super().__init__(2)
        self.calls, self.ran = 0, 0
        self.release = threading.Event()

    def submit(self, fn, *args):
        self.calls += 1

        def late():
            self.release.wait(10)
            self.ran += 1
            return fn(*args)
        return super().submit(late)


def test_the_caller_does_not_wait_for_a_pool_thread_that_claimed_nothing(jit, monkeypatch):
    backend = jit
    x = fa.asarray(np.random.default_rng(1).uniform(-3, 3, N).astype(np.float32))
    reference = _repeat(_chain, x)
    pool = _LatePool()
    monkeypatch.setattr(backend, "_pool", pool)
    monkeypatch.setattr(backend, "_threads", 2)
    again = _chain(x)
    assert pool.calls > 0 and pool.ran == 0   # a pool thread was asked to help, and not waited for
    for a, b in zip(reference, again):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    pool.release.set()
    pool.shutdown(wait=True)   # the late calls found every slice claimed, and returned
    assert pool.ran == pool.calls
