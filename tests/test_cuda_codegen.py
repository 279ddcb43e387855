"""CUDA renderer tests that need no GPU.

Start at `CASES` (every hand-built Kernel) and the `built` fixture, which in
one go (two compilers side by side) compiles
  * every rendered kernel into ONE translation unit with `nvcc --ptx -arch=sm_90`,
    plus fastad/kernels/*.cu each on its own (skipped cleanly when nvcc is absent), and
  * the same sources as host C++ with g++ under a small CUDA emulation
    (`EMULATION`: one thread per block, FA_WARP=1, sequential atomics), loaded
    with ctypes, so the tests below run the generated code on the CPU through
    `fastad.codegen.cuda.execute` (the launch protocol the GPU runtime uses) and
    compare with the op table's numpy references.
The emulation checks semantics (index math, strides, intrinsics, casts,
reduction strategies); warp shuffles and shared memory only run on a GPU
(tests/test_cuda.py).
"""
from __future__ import annotations

import concurrent.futures
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from fastad import dtypes as dt
from fastad.codegen import cuda as cg
from fastad.kernel_ir import Input, Kernel, Output, Stmt
from fastad.ops import ELEMENTWISE, OPS, domain_allows

from cuda_emulation import EMULATION, Emulator, _gxx, build

ROOT = pathlib.Path(__file__).resolve().parent.parent
DTYPES = [dt.bool, dt.int8, dt.int16, dt.int32, dt.int64, dt.uint8, dt.uint16, dt.uint32, dt.uint64,
          dt.float32, dt.float64]
ELEMENTWISE_OPS = [op for op in OPS.values() if op.kind == ELEMENTWISE and op.expr and op.name != "cast"]


# ---------------------------------------------------------------------------
# Kernel builders
# ---------------------------------------------------------------------------

def op_kernel(d) -> tuple[Kernel, list[str]]:
    """One kernel applying every elementwise op that accepts dtype `d` to inputs x, y, e (exponent), c (bool)."""
    inputs = (Input(d, "1"), Input(d, "1"), Input(d, "1"), Input(dt.bool, "1"))
    body = [Stmt("load", (), d, 0), Stmt("load", (), d, 1), Stmt("load", (), d, 2), Stmt("load", (), dt.bool, 3)]
    outputs, names = [], []
    for op in ELEMENTWISE_OPS:
        if not domain_allows(op.domain, d):
            continue
        if op.name == "where":
            srcs = (3, 0, 1)
        elif op.arity == 1:
            srcs = (0,)
        elif op.name == "pow" and d.is_integer:
            srcs = (0, 2)
        else:
            srcs = (0, 1)
        out_d = dt.bool if op.out == "bool" else d
        body.append(Stmt(op.name, srcs, out_d))
        outputs.append(Output(len(body) - 1, out_d))
        names.append(op.name)
    return Kernel(1, 0, inputs, (), tuple(body), tuple(outputs)), names


def cast_kernel(src) -> Kernel:
    body = [Stmt("load", (), src, 0)] + [Stmt("cast", (0,), d, d) for d in DTYPES]
    return Kernel(1, 0, (Input(src, "1"),), (), tuple(body),
                  tuple(Output(i + 1, d) for i, d in enumerate(DTYPES)))


def pattern_kernel(d, patterns: tuple[str, ...], with_scalar=True) -> Kernel:
    """out = (in0 * in1 + in2 ...) * s0: a sum of products over inputs with the given stride patterns."""
    ndim = len(patterns[0])
    body = [Stmt("load", (), d, i) for i in range(len(patterns))]
    acc = 0
    for i in range(1, len(patterns)):
        body.append(Stmt("mul" if i % 2 else "add", (acc, i), d))
        acc = len(body) - 1
    if with_scalar:
        body.append(Stmt("scalar", (), d, 0))
        body.append(Stmt("mul", (acc, len(body) - 1), d))
        acc = len(body) - 1
    return Kernel(ndim, 0, tuple(Input(d, p) for p in patterns), (d,) if with_scalar else (),
                  tuple(body), (Output(acc, d),))


def reduce_kernel(d, pattern: str, reduce_ndim: int, reduces=("sum",), store=False) -> Kernel:
    """Reduced outputs of x (and of 2*x when several), plus optionally a store of x*x."""
    body = [Stmt("load", (), d, 0)]
    outs = []
    if store:
        body.append(Stmt("mul", (0, 0), d))
        outs.append(Output(1, d))
    for r in reduces:
        outs.append(Output(0, d, r))
    return Kernel(len(pattern), reduce_ndim, (Input(d, pattern),), (), tuple(body), tuple(outs))


def multi_output_kernel() -> Kernel:
    """value and gradient in one pass: out0 = sum(sin(x)*x), out1 = cos(x)*x + sin(x) (store), out2 = max(x)."""
    f = dt.float32
    body = (Stmt("load", (), f, 0), Stmt("sin", (0,), f), Stmt("mul", (1, 0), f), Stmt("cos", (0,), f),
            Stmt("mul", (3, 0), f), Stmt("add", (4, 1), f))
    return Kernel(2, 1, (Input(f, "n1"),), (), body,
                  (Output(2, f, "sum"), Output(5, f), Output(0, f, "max")))


