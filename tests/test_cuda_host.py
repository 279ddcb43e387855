"""The CUDA runtime (`fastad.runtime.cuda`) run without a GPU: numpy stands in for CuPy.

Start at the `gpu` fixture. It loads `fastad/runtime/cuda.py` against `tests/fake_cupy.py`
(two fake devices; arrays remember the device they were allocated on; a kernel gets
pointers only) and runs every generated kernel in the host emulation, so these tests
exercise the real runtime, scheduler and frontend on "cuda:N" devices:
strided producers' arrays, 0-d tensors, device scoping with two GPUs, reversed-slice
gradients, the compile path and its flags, `__dlpack__`'s copy and device arguments,
complex programs in generated kernels, and the probe's preflight.
"""
from __future__ import annotations

import importlib.util
import os
import pathlib
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastad as fa
from fastad import runtime
from fastad.codegen import cuda as cg
from fastad.runtime import cuda_probe

import cuda_emulation
import fake_cupy

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture
def gpu(monkeypatch, tmp_path):
    """The CUDA runtime module, loaded against fake_cupy and installed as the "cuda" backend."""
    if cuda_emulation._gxx() is None:
        pytest.skip("no host C++ compiler for the emulation")
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    spec = importlib.util.spec_from_file_location("fastad.runtime.cuda", ROOT / "fastad" / "runtime" / "cuda.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "fastad.runtime.cuda", mod)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(cg, "compile_with_nvrtc", fake_compile_checked)
    monkeypatch.setattr(cg, "nvrtc_version", lambda: (13, 0))
    monkeypatch.setattr(cg, "nvrtc_supported_archs", lambda: (75, 80, 90))
    monkeypatch.setattr(cuda_probe, "_probe", lambda: (2, True, ""))
    monkeypatch.setenv("FASTAD_CACHE_DIR", str(tmp_path / "cache"))
    fake_cupy.Module.workdir = tmp_path
    fake_cupy.COMPILED.clear()
    fake_cupy.LAUNCHES.clear()
    backend = mod.CudaBackend()
    backend.block, backend.warp = 1, 1          # the emulation runs one thread per block
    monkeypatch.setitem(runtime._backends, "cuda", backend)
    yield mod
    fake_cupy._current[0] = 0


def fake_compile_checked(source, *, options=None, ptx=False):
    return fake_cupy.fake_compile(source, options=options, ptx=ptx)


def on(device, a):
    """A fake CuPy array holding `a` on cuda:`device`."""
    with fake_cupy.Device(device):
        return fake_cupy.asarray(np.asarray(a))


# ---------------------------------------------------------------------------
# 1. strided producers' arrays
# ---------------------------------------------------------------------------

def _views():
    m = on(0, np.arange(20, dtype=np.float32).reshape(4, 5))
    v = on(0, np.arange(6, dtype=np.float32) + 1)
    return {"column": m[:, 0], "k1": m[:, 1:2], "reversed": v[::-1], "step": v[::2],
            "zero-stride": fake_cupy.broadcast_to(v[2:3], (7,)), "transposed": m.T}


@pytest.mark.parametrize("kind", list(_views()))
def test_strided_cupy_arrays_read_their_own_elements(gpu, kind):
    view = _views()[kind]
    expect = np.asarray(view).copy()
    t = fa.asarray(fake_cupy.Producer(view))
    assert str(t.device) == "cuda:0"
    assert t._node.buffer.flags.c_contiguous
    np.testing.assert_array_equal(t.numpy(), expect)
    assert float(fa.sum(t).numpy()) == pytest.approx(float(expect.sum()))
    np.testing.assert_allclose(fa.sin(fa.from_dlpack(fake_cupy.Producer(view)) * 2).numpy(), np.sin(expect * 2), rtol=1e-6)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_strided_view_reads_its_own_elements(gpu, data):
    """Random 2-d views (steps of either sign, transposes, broadcasts) give numpy's values and sums."""
    shape = data.draw(st.tuples(st.integers(1, 6), st.integers(1, 6)))
    base = on(0, np.arange(np.prod(shape), dtype=np.float64).reshape(shape) - 7.5)
    index = tuple(slice(data.draw(st.integers(0, n - 1)), None, data.draw(st.sampled_from([1, 2, -1, -2])))
                  for n in shape)
    view = base[index]
    if data.draw(st.booleans()):
        view = view.T
    if data.draw(st.booleans()):
        view = fake_cupy.broadcast_to(view[:1], (3,) + view.shape[1:])
    expect = np.array(view)
    t = fa.asarray(fake_cupy.Producer(view))
    np.testing.assert_array_equal(t.numpy(), expect)
    np.testing.assert_allclose(fa.sum(t * t, axis=0).numpy(), (expect * expect).sum(axis=0))


def test_contiguous_producers_are_shared_and_copy_false_refuses_strided(gpu):
    a = on(0, np.arange(6, dtype=np.float32))
    P = fake_cupy.Producer
    assert fa.from_dlpack(P(a))._node.buffer is a
    assert fa.from_dlpack(P(a), copy=True)._node.buffer is not a
    with pytest.raises(ValueError, match="strided"):
        fa.from_dlpack(P(a[::2]), copy=False)


def test_run_kernel_copies_a_strided_buffer_it_is_given(gpu):
    k = cuda_emulation_sum_kernel()
    base = on(0, np.arange(10, dtype=np.float32))
    (out,) = runtime._backends["cuda"].run_kernel(k, (5,), [(base[::2], 0, (1,))], [])
    assert float(np.asarray(out)[0]) == 0 + 2 + 4 + 6 + 8


def cuda_emulation_sum_kernel():
    from fastad import dtypes as dt
    from fastad.kernel_ir import Input, Kernel, Output, Stmt
    return Kernel(1, 1, (Input(dt.float32, "1"),), (), (Stmt("load", (), dt.float32, 0),),
                  (Output(0, dt.float32, "sum"),))


# ---------------------------------------------------------------------------
# 2. gradients of reversed slices (embed)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("index", [np.s_[::-1], np.s_[5:1:-2], np.s_[-2::-3], np.s_[::-1, 1:]],
                         ids=["rev", "neg-step", "neg-start", "2d"])
