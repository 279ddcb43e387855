"""The numpy tier (fastad.runtime.interpret): large problems run in blocks and agree with the reference."""
import numpy as np
import pytest
from hypothesis import given, settings as hsettings, strategies as st

import fastad as fa
from fastad.config import settings
from fastad.runtime import interpret as interp


@pytest.fixture
def numpy_tier(monkeypatch):
    """Kernels run on the numpy tier: a fresh CPU backend (nothing compiled) that never compiles."""
    from fastad import runtime
    from fastad.runtime.cpu import CpuBackend
    monkeypatch.setitem(runtime._backends, "cpu", CpuBackend())
    monkeypatch.setattr(settings, "cpu_mode", "auto")
    monkeypatch.setattr(settings, "jit_min_elements", 10**12)
    monkeypatch.setattr(settings, "jit_after_calls", 10**9)


def both(fn):
    """fn() on the numpy tier (blocked) and through the node-by-node reference executor."""
    got = fn()
    old = settings.cpu_mode
    settings.cpu_mode = "reference"
    try:
        want = fn()
    finally:
        settings.cpu_mode = old
    return got, want


def _agree(got: list, want: list, tol: float) -> None:
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


def test_blocked_chain_value_and_gradient(numpy_tier):
    xn = np.random.default_rng(0).uniform(-3, 3, 3 * interp.BLOCK + 17).astype(np.float32)

    def run():
        x = fa.asarray(xn, requires_grad=True)
        y = fa.sum(fa.sin(x) * fa.exp(-x * x) + fa.tanh(3 * x) * x + 1 / (1 + fa.exp(-x)))
        with fa.profile() as p:
            y.backward()
            out = float(y), x.grad.numpy()
        return out, [l.tier for l in p.kernels]

    ((v, g), tiers), ((vr, gr), _) = both(run)
    assert tiers == ["numpy"]
    assert v == pytest.approx(vr, rel=1e-6)
    np.testing.assert_allclose(g, gr, rtol=1e-6, atol=1e-6)


def test_blocked_row_reductions_and_broadcasts(numpy_tier):
    rng = np.random.default_rng(1)
    an, bn = rng.standard_normal((700, 400)), rng.standard_normal(400)
    an[650, 3] = np.nan   # a nan in a late block must reach the max of its column and the full max

    def run():
        a, b = fa.asarray(an), fa.asarray(bn)
        e = fa.exp(a * 0.5) * b
        outs = [fa.sum(e, axis=1), fa.max(a, axis=0), fa.min(e), fa.sum(e), e + 1]
        fa.realize(*outs)
        return [o.numpy() for o in outs]

    got, want = both(run)
    _agree(got, want, 1e-12)
    assert np.isnan(got[1][3]) and np.isnan(got[2])


def test_blocked_integer_sum_wraps_like_numpy(numpy_tier):
    xn = np.random.default_rng(2).integers(-2**30, 2**30, 4 * interp.BLOCK, dtype=np.int64).astype(np.int32)
    got, want = both(lambda: (fa.sum(fa.asarray(xn) * 3)).numpy())
    np.testing.assert_array_equal(got, want)


def test_blocks_on_threads_give_identical_bits(numpy_tier, monkeypatch):
    from fastad.device import CPU
    from fastad.runtime import backend_for
    xn = np.random.default_rng(3).standard_normal(5 * interp.BLOCK + 3).astype(np.float32)

    def run():
        x = fa.asarray(xn, requires_grad=True)
        y = fa.sum(fa.tanh(x) * x)
        y.backward()
        return float(y), x.grad.numpy().copy()

    v_pool, g_pool = run()
    monkeypatch.setattr(backend_for(CPU), "_pool", None)
    v_one, g_one = run()
    assert v_pool == v_one
    np.testing.assert_array_equal(g_pool, g_one)


def test_blocked_scratch_slots_with_mixed_dtypes(numpy_tier):
    """Statements write into reused scratch buffers; ops whose result dtype differs from an
    operand's (int times float, comparisons, where) still match the reference."""
    rng = np.random.default_rng(4)
    n = 3 * interp.BLOCK + 5
    xn = rng.standard_normal(n).astype(np.float32)
    kn = rng.integers(-5, 5, n).astype(np.int32)

    def run():
        x, k = fa.asarray(xn), fa.asarray(kn)
        view = x * 2
        later = fa.exp(x) + fa.sin(x)
        mixed = fa.astype(k, fa.float32) * x + (x > 0.5)
        guard = fa.where(k > 0, fa.sqrt(fa.abs(x)), x)
        outs = [view + later, mixed, guard, fa.sum(view * later)]
        fa.realize(*outs)
        return [o.numpy() for o in outs]

    _agree(*both(run), 1e-6)


