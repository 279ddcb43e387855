"""The fused Numba CPU backend: kernel counts, no recompiles, JIT == reference on random graphs, disk cache."""
import os
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

import fastad as fa
from fastad.config import settings
from fastad.runtime.reference import evaluate


@pytest.fixture
def jit(monkeypatch):
    """Compile every kernel (no numpy tier) for the duration of a test."""
    monkeypatch.setattr(settings, "cpu_mode", "jit")
    yield


def chain(x):
    return fa.sum(fa.sin(x) * fa.exp(-x * x) + fa.tanh(3 * x) * x + 1 / (1 + fa.exp(-x)))


def chain_grad_np(x):
    x = x.astype(np.float64)
    s, t, e = 1 / (1 + np.exp(-x)), np.tanh(3 * x), np.exp(-x * x)
    return np.cos(x) * e - 2 * x * np.sin(x) * e + 3 * (1 - t * t) * x + t + s * (1 - s)


def test_chain_value_and_gradient_run_as_one_kernel(jit):
    xn = np.linspace(-3, 3, 1001, dtype=np.float32)
    x = fa.asarray(xn, requires_grad=True)
    y = chain(x)
    with fa.profile() as p:
        y.backward()
        value, grad = float(y), x.grad.numpy()
    assert p.launched == 1, str(p)
    x64 = xn.astype(np.float64)
    ref = np.sum(np.sin(x64) * np.exp(-x64 * x64) + np.tanh(3 * x64) * x64 + 1 / (1 + np.exp(-x64)))
    assert value == pytest.approx(ref, rel=1e-6)
    np.testing.assert_allclose(grad, chain_grad_np(xn), rtol=1e-5, atol=1e-6)


def test_repeat_new_size_and_new_constant_compile_nothing(jit):
    def run(n, c):
        x = fa.asarray(np.linspace(-1, 1, n, dtype=np.float32), requires_grad=True)
        y = fa.sum(fa.exp(x * c) + x)
        y.backward()
        return float(y), x.grad.numpy()

    run(100, 2.0)
    with fa.profile() as p:
        v1, g1 = run(100, 2.0)
        v2, g2 = run(5000, 2.0)          # new N
        v3, g3 = run(100, 3.5)           # new scalar constant
    assert p.compiled == 0 and p.launched == 3, str(p)
    xs = np.linspace(-1, 1, 100)
    np.testing.assert_allclose(g3, 3.5 * np.exp(3.5 * xs) + 1, rtol=1e-5)
    assert v2 == pytest.approx(np.sum(np.exp(2 * np.linspace(-1, 1, 5000)) + np.linspace(-1, 1, 5000)), rel=1e-5)