def test_gradient_of_negative_step_slices(gpu, index):
    x0 = np.arange(1, 13, dtype=np.float32)
    if isinstance(index, tuple) and len(index) == 2:
        x0 = x0.reshape(4, 3)
    grads = []
    for dev in ("cpu", "cuda:0"):
        x = fa.tensor(x0, device=dev, requires_grad=True)
        y = x[index]
        fa.sum(y * y).backward()
        grads.append(x.grad.numpy())
    expect = np.zeros_like(x0)
    expect[index] = 2 * x0[index]
    np.testing.assert_array_equal(grads[0], expect)
    np.testing.assert_array_equal(grads[1], expect)


# ---------------------------------------------------------------------------
# 3. compile path and flags
# ---------------------------------------------------------------------------

def test_kernels_compile_with_the_checked_nvrtc_options(gpu):
    x = fa.tensor(np.linspace(-100, -90, 16, dtype=np.float32), device="cuda:0")
    np.testing.assert_allclose(fa.exp(x).numpy(), np.exp(np.linspace(-100, -90, 16, dtype=np.float32)),
                               rtol=1e-6)
    assert fake_cupy.COMPILED, "the runtime compiled nothing through codegen.cuda.compile_with_nvrtc"
    for _, opts in fake_cupy.COMPILED:
        assert opts == cg.nvrtc_options(32, False, "sm_90")
        assert "-ftz=false" in opts and "-ftz=true" not in opts
    assert not hasattr(fake_cupy, "RawModule")


def test_compiled_images_are_cached_on_disk(gpu):
    x = fa.tensor(np.arange(4, dtype=np.float32), device="cuda:0")
    (fa.cos(x) + 1).numpy()
    n = len(fake_cupy.COMPILED)
    assert n >= 1
    runtime._backends["cuda"]._functions.clear()       # a new process: memory cache empty
    (fa.cos(x) + 1).numpy()
    assert len(fake_cupy.COMPILED) == n
    for f in (pathlib.Path(os.environ["FASTAD_CACHE_DIR"])).rglob("*.img"):
        f.write_bytes(b"\xff damaged")                    # the driver would refuse it
    runtime._backends["cuda"]._functions.clear()
    np.testing.assert_allclose((fa.cos(x) + 1).numpy(), np.cos(np.arange(4)) + 1, rtol=1e-6)
    assert len(fake_cupy.COMPILED) == n + 1


