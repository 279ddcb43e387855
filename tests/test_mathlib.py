"""Tests for fastad.codegen.mathlib: ulp accuracy against numpy, special values,
float32 purity / vectorization of the generated IR, and numba's on-disk cache
of a caller that imports the functions.

Every function is compiled once (module-scoped fixture) inside a plain
``for i in range(n): out[i] = f(x[i])`` loop, the shape fastad's kernels use.
The error bounds below are the ones documented in docs/MATHLIB.md.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from numba import njit

ROOT = Path(__file__).resolve().parents[1]

from fastad.codegen import mathlib as ml  # noqa: E402  (imports nothing else from fastad)

UNARY = ["exp", "expm1", "log", "log1p", "sin", "cos", "tan", "tanh", "sigmoid"]
# Max error in ulps vs numpy's float64 result rounded to the dtype.
BOUND = {
    np.float32: dict(exp=1, expm1=1, log=1, log1p=2, sin=1, cos=1, tan=2, tanh=1, sigmoid=2, pow=3),
    np.float64: dict(exp=1, expm1=1, log=1, log1p=2, sin=1, cos=1, tan=2, tanh=2, sigmoid=2, pow=1),
}
DTYPES = [np.float32, np.float64]
SFX = {np.float32: "f32", np.float64: "f64"}


def _sigmoid64(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


REF = {"exp": np.exp, "expm1": np.expm1, "log": np.log, "log1p": np.log1p, "sin": np.sin, "cos": np.cos,
       "tan": np.tan, "tanh": np.tanh, "sigmoid": _sigmoid64, "pow": np.power}


def _wrap1(f):
    @njit
    def k(x, out):
        for i in range(x.shape[0]):
            out[i] = f(x[i])
    return k


def _wrap2(f):
    @njit
    def k(x, y, out):
        for i in range(x.shape[0]):
            out[i] = f(x[i], y[i])
    return k


class _Compiled:
    """Lazily compiled loop kernels, one per (function, dtype), shared by all tests."""

    def __init__(self):
        self.kernels = {}

    def __call__(self, name, dt, *xs):
        key = (name, dt)
        if key not in self.kernels:
            f = getattr(ml, f"{name}_{SFX[dt]}")
            self.kernels[key] = (_wrap2 if name == "pow" else _wrap1)(f)
        xs = [np.ascontiguousarray(x, dtype=dt) for x in xs]
        out = np.empty_like(xs[0])
        self.kernels[key](*xs, out)
        return out

    def llvm_ir(self, name, dt):
        k = self.kernels[(name, dt)]
        return k.inspect_llvm(k.signatures[0])


@pytest.fixture(scope="module")
def run():
    return _Compiled()


def reference(name, dt, *xs):
    with np.errstate(all="ignore"):
        return REF[name](*[np.asarray(x, dtype=dt).astype(np.float64) for x in xs]).astype(dt)


def ulp_error(got, ref):
    """Distance of the bit patterns on the monotone integer line; nan~nan is 0."""
    it = np.int32 if got.dtype == np.float32 else np.int64
    a = got.view(it).astype(np.int64)
    b = ref.view(it).astype(np.int64)
    lo = np.int64(np.iinfo(it).min)
    d = np.abs((np.where(a < 0, lo - a, a) - np.where(b < 0, lo - b, b)).astype(np.float64))
    na, nb = np.isnan(got), np.isnan(ref)
    d[na & nb] = 0
    d[na ^ nb] = np.inf
    return d


def special_values(dt):
    fi = np.finfo(dt)
    v = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, fi.tiny, -fi.tiny,
         fi.smallest_subnormal, -fi.smallest_subnormal, fi.max, -fi.max, fi.eps, -fi.eps, 1e-30, -1e-30,
         1e30, -1e30, np.pi / 2, np.pi, 10.0, -10.0, 20.0, -20.0, 30.0, -30.0, 100.0, -100.0, 1e5, -1e5]
    # overflow / underflow thresholds of exp, expm1 and sigmoid, +- a few ulps
    edges = [88.72283, -87.33654, -103.27893, -103.97208, 709.782712893384, -708.3964185322641,
             -744.4400719213812, -745.1332191019411, 9.01, -9.01, 19.06, -19.06, 17.33, -17.33, 37.4, -37.4]
    for e in edges:
        e = dt(e)
        v += list(np.nextafter(e, dt(np.inf)) if k > 0 else e for k in range(2))
        v += [np.nextafter(e, dt(-np.inf)), np.nextafter(np.nextafter(e, dt(np.inf)), dt(np.inf))]
    return np.array(v, dtype=dt)


def sweep(name, dt, n=200_000, seed=0):
    """Deterministic inputs: uniform over the interesting interval, log-uniform
    magnitudes of both signs, random bit patterns, and the special values."""
    rng = np.random.default_rng(seed)
    f32 = dt == np.float32
    lim = {"exp": (-110, 100) if f32 else (-750, 720), "expm1": (-20, 90) if f32 else (-40, 710),
           "log": (0, 4), "log1p": (-1, 4), "sin": (-1e5, 1e5), "cos": (-1e5, 1e5), "tan": (-1e5, 1e5),
           "tanh": (-10, 10), "sigmoid": (-110, 110) if f32 else (-750, 750)}[name]
    k = n // 4
    parts = [np.linspace(lim[0], lim[1], k), rng.uniform(lim[0], lim[1], k),
             np.exp2(rng.uniform(-60, 12, k)) * rng.choice([-1.0, 1.0], k)]
    it, ut = (np.int32, np.uint32) if f32 else (np.int64, np.uint64)
    bits = rng.integers(0, np.iinfo(ut).max, n - 3 * k, dtype=ut, endpoint=True).view(it).view(dt)
    return np.concatenate([p.astype(dt) for p in parts] + [bits, special_values(dt)])


@pytest.mark.parametrize("dt", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", UNARY)
def test_unary_ulp_error(run, name, dt):
    x = sweep(name, dt)
    got = run(name, dt, x)
    ref = reference(name, dt, x)
    d = ulp_error(got, ref)
    if name in ("sin", "cos", "tan"):
        far = np.abs(x) > (ml.TRIG_LIMIT32 if dt == np.float32 else ml.TRIG_LIMIT64)
        d[far] = 0                                  # checked in test_trig_beyond_limit
    i = int(np.argmax(d))
    assert d[i] <= BOUND[dt][name], f"{name}({x[i]!r}) = {got[i]!r}, numpy {ref[i]!r}: {d[i]} ulp"
    # zeros and infinities must match exactly, including the sign of zero
    exact = (ref == 0) | np.isinf(ref) | np.isnan(ref)
    assert np.array_equal(got[exact], ref[exact], equal_nan=True)
    assert np.array_equal(np.signbit(got[exact & ~np.isnan(ref)]), np.signbit(ref[exact & ~np.isnan(ref)]))


@pytest.mark.parametrize("dt", DTYPES, ids=["f32", "f64"])
def test_special_cases(run, dt):
    inf, nan = np.inf, np.nan
    fi = np.finfo(dt)
    big_exp = 89.0 if dt == np.float32 else 710.0
    table = {
        "exp": [(0.0, 1.0), (-0.0, 1.0), (inf, inf), (-inf, 0.0), (nan, nan), (big_exp, inf), (-big_exp * 1.2, 0.0),
                (fi.max, inf), (-fi.max, 0.0)],
        "expm1": [(0.0, 0.0), (-0.0, -0.0), (inf, inf), (-inf, -1.0), (nan, nan), (big_exp, inf), (-fi.max, -1.0)],
        "log": [(1.0, 0.0), (0.0, -inf), (-0.0, -inf), (-1.0, nan), (-inf, nan), (inf, inf), (nan, nan),
                (-fi.smallest_subnormal, nan)],
        "log1p": [(0.0, 0.0), (-0.0, -0.0), (-1.0, -inf), (-2.0, nan), (-inf, nan), (inf, inf), (nan, nan)],
        "sin": [(0.0, 0.0), (-0.0, -0.0), (inf, nan), (-inf, nan), (nan, nan)],
        "cos": [(0.0, 1.0), (-0.0, 1.0), (inf, nan), (-inf, nan), (nan, nan)],
        "tan": [(0.0, 0.0), (-0.0, -0.0), (inf, nan), (-inf, nan), (nan, nan)],
        "tanh": [(0.0, 0.0), (-0.0, -0.0), (inf, 1.0), (-inf, -1.0), (nan, nan), (fi.max, 1.0), (-fi.max, -1.0)],
        "sigmoid": [(0.0, 0.5), (-0.0, 0.5), (inf, 1.0), (-inf, 0.0), (nan, nan), (-fi.max, 0.0)],
    }
    for name, cases in table.items():
        x = np.array([c[0] for c in cases], dtype=dt)
        want = np.array([c[1] for c in cases], dtype=dt)
        got = run(name, dt, x)
        assert got.dtype == dt
        for xi, g, w in zip(x, got, want):
            assert (np.isnan(g) and np.isnan(w)) or (g == w and np.signbit(g) == np.signbit(w)), \
                f"{name}_{SFX[dt]}({xi!r}) = {g!r}, want {w!r}"
    # smallest subnormal inputs / outputs are handled, not flushed
    tiny = np.array([fi.smallest_subnormal], dtype=dt)
    assert run("log", dt, tiny)[0] == reference("log", dt, tiny)[0]
    assert run("exp", dt, np.log(np.array([fi.smallest_subnormal * 3], dtype=np.float64)).astype(dt))[0] > 0


@pytest.mark.parametrize("dt", DTYPES, ids=["f32", "f64"])
def test_trig_beyond_limit(run, dt):
    """Past the exact range the reduction loses accuracy, but results stay
    finite (and in [-1, 1] for sin/cos) for every finite input."""
    limit = ml.TRIG_LIMIT32 if dt == np.float32 else ml.TRIG_LIMIT64
    rng = np.random.default_rng(1)
    x = np.concatenate([np.exp(rng.uniform(np.log(limit), np.log(np.finfo(dt).max), 20_000)),
                        [np.finfo(dt).max, limit * 1.0001, 2.0 ** 60]]).astype(dt)
    x = np.concatenate([x, -x])
    for name in ("sin", "cos", "tan"):
        got = run(name, dt, x)
        assert np.all(np.isfinite(got)), name
        if name != "tan":
            assert np.all(np.abs(got) <= 1), name
    # just inside the limit the documented accuracy still holds
    x = np.linspace(limit * 0.99, limit, 20_001).astype(dt)
    for name in ("sin", "cos"):
        assert ulp_error(run(name, dt, x), reference(name, dt, x)).max() <= BOUND[dt][name]


def pow_sweep(dt, n=240_000, seed=2):
    """Pairs that stress pow: wide magnitudes, |x| near 1 with large y, results
    near overflow/underflow, negative bases with integer y, subnormal bases."""
    rng = np.random.default_rng(seed)
    f32 = dt == np.float32
    big = 88.0 if f32 else 709.0
    k = n // 6
    xs = [np.exp(rng.uniform(-80 if f32 else -700, 80 if f32 else 700, k)), rng.uniform(0.7, 1.42, k),
          np.exp(rng.uniform(-5, 5, k)), -np.exp(rng.uniform(-8, 8, k)), np.round(rng.uniform(-30, 30, k)),
          rng.uniform(0, 1, k) * np.finfo(dt).tiny]
    ys = [rng.uniform(-3, 3, k), rng.uniform(-1.15 * big, big, k) / np.log(xs[1]),
          rng.uniform(-1.17 * big, big, k) / np.log(xs[2]), np.round(rng.uniform(-40, 40, k)),
          np.round(rng.uniform(-12, 12, k)), rng.uniform(-0.3, 1.2, k)]
    return np.concatenate(xs).astype(dt), np.concatenate(ys).astype(dt)


@pytest.mark.parametrize("dt", DTYPES, ids=["f32", "f64"])
def test_pow_ulp_error(run, dt):
    x, y = pow_sweep(dt)
    got = run("pow", dt, x, y)
    ref = reference("pow", dt, x, y)
    d = ulp_error(got, ref)
    i = int(np.argmax(d))
    assert d[i] <= BOUND[dt]["pow"], f"pow({x[i]!r}, {y[i]!r}) = {got[i]!r}, numpy {ref[i]!r}: {d[i]} ulp"


@pytest.mark.parametrize("dt", DTYPES, ids=["f32", "f64"])
def test_pow_special_cases(run, dt):
    """Every pair of special values matches numpy exactly (value, sign of zero, nan)."""
    fi = np.finfo(dt)
    sv = np.array([0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0, 2.5, -2.5, np.inf, -np.inf, np.nan,
                   1e-30, -1e-30, 1e30, -1e30, fi.tiny / 8, -fi.tiny / 8, fi.max, -fi.max, 1 + fi.eps, 1 - fi.epsneg,
                   -(1 + fi.eps), 2.0 ** 40, -(2.0 ** 40), 2.0 ** 40 + 1 if dt == np.float64 else 2.0 ** 23 + 1],
                  dtype=dt)
    x, y = (a.ravel() for a in np.meshgrid(sv, sv))
    got = run("pow", dt, x, y)
    with np.errstate(all="ignore"):
        ref = np.power(x, y)                        # numpy in the same dtype
    d = ulp_error(got, ref)
    special = (ref == 0) | np.isinf(ref) | np.isnan(ref)   # (|ref| == 1 is not: numpy's own
    # pow(1 - 2**-53, -(1 + 2**-52)) = 1.0 is 1 ulp off; the true value rounds to 1 + 2**-52)
    bad = (special & ((d != 0) | (np.signbit(got) != np.signbit(ref)) & ~np.isnan(ref))) | (d > BOUND[dt]["pow"])
    assert not bad.any(), [(x[i], y[i], got[i], ref[i]) for i in np.flatnonzero(bad)[:10]]
    # the classic cases, spelled out
    t = dt
    cases = [((t(-2), t(3)), -8.0), ((t(-2), t(-3)), -0.125), ((t(-8), t(1 / 3)), np.nan), ((t(0), t(-1)), np.inf),
             ((t(-0.0), t(-1)), -np.inf), ((t(-0.0), t(-2)), np.inf), ((t(-0.0), t(3)), -0.0), ((t(np.nan), t(0)), 1.0),
             ((t(1), t(np.nan)), 1.0), ((t(-1), t(np.inf)), 1.0), ((t(-np.inf), t(3)), -np.inf),
             ((t(-np.inf), t(-3)), -0.0), ((t(-np.inf), t(0.5)), np.inf), ((t(0.5), t(np.inf)), 0.0),
             ((t(10), t(-np.inf)), 0.0), ((t(3), t(2)), 9.0)]
    xs = np.array([c[0][0] for c in cases], dtype=dt)
    ys = np.array([c[0][1] for c in cases], dtype=dt)
    got = run("pow", dt, xs, ys)
    for (a, b), w, g in zip((c[0] for c in cases), (c[1] for c in cases), got):
        assert (np.isnan(g) and np.isnan(w)) or (g == w and np.signbit(g) == np.signbit(dt(w))), (a, b, g, w)


@pytest.mark.parametrize("name", UNARY + ["pow", "sin_short", "cos_short", "tan_short", "exp_short"])
def test_f32_never_promotes_to_double(run, name):
    """A float32 loop calling the f32 function has no float64 operation and is
    vectorized (<4|8|16 x float>, depending on the CPU)."""
    x = np.ones(8, np.float32)
    run(name, np.float32, *([x, x] if name == "pow" else [x]))
    ir = run.llvm_ir(name, np.float32)
    assert not re.search(r"\bdouble\b", ir), [ln for ln in ir.splitlines() if re.search(r"\bdouble\b", ln)][:5]
    assert re.search(r"<(4|8|16|32) x float>", ir), "loop was not vectorized"


@pytest.mark.parametrize("name", ["exp", "sin", "tanh", "log"])
def test_f32_polynomials_use_fused_multiply_add_where_the_cpu_has_it(run, name):
    """Horner steps are `_fma`: llvm.fma on a CPU with FMA (one rounding, one instruction),
    a multiply and an add elsewhere, and never a libm call inside the vector loop."""
    from fastad.codegen.mathlib import _core
    x = np.linspace(0.5, 2, 64, dtype=np.float32)
    run(name, np.float32, x)
    ir = run.llvm_ir(name, np.float32)
    assert bool(re.search(r"llvm\.fma\.v\d+f32", ir)) == _core._FUSED
    assert "fmaf" not in ir


@pytest.mark.parametrize("name,dt", [("sin", np.float32), ("tanh", np.float32), ("pow", np.float64)])
def test_caller_fastmath_does_not_change_results(run, name, dt):
    """The bodies are compiled without fastmath even inside a fastmath kernel
    (fastad's kernels use fastmath={"reassoc"}): results are bit-identical,
    special values included."""
    f = getattr(ml, f"{name}_{SFX[dt]}")
    if name == "pow":
        @njit(fastmath=True)
        def k(x, y, out):
            for i in range(x.shape[0]):
                out[i] = f(x[i], y[i])
        x, y = pow_sweep(dt, n=6_000)
        args = (x, y)
    else:
        @njit(fastmath=True)
        def k(x, out):
            for i in range(x.shape[0]):
                out[i] = f(x[i])
        args = (sweep(name, dt, n=20_000),)
    out = np.empty_like(args[0])
    k(*args, out)
    want = run(name, dt, *args)
    assert np.array_equal(out.view(np.uint8), want.view(np.uint8))


def test_wrong_dtype_is_a_typing_error():
    from numba.core.errors import TypingError

    @njit
    def f(x):
        return ml.exp_f32(x)
    with pytest.raises(TypingError):
        f(1.0)                                      # float64 into an f32 function


GEN_MODULE = '''
import numpy as np
from numba import njit, prange
from fastad.codegen.mathlib import exp_f32, sin_f32, sigmoid_f64

@njit(parallel=True, cache=True)
def kernel32(x, y, out):
    for i in prange(x.shape[0]):
        out[i] = exp_f32(x[i]) + sin_f32(y[i])

@njit(parallel=True, cache=True)
def kernel64(x, out):
    for i in prange(x.shape[0]):
        out[i] = sigmoid_f64(x[i])
'''

DRIVER = '''
import sys, numpy as np
sys.path.insert(0, {root!r})
sys.path.insert(0, {tmp!r})
import fastad_gen_mathlib_test as g
x = np.linspace(-3, 3, 1000).astype(np.float32)
y = np.linspace(0.1, 4, 1000).astype(np.float32)
o = np.empty_like(x)
g.kernel32(x, y, o)
o64 = np.empty(1000)
g.kernel64(x.astype(np.float64), o64)
hits = sum(g.kernel32.stats.cache_hits.values()) + sum(g.kernel64.stats.cache_hits.values())
print(hits, float(o.astype(np.float64).sum()), float(o64.sum()))
'''


def test_disk_cache_of_a_caller(tmp_path):
    """A generated module that imports the functions and is compiled with
    njit(parallel=True, cache=True) is served from numba's disk cache in a
    second process, with identical results."""
    (tmp_path / "fastad_gen_mathlib_test.py").write_text(GEN_MODULE)
    code = DRIVER.format(root=str(ROOT), tmp=str(tmp_path))
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba_cache"))
    outs = []
    for _ in range(2):
        p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                           env=env, timeout=300)
        assert p.returncode == 0, p.stderr[-3000:]
        outs.append(p.stdout.split())
    assert outs[0][0] == "0", outs            # first run compiles
    assert outs[1][0] == "2", outs            # second run: both kernels from the cache
    assert outs[0][1:] == outs[1][1:]


def short_sweep(dt, n=200_000, seed=3):
    """Inputs of the short reduction: uniform over its range, next to multiples of pi/2 (tiny
    reduced arguments), log-uniform magnitudes, the range's edges, and special values."""
    rng = np.random.default_rng(seed)
    limit = float(ml.TRIG_SHORT32 if dt == np.float32 else ml.TRIG_SHORT64)
    k = n // 4
    near = (rng.integers(-int(limit / 1.5708), int(limit / 1.5708), k) * (np.pi / 2)).astype(dt)
    near = np.concatenate([near, np.nextafter(near, dt(np.inf)), np.nextafter(near, dt(-np.inf))])
    parts = [rng.uniform(-limit, limit, k), np.exp2(rng.uniform(-60, np.log2(limit), k)) * rng.choice([-1.0, 1.0], k)]
    edges = [limit, -limit, np.nextafter(dt(limit), dt(0)), 0.0, -0.0, np.inf, -np.inf, np.nan,
             np.finfo(dt).smallest_subnormal, np.finfo(dt).tiny]
    return np.concatenate([p.astype(dt) for p in parts] + [near, np.array(edges, dtype=dt)])


@pytest.mark.parametrize("dt", DTYPES, ids=["f32", "f64"])
def test_short_trig_is_the_full_reduction_within_its_range(run, dt):
    """sin_short/cos_short/tan_short agree with the full-range functions bit for bit on
    |x| <= TRIG_SHORT (float32: checked over every input of the range when this was written),
    nan and inf included, so a kernel's per-block choice cannot change a result."""
    x = short_sweep(dt)
    for name in ("sin", "cos", "tan"):
        got, want = run(f"{name}_short", dt, x), run(name, dt, x)
        same = got.view(np.uint8).reshape(len(x), -1) == want.view(np.uint8).reshape(len(x), -1)
        bad = ~same.all(axis=1)
        assert not bad.any(), (name, x[bad][:5], got[bad][:5], want[bad][:5])
        d = ulp_error(got, reference(name, dt, x))
        assert d.max() <= BOUND[dt][name], (name, x[np.argmax(d)])


@pytest.mark.parametrize("dt", DTYPES, ids=["f32", "f64"])
def test_sincos_is_sin_and_cos(dt):
    sfx = SFX[dt]
    sincos, sincos_short = getattr(ml, f"sincos_{sfx}"), getattr(ml, f"sincos_short_{sfx}")
    sin, cos = getattr(ml, f"sin_{sfx}"), getattr(ml, f"cos_{sfx}")

    @njit
    def k(x, out):
        for i in range(x.shape[0]):
            out[0, i], out[1, i] = sincos(x[i])
            out[2, i], out[3, i] = sincos_short(x[i])
            out[4, i], out[5, i] = sin(x[i]), cos(x[i])

    x = np.concatenate([sweep("sin", dt, n=40_000), short_sweep(dt, n=40_000)])
    out = np.empty((6, len(x)), dt)
    k(x, out)
    assert np.array_equal(out[0].view(np.uint8), out[4].view(np.uint8))
    assert np.array_equal(out[1].view(np.uint8), out[5].view(np.uint8))
    limit = ml.TRIG_SHORT32 if dt == np.float32 else ml.TRIG_SHORT64
    inside = ~(np.abs(x) > limit)                   # nan and inf included
    assert np.array_equal(out[2, inside].view(np.uint8), out[4, inside].view(np.uint8))
    assert np.array_equal(out[3, inside].view(np.uint8), out[5, inside].view(np.uint8))


@pytest.mark.parametrize("dt", DTYPES, ids=["f32", "f64"])
def test_short_exp_is_exp_within_its_range(run, dt):
    """exp_short equals exp bit for bit on |x| <= EXP_SHORT (float32: checked over every input of
    the range when this was written): normal results, one 2**n factor, nothing to patch."""
    limit = float(ml.EXP_SHORT32 if dt == np.float32 else ml.EXP_SHORT64)
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.uniform(-limit, limit, 100_000), np.exp2(rng.uniform(-60, np.log2(limit), 50_000))
                        * rng.choice([-1.0, 1.0], 50_000), [limit, -limit, 0.0, -0.0]]).astype(dt)
    assert np.array_equal(run("exp_short", dt, x).view(np.uint8), run("exp", dt, x).view(np.uint8))
