"""GPU checks of the issue-12 fixes and of complex kernels (marked `cuda`; skipped without a GPU; run by
ci/gpu-check).

The same behaviours are tested without a GPU in tests/test_cuda_host.py (numpy standing in for
CuPy) and tests/test_cuda_reduce.py (host emulation, NVRTC flags); here they run for real:
subnormals survive exp and division, strided CuPy arrays, 0-d tensors, reversed-slice
gradients, leading-axis reductions in every finish mode, DLPack copy semantics; and every complex
op against numpy, special values included, complex sums and products in every strategy, complex
scalars and CuPy complex arrays (tests/test_cuda_complex.py runs the same kernels emulated).
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


# ---------------------------------------------------------------------------
# complex64 / complex128 kernels (tests/test_cuda_complex.py runs the same kernels in the host
# emulation; here CUDA's math library, CuPy's argument packing of complex scalars and the
# {re, im} layout of CuPy's complex arrays are checked on the device)
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def backend(cp):
    from fastad.runtime.cuda import CudaBackend
    return CudaBackend()


@pytest.mark.parametrize("dname", ["complex64", "complex128"])
def test_complex_ops_match_numpy_on_device(cp, backend, dname):
    import test_cuda_complex as cc
    from fastad import dtypes as dt
    from fastad.ops import OPS
    d = dt.to_dtype(dname)
    kernel, names = cc.OP_KERNELS[dname]
    x = cc.complex_values(d.np)
    y = cc.second_operand(x)
    c = np.random.default_rng(2).random(x.size) < 0.5
    outs = backend.run_kernel(kernel, (x.size,), [(cp.asarray(a), 0, (1,)) for a in (x, y, c)], [])
    rtol = 1e-4 if d is dt.complex64 else 1e-10     # CUDA's libm: a few ulp per real function
    for name, got in zip(names, outs):
        op = OPS[name]
        args = (c, x, y) if name == "where" else (x,) if op.arity == 1 else (x, y)
        with np.errstate(all="ignore"):
            ref = np.asarray(op.ref(*args, None))
        cc.assert_matches_numpy(backend.to_numpy(got), ref, f"{name} on {dname} (GPU)", rtol)


@pytest.mark.parametrize("strategy", ["thread", "columns", "warp", "block", "chunks"])
def test_complex_reductions_on_device(cp, backend, strategy):
    import test_cuda_complex as cc
    for key, kernel in cc.REDUCE_KERNELS.items():
        d = kernel.inputs[0].dtype
        shape = {1: (3000,), 2: (40, 90), 3: (3, 50, 40)}[kernel.ndim]
        rng = np.random.default_rng(4)
        x = (np.exp(1j * rng.uniform(0, 2 * np.pi, shape)) * rng.uniform(0.999, 1.001, shape)).astype(d.np)
        pattern = kernel.inputs[0].pattern
        order = [i for i, ch in enumerate(pattern) if ch != "1"] + [i for i, ch in enumerate(pattern) if ch == "1"]
        mem = np.ascontiguousarray(x.transpose(order))
        strides = [0] * len(shape)
        for pos, dim in enumerate(order):
            strides[dim] = mem.strides[pos] // x.itemsize
        store, s, p = (backend.to_numpy(o) for o in backend.run_kernel(
            kernel, shape, [(cp.asarray(mem.reshape(-1)), 0, tuple(strides))], [],
            plan_overrides=cc.STRATEGIES[strategy]))
        axes = tuple(range(kernel.ndim - kernel.reduce_ndim, kernel.ndim))
        rtol = 1e-5 if d.name == "complex64" else 1e-11
        np.testing.assert_allclose(store, (x * x).reshape(-1), rtol=rtol, err_msg=str(key))
        np.testing.assert_allclose(s, x.sum(axis=axes).reshape(-1), rtol=rtol, atol=rtol * 100, err_msg=str(key))
        np.testing.assert_allclose(p, x.prod(axis=axes).reshape(-1), rtol=rtol * 100, err_msg=str(key))


def test_complex_scalars_and_cupy_arrays_on_device(fa, cp):
    """Complex CuPy arrays in (DLPack, interleaved re/im), a complex scalar by value, out again."""
    rng = np.random.default_rng(11)
    z = (rng.normal(size=(6, 8)) + 1j * rng.normal(size=(6, 8))).astype(np.complex128)
    a = fa.asarray(cp.asarray(z))
    assert a.dtype is fa.complex128 and a.device.type == "cuda"
    got = (a * (2.5 - 1.25j) + fa.conj(a)).numpy()
    np.testing.assert_allclose(got, z * (2.5 - 1.25j) + np.conj(z), rtol=1e-14)
    s = fa.sum(fa.astype(a, fa.complex64) * 1j, axis=1)
    np.testing.assert_allclose(s.numpy(), (z.astype(np.complex64) * 1j).sum(axis=1), rtol=1e-5)
    back = cp.from_dlpack(a * 1)
    assert back.dtype == cp.complex128
    np.testing.assert_array_equal(cp.asnumpy(back), z)