@pytest.fixture
def fresh_backend(monkeypatch, tmp_path):
    """A new CPU backend (nothing compiled in memory) over an empty kernel cache directory."""
    from fastad import runtime
    from fastad.runtime.cache import clear_cache
    from fastad.runtime.cpu import CpuBackend
    monkeypatch.setenv("FASTAD_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(settings, "cpu_mode", "auto")
    monkeypatch.setattr(settings, "small_graph_elements", 0)
    clear_cache(disk=False)
    backend = CpuBackend()
    monkeypatch.setitem(runtime._backends, "cpu", backend)
    yield backend
    backend.wait_for_compiles()
    clear_cache(disk=False)


def test_tiering_runs_numpy_first_then_compiles_in_the_background(fresh_backend, monkeypatch):
    monkeypatch.setattr(settings, "jit_after_calls", 2)
    monkeypatch.setattr(settings, "jit_min_elements", 10**9)
    runs = []
    for i in range(3):
        if i == 2:
            assert fa.runtime.cpu.wait_for_compiles(timeout=300)
        x = fa.asarray(np.arange(7, dtype=np.float32), requires_grad=True)
        y = fa.sum(fa.cos(x) * 1.25 + x * x * x)
        with fa.profile() as p:
            y.backward()
        runs.append(([(l.tier, l.compiling) for l in p.kernels], p.compiled + p.cache_hits))
        np.testing.assert_allclose(x.grad.numpy(), -1.25 * np.sin(np.arange(7)) + 3 * np.arange(7.) ** 2,
                                   rtol=1e-5)
    # call 1: numpy; call 2: numpy while the compile runs in the background; call 3: compiled
    assert [r[0] for r in runs] == [[("numpy", False)], [("numpy", True)], [("numba", False)]], runs
    assert [r[1] for r in runs] == [0, 0, 1], runs


def test_background_compile_in_a_thread_when_asked(fresh_backend, monkeypatch):
    # FASTAD_COMPILE_PROCESS=0: Numba compiles on the (daemon) compile thread of this process
    monkeypatch.setenv("FASTAD_COMPILE_PROCESS", "0")
    monkeypatch.setattr(settings, "jit_min_elements", 1)
    x = fa.asarray(np.linspace(-1, 1, 11), requires_grad=True)
    tiers = []
    for _ in range(2):
        y = fa.sum(fa.sin(x) * 2.5 + x)
        with fa.profile() as p:
            y.backward()
        tiers.append([l.tier for l in p.kernels])
        np.testing.assert_allclose(x.grad.numpy(), 2.5 * np.cos(np.linspace(-1, 1, 11)) + 1, rtol=1e-12)
        x.grad = None
        assert fa.runtime.cpu.wait_for_compiles(timeout=300)
    assert tiers == [["numpy"], ["numba"]], tiers
    assert fresh_backend._compile_thread()._thread_is_daemon()


def test_first_large_call_never_waits_and_agrees_with_compiled(fresh_backend, monkeypatch):
    monkeypatch.setattr(settings, "jit_min_elements", 1000)
    xn = np.random.default_rng(5).uniform(-3, 3, 300_001).astype(np.float32)
    results = []
    for i in range(2):
        x = fa.asarray(xn, requires_grad=True)
        y = chain(x)
        with fa.profile() as p:
            y.backward()
            results.append((float(y), x.grad.numpy().copy(), [l.tier for l in p.kernels]))
        fa.runtime.cpu.wait_for_compiles(timeout=300)
    (v0, g0, t0), (v1, g1, t1) = results
    assert t0 == ["numpy"] and t1 == ["numba"], (t0, t1)
    assert v1 == pytest.approx(v0, rel=1e-5)
    np.testing.assert_allclose(g1, g0, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(g1, chain_grad_np(xn), rtol=1e-5, atol=1e-5)


def test_background_compile_failure_falls_back_to_numpy_with_a_warning(fresh_backend, monkeypatch):
    from fastad.runtime import cpu, cpu_compile
    # the compile process itself fails (as a compiler crash would): the numpy tier carries on
    monkeypatch.setattr(cpu_compile, "_CHILD", "raise SystemExit('simulated compiler failure')")
    monkeypatch.setattr(settings, "jit_min_elements", 1)
    xn = np.linspace(-2, 2, 101)
    grads = []
    for i in range(3):
        x = fa.asarray(xn, requires_grad=True)
        y = fa.sum(fa.tanh(x) * x)
        if i == 1:
            assert cpu.wait_for_compiles(timeout=60)
            with pytest.warns(cpu.KernelCompileWarning, match="simulated compiler failure"):
                y.backward()
        else:
            with fa.profile() as p:
                y.backward()
            assert [l.tier for l in p.kernels] == ["numpy"]
        grads.append(x.grad.numpy())
        assert fresh_backend.tier_of(_only_kernel(fresh_backend)) in ("compiling", "failed")
    for g in grads:
        np.testing.assert_allclose(g, np.tanh(xn) + xn * (1 - np.tanh(xn) ** 2), rtol=1e-12)
    assert fresh_backend.tier_of(_only_kernel(fresh_backend)) == "failed"
    text = fa.explain(fa.sum(fa.tanh(x) * x), file=open(os.devnull, "w"))
    assert "tiers (CPU):" in text and "numpy tier" in text


def _only_kernel(backend):
    keys = {*backend._pending, *backend._failed, *backend._compiled}
    assert len(keys) == 1, keys
    return types.SimpleNamespace(key=keys.pop())   # tier_of reads only the key


# ---------------------------------------------------------------------------
# Every elementwise op through compiled kernels, many ops per kernel (one compile per dtype)
# ---------------------------------------------------------------------------

FLOAT_UNARY = ["exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tan", "tanh", "sigmoid", "relu", "abs",
               "sign", "square", "floor", "ceil", "round", "negative"]
BINARY = ["add", "subtract", "multiply", "divide", "maximum", "minimum", "pow", "floor_divide", "remainder",
          "less", "less_equal", "greater", "greater_equal", "equal", "not_equal"]


@pytest.mark.parametrize("dtype", [fa.float32, fa.float64])
def test_float_ops_compiled_match_reference(jit, dtype):
    rng = np.random.default_rng(1)
    an = rng.uniform(0.1, 3, (5, 7)).astype(dtype.np)
    bn = rng.uniform(-2, 2, (7,)).astype(dtype.np)
    bn[0] = an[0, 0]  # a tie for maximum/minimum
    a, b = fa.asarray(an), fa.asarray(bn)
    outs = [getattr(fa, n)(a) for n in FLOAT_UNARY] + [getattr(fa, n)(a, b) for n in BINARY]
    outs += [fa.where(a > 1, a, b), fa.clip(a, 0.5, 2.0), fa.isnan(a / (a - a)), fa.isfinite(a / b)]
    nodes = [o._node for o in outs]
    expected = evaluate(nodes)
    with fa.profile() as p:
        fa.realize(*outs)
        got = [o.numpy() for o in outs]
    assert p.launched == 1, str(p)  # one fused multi-output kernel
    tol = 2e-6 if dtype is fa.float32 else 1e-12
    for o, g, e in zip(outs, got, expected):
        assert g.dtype == e.dtype
        np.testing.assert_allclose(g, e, rtol=tol * 4, atol=tol, err_msg=repr(o.grad_fn))


@pytest.mark.parametrize("dtype", [fa.int32, fa.int64])
def test_integer_ops_compiled_match_reference(jit, dtype):
    rng = np.random.default_rng(2)
    an = rng.integers(-50, 50, (4, 6)).astype(dtype.np)
    bn = rng.integers(1, 9, (6,)).astype(dtype.np)
    a, b = fa.asarray(an), fa.asarray(bn)
    outs = [a + b, a - b, a * b, a // b, a % b, fa.maximum(a, b), fa.minimum(a, b), -a, fa.abs(a), a ** 2,
            a < b, a == b, fa.sum(a, axis=1), fa.max(a, axis=0), fa.min(a), fa.prod(b), a.astype(fa.float32) / 3,
            (a > 0) & (b > 3), (a > 0) | (b > 3), fa.logical_not(a > 0)]
    expected = evaluate([o._node for o in outs])
    fa.realize(*outs)
    for o, e in zip(outs, expected):
        g = o.numpy()
        assert g.dtype == e.dtype
        np.testing.assert_allclose(g, e, rtol=1e-6)


def test_nan_propagates_through_max_min_reductions(jit):
    x = fa.asarray(np.array([[1.0, np.nan, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32))
    np.testing.assert_array_equal(fa.max(x, axis=1).numpy(), [np.nan, 6.0])
    np.testing.assert_array_equal(fa.min(x, axis=1).numpy(), [np.nan, 4.0])
    assert np.isnan(float(fa.max(x)))


# ---------------------------------------------------------------------------
# Random graphs: compiled kernels against the reference executor
# ---------------------------------------------------------------------------

_UNARY = [fa.exp, fa.tanh, fa.sin, fa.sigmoid, fa.relu, lambda t: t * t, lambda t: -t, lambda t: t * 0.5]
_BIN = [fa.add, fa.subtract, fa.multiply, fa.maximum, lambda a, b: a / (1.5 + b * b)]


@st.composite
def random_graph(draw):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=ndim, max_size=ndim)))
    # a second input broadcasting against the first: some dims set to 1, maybe fewer dims
    bshape = tuple(1 if draw(st.booleans()) else d for d in shape)[draw(st.integers(0, ndim - 1)):]
    seed = draw(st.integers(0, 2**31 - 1))
    ops = draw(st.lists(st.tuples(st.integers(0, len(_UNARY) - 1), st.integers(0, len(_BIN) - 1),
                                  st.integers(0, 9)), min_size=1, max_size=5))
    reduce_axes = draw(st.sampled_from([None, 0, -1, (0, -1)]))
    keepdims = draw(st.booleans())
    transpose = draw(st.booleans())
    return shape, bshape, seed, ops, reduce_axes, keepdims, transpose


@hsettings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graph())
def test_random_graphs_jit_equals_reference(g):
    shape, bshape, seed, ops, axes, keepdims, transpose = g
    rng = np.random.default_rng(seed)
    an, bn = rng.uniform(-1, 1, shape), rng.uniform(-1, 1, bshape)
    results = {}
    for mode in ("reference", "jit"):
        old = settings.cpu_mode
        settings.cpu_mode = mode
        try:
            a = fa.asarray(an, requires_grad=True)
            b = fa.asarray(bn, requires_grad=True)
            vals = [a, b]
            for u, bi, pick in ops:
                lhs = vals[pick % len(vals)]
                rhs = vals[(pick * 7 + 1) % len(vals)]
                vals.append(_UNARY[u](_BIN[bi](lhs, rhs)))
            out = vals[-1]
            if transpose and out.ndim >= 2:
                out = out.mT
            loss_vec = fa.sum(out, axis=axes if out.ndim > 1 or axes in (None, 0, -1) else None,
                              keepdims=keepdims)
            loss = fa.sum(loss_vec * loss_vec)
            loss.backward()
            results[mode] = (loss_vec.numpy(), a.grad.numpy(), b.grad.numpy())
        finally:
            settings.cpu_mode = old
    for r, j in zip(results["reference"], results["jit"]):
        np.testing.assert_allclose(j, r, rtol=1e-9, atol=1e-11)


