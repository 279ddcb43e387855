"""One semantics per op: every elementwise op of the op table, for every dtype it accepts, gives
the numpy reference's answer on every CPU tier and at sizes on both sides of each tier threshold.

Tiers: the small-graph path (op by op in numpy, <= 256 elements), the kernel interpreter
(numpy over the kernel IR), and compiled Numba kernels, serial and split over the thread pool
(>= 256K elements). Inputs are the dtype's special values (signed zeros, infinities, NaN,
integer extremes, zero divisors) in every pair, plus random values drawn by hypothesis.
Exact ops must match bit for bit (any NaN matches any NaN); the vector math library's
functions match within its documented ulp bounds (docs/MATHLIB.md).

All ops of one dtype run as one fused multi-output kernel, so each dtype compiles once.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

import fastad as fa
from fastad import dtypes as dt
from fastad.config import settings
from fastad.ops import ELEMENTWISE, OPS, domain_allows
from fastad.tensor import _apply

# functions computed by the vector math library (or libm): compared within ulp bounds
APPROX = {"exp", "log", "log1p", "expm1", "sin", "cos", "tan", "tanh", "sigmoid", "pow", "erf",
          "acos", "asin", "atan", "acosh", "asinh", "atanh", "sinh", "cosh", "log2", "log10", "atan2", "hypot",
          "logaddexp"}
ULP = {np.dtype(np.float32): 4, np.dtype(np.float64): 2}
# ops that raise for some inputs on every tier, covered by their own regression tests
SKIP = {"where", "cast", "copy"}
# mathlib's documented ranges: outside them results are checked for NaN/inf agreement only
RANGE = {"sin": 1e5, "cos": 1e5, "tan": 1e5}

DTYPES = [dt.bool, dt.int8, dt.int16, dt.int32, dt.int64, dt.uint8, dt.uint16, dt.uint32, dt.uint64,
          dt.float32, dt.float64]


def specials(d: dt.DType) -> np.ndarray:
    if d is dt.bool:
        return np.array([False, True])
    if d.kind in "iu":
        info = np.iinfo(d.np)
        vals = {0, 1, 2, 3, 7, 100, info.max, info.max - 1}
        if d.kind == "i":
            vals |= {-1, -2, -7, info.min, info.min + 1}
        return np.array(sorted(vals), dtype=d.np)
    fi = np.finfo(d.np)
    return np.array([0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.0, 0.1, 2.0, -7.0, 100.0, 1e-3, fi.tiny,
                     fi.smallest_subnormal, fi.max, -fi.max, np.inf, -np.inf, np.nan], dtype=d.np)


def ops_for(d: dt.DType) -> list:
    out = []
    for name, op in OPS.items():
        if op.kind != ELEMENTWISE or name in SKIP or op.arity not in (1, 2) or op.expr is None:
            continue
        if domain_allows(op.domain, d):
            out.append(name)
    return out


def pairs(values: np.ndarray, size: int):
    """Every (a, b) pair of `values`, tiled to `size` elements."""
    a, b = (np.array(v, dtype=values.dtype) for v in zip(*itertools.product(values, values)))
    reps = -(-size // a.size)
    return np.tile(a, reps)[:size], np.tile(b, reps)[:size]


def reference(name, a, b):
    with np.errstate(all="ignore"):
        args = (a,) if OPS[name].arity == 1 else (a, b)
        return np.asarray(OPS[name].ref(*args, None))


def safe_inputs(name, d, a, b):
    """Inputs with the values for which every tier raises (by design) replaced."""
    if name == "pow" and d.kind in "iu":
        b = np.where(b < 0, 2, b).astype(d.np) if d.kind == "i" else b
        b = (b % 8).astype(d.np)  # keep integer powers small: overflow wraps the same everywhere
    return a, b


def run_tier(tier, monkeypatch, d, a, b):
    """{op: result} for every op of dtype `d`, all realized in one schedule on `tier`."""
    if tier == "interpreter":
        monkeypatch.setattr(settings, "cpu_mode", "reference")
    elif tier == "jit":
        monkeypatch.setattr(settings, "cpu_mode", "jit")
        monkeypatch.setattr(settings, "background_compile", False, raising=False)
    else:
        monkeypatch.setattr(settings, "cpu_mode", "auto")
    outs, inputs = {}, {}
    for name in ops_for(d):
        x, y = safe_inputs(name, d, a, b)
        ta, tb = fa.asarray(x), fa.asarray(y)
        outs[name] = (_apply(name, ta) if OPS[name].arity == 1 else _apply(name, ta, tb))
        inputs[name] = (x, y)
    fa.realize(*outs.values())
    return {k: v.numpy() for k, v in outs.items()}, inputs


def ulp_distance(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Distance in units in the last place of float arrays of one dtype (inf where they differ in sign)."""
    ib = {4: np.int32, 8: np.int64}[x.dtype.itemsize]
    xi, yi = x.view(ib).astype(np.int64), y.view(ib).astype(np.int64)
    # map the sign-magnitude bit patterns onto a monotone integer line
    lim = np.int64(np.iinfo(ib).min)
    xi = np.where(xi < 0, lim - xi, xi)
    yi = np.where(yi < 0, lim - yi, yi)
    return np.abs(xi - yi)


