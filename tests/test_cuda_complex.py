"""complex64 / complex128 in the CUDA renderer, without a GPU.

Start at `op_kernel` (one kernel applying every op the renderer allows on complex,
`cuda_types.COMPLEX_OPS`) and the `built` fixture, which compiles every complex kernel
here in one nvcc translation unit, a few with NVRTC and the runtime's flags, and, side by
side, as host C++ for the emulation
(tests/cuda_emulation.py), so the generated code runs on the CPU through the same launch
protocol as on a GPU and is compared with the op table's numpy references, special values
(inf / nan parts, signed zeros) included. `complex_values` and `assert_matches_numpy` are
shared with the GPU checks in tests/test_cuda_gpu.py.
"""
from __future__ import annotations

import concurrent.futures
import warnings

import numpy as np
import pytest

from fastad import dtypes as dt
from fastad.codegen import cuda as cg
from fastad.codegen.cuda_types import COMPLEX_OPS
from fastad.kernel_ir import Input, Kernel, Output, Stmt
from fastad.ops import OPS

from cuda_emulation import Emulator, build

CDTYPES = [dt.complex64, dt.complex128]
REAL_OF = {"complex64": dt.float32, "complex128": dt.float64}
C_OPS = sorted(COMPLEX_OPS - {"cast"})
ALL_DTYPES = [dt.bool, dt.int8, dt.int16, dt.int32, dt.int64, dt.uint8, dt.uint16, dt.uint32, dt.uint64,
              dt.float32, dt.float64, dt.complex64, dt.complex128]
# parts combined into every special value: zeros of both signs, near-branch-point and far-out
# values, overflow thresholds, infinities and nan
PARTS = [0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.0, 100.0, -100.0, 800.0, -800.0, 1e-3, 1e20, -1e20,
         np.inf, -np.inf, np.nan, 1 - 1e-7, 1 + 1e-7, 1e-10, -1e-30, 0.999, 1e5]


def complex_values(np_dtype, n_random=200, seed=0):
    """Every pair of PARTS as (re, im), then random values around the unit circle's scale."""
    rng = np.random.default_rng(seed)
    grid = [complex(a, b) for a in PARTS for b in PARTS]
    rand = rng.normal(0, 2, n_random) + 1j * rng.normal(0, 2, n_random)
    return np.array(grid + list(rand), np_dtype)