# ---------------------------------------------------------------------------
# 4. 0-d tensors keep their shape on the device
# ---------------------------------------------------------------------------

def test_zero_dim_tensors_stay_zero_dim(gpu):
    t = fa.tensor(3.5, device="cuda:0")
    assert t._node.buffer.shape == () and t.numpy().shape == ()
    c = fa.tensor(2.0).to("cuda:1")                   # the CPU -> CUDA copy
    assert c.numpy().shape == () and float(c.numpy()) == 2.0
    assert c._node.buffer.shape == () and c._node.buffer.device_id == 1
    s = fa.sum(fa.tensor(np.ones(5, np.float32), device="cuda:0"))
    assert s.numpy().shape == ()
    back = fa.from_dlpack(fake_cupy.Producer(on(0, np.float32(4.0))))
    assert back.shape == () and back.numpy().shape == ()


# ---------------------------------------------------------------------------
# 5. two GPUs: every allocation and copy on the node's device
# ---------------------------------------------------------------------------

def test_work_for_cuda1_stays_on_cuda1(gpu):
    rng = np.random.default_rng(0)
    a0, w0 = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(3, 2)).astype(np.float32)
    a = fa.tensor(a0, device="cuda:1", requires_grad=True)
    w = fa.tensor(w0, device="cuda:1", requires_grad=True)
    y = (a @ fa.ones((3, 2), device="cuda:1")) * (a @ w)      # a const operand of matmul
    z = fa.concat([y.T, fa.zeros((2, 1), device="cuda:1")], axis=1)   # a view and a const into concat
    loss = fa.sum(z * z)
    loss.backward()
    assert fake_cupy._current[0] == 0
    for t in (y, z, loss, a.grad, w.grad):
        assert t._node.buffer.device_id == 1, t
    ref_y = (a0 @ np.ones((3, 2), np.float32)) * (a0 @ w0)
    np.testing.assert_allclose(y.numpy(), ref_y, rtol=1e-5)
    np.testing.assert_allclose(float(loss.numpy()), float((ref_y ** 2).sum()), rtol=1e-5)


# ---------------------------------------------------------------------------
# 10. __dlpack__ follows the array API (copy, dl_device)
# ---------------------------------------------------------------------------

def test_dlpack_copy_and_device_on_cpu():
    t = fa.tensor(np.arange(4, dtype=np.float32))
    shared = np.from_dlpack(t)
    assert np.shares_memory(shared, t.numpy())
    copied = np.from_dlpack(t, copy=True)
    assert not np.shares_memory(copied, t.numpy())
    np.testing.assert_array_equal(copied, np.arange(4))
    with pytest.raises(BufferError):
        t.__dlpack__(dl_device=(2, 0))
    np.testing.assert_array_equal(np.from_dlpack(fa.zeros(3)), np.zeros(3))


class _OldConsumer:
    """A DLPack consumer older than 1.0: it passes no max_version and takes the capsule as given."""

    def __init__(self, capsule):
        self.capsule = capsule

    def __dlpack__(self, **kw):
        return self.capsule

    def __dlpack_device__(self):
        return (1, 0)


def test_dlpack_copy_false_never_copies_for_an_old_consumer():
    """copy=False must never copy (array API): a read-only buffer is shared with a consumer that
    cannot be told "read-only" (the standard prefers that over raising); copy=None copies for it."""
    t = fa.tensor(np.arange(4, dtype=np.float32))
    host = t.numpy()
    shared = np.from_dlpack(_OldConsumer(t.__dlpack__(copy=False)))
    assert np.shares_memory(shared, host)
    copied = np.from_dlpack(_OldConsumer(t.__dlpack__()))
    assert not np.shares_memory(copied, host)
    del t, host
    np.testing.assert_array_equal(shared, np.arange(4))   # the export keeps the buffer alive
    for const, want in ((fa.zeros(3), np.zeros(3, np.float32)), (fa.asarray(np.zeros(0, bool)), np.zeros(0, bool)),
                        (fa.full((2,), 7, dtype=fa.int8), np.full(2, 7, np.int8))):
        got = np.from_dlpack(_OldConsumer(const.__dlpack__(copy=False)))   # a constant: its value
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(np.from_dlpack(const, copy=False), want)