# ---------------------------------------------------------------------------
# The MLP training step runs fused
# ---------------------------------------------------------------------------

def test_mlp_training_step_is_fused_and_learns(jit):
    rng = np.random.default_rng(0)
    X = fa.asarray(rng.standard_normal((64, 20)).astype(np.float32))
    labels = rng.integers(0, 5, 64)
    Y = fa.asarray(np.eye(5, dtype=np.float32)[labels])
    W1 = fa.asarray(rng.standard_normal((20, 32)).astype(np.float32) * 0.2, requires_grad=True)
    b1 = fa.zeros(32, requires_grad=True)
    W2 = fa.asarray(rng.standard_normal((32, 5)).astype(np.float32) * 0.2, requires_grad=True)
    b2 = fa.zeros(5, requires_grad=True)

    def step():
        h = fa.relu(X @ W1 + b1)
        z = h @ W2 + b2
        m = fa.max(z, axis=1, keepdims=True)
        lse = fa.log(fa.sum(fa.exp(z - m), axis=1, keepdims=True)) + m
        loss = fa.mean(fa.sum((lse - z) * Y, axis=1))
        loss.backward()
        with fa.no_grad():
            for w in (W1, b1, W2, b2):
                w -= 0.5 * w.grad
                w.grad = None
        return float(loss)

    losses = [step() for _ in range(3)]
    with fa.profile() as p:
        losses += [step() for _ in range(20)]
    assert p.compiled == 0
    per_step = p.launched / 20
    assert per_step <= 17, str(p)  # 4 are the SGD updates, 4 the matmuls run as BLAS calls
    assert losses[-1] < 0.5 * losses[0]