def assert_same(name, d, got, want, x):
    want = want.astype(got.dtype) if want.dtype != got.dtype else want
    assert got.shape == want.shape and got.dtype == want.dtype, (name, got.dtype, want.dtype)
    if got.dtype.kind != "f":
        bad = got != want
        assert not bad.any(), f"{name}[{d.name}]: {x[bad][:5]} -> {got[bad][:5]}, numpy {want[bad][:5]}"
        return
    both_nan = np.isnan(got) & np.isnan(want)
    if name in APPROX:
        ok = both_nan | (got == want) | (ulp_distance(got, want) <= ULP[got.dtype])
        lim = RANGE.get(name)
        if lim is not None:  # beyond the documented range: only the class of the value must agree
            out_of_range = ~(np.abs(x) <= lim)
            ok |= out_of_range & (np.isfinite(got) == np.isfinite(want))
    else:
        bits = {4: np.uint32, 8: np.uint64}[got.dtype.itemsize]
        ok = both_nan | (got.view(bits) == want.view(bits))   # bit for bit: signed zeros included
    assert ok.all(), f"{name}[{d.name}]: inputs {x[~ok][:5]} -> {got[~ok][:5]}, numpy {want[~ok][:5]}"


# sizes on both sides of the small-graph threshold (256), and serial vs thread-pool kernels (256K)
TIERS = [("small", 200), ("interpreter", 1000), ("jit", 1000), ("jit", 300_000)]