def second_operand(x, seed=1):
    """The other operand of binary ops: x shuffled, with small integral and plain values up front
    (pow's repeated-squaring path) and no huge exponents (pow of those is cos/sin of ~1e20)."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(x)
    y[np.abs(y) > 1e4] = 1.5 - 0.5j
    y[:40] = np.array([2, -2, 3, 0.5, -1, 1, 0, 7, 1j, 2 + 0j] * 4, x.dtype)
    return y


def assert_matches_numpy(got, ref, what, rtol):
    """Part by part: nan where numpy has nan, the same infinity, the same sign of an exact zero,
    finite parts within rtol of the complex magnitude (relative: parts may cancel)."""
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.dtype == ref.dtype, (what, got.dtype, ref.dtype)
    if ref.dtype.kind == "b":
        np.testing.assert_array_equal(got, ref, err_msg=what)
        return
    scale = np.abs(ref).astype(np.float64)
    parts = [(got.real, ref.real), (got.imag, ref.imag)] if ref.dtype.kind == "c" else [(got, ref)]
    for g, r in parts:
        g, r = g.astype(np.float64), r.astype(np.float64)
        nan, inf = np.isnan(r), np.isinf(r)
        bad = (nan & ~np.isnan(g)) | (inf & (g != r))
        fin = ~nan & ~inf
        with np.errstate(invalid="ignore"):
            bad |= fin & ~(np.abs(g - r) <= rtol * np.where(np.isfinite(scale), scale, np.abs(r)))
        bad |= (r == 0) & (g == 0) & (np.signbit(g) != np.signbit(r))
        if bad.any():
            i = np.flatnonzero(bad)[:8]
            raise AssertionError(f"{what}: {bad.sum()} values differ, e.g. got {got.reshape(-1)[i]} "
                                 f"numpy {ref.reshape(-1)[i]}")


# ---------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------

def op_kernel(d) -> tuple[Kernel, list[str]]:
    """Every complex op on inputs x, y (complex) and c (bool, where's condition)."""
    inputs = (Input(d, "1"), Input(d, "1"), Input(dt.bool, "1"))
    body = [Stmt("load", (), d, 0), Stmt("load", (), d, 1), Stmt("load", (), dt.bool, 2)]
    outs, names = [], []
    for name in C_OPS:
        op = OPS[name]
        srcs = (2, 0, 1) if name == "where" else (0,) if op.arity == 1 else (0, 1)
        od = dt.bool if op.out == "bool" else REAL_OF[d.name] if op.out == "real" else d
        body.append(Stmt(name, srcs, od))
        outs.append(Output(len(body) - 1, od))
        names.append(name)
    return Kernel(1, 0, inputs, (), tuple(body), tuple(outs)), names


def cast_kernel(src) -> Kernel:
    """src -> every dtype (a complex source) or src -> both complex dtypes (a real source)."""
    targets = ALL_DTYPES if src.kind == "c" else CDTYPES
    body = [Stmt("load", (), src, 0)] + [Stmt("cast", (0,), d, d) for d in targets]
    return Kernel(1, 0, (Input(src, "1"),), (), tuple(body),
                  tuple(Output(i + 1, d) for i, d in enumerate(targets)))


def reduce_kernel(d, pattern: str, reduce_ndim: int) -> Kernel:
    """sum and prod of x, and a store of x * x in the same pass."""
    body = (Stmt("load", (), d, 0), Stmt("mul", (0, 0), d))
    return Kernel(len(pattern), reduce_ndim, (Input(d, pattern),), (), body,
                  (Output(1, d), Output(0, d, "sum"), Output(0, d, "prod")))


def scalar_kernel() -> Kernel:
    """out = x * s0 + cast(s1): a complex64 and a complex128 scalar by value, mixed precisions."""
    c64, c128 = dt.complex64, dt.complex128
    body = (Stmt("load", (), c128, 0), Stmt("scalar", (), c128, 0), Stmt("scalar", (), c64, 1),
            Stmt("cast", (2,), c128, c128), Stmt("mul", (0, 1), c128), Stmt("add", (4, 3), c128))
    return Kernel(1, 0, (Input(c128, "1"),), (c128, c64), body, (Output(5, c128), Output(5, c64)))


OP_KERNELS = {d.name: op_kernel(d) for d in CDTYPES}
CAST_KERNELS = {d.name: cast_kernel(d) for d in ALL_DTYPES}
REDUCE_KERNELS = {(d.name, p, rd): reduce_kernel(d, p, rd) for d in CDTYPES
                  for p, rd in (("1", 1), ("n1", 1), ("1n", 2), ("n1n", 2))}
CASES = ([k for k, _ in OP_KERNELS.values()] + list(CAST_KERNELS.values()) + list(REDUCE_KERNELS.values())
         + [scalar_kernel()])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cuda-complex")
    sources = [cg.render(k).source for k in CASES]

    def nvcc():
        if cg.nvcc_path() is None:
            return "skip"
        try:
            cg.compile_with_nvcc(sources, options=("-Xcicc", "-O0"))
        except RuntimeError as e:
            return str(e)
        return None

    def nvrtc():   # the runtime's compiler, with its flags: one kernel of each kind, both index widths
        try:
            cg.compile_with_nvrtc('extern "C" __global__ void fa_probe(float* x) { x[0] = 1.0f; }')
        except Exception:
            return "skip"
        try:
            for k, bits in ((OP_KERNELS["complex64"][0], 32), (REDUCE_KERNELS[("complex128", "n1n", 2)], 32),
                            (scalar_kernel(), 64)):
                cg.compile_with_nvrtc(cg.render(k).source, options=cg.nvrtc_options(bits))
        except RuntimeError as e:
            return str(e)
        return None

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        jobs = {"nvcc": pool.submit(nvcc), "nvrtc": pool.submit(nvrtc),
                "emu": pool.submit(build, sources, tmp, "complex", 32)}
        return {name: job.result() for name, job in jobs.items()}


@pytest.fixture(scope="module")
def emu(built):
    lib, err = built["emu"]
    if lib is None and err == "no C++ compiler":
        pytest.skip("no host C++ compiler for the emulation")
    assert lib is not None, f"g++ failed on the complex kernels:\n{err}"
    return Emulator({32: lib})


def _flat(a):
    return (a, 0, (1,) * a.ndim)


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------

def test_complex_kernels_compile_with_nvcc(built):
    if built["nvcc"] == "skip":
        pytest.skip("nvcc not found: cannot check the generated CUDA C")
    assert built["nvcc"] is None, built["nvcc"]


def test_complex_kernels_compile_with_nvrtc(built):
    if built["nvrtc"] == "skip":
        pytest.skip("NVRTC not available (needs cupy and nvidia-cuda-nvrtc)")
    assert built["nvrtc"] is None, built["nvrtc"]


def test_complex_sources_paste_the_complex_prelude_only_when_needed():
    assert "FA_COMPLEX_CU" in cg.render(OP_KERNELS["complex64"][0]).source
    real = Kernel(1, 0, (Input(dt.float32, "1"),), (), (Stmt("load", (), dt.float32, 0),),
                  (Output(0, dt.float32),))
    assert "FA_COMPLEX_CU" not in cg.render(real).source


@pytest.mark.parametrize("dname", [d.name for d in CDTYPES])
def test_every_complex_op_matches_numpy(emu, dname):
    d = dt.to_dtype(dname)
    kernel, names = OP_KERNELS[dname]
    x = complex_values(d.np)
    y = second_operand(x)
    c = np.random.default_rng(2).random(x.size) < 0.5
    outs = emu.run(kernel, (x.size,), [_flat(x), _flat(y), _flat(c)])
    rtol = 2e-5 if d is dt.complex64 else 1e-12
    for name, got in zip(names, outs):
        op = OPS[name]
        args = (c, x, y) if name == "where" else (x,) if op.arity == 1 else (x, y)
        with np.errstate(all="ignore"):
            ref = np.asarray(op.ref(*args, None))
        assert_matches_numpy(got, ref, f"{name} on {dname}", rtol)


@pytest.mark.parametrize("dname", [d.name for d in ALL_DTYPES])
def test_casts_to_and_from_complex(emu, dname):
    src = dt.to_dtype(dname)
    rng = np.random.default_rng(3)
    if src.kind == "c":   # in range of every integer target, both parts nonzero, zero and nan for bool
        x = (rng.uniform(-120, 120, 60) + 1j * rng.uniform(-5, 5, 60)).astype(src.np)
        x[:4] = [0, 1j, complex(0, -0.0), complex(np.nan, 0)]
    elif src.kind == "b":
        x = rng.random(60) < 0.5
    else:
        x = rng.uniform(-100, 100, 60).astype(src.np) if src.kind == "f" else \
            rng.integers(0, 100, 60).astype(src.np)
    outs = emu.run(CAST_KERNELS[dname], (x.size,), [_flat(x)])
    targets = ALL_DTYPES if src.kind == "c" else CDTYPES
    for d, got in zip(targets, outs):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", np.exceptions.ComplexWarning)   # complex -> real: the real part
            ref = x[4:].astype(d.np) if (src.kind == "c" and d.kind in "iu") else x.astype(d.np)
        g = got[4:] if (src.kind == "c" and d.kind in "iu") else got
        assert_matches_numpy(g, ref, f"cast {dname} -> {d.name}", 1e-7 if d is dt.complex64 else 0)


STRATEGIES = {"thread": dict(force_group=0), "columns": dict(force_group=0, force_chunks=3),
              "warp": dict(force_group=1), "block": dict(force_group=2, force_chunks=1),
              "chunks": dict(force_group=2, force_chunks=3)}


@pytest.mark.parametrize("deterministic", [False, True], ids=["default", "det"])
@pytest.mark.parametrize("strategy", list(STRATEGIES))
@pytest.mark.parametrize("key", list(REDUCE_KERNELS), ids=lambda k: f"{k[0]}-{k[1]}-rd{k[2]}")
def test_complex_sum_and_prod(emu, key, strategy, deterministic):
    kernel = REDUCE_KERNELS[key]
    d = kernel.inputs[0].dtype
    shape = {1: (37,), 2: (4, 9), 3: (3, 5, 4)}[kernel.ndim]
    rng = np.random.default_rng(4)
    # unit-ish magnitudes: products neither overflow nor vanish, sums do not cancel to nothing
    x = (np.exp(1j * rng.uniform(0, 2 * np.pi, shape)) * rng.uniform(0.95, 1.05, shape)).astype(d.np)
    pattern = kernel.inputs[0].pattern            # the "1" dim innermost in memory, as the pattern says
    order = [i for i, c in enumerate(pattern) if c != "1"] + [i for i, c in enumerate(pattern) if c == "1"]
    mem = np.ascontiguousarray(x.transpose(order))
    strides = [0] * len(shape)
    for pos, dim in enumerate(order):
        strides[dim] = mem.strides[pos] // x.itemsize
    assert not cg.render(kernel).atomic_ok        # complex outputs combine in the two-pass finish
    store, s, p = emu.run(kernel, shape, [(mem.reshape(-1), 0, tuple(strides))], deterministic=deterministic,
                          **STRATEGIES[strategy])
    axes = tuple(range(kernel.ndim - kernel.reduce_ndim, kernel.ndim))
    rtol = 1e-5 if d is dt.complex64 else 1e-12
    np.testing.assert_allclose(store, (x * x).reshape(-1), rtol=rtol)
    np.testing.assert_allclose(s, x.sum(axis=axes).reshape(-1), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(p, x.prod(axis=axes).reshape(-1), rtol=rtol * 10)


def test_complex64_sums_accumulate_in_complex128(emu):
    """A thread adds thousands of values: complex64's running total would lose what numpy keeps."""
    kernel = REDUCE_KERNELS[("complex64", "1", 1)]
    assert cg.acc_dtype("sum", dt.complex64) == "complex128" and cg.acc_dtype("prod", dt.complex64) == "complex128"
    n = 1 << 16
    x = (np.full(n, 1 + 1j) + np.arange(n) * 1e-3j).astype(np.complex64)
    _, s, _ = emu.run(kernel, (n,), [_flat(x)], force_group=0)
    exact = x.astype(np.complex128).sum()
    assert abs(s[0] - exact) <= 1e-6 * abs(exact)


def test_complex_scalars_travel_by_value(emu):
    k = scalar_kernel()
    x = complex_values(np.complex128, n_random=40)[-40:]
    s0, s1 = np.complex128(2.5 - 1.25j), np.complex64(-0.5 + 3j)
    src = cg.render(k)
    args = src.arguments(src.plan((x.size,)), (x.size,), [_flat(x)], [np.empty(1)] * 2, [s0, s1])
    assert type(args[-2]) is np.complex128 and type(args[-1]) is np.complex64
    wide, narrow = emu.run(k, (x.size,), [_flat(x)], [s0, s1])
    ref = x * s0 + np.complex128(s1)
    np.testing.assert_allclose(wide, ref, rtol=1e-15)
    np.testing.assert_allclose(narrow, ref.astype(np.complex64), rtol=1e-6)


@pytest.mark.parametrize("op", ["lt", "maximum", "floor", "relu", "abs", "atan2", "floordiv"])
def test_ops_without_complex_meaning_are_refused(op):
    c = dt.complex64
    srcs = (0,) if OPS[op].arity == 1 else (0, 0)
    out = dt.bool if OPS[op].out == "bool" else c
    k = Kernel(1, 0, (Input(c, "1"),), (), (Stmt("load", (), c, 0), Stmt(op, srcs, out)), (Output(1, out),))
    with pytest.raises(NotImplementedError, match=f"{op} of complex64"):
        cg.render(k)


def test_complex_max_reduction_is_refused():
    c = dt.complex128
    k = Kernel(1, 1, (Input(c, "1"),), (), (Stmt("load", (), c, 0),), (Output(0, c, "max"),))
    with pytest.raises(NotImplementedError, match="max reduction of complex128"):
        cg.render(k)