def test_dlpack_copy_and_device_on_cuda(gpu):
    t = fa.tensor(np.arange(4, dtype=np.float32), device="cuda:1")
    tag, arr = t.__dlpack__(max_version=(1, 0))
    assert tag == "fake-dlpack" and arr is t._node.buffer
    _, copied = t.__dlpack__(copy=True, max_version=(1, 0))
    assert not np.shares_memory(np.asarray(copied), np.asarray(t._node.buffer))
    assert copied.device_id == 1                      # the copy is made on the tensor's device
    host = np.from_dlpack(t, device="cpu")            # dl_device=(1, 0): a host copy
    np.testing.assert_array_equal(host, np.arange(4))
    with pytest.raises(BufferError):
        t.__dlpack__(dl_device=(1, 0), copy=False)
    with pytest.raises(BufferError):
        t.__dlpack__(dl_device=(2, 0))
    tag, arr = fa.zeros(3, device="cuda:1").__dlpack__(copy=False)   # a constant: its value, on its device
    assert tag == "fake-dlpack" and arr.device_id == 1
    np.testing.assert_array_equal(np.asarray(arr), np.zeros(3))


# ---------------------------------------------------------------------------
# 11. complex tensors run in generated kernels on the device
# ---------------------------------------------------------------------------

def test_complex_programs_run_in_cuda_kernels_like_cpu(gpu):
    """The frontend, scheduler and runtime with complex64/complex128 on cuda:1: interleaved {re, im}
    buffers, complex scalars by value (a * 2j), real results (real, imag, abs), complex sums and
    products, casts; the values equal the CPU device's."""
    rng = np.random.default_rng(11)
    z = (rng.normal(size=(6, 8)) + 1j * rng.normal(size=(6, 8))).astype(np.complex64)
    w = (rng.normal(size=(6, 8)) + 1j * rng.normal(size=(6, 8))).astype(np.complex64)

    def program(dev):
        a, b = fa.asarray(z, device=dev), fa.asarray(w, device=dev)
        outs = [fa.exp(a) * fa.conj(b) + a / b, fa.sum(a * b, axis=1), fa.prod(a[:, :3], axis=0),
                fa.real(a) + fa.imag(b), fa.abs(a), fa.sqrt(a) ** 2, a == b, a * 2j - (1.5 - 0.5j),
                fa.astype(a, fa.complex128) * fa.astype(b, fa.complex128), fa.tanh(a), fa.sum(a)]
        return [o.numpy() for o in outs], [o.dtype for o in outs]

    ref, ref_dtypes = program("cpu")
    fake_cupy.LAUNCHES.clear()
    got, dtypes = program("cuda:1")
    assert dtypes == ref_dtypes and fa.complex128 in dtypes and fa.float32 in dtypes
    for i, (g, r) in enumerate(zip(got, ref)):
        rtol = 1e-12 if g.dtype == np.complex128 else 2e-5
        np.testing.assert_allclose(g, r, rtol=rtol, atol=1e-5, err_msg=f"output {i}")
    assert fake_cupy.LAUNCHES, "no kernel ran on the (emulated) device"
    assert any("FA_COMPLEX_CU" in src for src, _ in fake_cupy.COMPILED)


# ---------------------------------------------------------------------------
# 6. the probe's preflight
# ---------------------------------------------------------------------------

def test_preflight_runs_one_kernel(gpu):
    assert cuda_probe.preflight(0) >= 0
    assert fake_cupy.LAUNCHES and fake_cupy.COMPILED


def test_probe_reports_a_failing_preflight(monkeypatch):
    """Devices but no NVRTC (a driver-only machine): not available, with the install hint."""
    fake = type(sys)("cupy")
    fake.cuda = fake_cupy.cuda
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())

    def no_nvrtc(index=0):
        raise OSError("libnvrtc.so.13: cannot open shared object file")
    monkeypatch.setattr(cuda_probe, "preflight", no_nvrtc)
    cuda_probe._probe.cache_clear()
    try:
        assert not cuda_probe.is_available()
        assert cuda_probe.device_count() == 0
        why = cuda_probe.why_unavailable()
        assert "2 CUDA devices found" in why and "libnvrtc" in why and "cupy-cuda13x[ctk]" in why
    finally:
        cuda_probe._probe.cache_clear()
