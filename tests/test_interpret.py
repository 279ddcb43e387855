"""The numpy tier (fastad.runtime.interpret): large problems run in blocks and agree with the reference."""
import numpy as np
import pytest

import fastad as fa
from fastad.config import settings
from fastad.runtime import interpret as interp


@pytest.fixture
def numpy_tier(monkeypatch):
    """Kernels run on the numpy tier: a fresh CPU backend (nothing compiled) that never compiles."""
    from fastad import runtime
    from fastad.runtime.cpu import CpuBackend
    monkeypatch.setitem(runtime._backends, "cpu", CpuBackend())
    monkeypatch.setattr(settings, "cpu_mode", "auto")
    monkeypatch.setattr(settings, "jit_min_elements", 10**12)
    monkeypatch.setattr(settings, "jit_after_calls", 10**9)


def both(fn):
    """fn() on the numpy tier (blocked) and through the node-by-node reference executor."""
    got = fn()
    old = settings.cpu_mode
    settings.cpu_mode = "reference"
    try:
        want = fn()
    finally:
        settings.cpu_mode = old
    return got, want


def test_blocked_chain_value_and_gradient(numpy_tier):
    xn = np.random.default_rng(0).uniform(-3, 3, 3 * interp.BLOCK + 17).astype(np.float32)

    def run():
        x = fa.asarray(xn, requires_grad=True)
        y = fa.sum(fa.sin(x) * fa.exp(-x * x) + fa.tanh(3 * x) * x + 1 / (1 + fa.exp(-x)))
        with fa.profile() as p:
            y.backward()
            out = float(y), x.grad.numpy()
        return out, [l.tier for l in p.kernels]

    ((v, g), tiers), ((vr, gr), _) = both(run)
    assert tiers == ["numpy"]
    assert v == pytest.approx(vr, rel=1e-6)
    np.testing.assert_allclose(g, gr, rtol=1e-6, atol=1e-6)


def test_blocked_row_reductions_and_broadcasts(numpy_tier):
    rng = np.random.default_rng(1)
    an, bn = rng.standard_normal((700, 400)), rng.standard_normal(400)
    an[650, 3] = np.nan   # a nan in a late block must reach the max of its column and the full max

    def run():
        a, b = fa.asarray(an), fa.asarray(bn)
        e = fa.exp(a * 0.5) * b
        outs = [fa.sum(e, axis=1), fa.max(a, axis=0), fa.min(e), fa.sum(e), e + 1]
        fa.realize(*outs)
        return [o.numpy() for o in outs]

    got, want = both(run)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
    assert np.isnan(got[1][3]) and np.isnan(got[2])


def test_blocked_integer_sum_wraps_like_numpy(numpy_tier):
    xn = np.random.default_rng(2).integers(-2**30, 2**30, 4 * interp.BLOCK, dtype=np.int64).astype(np.int32)
    got, want = both(lambda: (fa.sum(fa.asarray(xn) * 3)).numpy())
    np.testing.assert_array_equal(got, want)


def test_blocks_on_threads_give_identical_bits(numpy_tier, monkeypatch):
    from fastad.device import CPU
    from fastad.runtime import backend_for
    xn = np.random.default_rng(3).standard_normal(5 * interp.BLOCK + 3).astype(np.float32)

    def run():
        x = fa.asarray(xn, requires_grad=True)
        y = fa.sum(fa.tanh(x) * x)
        y.backward()
        return float(y), x.grad.numpy().copy()

    v_pool, g_pool = run()
    monkeypatch.setattr(backend_for(CPU), "_pool", None)
    v_one, g_one = run()
    assert v_pool == v_one
    np.testing.assert_array_equal(g_pool, g_one)
