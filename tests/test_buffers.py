"""Output-buffer reuse: large kernel outputs come from a pool of buffers nobody holds any more,
and a buffer anyone still holds (a tensor, a numpy() result, a view of it, a DLPack export, a
compiled step's output) is never handed out again."""
from __future__ import annotations

import numpy as np
import pytest

import fastad as fa
from fastad.config import settings
from fastad.runtime.buffers import MIN_BYTES, pool

N = MIN_BYTES // 4 + 1000      # float32 outputs just above the pooling threshold


@pytest.fixture
def jit(monkeypatch):
    monkeypatch.setattr(settings, "cpu_mode", "jit")
    monkeypatch.setattr(settings, "background_compile", False, raising=False)


def test_dropped_outputs_are_reused_and_results_stay_right(jit):
    x = fa.asarray(np.linspace(-1, 1, N).astype(np.float32))
    ref = np.linspace(-1, 1, N).astype(np.float32) * 3 + 1
    before = pool.reused
    for _ in range(10):
        y = x * 3 + 1
        np.testing.assert_array_equal(y.numpy(), ref)
        del y
    assert pool.reused - before >= 8


def test_held_buffers_are_never_handed_out_again(jit):
    rng = np.random.default_rng(0)
    x = fa.asarray(rng.standard_normal(N).astype(np.float32))
    held, expect = [], []
    for k in range(12):
        y = x * float(k) + 1.0
        kind = k % 4
        if kind == 0:
            keep = y                                  # the tensor
        elif kind == 1:
            keep = y.numpy()                          # its read-only numpy array
        elif kind == 2:
            keep = y.numpy()[5:-5:3]                  # a view of it
        else:
            keep = np.from_dlpack(y)                  # a DLPack export
        held.append(keep)
        expect.append(np.array(keep if not isinstance(keep, fa.Tensor) else keep.numpy()))
        del y
        for _ in range(3):                            # churn: same-size outputs, dropped at once
            (x - float(k)).numpy()
    for keep, want in zip(held, expect):
        got = keep.numpy() if isinstance(keep, fa.Tensor) else keep
        np.testing.assert_array_equal(got, want)


def test_compiled_step_outputs_held_across_replays(jit):
    x = fa.asarray(np.ones(N, np.float32))
    step = fa.compile(lambda x, a: x * a)
    outs = [step(x, float(k)) for k in range(6)]
    for k, o in enumerate(outs):
        assert o.numpy()[0] == k and o.numpy()[-1] == k


def test_small_outputs_are_not_pooled(jit):
    before = (pool.reused, pool.allocated)
    x = fa.asarray(np.ones(1000, np.float32))
    for _ in range(5):
        (x + 1).numpy()
    assert (pool.reused, pool.allocated) == before


def test_fresh_pool_memory_is_private_writable_and_released(monkeypatch):
    """Large pool buffers are anonymous private mappings of their own (no huge-page advice, whose
    compaction stalls first touches here), or numpy arrays where mmap cannot make one."""
    import gc
    import weakref
    from fastad.runtime import buffers
    a = buffers.fresh_bytes(3 << 20)
    a[:] = 7
    b = buffers.fresh_bytes(3 << 20)
    assert a.dtype == np.uint8 and a.size == 3 << 20 and a.flags.writeable and a.flags.c_contiguous
    assert not np.shares_memory(a, b) and not b.any() and int(a[-1]) == 7
    view = a.view(np.float32).reshape(1024, -1)   # as the pool hands it out
    base = weakref.ref(a.base)
    del a
    assert base() is not None   # the view keeps the mapping alive
    del view
    gc.collect()
    assert base() is None       # and the last holder releases it
    monkeypatch.setattr(buffers, "_MAP_FLAGS", None)
    c = buffers.fresh_bytes(1 << 20)
    assert c.size == 1 << 20 and c.flags.writeable and c.base is None


def test_fresh_pool_memory_is_visible_to_tracemalloc():
    import gc
    import tracemalloc
    from fastad.runtime import buffers
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        raw = buffers.fresh_bytes(8 << 20)
        assert tracemalloc.get_traced_memory()[0] - before >= 8 << 20
        del raw
        gc.collect()
        assert tracemalloc.get_traced_memory()[0] - before < 1 << 20
    finally:
        tracemalloc.stop()
