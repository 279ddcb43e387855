"""Memory stays flat over long training loops: graphs are freed after backward and nothing accumulates.

10,000 steps of forward, backward and an in-place update on small tensors;
tracemalloc traces steps 1000-10000 (tracing makes each step several times
slower, so the first 1000 run untraced as warm-up: caches fill, compiled
kernels settle). Allocations still alive at the end of the traced window are
the growth.
"""
from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest

import fastad as fa


@pytest.mark.slow  # 10,000 steps, 9,000 of them traced (about 10 s)
def test_training_loop_memory_is_flat():
    target = fa.tensor([1.0, -2.0, 0.5])
    w = fa.zeros(3, requires_grad=True)
    steps, warmup = 10_000, 1_000
    try:
        for step in range(1, steps + 1):
            loss = ((w - target) ** 2).sum()
            loss.backward()
            with fa.no_grad():
                w -= 0.1 * w.grad
            w.grad = None
            if step == warmup:
                gc.collect()
                objects_before = len(gc.get_objects())
                tracemalloc.start()
                start = tracemalloc.get_traced_memory()[0]
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    objects_after = len(gc.get_objects())
    assert growth < 1_000_000, f"traced memory grew by {growth} bytes over {steps - warmup} steps"
    assert objects_after - objects_before < 1000, "Python objects accumulate"
    np.testing.assert_allclose(w.numpy(), [1.0, -2.0, 0.5], atol=1e-5)
    assert w.is_leaf and w.grad is None


def test_tape_loop_keeps_no_objects_alive():
    target = fa.tensor([[1.0], [2.0]])
    v = fa.Variable(np.zeros((2, 1), np.float32))
    counts = []
    for step in range(3000):
        with fa.GradientTape() as tape:
            loss = ((v - target) ** 2).mean()
        v.assign_sub(0.5 * tape.gradient(loss, v))
        if step in (500, 2999):
            gc.collect()
            counts.append(len(gc.get_objects()))
    assert counts[1] - counts[0] < 500
    np.testing.assert_allclose(v.numpy(), [[1.0], [2.0]], atol=1e-5)