def mixed_dtype_reduction() -> Kernel:
    """Reductions whose outputs differ in dtype from each other (int8 max of a cast, float64 sum)."""
    body = (Stmt("load", (), dt.float32, 0), Stmt("cast", (0,), dt.int8, dt.int8),
            Stmt("cast", (0,), dt.float64, dt.float64))
    return Kernel(2, 1, (Input(dt.float32, "n1"),), (), body,
                  (Output(1, dt.int8, "max"), Output(2, dt.float64, "sum"), Output(1, dt.int8, "sum")))


OP_KERNELS = {d.name: op_kernel(d) for d in DTYPES}
CAST_KERNELS = {d.name: cast_kernel(d) for d in DTYPES}
PATTERN_KERNELS = {
    ("float32", "1"): pattern_kernel(dt.float32, ("1", "n", "0")),
    ("float64", "n"): pattern_kernel(dt.float64, ("n", "1")),
    ("int32", "nn"): pattern_kernel(dt.int32, ("nn", "n1", "0n", "10")),
    ("float32", "nnn"): pattern_kernel(dt.float32, ("nnn", "0n1", "n01", "111")),
    ("uint8", "1n0"): pattern_kernel(dt.uint8, ("1n0", "n1n"), with_scalar=False),
    ("bool", "n1"): Kernel(2, 0, (Input(dt.bool, "n1"), Input(dt.bool, "01")), (),
                           (Stmt("load", (), dt.bool, 0), Stmt("load", (), dt.bool, 1),
                            Stmt("logical_xor", (0, 1), dt.bool)), (Output(2, dt.bool),)),
}
REDUCE_DTYPES = [dt.float32, dt.float64, dt.int32, dt.int64, dt.uint8, dt.uint64, dt.int8]
REDUCE_KERNELS = {}
for _d in REDUCE_DTYPES:
    for _p, _rd in (("1", 1), ("n1", 1), ("nn", 1), ("n1n", 2), ("1n", 2), ("nnn", 1)):
        REDUCE_KERNELS[(_d.name, _p, _rd)] = reduce_kernel(_d, _p, _rd, ("sum", "prod", "max", "min"),
                                                           store=True)
EXTRA_KERNELS = {"multi": multi_output_kernel(), "mixed": mixed_dtype_reduction(),
                 "nan": reduce_kernel(dt.float64, "1", 1, ("sum", "max", "min")),
                 "empty": reduce_kernel(dt.float32, "n1", 1, ("sum", "prod"), store=True)}

CASES: list[Kernel] = (
    [k for k, _ in OP_KERNELS.values()] + list(CAST_KERNELS.values()) + list(PATTERN_KERNELS.values())
    + list(REDUCE_KERNELS.values()) + list(EXTRA_KERNELS.values()))


# kernels also built in the 64-bit index variant (emulation) and checked with NVRTC (the runtime's compiler)
WIDE = [OP_KERNELS["float32"][0], OP_KERNELS["int8"][0], CAST_KERNELS["float64"], EXTRA_KERNELS["multi"],
        EXTRA_KERNELS["mixed"], REDUCE_KERNELS[("uint64", "n1n", 2)], PATTERN_KERNELS[("float32", "nnn")]]