def test_explain_shows_plan_and_source():
    x = fa.asarray(np.ones(4, np.float32), requires_grad=True)
    y = fa.sum(fa.exp(x) * 2)
    text = fa.explain(y, source=True, file=open(os.devnull, "w"))
    assert "exp(%0)" in text and "plan: 1 fused kernel" in text and "def body" in text


# ---------------------------------------------------------------------------
# The disk cache makes a second process start warm
# ---------------------------------------------------------------------------

def test_second_process_loads_kernels_from_disk(tmp_path):
    script = textwrap.dedent("""
        import numpy as np, fastad as fa
        from fastad.config import settings
        settings.cpu_mode = "jit"
        x = fa.asarray(np.linspace(-1, 1, 50, dtype=np.float32), requires_grad=True)
        with fa.profile() as p:
            y = fa.sum(fa.tanh(x) * x + 0.25)
            y.backward()
            v = float(y)
        print(p.compiled, p.cache_hits, round(v, 4))
    """)
    env = dict(os.environ, FASTAD_CACHE_DIR=str(tmp_path), PYTHONPATH=os.getcwd())
    first = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    second = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    c1, h1, v1 = first.stdout.split()
    c2, h2, v2 = second.stdout.split()
    assert int(c1) >= 1 and int(c2) == 0 and int(h2) >= 1 and v1 == v2, (first.stdout, second.stdout)


