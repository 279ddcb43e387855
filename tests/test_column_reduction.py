"""The column form of compiled reductions (fastad.codegen.numba._column_loops): a reduction over a
strided axis (axis 0 of a C-contiguous matrix) runs with interchanged loops over a stack tile of
accumulators. Compiled results against numpy, the dispatch between column and row form, NaN in
max/min, shapes around the tile size, and bit-identical results however the kept dim is sliced."""
import math
import sys

import numpy as np
import pytest

import fastad as fa
from fastad.codegen import numba as cg
from fastad.config import settings
from fastad.schedule import plan


@pytest.fixture
def jit(monkeypatch):
    """Compile every kernel (no numpy tier), small graphs included, for the duration of a test."""
    monkeypatch.setattr(settings, "cpu_mode", "jit")
    monkeypatch.setattr(settings, "small_graph_elements", 0)
    yield


def _compiled(t, form="stack_array("):
    """t's value, checking that its one kernel has the column form and ran compiled."""
    from fastad.device import CPU
    from fastad.runtime import backend_for
    k = _kernel(t)
    assert form in cg.render(k)
    value = t.numpy()
    assert backend_for(CPU).tier_of(k) == "compiled"
    return value


def _kernel(t):
    (step,) = plan([t._node]).kernels()
    return step.kernel


# shapes: fewer kept indices than a tile, more than one tile (1000 > 512), one reduced row, odd sizes
SHAPES = [(7, 1000), (300, 3), (1, 5), (513, 17), (2, 1025)]
NP = {"sum": np.sum, "prod": np.prod, "max": np.max, "min": np.min}
FA = {"sum": fa.sum, "prod": fa.prod, "max": fa.max, "min": fa.min}


def _data(shape, dtype, seed):
    # values near 1 keep long products finite; negative values exercise max/min
    return np.random.default_rng(seed).uniform(-1.05, 1.05, shape).astype(dtype)


def test_axis0_renders_the_column_form_and_axis1_the_row_form():
    rng = np.random.default_rng(0)
    a = fa.asarray(rng.random((40, 50), np.float32))
    col, row = cg.render(_kernel(fa.sum(a, axis=0))), cg.render(_kernel(fa.sum(a, axis=1)))
    assert "stack_array(" in col and "for t0 in range(lo, hi, " in col
    assert "stack_array(" not in row and "for t0" not in row
    # a prologue still reads the matrix down its columns
    b = fa.asarray(rng.random((40, 50), np.float32))
    assert "stack_array(" in cg.render(_kernel(fa.sum(fa.exp(a) * b, axis=0)))
    # a transposed view: contiguous along the reduced dim, so the row form reads it best
    assert "stack_array(" not in cg.render(_kernel(fa.sum(fa.asarray(rng.random((50, 40), np.float32)).T, axis=0)))
    # 1-D full reductions keep their own blocked form (a float32 tile per block, added up in float64)
    flat = cg.render(_kernel(fa.sum(fa.asarray(rng.random(5000, np.float32)))))
    assert "for t0" not in flat and "for b0 in range(lo, hi, " in flat and "acc_add(acc0, np.float64(tile0[j]))" in flat


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("op", ["sum", "prod", "max", "min"])
def test_compiled_column_reductions_match_numpy(jit, op, dtype):
    for i, shape in enumerate(SHAPES):
        x = _data(shape, dtype, i)
        got = _compiled(FA[op](fa.asarray(x), axis=0))
        assert got.dtype == x.dtype and got.shape == (shape[1],)
        if op in ("max", "min"):
            np.testing.assert_array_equal(got, NP[op](x, axis=0))
        elif dtype == np.float64:
            np.testing.assert_allclose(got, NP[op](x, axis=0), rtol=1e-13, atol=1e-300)
        else:   # float32 sums and products accumulate in float64, then round once
            want = NP[op](x.astype(np.float64), axis=0).astype(np.float32)
            np.testing.assert_allclose(got, want, rtol=2e-7, atol=1e-30)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_max_min_propagate_nan_per_column(jit, dtype):
    x = _data((9, 700), dtype, 7)
    for col, row in ((0, 0), (3, 4), (600, 8), (699, 8)):   # NaN in the first, a middle and the last row
        x[row, col] = np.nan
    x[:, 5] = -np.inf
    x[:, 6] = np.inf
    for op in ("max", "min"):
        got = _compiled(FA[op](fa.asarray(x), axis=0))
        np.testing.assert_array_equal(got, NP[op](x, axis=0))
        assert np.isnan(got[[0, 3, 600, 699]]).all() and not np.isnan(np.delete(got, [0, 3, 600, 699])).any()