@pytest.mark.slow
@pytest.mark.parametrize("d", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("tier,size", TIERS, ids=[f"{t}-{n}" for t, n in TIERS])
def test_every_op_matches_numpy_on_special_values(tier, size, d, monkeypatch):
    a, b = pairs(specials(d), size)
    results, inputs = run_tier(tier, monkeypatch, d, a, b)
    for name, got in results.items():
        x, y = inputs[name]
        assert_same(name, d, got, reference(name, x, y), x)


def _values(d: dt.DType):
    if d is dt.bool:
        return st.booleans()
    if d.kind in "iu":
        info = np.iinfo(d.np)
        return st.integers(int(info.min), int(info.max))
    return st.floats(allow_nan=True, allow_infinity=True, width=8 * d.itemsize)


@pytest.mark.slow
@pytest.mark.parametrize("d", [dt.int32, dt.uint8, dt.float32, dt.float64], ids=lambda d: d.name)
@hsettings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_values_agree_between_interpreter_and_compiled(d, data, monkeypatch):
    n = data.draw(st.sampled_from([300, 5000]))
    vals = data.draw(st.lists(_values(d), min_size=2, max_size=40))
    base = np.concatenate([np.array(vals, dtype=d.np), specials(d)])
    a, b = pairs(base, n) if base.size * base.size >= n else (np.resize(base, n), np.resize(base[::-1], n))
    interp, inputs = run_tier("interpreter", monkeypatch, d, a, b)
    compiled, _ = run_tier("jit", monkeypatch, d, a, b)
    for name in interp:
        x, y = inputs[name]
        assert_same(name, d, compiled[name], reference(name, x, y), x)
        assert_same(name, d, interp[name], reference(name, x, y), x)


@pytest.mark.slow
@pytest.mark.parametrize("d", [dt.bool, dt.int8, dt.int64, dt.uint32, dt.float32, dt.float64], ids=lambda d: d.name)
@pytest.mark.parametrize("tier,size", TIERS, ids=[f"{t}-{n}" for t, n in TIERS])
def test_reductions_match_numpy_on_special_values(tier, size, d, monkeypatch):
    """max/min exactly (NaN propagates, ties keep numpy's zero); integer sums and products exactly
    (they wrap); float sums within a rounding bound (the summation order is the tier's own)."""
    x, _ = pairs(specials(d), size)
    if d.kind == "f":
        x = np.where(np.abs(x) > 1e4, np.float32(3.0), x).astype(d.np)  # finite, well-scaled sums
    x2 = x.reshape(-1, 8) if size % 8 == 0 else x.reshape(size, 1)
    run_mode = {"interpreter": "reference", "jit": "jit"}.get(tier, "auto")
    monkeypatch.setattr(settings, "cpu_mode", run_mode)
    monkeypatch.setattr(settings, "background_compile", False, raising=False)
    t = fa.asarray(x2)
    names = ["max", "min"] + ([] if d is dt.bool else ["sum", "prod"])
    outs = {(n, ax): _apply(n, t if d is not dt.bool or n in ("max", "min") else t, arg=ax)
            for n in names for ax in ((0,), (1,), (0, 1))}
    fa.realize(*outs.values())
    for (n, ax), got in outs.items():
        got = got.numpy()
        with np.errstate(all="ignore"):
            want = np.asarray(OPS[n].ref(x2, ax))
        want = want.astype(got.dtype)
        if d.kind == "f" and n in ("sum", "prod"):
            scale = np.abs(x2).sum(axis=ax) if n == "sum" else np.abs(want)
            close = np.abs(got - want) <= 1e-5 * (scale + 1)
            assert (close | (np.isnan(got) & np.isnan(want))).all(), (n, ax, got, want)
        elif d.kind == "f":  # which zero a tie of +0.0 and -0.0 returns is unspecified: compare values
            assert ((got == want) | (np.isnan(got) & np.isnan(want))).all(), (n, ax, got, want)
        else:
            assert_same(n, d, got, want, np.ravel(want))


def test_small_graph_stores_every_value_it_computes():
    """The small-graph path computes intermediates too: each keeps its value, so a later graph
    that uses one reads it instead of computing it again (and the graph behind it is freed)."""
    x = fa.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    a = fa.exp(x) * 2          # an intermediate
    b = fa.sum(a + 1, axis=1)  # the value asked for
    assert a._node.buffer is None and b._node.buffer is None
    np.testing.assert_allclose(b.numpy(), (np.exp(np.arange(6, dtype=np.float32)) * 2 + 1).reshape(2, 3).sum(1),
                               rtol=1e-6)
    assert a._node.buffer is not None and a._node.srcs == ()
    np.testing.assert_array_equal(a.numpy(), np.exp(np.arange(6, dtype=np.float32)).reshape(2, 3) * 2)
    s = fa.full((), 3.0) * fa.asarray(2.0)   # a 0-d constant operand
    assert s.item() == 6.0 and s.shape == ()


# arithmetic that fast-math reassociation would round differently: constants applied in two
# steps (LLVM folds them into one), a constant times a value twice (Adam's second moment), a
# value subtracted and added back
CHAINS = {
    "(x*0.1)*0.7": lambda x, y: (x * 0.1) * 0.7,
    "(x+0.1)+0.7": lambda x, y: (x + 0.1) + 0.7,
    "(0.001*y)*y": lambda x, y: (0.001 * y) * y,
    "x*0.999+(0.001*y)*y": lambda x, y: x * 0.999 + (0.001 * y) * y,
    "(x-y)+y": lambda x, y: (x - y) + y,
    "((x*y)*x)*y": lambda x, y: ((x * y) * x) * y,
    "x+(y-x)*0.1": lambda x, y: x + (y - x) * 0.1,
}


@pytest.mark.parametrize("d", [dt.float32, dt.float64], ids=lambda d: d.name)
@pytest.mark.parametrize("size", [1000, 300_000])
def test_compiled_chains_of_arithmetic_round_as_numpy_op_by_op(d, size, monkeypatch):
    """A compiled kernel rounds every operation where numpy does: kernels are compiled without
    fast-math, so LLVM may not reassociate (only a reduction's steps may be, `acc_add`)."""
    monkeypatch.setattr(settings, "cpu_mode", "jit")
    monkeypatch.setattr(settings, "background_compile", False, raising=False)
    rng = np.random.default_rng(11)
    x, y = (rng.standard_normal(size).astype(d.np) * s for s in (3.0, 0.5))
    tx, ty = fa.asarray(x), fa.asarray(y)
    outs = {name: f(tx, ty) for name, f in CHAINS.items()}
    fa.realize(*outs.values())
    for name, f in CHAINS.items():
        want, got = f(x, y), outs[name].numpy()
        assert want.dtype == got.dtype == d.np
        bad = got != want
        assert not bad.any(), f"{name}: {x[bad][:3]}, {y[bad][:3]} -> {got[bad][:3]}, numpy {want[bad][:3]}"


def test_only_reduction_steps_are_reassociable_and_they_vectorize():
    """The rendered kernel has no fast-math flags; a float sum's steps are `acc_add`, an fadd
    with LLVM's reassoc flag, so the sum still vectorizes (vector fadds on the accumulator)."""
    numba = pytest.importorskip("numba")
    from fastad.codegen import numba as cg
    from fastad.schedule import plan
    x = fa.asarray(np.ones(4096, np.float64))
    (step,) = plan([fa.sum(x * 0.5 + 1.0)._node]).kernels()
    source = cg.render(step.kernel)
    assert "fastmath" not in source and "acc_add(acc" in source
    names: dict = {}
    exec(compile(source.replace("cache=True", "cache=False"), "<kernel>", "exec"), names)
    body = names["body"]
    body.compile(names["SIGNATURE"])
    ir = body.inspect_llvm(body.signatures[0])
    flagged = [ln for ln in ir.splitlines() if "reassoc" in ln]
    assert flagged and all(" fadd reassoc " in ln for ln in flagged), flagged[:5]
    assert any("<" in ln for ln in flagged), "the sum did not vectorize"


# sizes on the small-graph path, the interpreter's one block and several, and compiled serial and sliced
SUM_SIZES = [200, 1000, 300_000]


@pytest.mark.parametrize("d", [dt.float32, dt.complex64], ids=lambda d: d.name)
@pytest.mark.parametrize("axis", [None, 0, 1], ids=["all", "axis0", "axis1"])
def test_float32_sums_and_products_agree_on_every_tier(d, axis, monkeypatch):
    """float32 (complex64) sums and products accumulate in double precision on every tier
    (`dtypes.accumulator`) and round once, so the small-graph path, the interpreter and the
    compiled kernels (row form, column form, sliced) give the same bits, and those of the
    double-precision sum rounded to float32."""
    monkeypatch.setattr(settings, "background_compile", False, raising=False)
    rng = np.random.default_rng(5)
    for n in SUM_SIZES:
        shape = (n,) if axis is None else (n // 100 or 2, 100)
        x = (rng.standard_normal(shape) * 100 + 3).astype(d.np)
        if d.kind == "c":
            x = x + 1j * (rng.standard_normal(shape) * 50).astype(np.float32)
        near_one = (1 + x / 20000).astype(d.np)   # keeps products finite
        wide = dt.accumulator("sum", d).np
        want_sum = (x * d.np.type(1.5)).astype(wide).sum(axis=axis).astype(d.np)
        want_prod = near_one.astype(wide).prod(axis=axis).astype(d.np)
        got = {}
        for mode in ("reference", "jit", "auto"):
            monkeypatch.setattr(settings, "cpu_mode", mode)
            t, u = fa.asarray(x), fa.asarray(near_one)
            s, p = fa.sum(t * 1.5, axis=axis), fa.prod(u, axis=axis)
            got[mode] = (s.numpy(), p.numpy())
        for mode, (s, p) in got.items():
            assert s.dtype == d.np and p.dtype == d.np
            np.testing.assert_array_equal(s, want_sum, err_msg=f"sum, {mode}, n={n}")
            np.testing.assert_array_equal(p, want_prod, err_msg=f"prod, {mode}, n={n}")


CAST_SPECIALS = [np.nan, np.inf, -np.inf, 1e20, -1e20, 3e9, -3e9, 2.7, -2.7, 255.9, 256.5, -1.5, 65536.0,
                 1e19, 9.3e18, -9.2e18, -9.3e18, -0.0, 0.5, 127.5, -128.9]


@pytest.mark.parametrize("src", [dt.float32, dt.float64, dt.complex64], ids=lambda d: d.name)
@pytest.mark.parametrize("size", [len(CAST_SPECIALS), 300_000])
def test_float_to_integer_casts_agree_on_every_tier(src, size, monkeypatch):
    """Float to integer: truncate to int64 and wrap (numpy's x86 results within int64's range),
    int64's minimum beyond it and for NaN and infinities (`numpy_refs.cast`), on the small-graph
    path, the interpreter and compiled kernels alike; numpy itself leaves those undefined."""
    from fastad.numpy_refs import cast
    monkeypatch.setattr(settings, "background_compile", False, raising=False)
    x = np.resize(np.array(CAST_SPECIALS, src.np), size)
    targets = [dt.int8, dt.uint8, dt.int16, dt.uint16, dt.int32, dt.uint32, dt.int64, dt.uint64]
    for mode in ("auto", "reference", "jit"):
        monkeypatch.setattr(settings, "cpu_mode", mode)
        t = fa.asarray(x) * 1
        outs = [fa.astype(t, d) for d in targets]
        fa.realize(*outs)
        for d, got in zip(targets, outs):
            np.testing.assert_array_equal(got.numpy(), cast(x, d.np), err_msg=f"{src.name} -> {d.name}, {mode}")
    spot = cast(np.array([-2.7, 255.9, np.nan, 1e19, 3e9]), np.int8)
    assert spot.tolist() == [-2, -1, 0, 0, 0]
    assert cast(np.array([-2.7]), np.uint8)[0] == 254 and cast(np.array([1e19]), np.uint64)[0] == 10**19
    assert cast(np.array([np.inf, -1e20]), np.int64).tolist() == [-2**63, -2**63]
