"""CUDA reductions and compile flags, checked without a GPU.

* Reductions over a leading (strided) axis, as bias gradients and `reduce_to` of a broadcast
  make them, run one thread per output so a warp reads neighbouring addresses; the reduced
  range is chunked over blockIdx.y and combined by atomics or fixed-order partials.
* float32 sums accumulate in double, so one thread adding a long row stays as accurate as
  numpy's pairwise sum (run in the host emulation, tests/cuda_emulation.py).
* Every kernel is compiled with the options of `nvrtc_options`: subnormals are kept, which the
  PTX shows (no `.ftz` instruction), with the same NVRTC call the runtime makes.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastad import dtypes as dt
from fastad.codegen import cuda as cg
from fastad.kernel_ir import Input, Kernel, Output, Stmt

from cuda_emulation import Emulator, build

F32, F64 = dt.float32, dt.float64


def sum_kernel(d, pattern, reduce_ndim=1, reduces=("sum",)):
    body = (Stmt("load", (), d, 0),)
    return Kernel(len(pattern), reduce_ndim, (Input(d, pattern),), (), body,
                  tuple(Output(0, d, r) for r in reduces))


COLUMN = sum_kernel(F32, "1n", reduces=("sum", "max"))          # (N, B) iteration, input (B, N) C-order
COLUMN64 = sum_kernel(F64, "1n")
COLUMN_I64 = sum_kernel(dt.int64, "1n")
ROW = sum_kernel(F32, "n1")
FULL = sum_kernel(F32, "1")
WITH_STORE = Kernel(2, 1, (Input(F32, "1n"),), (), (Stmt("load", (), F32, 0), Stmt("mul", (0, 0), F32)),
                    (Output(0, F32, "sum"), Output(1, F32)))
KERNELS = [COLUMN, COLUMN64, COLUMN_I64, ROW, FULL, WITH_STORE]


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    lib, err = build([cg.render(k).source for k in KERNELS], tmp_path_factory.mktemp("cuda-reduce"))
    if lib is None and err == "no C++ compiler":
        pytest.skip("no host C++ compiler for the emulation")
    assert lib is not None, err
    return Emulator({32: lib})


# ---------------------------------------------------------------------------
# Leading-axis reductions: thread per output, coalesced across threads
# ---------------------------------------------------------------------------

def test_leading_axis_reduction_runs_a_thread_per_output_with_chunks():
    src = cg.render(COLUMN)
    assert src.columns
    for det in (False, True):
        plan = src.plan((4096, 100_000), sm_count=132, deterministic=det)   # bias gradient of a (100000, 4096) batch
        assert plan.group == 0, plan
        assert plan.grid[0] == 16 and plan.grid[1] == plan.chunks > 1
        assert plan.finish == 2   # float32 sums add up in double (`dtypes.accumulator`): two passes
        assert plan.cols // plan.chunks >= cg.COLUMN_CHUNK
        wide = cg.render(COLUMN64).plan((4096, 100_000), sm_count=132, deterministic=det)
        assert wide.finish == (2 if det else 1)   # float64 sums may combine atomically
    # few outputs: too few neighbouring rows to fill a warp, the row-major strategies stay
    assert src.plan((8, 1_000_000), sm_count=132).group == 2
    # a contiguous row reduction keeps a warp or block per row
    assert not cg.render(ROW).columns and cg.render(ROW).plan((4096, 1000), sm_count=132).group == 1
    # store outputs would be written with a stride by a thread per row
    assert not cg.render(WITH_STORE).columns


def _column_case(rng, rows=40, cols=300, d=np.float32):
    x = rng.normal(size=(cols, rows)).astype(d)          # iteration (rows, cols) reads x.T
    return x, [(x.reshape(-1), 0, (1, rows))]


@pytest.mark.parametrize("det", [False, True], ids=["atomic", "det"])
def test_leading_axis_reduction_values(emu, det):
    rng = np.random.default_rng(0)
    x, inputs = _column_case(rng)
    plan = cg.render(COLUMN).plan(x.T.shape, sm_count=64, block=1, warp=1, deterministic=det)
    assert plan.group == 0 and plan.chunks > 1
    s, mx = emu.run(COLUMN, x.T.shape, inputs, deterministic=det, sm_count=64)
    np.testing.assert_allclose(s, x.astype(np.float64).sum(axis=0), rtol=1e-6, atol=1e-5)
    np.testing.assert_array_equal(mx, x.max(axis=0))
    for chunks in (1, 7, 300):
        (s64,) = emu.run(COLUMN64, x.T.shape, [(x.astype(np.float64).reshape(-1), 0, (1, 40))],
                         deterministic=det, force_group=0, force_chunks=chunks)
        np.testing.assert_allclose(s64, x.astype(np.float64).sum(axis=0), rtol=1e-12)


def test_deterministic_column_sums_repeat_bit_for_bit(emu):
    x, inputs = _column_case(np.random.default_rng(1))
    a = emu.run(COLUMN, x.T.shape, inputs, deterministic=True, sm_count=64)
    b = emu.run(COLUMN, x.T.shape, inputs, deterministic=True, sm_count=7)
    for u, v in zip(a, b):
        assert u.tobytes() == v.tobytes()


# ---------------------------------------------------------------------------
# float32 sums and products accumulate in double, as on every tier
# ---------------------------------------------------------------------------

def test_float32_sum_accumulator_is_double():
    src = cg.render(FULL).source
    assert "double a0 = FaSum::identity<double>();" in src
    assert cg.acc_dtype("sum", F32) == "float64" and cg.acc_dtype("max", F32) == "float32"
    assert cg.acc_dtype("prod", F32) == "float64"   # dtypes.accumulator: one rule for every tier
    assert cg.acc_dtype("sum", dt.complex64) == "complex128" and cg.acc_dtype("sum", dt.int8) == "int64"


def test_float32_sums_combine_in_double_and_round_once(emu):
    """No float32 running total anywhere: thread, block and chunk partials are double and the
    two-pass finish rounds once, so every strategy and both modes give the float64 sum rounded
    to float32 (the CPU tiers' result)."""
    assert not cg.render(FULL).atomic_ok and cg.render(COLUMN64).atomic_ok
    x = (np.random.default_rng(2).standard_normal(50_000) * 100 + 3).astype(np.float32)
    want = np.float32(x.astype(np.float64).sum())
    for det in (False, True):
        for strategy in (dict(force_group=0), dict(force_group=1), dict(force_group=2, force_chunks=1),
                         dict(force_group=2, force_chunks=5)):
            (s,) = emu.run(FULL, (50_000,), [(x, 0, (1,))], deterministic=det, **strategy)
            assert s[0] == want, (det, strategy, s[0], want)


@pytest.mark.parametrize("strategy", [dict(force_group=0), dict(force_group=2, force_chunks=1),
                                      dict(force_group=2, force_chunks=4)], ids=["thread", "block", "chunks"])
def test_long_float32_sum_is_as_accurate_as_numpy(emu, strategy):
    """One thread adding 2^20 float32 values in a row: a float accumulator drifts by ~1e-4 relative
    (each add rounds at the running total's scale); numpy's pairwise sum stays near 1e-7."""
    rng = np.random.default_rng(2)
    x = (rng.random(2 ** 20) + 0.5).astype(np.float32)
    exact = x.astype(np.float64).sum()
    (s,) = emu.run(FULL, x.shape, [(x, 0, (1,))], **strategy)
    err, numpy_err = abs(float(s[0]) - exact) / exact, abs(float(x.sum()) - exact) / exact
    assert err <= max(numpy_err, 2 ** -24), (err, numpy_err)


# ---------------------------------------------------------------------------
# Compile flags: subnormals are kept
# ---------------------------------------------------------------------------

def _nvrtc_or_skip():
    try:
        cg.nvrtc_version()
    except Exception as e:  # ImportError (no cupy), OSError (no libnvrtc)
        pytest.skip(f"NVRTC not available ({type(e).__name__}); needs cupy-cuda13x[ctk]")


def test_runtime_options_keep_subnormals_in_the_ptx():
    """CuPy's RawModule appends -ftz=true, which flushes exp(-100) and 1/1e-40f to 0 and inf; the
    runtime compiles with `nvrtc_options` instead. The PTX of a float32 kernel built with them has
    no flush-to-zero instruction, and the same check sees one when -ftz=true is appended."""
    _nvrtc_or_skip()
    k = Kernel(1, 0, (Input(F32, "1"), Input(F32, "1")), (),
               (Stmt("load", (), F32, 0), Stmt("load", (), F32, 1), Stmt("exp", (0,), F32),
                Stmt("div", (2, 1), F32), Stmt("mul", (3, 0), F32)), (Output(4, F32),))
    src = cg.render(k).source
    opts = cg.nvrtc_options(32, False, "sm_90")
    assert "-ftz=false" in opts and "-ftz=true" not in opts
    ptx = cg.compile_with_nvrtc(src, options=opts, ptx=True).decode()
    # (expf's own ex2.approx.ftz works on a range-reduced argument and is exact about subnormals)
    arith = re.compile(r"\b(?:add|sub|mul|div|fma)(?:\.\w+)*\.ftz\.f32")
    assert "div.rn.f32" in ptx and not arith.search(ptx)
    flushed = cg.compile_with_nvrtc(src, options=opts + ("-ftz=true",), ptx=True).decode()
    assert arith.search(flushed)
    assert cg.compile_with_nvrtc(src, options=opts)[:4] == b"\x7fELF"          # a cubin for sm_90


def test_a_multiply_and_an_add_round_twice_as_numpy_does():
    """Kernels compile with -fmad=false (`arithmetic_options`): x * y + z is a multiply and an
    add, each rounded (numpy's bits), not one FMA. nvcc with the same options shows it in the
    PTX, and the same source under -fmad=true does contract (so the check can see an FMA)."""
    from fastad.codegen.cuda_compile import arithmetic_options, defines
    if cg.nvcc_path() is None:
        pytest.skip("nvcc not found")
    k = Kernel(1, 0, (Input(F32, "1"), Input(F32, "1"), Input(F32, "1")), (),
               (Stmt("load", (), F32, 0), Stmt("load", (), F32, 1), Stmt("load", (), F32, 2),
                Stmt("mul", (0, 1), F32), Stmt("add", (3, 2), F32)), (Output(4, F32),))
    src = cg.render(k).source
    opts = arithmetic_options()
    assert "-fmad=false" in opts and "-fmad=false" in cg.nvrtc_options(32, False, "sm_90")
    fma = re.compile(r"\bfma\.rn\.f32")
    ptx = cg.compile_with_nvcc([src], options=opts + defines(32))
    assert "mul.rn.f32" in ptx and "add.rn.f32" in ptx and not fma.search(ptx)
    contracted = cg.compile_with_nvcc([src], options=tuple(o.replace("-fmad=false", "-fmad=true") for o in opts)
                                      + defines(32))
    assert fma.search(contracted)


def test_nvrtc_arch_choice():
    assert cg.nvrtc_arch("90", (75, 80, 90, 100)) == "sm_90"
    assert cg.nvrtc_arch(120, (75, 80, 90, 100)) == "compute_100"       # newer GPU: PTX, JIT by the driver
    with pytest.raises(RuntimeError, match="compute capability 6.0"):
        cg.nvrtc_arch(60, (75, 80, 90))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.integers(1, 70), cols=st.integers(1, 300), chunks=st.integers(1, 40), det=st.booleans(),
       dtype=st.sampled_from(["float64", "int64"]), seed=st.integers(0, 2 ** 16))
def test_column_reduction_property(emu, rows, cols, chunks, det, dtype, seed):
    """Any chunking of a leading-axis reduction, either finish, equals numpy's sum."""
    k = COLUMN64 if dtype == "float64" else COLUMN_I64
    rng = np.random.default_rng(seed)
    x = rng.integers(-1000, 1000, size=(cols, rows)).astype(dtype)     # exact in both dtypes
    (s,) = emu.run(k, (rows, cols), [(x.reshape(-1), 0, (1, rows))], deterministic=det,
                   force_group=0, force_chunks=min(chunks, cols))
    np.testing.assert_array_equal(s, x.sum(axis=0))