def test_reductions_are_bit_identical_for_any_thread_count(jit, monkeypatch):
    from fastad.device import CPU
    from fastad.runtime import backend_for
    backend = backend_for(CPU)
    xn = np.random.default_rng(3).standard_normal(600_011).astype(np.float32)

    def run():
        x = fa.asarray(xn, requires_grad=True)
        y = chain(x)
        y.backward()
        return float(y), x.grad.numpy().copy()

    v_pool, g_pool = run()
    monkeypatch.setattr(backend, "_pool", None)  # everything on the calling thread
    v_one, g_one = run()
    assert v_pool == v_one
    np.testing.assert_array_equal(g_pool, g_one)


def test_chain_value_and_gradient_allocate_only_the_gradient(jit):
    """Peak extra memory of value+grad: the gradient buffer itself, no stored intermediates."""
    import tracemalloc
    n = 1_000_000
    xn = np.random.default_rng(4).standard_normal(n).astype(np.float32)
    x = fa.asarray(xn, requires_grad=True)
    chain(x).backward()          # compile outside the measurement
    x.grad = None
    from fastad.runtime.buffers import pool
    pool.clear()                 # a fresh gradient buffer, not the pooled one the last call freed
    y = chain(x)
    tracemalloc.start()
    try:
        y.backward()
        float(y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= n * 4 + 2 * n * 4, f"peak {peak / (n * 4):.2f} buffers of N float32"
    assert peak >= n * 4  # the gradient itself is allocated (the measurement works)


def test_float32_sums_accumulate_in_blocks_with_numpy_accuracy(jit):
    """float32 sums run in float32 lanes per block of 256, blocks added in float64: the result is
    within one float32 rounding of the exact sum, like numpy's pairwise sum or better."""
    rng = np.random.default_rng(7)
    cases = [rng.uniform(0, 1, 1_000_003), rng.standard_normal(300_001) * 1e3 + 5e3,
             np.concatenate([np.full(500_000, 1e4), np.full(500_000, 1e-3)])]
    for xn in cases:
        xn = xn.astype(np.float32)
        got = float(fa.sum(fa.asarray(xn) * 1.5))
        terms = (xn * np.float32(1.5)).astype(np.float64)   # the float32 products, summed exactly
        exact = float(np.sum(terms))
        ulp = float(np.spacing(np.float32(abs(exact))))
        numpy_err = abs(float(np.sum(xn * np.float32(1.5))) - exact)
        assert abs(got - exact) <= max(ulp, numpy_err), (got, exact, ulp, numpy_err)


def test_kernel_that_raises_reruns_on_numpy_and_raises_numpys_error(jit):
    """A compiled kernel reports an exception by status; the numpy tier then defines the outcome."""
    n = 400_003   # several slices on the thread pool; the negative exponent sits in a late one
    an = np.arange(n, dtype=np.int64) % 7
    bn = np.full(n, 3, dtype=np.int64)
    np.testing.assert_array_equal((fa.asarray(an) ** fa.asarray(bn)).numpy(), an ** 3)
    bn[n - 5] = -1
    with fa.profile() as p, pytest.raises(ValueError, match="negative integer powers"):
        (fa.asarray(an) ** fa.asarray(bn)).numpy()
    assert [l.tier for l in p.kernels] == ["numba"]   # it ran compiled first
