"""GPU checks of the issue-12 fixes (marked `cuda`; skipped without a GPU; run by ci/gpu-check).

The same behaviours are tested without a GPU in tests/test_cuda_host.py (numpy standing in for
CuPy) and tests/test_cuda_reduce.py (host emulation, NVRTC flags); here they run for real:
subnormals survive exp and division, strided CuPy arrays, 0-d tensors, reversed-slice
gradients, leading-axis reductions in every finish mode, DLPack copy semantics.
"""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def cp():
    return pytest.importorskip("cupy")


@pytest.fixture(scope="module")
def fa():
    import fastad
    return fastad


def test_subnormals_are_kept(fa, cp):
    x = np.array([-100.0, -95.0, -88.0, -103.0], np.float32)
    got = fa.exp(fa.tensor(x, device="cuda")).numpy()
    ref = np.exp(x)
    assert (ref[:3] > 0).all() and (got[:3] > 0).all(), got        # subnormal results, not 0
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=0)
    tiny = fa.tensor(np.array([1e-40], np.float32), device="cuda")
    assert np.isfinite((1 / tiny).numpy()).all()
    ls = fa.log(fa.sigmoid(fa.tensor(np.array([-95.0], np.float32), device="cuda"))).numpy()
    assert np.isfinite(ls).all()


@pytest.mark.parametrize("kind", ["column", "k1", "reversed", "step", "zero-stride", "transposed"])
def test_strided_cupy_arrays(fa, cp, kind):
    m = cp.arange(20, dtype=cp.float32).reshape(4, 5)
    v = cp.arange(6, dtype=cp.float32) + 1
    view = {"column": m[:, 0], "k1": m[:, 1:2], "reversed": v[::-1], "step": v[::2],
            "zero-stride": cp.broadcast_to(v[2:3], (7,)), "transposed": m.T}[kind]
    host = cp.asnumpy(view)
    t = fa.asarray(view)
    np.testing.assert_array_equal(t.numpy(), host)
    assert float(fa.sum(t).numpy()) == pytest.approx(float(host.sum()))


def test_zero_dim_shapes(fa, cp):
    assert fa.tensor(2.5, device="cuda").numpy().shape == ()
    assert fa.tensor(2.5).to("cuda").numpy().shape == ()
    assert fa.sum(fa.ones(5, device="cuda")).numpy().shape == ()
    assert cp.from_dlpack(fa.tensor(1.0, device="cuda")).shape == ()


def test_reversed_slice_gradient(fa, cp):
    x0 = np.arange(1, 9, dtype=np.float32)
    x = fa.tensor(x0, device="cuda", requires_grad=True)
    fa.sum(x[::-1] * x[::-1]).backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x0)


@pytest.mark.parametrize("det", [False, True])
def test_leading_axis_sum(fa, cp, det):
    from fastad import config
    old = config.is_deterministic()
    config.set_deterministic(det)
    try:
        x0 = np.random.default_rng(0).normal(size=(100_000, 300)).astype(np.float32)
        x = fa.tensor(x0, device="cuda", requires_grad=True)
        s = fa.sum(x, axis=0)
        np.testing.assert_allclose(s.numpy(), x0.astype(np.float64).sum(axis=0), rtol=1e-5, atol=1e-3)
    finally:
        config.set_deterministic(old)


def test_dlpack_copy_semantics(fa, cp):
    t = fa.tensor(np.arange(4, dtype=np.float32), device="cuda")
    shared = cp.from_dlpack(t)
    copied = cp.from_dlpack(t, copy=True) if "copy" in cp.from_dlpack.__doc__ else None
    assert shared.data.ptr == t._node.buffer.data.ptr
    if copied is not None:
        assert copied.data.ptr != t._node.buffer.data.ptr
    np.testing.assert_array_equal(np.from_dlpack(t, device="cpu"), np.arange(4))


def test_probe_preflight(fa, cp):
    from fastad.runtime import cuda_probe
    assert cuda_probe.is_available()
    assert cuda_probe.preflight(0) < 60