def _nvrtc_available() -> bool:
    try:
        cg.compile_with_nvrtc('extern "C" __global__ void fa_probe(float* x) { x[0] = 1.0f; }')
        return True
    except Exception:
        return False


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Compile everything once, side by side: nvcc (all kernels, one unit, front-end checked),
    NVRTC (a few kernels, both index widths, to cubin), g++ (host emulation: all kernels 32-bit,
    a few 64-bit)."""
    tmp = tmp_path_factory.mktemp("cuda-codegen")
    sources = [cg.render(k).source for k in CASES]
    wide = [cg.render(k).source for k in WIDE]
    templates = sorted((ROOT / "fastad" / "kernels").glob("*.cu"))

    def nvcc():
        if cg.nvcc_path() is None:
            return "skip"
        try:
            # -Xcicc -O0: full C++ checking of every kernel at a third of the optimising build's time
            cg.compile_with_nvcc(sources, files=templates, options=("-Xcicc", "-O0"))
        except RuntimeError as e:
            return str(e)
        return None

    def nvrtc():
        if not _nvrtc_available():
            return "skip"
        try:
            for src in wide:
                cg.compile_with_nvrtc(src, options=cg.nvrtc_options(32))
            for src in wide[:2]:
                cg.compile_with_nvrtc(src, options=cg.nvrtc_options(64))
        except RuntimeError as e:
            return str(e)
        return None

    def gxx(bits, srcs):
        return build(srcs, tmp, f"emulated{bits}", bits)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        jobs = {"nvcc": pool.submit(nvcc), "nvrtc": pool.submit(nvrtc),
                "emu32": pool.submit(gxx, 32, sources), "emu64": pool.submit(gxx, 64, wide)}
        return {name: job.result() for name, job in jobs.items()}


@pytest.fixture(scope="module")
def emu(built):
    (lib32, err32), (lib64, err64) = built["emu32"], built["emu64"]
    if lib32 is None and err32 == "no C++ compiler":
        pytest.skip("no host C++ compiler for the emulation")
    assert lib32 is not None, f"g++ failed on the emulated kernels:\n{err32}"
    assert lib64 is not None, f"g++ failed on the 64-bit emulated kernels:\n{err64}"
    return Emulator({32: lib32, 64: lib64})


# ---------------------------------------------------------------------------
# nvcc
# ---------------------------------------------------------------------------

def test_rendered_kernels_and_templates_compile_with_nvcc(built):
    if built["nvcc"] == "skip":
        pytest.skip("nvcc not found: cannot check the generated CUDA C")
    assert built["nvcc"] is None, built["nvcc"]


def test_rendered_kernels_compile_with_nvrtc(built):
    if built["nvrtc"] == "skip":
        pytest.skip("NVRTC not available (needs cupy and nvidia-cuda-nvrtc)")
    assert built["nvrtc"] is None, built["nvrtc"]


def test_compile_with_nvcc_reports_errors():
    if cg.nvcc_path() is None:
        pytest.skip("nvcc not found")
    with pytest.raises(RuntimeError, match="undefined_thing"):
        cg.compile_with_nvcc(['extern "C" __global__ void k(float* x) { x[0] = undefined_thing; }'])


# ---------------------------------------------------------------------------
# Elementwise ops, casts and stride patterns, run in the emulation
# ---------------------------------------------------------------------------

def _values(d, rng, n=96):
    if d.kind == "b":
        return rng.random(n) < 0.5
    if d.kind == "f":
        special = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1.5, 2.5, -2.5, 3.0, -7.0, 7.25, 100.0, -100.0,
                   1e-3, np.inf, -np.inf, np.nan, 20.0, -20.0, 88.5, -88.5, 0.75, -3.5]
        x = np.concatenate([special, rng.normal(0, 4, n - len(special))])
        return x.astype(d.np)
    info = np.iinfo(d.np)
    special = [0, 1, 2, 3, 7, 100, info.max, info.max - 1, info.min]
    if d.kind == "i":
        special += [-1, -2, -3, -7, -100, info.min + 1]
    rand = rng.integers(max(info.min, -1000), min(info.max, 1000), n - len(special), dtype=d.np)
    return np.concatenate([np.array(special, dtype=d.np), rand])


def _flat(a):
    return (a, 0, (1,) * a.ndim)


def _compare(got, ref, d, what):
    if d.kind == "f":
        tol = dict(rtol=2e-6, atol=1e-6) if d is dt.float32 else dict(rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(got, ref, equal_nan=True, err_msg=what, **tol)
    else:
        np.testing.assert_array_equal(got, ref, err_msg=what)


@pytest.mark.parametrize("dname", [d.name for d in DTYPES])
def test_every_elementwise_op_matches_numpy(emu, dname):
    d = dt.to_dtype(dname)
    kernel, names = OP_KERNELS[dname]
    rng = np.random.default_rng(0)
    x = _values(d, rng)
    y = rng.permutation(x)
    e = (np.arange(x.size) % 9).astype(d.np) if d.kind != "b" else x
    c = rng.random(x.size) < 0.5
    outs = emu.run(kernel, (x.size,), [_flat(x), _flat(y), _flat(e), _flat(c)])
    assert len(outs) == len(names)
    for name, got in zip(names, outs):
        op = OPS[name]
        args = {"where": (c, x, y)}.get(name) or ((x,) if op.arity == 1 else
                                                  (x, e) if (name == "pow" and d.is_integer) else (x, y))
        with np.errstate(all="ignore"):
            ref = np.asarray(op.ref(*args, None))
            if name in ("sin", "cos", "tan") and d is dt.float32:
                ref = np.asarray(op.ref(*[a.astype(np.float64) for a in args], None)).astype(np.float32)
        assert got.dtype == ref.dtype, (name, got.dtype, ref.dtype)
        _compare(got, ref, dt.to_dtype(ref.dtype), f"{name} on {dname}")


@pytest.mark.parametrize("dname", [d.name for d in DTYPES])
def test_casts_between_all_dtypes(emu, dname):
    src = dt.to_dtype(dname)
    rng = np.random.default_rng(1)
    if src.kind == "f":   # finite, in range of every target (numpy leaves out-of-range float->int undefined)
        x = np.concatenate([[0, -0.0, 1.5, -1.5, 2.5, 100.75, -100.75, 127.0, -128.0, 0.999],
                            rng.uniform(-120, 120, 54)]).astype(src.np)
    else:
        x = _values(src, rng, 64)
    outs = emu.run(CAST_KERNELS[dname], (x.size,), [_flat(x)])
    for d, got in zip(DTYPES, outs):
        ref = x.astype(d.np)
        assert got.dtype == d.np
        _compare(got, ref, d, f"cast {dname} -> {d.name}")


@pytest.mark.parametrize("dname", ["float32", "float64"])
def test_float_casts_beyond_every_range_follow_the_one_rule(emu, dname):
    """NaN, infinities, values beyond int64 and negatives to unsigned: `numpy_refs.cast`, as on
    the CPU tiers (a GPU's own conversion would saturate)."""
    from fastad.numpy_refs import cast
    x = np.array([np.nan, np.inf, -np.inf, 1e20, -1e20, 3e9, -3e9, 2.7, -2.7, 255.9, 256.5, -1.5,
                  1e19, 9.3e18, -9.3e18, -0.0], dt.to_dtype(dname).np)
    outs = emu.run(CAST_KERNELS[dname], (x.size,), [_flat(x)])
    for d, got in zip(DTYPES, outs):
        with np.errstate(all="ignore"):
            want = cast(x, d.np)
        np.testing.assert_array_equal(got, want, err_msg=f"cast {dname} -> {d.name}")


def _strided_input(shape, pattern, d, rng, negative=False):
    """A view of a bigger buffer with the stride pattern asked for; returns (view, (flat, offset, strides))."""
    base = _values(d, rng, 4096) if d.kind != "f" else rng.uniform(-2, 2, 4096).astype(d.np)
    strides, step = [], 1
    for n, p in zip(reversed(shape), reversed(pattern)):
        if p == "0":
            strides.append(0)
        elif p == "1":
            strides.append(1)
        else:
            step = step * 3 + n   # padded and not contiguous
            strides.append(-step if negative else step)
    strides = strides[::-1]
    lo = sum(s * (n - 1) for s, n in zip(strides, shape) if s < 0)
    offset = 17 - lo
    idx = offset + sum(np.arange(n).reshape([-1 if i == j else 1 for j in range(len(shape))]) * s
                       for i, (n, s) in enumerate(zip(shape, strides)))
    view = base[idx]
    assert view.shape == tuple(shape)
    return view, (base, offset, tuple(strides))


@pytest.mark.parametrize("key", list(PATTERN_KERNELS), ids=lambda k: f"{k[0]}-{k[1]}")
@pytest.mark.parametrize("negative", [False, True], ids=["pos", "neg"])
def test_stride_patterns(emu, key, negative):
    kernel = PATTERN_KERNELS[key]
    d = kernel.inputs[0].dtype
    shape = (5, 7, 3)[:kernel.ndim] if kernel.ndim > 1 else (37,)
    rng = np.random.default_rng(2)
    views, inputs = [], []
    for inp in kernel.inputs:
        v, triple = _strided_input(shape, inp.pattern, inp.dtype, rng, negative)
        views.append(v)
        inputs.append(triple)
    scalars = [d.np.type(3)] if kernel.scalars else []
    (got,) = emu.run(kernel, shape, inputs, scalars)
    ref = views[0]
    with np.errstate(all="ignore"):
        for i, v in enumerate(views[1:], 1):
            ref = (ref * v if i % 2 else ref + v).astype(d.np) if d.kind != "b" else ref ^ v
        if scalars:
            ref = (ref * scalars[0]).astype(d.np)
    _compare(got.reshape(shape), ref, d, f"patterns {key}")


def test_scalars_are_arguments_not_constants(emu):
    kernel = PATTERN_KERNELS[("float32", "1")]
    src = cg.render(kernel).source
    x = np.arange(10, dtype=np.float32)
    a = emu.run(kernel, (10,), [_flat(x), (x, 0, (1,)), (x, 0, (0,))], [np.float32(2)])[0]
    b = emu.run(kernel, (10,), [_flat(x), (x, 0, (1,)), (x, 0, (0,))], [np.float32(5)])[0]
    np.testing.assert_allclose(b, a * 2.5)
    assert cg.render(kernel).source == src


# ---------------------------------------------------------------------------
# Reductions in the emulation: every strategy and finish
# ---------------------------------------------------------------------------

def _reduce_inputs(d, shape, pattern, rng):
    view, triple = _strided_input(shape, pattern, d, rng)
    if d.kind == "f":   # positive and near 1: sums without cancellation, products without overflow
        view = view.copy()
        vals = rng.uniform(0.9, 1.1, view.size).astype(d.np)
        flat, off, st = triple
        flat = flat.copy()
        idx = off + sum(np.arange(n).reshape([-1 if i == j else 1 for j in range(len(shape))]) * s
                        for i, (n, s) in enumerate(zip(shape, st)))
        flat[idx] = vals.reshape(shape)
        view = flat[idx]
        triple = (flat, off, st)
    return view, triple


STRATEGIES = {"thread": dict(force_group=0), "columns": dict(force_group=0, force_chunks=3),
              "warp": dict(force_group=1),
              "block": dict(force_group=2, force_chunks=1), "chunks": dict(force_group=2, force_chunks=3)}


@pytest.mark.parametrize("deterministic", [False, True], ids=["atomic", "det"])
@pytest.mark.parametrize("strategy", list(STRATEGIES))
@pytest.mark.parametrize("key", list(REDUCE_KERNELS), ids=lambda k: f"{k[0]}-{k[1]}-rd{k[2]}")
def test_reductions(emu, key, strategy, deterministic):
    kernel = REDUCE_KERNELS[key]
    d = kernel.inputs[0].dtype
    shape = {1: (37,), 2: (4, 9), 3: (3, 5, 4)}[kernel.ndim]
    rng = np.random.default_rng(3)
    view, triple = _reduce_inputs(d, shape, kernel.inputs[0].pattern, rng)
    outs = emu.run(kernel, shape, [triple], deterministic=deterministic, **STRATEGIES[strategy])
    axes = tuple(range(kernel.ndim - kernel.reduce_ndim, kernel.ndim))
    rows = int(np.prod(shape[:kernel.ndim - kernel.reduce_ndim]))
    with np.errstate(all="ignore"):
        _compare(outs[0], (view * view).astype(d.np).reshape(-1), d, "store")
        for o, got in zip(kernel.outputs[1:], outs[1:]):
            ref = OPS[o.reduce].ref(view, axes).reshape(rows)
            if d.kind == "f":
                np.testing.assert_allclose(got, ref, rtol=1e-5 if d is dt.float32 else 1e-12,
                                           err_msg=f"{o.reduce} {key} {strategy}")
            else:
                np.testing.assert_array_equal(got, ref, err_msg=f"{o.reduce} {key} {strategy}")


def test_full_reduction_of_ndim1_and_nan_propagation(emu):
    k = EXTRA_KERNELS["nan"]
    x = np.arange(1000, dtype=np.float64)
    for strategy in STRATEGIES.values():
        s, mx, mn = emu.run(k, (1000,), [_flat(x)], **strategy)
        assert s.shape == (1,) and s[0] == x.sum() and mx[0] == 999 and mn[0] == 0
    x[500] = np.nan
    for det in (False, True):
        for strategy in STRATEGIES.values():
            s, mx, mn = emu.run(k, (1000,), [_flat(x)], deterministic=det, **strategy)
            assert np.isnan(s[0]) and np.isnan(mx[0]) and np.isnan(mn[0]), strategy


def test_multi_output_store_and_reduce(emu):
    k = multi_output_kernel()
    rng = np.random.default_rng(4)
    x = rng.normal(size=(6, 50)).astype(np.float32)
    for det in (False, True):
        for strategy in STRATEGIES.values():
            val, grad, mx = emu.run(k, x.shape, [(x.reshape(-1), 0, (50, 1))], deterministic=det, **strategy)
            np.testing.assert_allclose(val, np.sum(np.sin(x) * x, axis=1), rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(grad.reshape(x.shape), np.cos(x) * x + np.sin(x), rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(mx, x.max(axis=1))


def test_mixed_dtype_reduction_uses_partials_not_atomics(emu):
    k = mixed_dtype_reduction()
    src = cg.render(k)
    assert not src.atomic_ok
    plan = src.plan((4, 100000), sm_count=132)
    assert plan.group == 2 and plan.chunks > 1 and plan.finish == 2
    x = (np.arange(4 * 300, dtype=np.float32).reshape(4, 300) % 200) - 100
    mx, s, s8 = emu.run(k, x.shape, [(x.reshape(-1), 0, (300, 1))], force_group=2, force_chunks=4)
    np.testing.assert_array_equal(mx, x.astype(np.int8).max(axis=1))
    np.testing.assert_array_equal(s, x.astype(np.float64).sum(axis=1))
    np.testing.assert_array_equal(s8, x.astype(np.int8).sum(axis=1).astype(np.int8))


def test_empty_sizes(emu):
    k = EXTRA_KERNELS["empty"]
    x = np.zeros(1, np.float32)
    store, s, p = emu.run(k, (3, 0), [(x, 0, (0, 1))])
    assert store.size == 0 and list(s) == [0, 0, 0] and list(p) == [1, 1, 1]
    store, s, p = emu.run(k, (0, 5), [(x, 0, (0, 1))])
    assert store.size == 0 and s.size == 0
    (out,) = emu.run(PATTERN_KERNELS[("float32", "1")], (0,), [_flat(x)] * 3, [np.float32(1)])
    assert out.size == 0


def test_64bit_index_build_runs(emu):
    """The -DFA_INDEX_BITS=64 build computes the same (the plan picks it for >= 2^31 elements)."""
    x = np.linspace(-3, 3, 300, dtype=np.float32).reshape(3, 100)
    for k in (EXTRA_KERNELS["multi"], EXTRA_KERNELS["mixed"]):
        for strategy in STRATEGIES.values():
            a = emu.run(k, x.shape, [(x.reshape(-1), 0, (100, 1))], **strategy)
            b = emu.run(k, x.shape, [(x.reshape(-1), 0, (100, 1))], force_bits=64, **strategy)
            for u, v in zip(a, b):
                np.testing.assert_array_equal(u, v)
    with pytest.raises(ValueError, match="64-bit"):
        cg.render(k).plan((3, 2 ** 31), force_bits=32)


# ---------------------------------------------------------------------------
# Plans, sizes and cache keys
# ---------------------------------------------------------------------------

def test_source_and_cache_key_ignore_sizes():
    k = PATTERN_KERNELS[("float32", "nnn")]
    again = pattern_kernel(dt.float32, ("nnn", "0n1", "n01", "111"))
    a, b = cg.render(k), cg.render(again)
    assert a.source == b.source and a.entry == b.entry
    small = a.plan((2, 3, 4), sm_count=132)
    big = a.plan((200, 300, 400), sm_count=132)
    assert small.grid != big.grid
    assert a.cache_key(small.index_bits) == a.cache_key(big.index_bits)
    for n in ("200", "300", "400", "24000000"):
        assert n not in a.source.split("#define FA_RENDERED")[1].split("fa_selftest")[0]


def test_plan_choices():
    full = cg.render(reduce_kernel(dt.float32, "1", 1, ("sum",)))
    p = full.plan((10_000_000,), sm_count=132)
    assert (p.group, p.finish, p.index_bits, p.rows) == (2, 2, 32, 1) and p.chunks > 1   # double partials
    p64 = cg.render(reduce_kernel(dt.float64, "1", 1, ("sum",))).plan((10_000_000,), sm_count=132)
    assert (p64.group, p64.finish) == (2, 1) and p64.chunks > 1                        # atomic
    pd = full.plan((10_000_000,), sm_count=132, deterministic=True)
    assert pd.finish == 2 and pd.finish_grid == (1, 1, 1)
    assert full.plan((10_000_000,), sm_count=66, deterministic=True) == pd   # device-independent
    rows = cg.render(reduce_kernel(dt.float32, "n1", 1, ("max",)))
    assert rows.plan((100_000, 10), sm_count=132).group == 0
    assert rows.plan((100_000, 500), sm_count=132).group == 1
    assert rows.plan((64, 1_000_000), sm_count=132).group == 2
    ew = cg.render(PATTERN_KERNELS[("float32", "1")])
    assert ew.plan((3_000_000_000,), sm_count=132).index_bits == 64
    assert ew.plan((1000,), sm_count=132, max_elements=2 ** 31).index_bits == 64
    assert ew.plan((1000,), sm_count=132).index_bits == 32
    assert ew.plan((1000,), sm_count=132).grid == (4, 1, 1)
    assert ew.plan((10 ** 8,), sm_count=132).grid == (132 * cg.BLOCKS_PER_SM, 1, 1)


def test_arguments_follow_kernel_ir_order():
    k = Kernel(2, 0, (Input(dt.float32, "n1"), Input(dt.int8, "0n")), (dt.float64, dt.bool),
               (Stmt("load", (), dt.float32, 0), Stmt("load", (), dt.int8, 1), Stmt("cast", (1,), dt.float32, dt.float32),
                Stmt("add", (0, 2), dt.float32)), (Output(3, dt.float32),))
    src = cg.render(k)
    a, b, out = np.zeros(12, np.float32), np.zeros(3, np.int8), np.zeros(12, np.float32)
    plan = src.plan((4, 3))
    args = src.arguments(plan, (4, 3), [(a, 5, (3, 1)), (b, 1, (0, 7))], [out], [0.5, True])
    kinds = [type(x).__name__ if not isinstance(x, np.ndarray) else "array" for x in args]
    assert kinds == ["int64", "int64", "array", "int64", "int64", "array", "int64", "int64", "array",
                     "float64", "bool"]
    assert [int(x) for x in args[3:5]] == [5, 3] and [int(x) for x in args[6:8]] == [1, 7]


def test_unsupported_op_on_a_dtype_is_a_clear_error():
    """Every dtype has a C type (complex: tests/test_cuda_complex.py); an op without a meaning for a
    dtype's values (ordering of complex numbers) is refused at render time, naming both."""
    k = Kernel(1, 0, (Input(dt.complex64, "1"),), (), (Stmt("load", (), dt.complex64, 0),
               Stmt("lt", (0, 0), dt.bool)), (Output(1, dt.bool),))
    with pytest.raises(NotImplementedError, match="lt of complex64"):
        cg.render(k)


def test_templates_come_from_the_package_or_the_override(monkeypatch, tmp_path):
    assert cg.kernel_template_dir() is None
    assert "FA_REDUCE_CU" in cg._template("reduce.cu")
    (tmp_path / "elementwise.cu").write_text("// x")
    monkeypatch.setenv("FASTAD_KERNEL_DIR", str(tmp_path))
    assert cg.kernel_template_dir() == tmp_path
    assert cg._template("elementwise.cu") == "// x"
    with pytest.raises(FileNotFoundError, match="reduce.cu"):
        cg._template("reduce.cu")


@pytest.mark.slow
def test_templates_are_found_in_an_installed_copy(tmp_path):
    """`pip install --target/--user/--prefix` put no data files where a source checkout has them: the
    templates travel as package data (setuptools' build_py below lays out the files a wheel holds)
    and are read through importlib.resources from wherever the package landed."""
    target = tmp_path / "site"
    build = ("from setuptools.dist import Distribution\n"
             "d = Distribution(); d.script_name = 'setup.py'; d.parse_config_files()\n"
             "c = d.get_command_obj('build_py'); c.build_lib = %r; c.ensure_finalized(); c.run()\n" % str(target))
    res = subprocess.run([sys.executable, "-c", build], capture_output=True, text=True, timeout=300,
                         cwd=str(ROOT))
    assert res.returncode == 0, res.stderr[-3000:]
    assert sorted(p.name for p in (target / "fastad" / "kernels").glob("*.cu")) == ["complex.cu", "elementwise.cu", "reduce.cu"]
    code = ("import fastad.codegen.cuda as c, fastad.dtypes as dt\n"
            "from fastad.kernel_ir import Input, Kernel, Output, Stmt\n"
            "assert c.__file__.startswith(%r), c.__file__\n"
            "k = Kernel(1, 1, (Input(dt.float32, '1'),), (), (Stmt('load', (), dt.float32, 0),), "
            "(Output(0, dt.float32, 'sum'),))\n"
            "assert 'FA_REDUCE_CU' in c.render(k).source\n" % str(target))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FASTAD_KERNEL_DIR")}
    env["PYTHONPATH"] = str(target)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=str(tmp_path), timeout=120)
    assert res.returncode == 0, res.stderr


# ---------------------------------------------------------------------------
# Imports: the CPU path never loads CuPy
# ---------------------------------------------------------------------------

def _python(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=str(ROOT), timeout=120)


def test_import_fastad_and_compute_on_cpu_does_not_import_cupy():
    if not (ROOT / "fastad" / "__init__.py").is_file():
        pytest.skip("fastad/__init__.py is not written yet")
    res = _python(
        "import sys, numpy as np, fastad as fa\n"
        "if not hasattr(fa, 'tensor'): print('NO-FRONTEND'); sys.exit(0)\n"
        "x = fa.tensor(np.arange(8, dtype=np.float32), requires_grad=True)\n"
        "y = fa.sum(fa.sin(x) * x)\n"
        "y.backward()\n"
        "print(float(y.numpy()), x.grad.numpy()[:2])\n"
        "assert 'cupy' not in sys.modules, 'fastad imported cupy on the CPU path'\n")
    if "NO-FRONTEND" in res.stdout:
        pytest.skip("the frontend (fa.tensor) is not written yet")
    assert res.returncode == 0, res.stderr


def test_codegen_does_not_import_cupy():
    res = _python("import sys, fastad.codegen.cuda as c\n"
                  "from fastad.kernel_ir import *\nfrom fastad import dtypes as dt\n"
                  "k = Kernel(1, 0, (Input(dt.float32, '1'),), (), (Stmt('load', (), dt.float32, 0),), "
                  "(Output(0, dt.float32),))\nc.render(k)\n"
                  "assert 'cupy' not in sys.modules\n")
    assert res.returncode == 0, res.stderr


def test_cuda_runtime_without_cupy_names_the_extra():
    res = _python("import sys\n"
                  "class Block:\n"
                  "    def find_spec(self, name, path=None, target=None):\n"
                  "        if name == 'cupy' or name.startswith('cupy.'): raise ImportError('blocked ' + name)\n"
                  "sys.meta_path.insert(0, Block())\n"
                  "try:\n    import fastad.runtime.cuda\nexcept ImportError as e:\n    print('MSG', e)\n")
    assert res.returncode == 0, res.stderr
    assert "pip install 'fastad[cuda]'" in res.stdout


def test_cuda_runtime_imports_and_refuses_without_gpu():
    pytest.importorskip("cupy")
    from fastad.runtime import cuda, cuda_probe
    backend = cuda.CudaBackend()
    assert backend.xp.__name__ == "cupy"
    if cuda_probe.is_available():
        pytest.skip("a GPU is present: tests/test_cuda.py covers the runtime")
    with pytest.raises(RuntimeError, match="cuda:0.*not available"):
        cuda.require("cuda:0")
    with pytest.raises(RuntimeError):
        backend.from_numpy(np.zeros(3), "cuda:1")


# ---------------------------------------------------------------------------
# The real scheduler's kernels, rendered for CUDA and run in the emulation, against the CPU device
# ---------------------------------------------------------------------------

def _scenarios(fa):
    """Small programs (value and gradients), each returning numpy arrays; sizes stay on the CPU's numpy tier."""
    rng = np.random.default_rng(20)
    x1 = rng.normal(size=1000).astype(np.float32)
    a3, b2 = rng.normal(size=(3, 1, 5)).astype(np.float32), rng.normal(size=(4, 5)).astype(np.float32)
    r3 = rng.uniform(0.9, 1.1, size=(6, 7, 9)).astype(np.float32)
    i1, i2 = rng.integers(-20, 20, 64), rng.integers(1, 7, 64)
    xm, w1, w2 = (rng.normal(size=s).astype(np.float32) for s in ((8, 6), (6, 5), (5, 3)))

    def seed(dev):
        x = fa.tensor(x1, device=dev, requires_grad=True)
        y = fa.sum(fa.sin(x) * fa.exp(-x * x) + fa.tanh(3 * x) * x + 1 / (1 + fa.exp(-x)))
        y.backward()
        return [y.numpy(), x.grad.numpy()]

    def broadcast(dev):
        a, b = fa.tensor(a3, device=dev, requires_grad=True), fa.tensor(b2, device=dev, requires_grad=True)
        y = fa.sum(fa.sin(a * b) + b * 2.0)
        y.backward()
        return [y.numpy(), a.grad.numpy(), b.grad.numpy()]

    def reductions(dev):
        x = fa.tensor(r3, device=dev, requires_grad=True)
        parts = [fa.sum(x, axis=1), fa.max(x, axis=(0, 2)), fa.min(x, axis=2, keepdims=True), fa.prod(x, axis=0)]
        y = sum(fa.sum(p * p) for p in parts)
        y.backward()
        return [p.numpy() for p in parts] + [y.numpy(), x.grad.numpy()]

    def integers(dev):
        a, b = fa.tensor(i1, device=dev), fa.tensor(i2, device=dev)
        outs = [a // b, a % b, a ** (b % 3), fa.maximum(a, b), fa.where(a > b, a, -b), (a < b) & (b > 3),
                fa.astype(a, fa.float32) / 3, fa.astype(a, fa.int8) * 9]
        return [o.numpy() for o in outs]

    def mlp(dev):
        x = fa.tensor(xm, device=dev)
        w, v = fa.tensor(w1, device=dev, requires_grad=True), fa.tensor(w2, device=dev, requires_grad=True)
        logits = fa.relu(x @ w) @ v
        z = logits - fa.max(logits, axis=1, keepdims=True)
        loss = fa.sum(fa.log(fa.sum(fa.exp(z), axis=1)) - z[:, 0])
        loss.backward()
        return [loss.numpy(), w.grad.numpy(), v.grad.numpy()]

    return {"seed": seed, "broadcast": broadcast, "reductions": reductions, "integers": integers, "mlp": mlp}


class _HostBackend:
    """A stand-in "cuda" backend with numpy buffers: kernels run on the CPU backend (phase 1, to learn
    which kernels the scheduler builds) or as emulated CUDA (phase 2); library calls on the CPU backend."""
    xp = np

    def __init__(self, emulator=None):
        from fastad.runtime.cpu import CpuBackend
        self.cpu, self.emulator, self.kernels = CpuBackend(), emulator, {}

    def from_numpy(self, array, device=None):
        return np.array(array)

    def to_numpy(self, buffer):
        return np.asarray(buffer)

    def run_kernel(self, kernel, shape, inputs, scalars, **kw):
        self.kernels[kernel.key] = kernel
        if self.emulator is None:
            return self.cpu.run_kernel(kernel, shape, inputs, scalars)
        return self.emulator.run(kernel, shape, inputs, scalars)

    def run_library(self, op, arg, inputs, **kw):
        return self.cpu.run_library(op, arg, inputs)


def test_scheduler_kernels_run_emulated_like_cpu(monkeypatch, tmp_path):
    fa = pytest.importorskip("fastad")
    if not hasattr(fa, "tensor") or _gxx() is None:
        pytest.skip("needs the fastad frontend and a C++ compiler")
    from fastad import runtime
    scenarios = _scenarios(fa)
    recorder = _HostBackend()
    monkeypatch.setitem(runtime._backends, "cuda", recorder)
    expected = {}
    for name, fn in scenarios.items():
        expected[name] = fn("cpu")
        fn("cuda")                      # phase 1: learn the kernels
    kernels = list(recorder.kernels.values())
    assert kernels
    sources = [cg.render(k).source for k in kernels]
    code, lib = tmp_path / "sched.cpp", tmp_path / "sched.so"
    code.write_text(EMULATION + "\n".join(sources))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:   # nvcc checks the same sources meanwhile
        nvcc = pool.submit(cg.compile_with_nvcc, sources, options=("-Xcicc", "-O0")) if cg.nvcc_path() else None
        res = subprocess.run([_gxx(), "-std=c++17", "-O0", "-fwrapv", "-shared", "-fPIC", "-x", "c++", "-w",
                              str(code), "-o", str(lib)], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-20000:]
        if nvcc is not None:
            nvcc.result()
    emulated = _HostBackend(Emulator({32: lib}))
    monkeypatch.setitem(runtime._backends, "cuda", emulated)
    for name, fn in scenarios.items():
        got = fn("cuda")                # phase 2: the same programs through the CUDA renderer
        assert len(got) == len(expected[name])
        for i, (g, e) in enumerate(zip(got, expected[name])):
            np.testing.assert_allclose(np.asarray(g, dtype=np.float64), np.asarray(e, dtype=np.float64),
                                       rtol=2e-5, atol=1e-5, err_msg=f"{name} output {i}")
    assert set(emulated.kernels) <= set(recorder.kernels)
    assert len(emulated.emulator.launches) >= len(kernels)