def _hand_kernel(*ops):
    """A float32 kernel over one input: load, two scalars, then `ops` as (name, srcs); stores the last."""
    from fastad.dtypes import float32
    from fastad.kernel_ir import Input, Kernel, Output, Stmt
    body = (Stmt("load", (), float32, 0), Stmt("scalar", (), float32, 0), Stmt("scalar", (), float32, 1))
    body += tuple(Stmt(op, srcs, float32) for op, srcs in ops)
    return Kernel(1, 0, (Input(float32, "n"),), (float32, float32), body, (Output(len(body) - 1, float32),))


def test_a_view_returned_by_a_reference_keeps_its_buffer():
    """np.real of a real array returns the array itself: while that view lives, the scratch buffer
    under it must not be reused (here by exp, computed after the mul it views is dead)."""
    kernel = _hand_kernel(("mul", (0, 1)), ("real", (3,)), ("exp", (0,)), ("add", (4, 5)))
    x = np.linspace(-1, 1, 3 * interp.BLOCK, dtype=np.float32)
    out, = interp.interpret(kernel, x.shape, [(x, 0, (1,))], [1.5, 2.0])
    np.testing.assert_array_equal(out, x * np.float32(1.5) + np.exp(x))


def test_program_reuses_buffers_and_folds_scalar_statements(monkeypatch):
    """Values share scratch buffers once dead; statements of scalars alone are computed once per
    call, not once per block."""
    kernel = _hand_kernel(("add", (1, 2)), ("mul", (0, 3)), ("exp", (4,)), ("sin", (5,)), ("mul", (6, 0)))
    program, slot_dtypes = interp._compile(kernel, [1.5, 2.0], np, into=True)
    kinds = [step[0] for step in program]
    assert kinds == [interp._LOAD, interp._CONST, interp._CONST, interp._CONST] + [interp._INTO] * 4
    assert program[3][3] == np.float32(3.5)
    assert len(slot_dtypes) == 2   # mul, exp, sin, mul: each value dies at the next statement
    # the plan is kept per kernel; another call's scalars only recompute the constant values
    monkeypatch.setattr(interp, "_plan", lambda *a: pytest.fail("planned twice"))
    again, _ = interp._compile(kernel, [0.5, 1.0], np, into=True)
    assert again[3][3] == np.float32(1.5) and [step[0] for step in again] == kinds
    x = np.linspace(-1, 1, 3 * interp.BLOCK, dtype=np.float32)
    out, = interp.interpret(kernel, x.shape, [(x, 0, (1,))], [1.5, 2.0])
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(out, np.sin(np.exp(x * np.float32(3.5))) * x)


_RANDOM_OPS = [("add", 2), ("mul", 2), ("sub", 2), ("maximum", 2), ("sin", 1), ("exp", 1), ("neg", 1),
               ("real", 1), ("tanh", 1), ("sigmoid", 1), ("nan_guard", 2)]


@given(st.data())
@hsettings(max_examples=40, deadline=None)
def test_random_programs_match_statement_by_statement_numpy(data):
    """Random kernels (any statement may read any earlier one; several stores and a sum) run in
    blocks through reused scratch buffers and agree exactly with fresh numpy arrays per statement,
    whatever the liveness pattern, including views returned by a reference (real)."""
    from fastad.dtypes import float32
    from fastad.kernel_ir import Input, Kernel, Output, Stmt
    n_in = data.draw(st.integers(1, 2))
    body = [Stmt("load", (), float32, k) for k in range(n_in)] + [Stmt("scalar", (), float32, 0)]
    for _ in range(data.draw(st.integers(1, 12))):
        op, arity = data.draw(st.sampled_from(_RANDOM_OPS))
        srcs = tuple(data.draw(st.integers(0, len(body) - 1)) for _ in range(arity))
        body.append(Stmt(op, srcs, float32))
    picks = data.draw(st.lists(st.integers(n_in + 1, len(body) - 1), min_size=1, max_size=3))
    outputs = tuple(Output(v, float32) for v in picks) + (Output(len(body) - 1, float32, "sum"),)
    kernel = Kernel(1, 1, tuple(Input(float32, "n") for _ in range(n_in)), (float32,), tuple(body), outputs)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    n = 2 * interp.BLOCK + data.draw(st.integers(1, 5000))
    xs = [rng.uniform(-2, 2, n).astype(np.float32) for _ in range(n_in)]
    got = interp.interpret(kernel, (n,), [(x, 0, (1,)) for x in xs], [0.75])
    values = []
    with np.errstate(all="ignore"):
        for s in body:
            if s.op == "load":
                values.append(xs[s.arg])
            elif s.op == "scalar":
                values.append(np.float32(0.75))
            else:
                out = fa.ops.OPS[s.op].ref(*[values[i] for i in s.srcs], None)
                values.append(np.array(out, dtype=np.float32, copy=True))
    for g, o in zip(got[:-1], outputs[:-1]):
        np.testing.assert_array_equal(g, np.broadcast_to(values[o.value], (n,)))
    last = np.broadcast_to(values[-1], (n,)).astype(np.float64)
    # float32 sums per block, combined in float64: rounding relative to the terms, not to the total
    np.testing.assert_allclose(got[-1], np.sum(last), rtol=1e-5, atol=1e-6 * np.sum(np.abs(last)))