def test_integer_column_reductions(jit):
    x = np.random.default_rng(1).integers(-1000, 1000, (37, 600), dtype=np.int64)
    np.testing.assert_array_equal(_compiled(fa.sum(fa.asarray(x), axis=0)), x.sum(axis=0))
    y = x.astype(np.int32)
    np.testing.assert_array_equal(_compiled(fa.max(fa.asarray(y), axis=0)), y.max(axis=0))


def test_fused_prologue_keepdims_and_collapsed_dims(jit):
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((33, 530)).astype(np.float32), rng.standard_normal((33, 530)).astype(np.float32)
    t = fa.sum(fa.exp(fa.asarray(a)) * fa.asarray(b), axis=0)
    want = (np.exp(a.astype(np.float64)) * b).sum(axis=0)
    np.testing.assert_allclose(_compiled(t), want, rtol=1e-5, atol=1e-5)
    got = _compiled(fa.sum(fa.asarray(a), axis=0, keepdims=True))
    assert got.shape == (1, 530)
    np.testing.assert_allclose(got, a.astype(np.float64).sum(axis=0, keepdims=True), rtol=2e-7)
    # (4, 5, 6) summed over axis 0: the kept dims collapse into one of 30
    c = rng.standard_normal((4, 5, 6))
    tc = fa.sum(fa.asarray(c), axis=0)
    assert _kernel(tc).ndim == 2
    np.testing.assert_allclose(_compiled(tc), c.sum(axis=0), rtol=1e-13)


def test_empty_axes(jit):
    # no rows: the kernel reads nothing and writes the identities
    np.testing.assert_array_equal(_compiled(fa.sum(fa.asarray(np.ones((0, 5))), axis=0)), np.zeros(5))
    np.testing.assert_array_equal(_compiled(fa.prod(fa.asarray(np.ones((0, 5))), axis=0)), np.ones(5))
    assert fa.sum(fa.asarray(np.ones((5, 0))), axis=0).numpy().shape == (0,)


def test_stored_output_and_two_reductions_in_one_kernel(jit):
    """A hand-built kernel: a store at each point (flat index), a sum and a NaN-propagating max
    over dim 1, a broadcast input and a hoisted scalar; compiled against the numpy tier."""
    from fastad import dtypes as dt
    from fastad.device import CPU
    from fastad.kernel_ir import Input, Kernel, Output, Stmt
    from fastad.runtime import backend_for
    from fastad.runtime.interpret import interpret
    f64 = dt.float64
    kernel = Kernel(ndim=2, reduce_ndim=1, inputs=(Input(f64, "1n"), Input(f64, "10")), scalars=(f64,),
                    body=(Stmt("load", (), f64, 0), Stmt("load", (), f64, 1), Stmt("scalar", (), f64, 0),
                          Stmt("mul", (0, 2), f64), Stmt("add", (3, 1), f64)),
                    outputs=(Output(4, f64), Output(4, f64, "sum"), Output(0, f64, "max")))
    assert "stack_array(" in cg.render(kernel)
    rng = np.random.default_rng(8)
    for kept, red in ((700, 9), (3, 40), (520, 1)):
        m, b = rng.standard_normal((red, kept)), rng.standard_normal(kept)
        m[red // 2, kept // 3] = np.nan
        inputs = [(m.reshape(-1), 0, (1, kept)), (b, 0, (1, 0))]
        got = backend_for(CPU).run_kernel(kernel, (kept, red), inputs, [1.5])
        want = interpret(kernel, (kept, red), inputs, [1.5])
        np.testing.assert_array_equal(got[0], want[0])
        # the tiers may add in different orders (numpy sums a row pairwise): agree to rounding
        np.testing.assert_allclose(got[1], want[1], rtol=1e-13, atol=1e-13 * red)
        np.testing.assert_array_equal(got[2], want[2])
        assert np.isnan(got[2][kept // 3]) and np.isnan(got[1][kept // 3])
    assert backend_for(CPU).tier_of(kernel) == "compiled"


def test_column_reduction_is_bit_identical_however_sliced(jit, monkeypatch):
    from fastad.device import CPU
    from fastad.runtime import backend_for
    backend = backend_for(CPU)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((40, 3001)).astype(np.float32)
    x[11, 2000] = np.nan
    # split: 46 slices of 65 columns (a column-form slice is at least COLUMN_SLICE wide)
    y = rng.standard_normal((50, 256))

    def run():
        xs = fa.asarray(x)
        return [t.numpy().copy() for t in (fa.sum(fa.exp(xs), axis=0), fa.max(xs, axis=0),
                                           fa.sum(fa.asarray(y), axis=0))]

    monkeypatch.setattr(settings, "parallel_min_elements", 10**12)   # one slice over all columns
    whole = run()
    monkeypatch.setattr(settings, "parallel_min_elements", 1)        # CHUNKS slices, on the thread pool
    pooled = run()
    monkeypatch.setattr(backend, "_pool", None)                      # the same slices on one thread
    serial = run()
    for a, b in zip(pooled, serial):
        assert a.tobytes() == b.tobytes()
    for a, b in zip(whole[:2], pooled[:2]):   # tiles of the column form at other bounds
        assert a.tobytes() == b.tobytes()
    np.testing.assert_allclose(whole[0], np.exp(x.astype(np.float64)).sum(axis=0), rtol=2e-6)
    np.testing.assert_array_equal(whole[1], x.max(axis=0))
    sequential = np.zeros(256)
    for row in y:   # the column form adds the rows in order
        sequential += row
    assert whole[2].tobytes() == sequential.tobytes()
    np.testing.assert_allclose(pooled[2], sequential, rtol=1e-13)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="native object entries are stored for ELF only")
def test_column_kernels_need_no_external_symbol(jit):
    """LLVM would turn the identity fill into memset and a same-type copy-out into memcpy; the kernel
    object must stay self-contained (linked into a shared library, loaded without Numba)."""
    import json
    import shutil
    from fastad.runtime import cpu_compile, native
    x = np.random.default_rng(6).integers(-5, 5, (3, 700))
    for t in (fa.sum(fa.asarray(x.astype(np.float64)), axis=0), fa.max(fa.asarray(x), axis=0)):
        k = _kernel(t)
        _compiled(t)
        path = native.entry_path(cg.render(k), cpu_compile.compile_hint(k))
        meta = json.loads(native.cache._unframe(path.read_bytes(), str(path)).split(b"\n", 1)[0])
        assert meta["undefined"] == []
        assert path.with_suffix(".shared").exists() or shutil.which("ld") is None


def test_column_form_slices_stay_wide(monkeypatch):
    """Every slice of a column-form reduction reads all rows of its columns, so the split keeps
    slices at least COLUMN_SLICE columns wide; other kernels split into slices of at least an
    eighth of parallel_min_elements of work (`runtime.cpu.work`: elements weighed by the kernel's
    cost per element), at most CHUNKS."""
    from fastad.runtime.cpu import CHUNKS, COLUMN_SLICE, slice_count, work
    from fastad.schedule import plan

    def kernel_of(t):
        (step,) = plan([t._node]).steps
        return step.kernel, step.shape

    big = 262144
    monkeypatch.setattr(settings, "parallel_min_elements", big)
    col, shape = kernel_of(fa.sum(fa.asarray(np.ones((64, 8192), np.float32)), axis=0))
    amount = work(col, math.prod(shape))   # a sum reads 4 bytes per element: half a copy's cost
    assert amount == math.prod(shape) / 2 and slice_count(col, shape[0], math.prod(shape)) == 8
    col, shape = kernel_of(fa.sum(fa.asarray(np.ones((2 * big // 100 + 1, 100), np.float32)), axis=0))
    assert shape[0] == 100 and slice_count(col, shape[0], math.prod(shape)) == 1   # 100 columns: one slice
    col, shape = kernel_of(fa.sum(fa.asarray(np.ones((2048, 8192), np.float32)), axis=0))
    assert slice_count(col, shape[0], math.prod(shape)) == min(8192 // COLUMN_SLICE, CHUNKS)
    col, shape = kernel_of(fa.sum(fa.asarray(np.ones((8192, 64), np.float32)), axis=0))
    assert slice_count(col, shape[0], math.prod(shape)) == 1                    # 64 columns: one slice
    row, shape = kernel_of(fa.sum(fa.asarray(np.ones((100, 2 * big // 100 + 1), np.float32)), axis=1))
    # row form: slices of at least an eighth of the parallel threshold, at most CHUNKS
    assert slice_count(row, shape[0], math.prod(shape)) == int(work(row, math.prod(shape)) // (big // 8)) == 8
    row, shape = kernel_of(fa.sum(fa.asarray(np.ones((1000, 10000), np.float32)), axis=1))
    assert slice_count(row, shape[0], math.prod(shape)) == CHUNKS
    # below the threshold's work, one slice: the same size splits for a costly kernel only
    x = fa.asarray(np.ones(100_000, np.float32))
    cheap, shape = kernel_of(x * 2.0)
    costly, _ = kernel_of(fa.sin(x) * fa.exp(x))
    assert work(costly, 100_000) > 9 * work(cheap, 100_000)
    assert slice_count(cheap, shape[0], 100_000) == 1 and slice_count(costly, shape[0], 100_000) > 1

def test_a_narrow_tall_reduction_runs_in_chunks_of_rows_on_every_thread(jit, monkeypatch):
    """Too few columns to slice (fewer than 2 x COLUMN_SLICE): the reduced dim is split in chunks by
    size alone, each reducing into partials of its own, merged in chunk order. Results match
    numpy (NaN kept by max/min, integer sums wrap as numpy's), are bit-identical on one thread or
    the pool, and a kernel that also stores per element is not split."""
    from fastad.device import CPU
    from fastad.runtime import backend_for
    from fastad.runtime.cpu import reduced_split
    monkeypatch.setattr(settings, "parallel_min_elements", 262144)   # these sizes split (the mechanism)
    backend = backend_for(CPU)
    rng = np.random.default_rng(11)
    f32 = rng.standard_normal((300_000, 7)).astype(np.float32)
    f32[250_001, 3] = np.nan
    i32 = rng.integers(-2**30, 2**30, (270_000, 5)).astype(np.int32)
    cases = [(f32, fa.sum), (f32, fa.max), (f32, fa.min), (f32.astype(np.float64), fa.sum),
             (i32, fa.sum), (i32, fa.max), (np.full((262_144, 3), 1.0000001, np.float32), fa.prod)]

    def run():
        return [_compiled(f(fa.asarray(a) * 1, axis=0)).copy() for a, f in cases]

    k = _kernel(fa.sum(fa.asarray(f32) * 1, axis=0))
    assert reduced_split(k, (7, 300_000), 7 * 300_000) > 1
    assert reduced_split(k, (7, 1000), 7000) == 1
    split_runs = []
    launch_split = backend._launch_split
    monkeypatch.setattr(backend, "_launch_split", lambda *a: split_runs.append(1) or launch_split(*a))
    pooled = run()
    assert len(split_runs) == len(cases)
    monkeypatch.setattr(backend, "_pool", None)
    serial = run()
    for a, b in zip(pooled, serial):
        assert a.tobytes() == b.tobytes()
    with np.errstate(all="ignore"):
        # float32 chunks merge in float64 and round once: the float64 sum rounded, as unsplit
        np.testing.assert_array_equal(pooled[0], f32.astype(np.float64).sum(axis=0).astype(np.float32))
        assert np.isnan(pooled[0][3]) and np.isnan(pooled[1][3]) and np.isnan(pooled[2][3])
        np.testing.assert_array_equal(pooled[1], f32.max(axis=0))
        np.testing.assert_array_equal(pooled[2], f32.min(axis=0))
        np.testing.assert_allclose(pooled[3], f32.astype(np.float64).sum(axis=0), rtol=1e-12)
        np.testing.assert_array_equal(pooled[4], i32.sum(axis=0))   # int64: numpy's sum of int32
        np.testing.assert_array_equal(pooled[5], i32.max(axis=0))
        np.testing.assert_array_equal(pooled[6], np.prod(cases[6][0].astype(np.float64), axis=0).astype(np.float32))
    # a stored output next to the reduction: not split (its per-element layout is the whole matrix)
    from fastad import dtypes as dt
    from fastad.kernel_ir import Input, Kernel, Output, Stmt
    both = Kernel(ndim=2, reduce_ndim=1, inputs=(Input(dt.float32, "1n"),), scalars=(),
                  body=(Stmt("load", (), dt.float32, 0), Stmt("exp", (0,), dt.float32)),
                  outputs=(Output(1, dt.float32), Output(1, dt.float32, "sum")))
    assert cg.column_form(both) and reduced_split(both, (7, 300_000), 7 * 300_000) == 1
