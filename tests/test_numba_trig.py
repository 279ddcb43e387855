"""The Numba renderer's shared and short-range trig (fastad/codegen/numba.py, docs/MATHLIB.md).

Source checks render planned kernels (no compile). Two tests compile a kernel (the `jit`
fixture) and compare it bit for bit with mathlib's full-range functions called one by one.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
from numba import njit

import fastad as fa
from fastad.codegen import mathlib as ml
from fastad.codegen.numba import render, shared_calls
from fastad.config import settings
from fastad.schedule import plan


def _kernel(y):
    (step,) = plan([y._node]).kernels()
    return step.kernel


def _calls(src: str, name: str) -> int:
    return len(re.findall(rf"\b{name}\(", src))


def test_sin_and_cos_of_one_value_run_one_sincos():
    x = fa.asarray(np.linspace(-2, 2, 1000, dtype=np.float32))
    k = _kernel(fa.sin(x) * 2 + fa.cos(x))
    assert len(shared_calls(k)) == 2
    src = render(k)
    # one call in the exact loop, one in the short-reduction loop; no separate sin or cos
    assert _calls(src, "sincos_f32") == 1 and _calls(src, "sincos_short_f32") == 1, src
    assert not any(_calls(src, f) for f in ("sin_f32", "cos_f32", "sin_short_f32", "cos_short_f32")), src
    # float64, the pair in the other order, other uses of the value in between
    xd = fa.asarray(np.linspace(-2, 2, 1000))
    src = render(_kernel(fa.cos(xd) * xd + fa.sin(xd)))
    assert _calls(src, "sincos_f64") == 1 and _calls(src, "sin_f64") == _calls(src, "cos_f64") == 0, src


def test_different_values_and_2d_kernels():
    x = fa.asarray(np.linspace(-2, 2, 1000, dtype=np.float32))
    src = render(_kernel(fa.sin(x) + fa.cos(2 * x)))
    assert _calls(src, "sincos_f32") == 0 and _calls(src, "sin_f32") == _calls(src, "cos_f32") == 1
    assert _calls(src, "sin_short_f32") == _calls(src, "cos_short_f32") == 1   # both arguments are cheap
    # a 2-D kernel shares sin/cos but has no per-block switch (the blocks are 1-D)
    m = fa.asarray(np.ones((30, 40), np.float32))
    src = render(_kernel(fa.sum(fa.sin(m) * fa.cos(m), axis=1)))
    assert _calls(src, "sincos_f32") == 1 and "short" not in src and "far" not in src, src


def test_short_path_needs_cheap_arguments():
    x = fa.asarray(np.linspace(-2, 2, 1000, dtype=np.float32))
    src = render(_kernel(fa.sin(fa.exp(x)) + fa.tan(3 * x + 1)))
    # exp(x) would be computed twice per block: sin of it keeps the full reduction everywhere
    assert _calls(src, "sin_f32") == 2 and _calls(src, "sin_short_f32") == 0, src
    assert _calls(src, "tan_f32") == 1 and _calls(src, "tan_short_f32") == 1, src
    # the checks: tan's argument, and exp's (x, cheap: exp joins the switch that tan brings)
    assert src.count("far |= not (abs(") == 2 and _calls(src, "exp_short_f32") == 1, src
    # no trig, no switch: the loop is unchanged, exp included
    assert "far" not in render(_kernel(fa.exp(x) * 2))
    # with trig, exp of a cheap argument joins the switch: its short version in the short loop
    src = render(_kernel(fa.sin(x) * fa.exp(-x * x) + fa.exp(fa.tanh(x))))
    assert _calls(src, "exp_short_f32") == 1 and _calls(src, "exp_f32") == 3, src   # exp(tanh) stays
    assert src.count("far |= not (abs(") == 2 and "EXP_SHORT32" in src


@pytest.fixture
def jit(monkeypatch):
    monkeypatch.setattr(settings, "cpu_mode", "jit")
    yield


def _mixed_blocks(dt):
    """Blocks of 256 where most values are small and some block holds one huge, inf or nan value,
    values next to multiples of pi/2, the short ranges' edges, and a ragged tail."""
    rng = np.random.default_rng(4)
    x = rng.uniform(-3, 3, 256 * 9 + 37)
    x[256 + 17] = 1e6 if dt == np.float32 else 1e12           # block 1: beyond the short range
    x[2 * 256 + 3] = np.inf                                    # block 2
    x[3 * 256 + 100] = np.nan                                  # block 3
    k = np.arange(1, 200)
    x[4 * 256:4 * 256 + 199] = k * (np.pi / 2)                 # block 4: tiny reduced arguments
    limit = float(ml.TRIG_SHORT32 if dt == np.float32 else ml.TRIG_SHORT64)
    x[5 * 256:5 * 256 + 4] = [limit, -limit, np.nextafter(dt(limit), dt(np.inf)), -limit * 1.5]
    x[6 * 256:7 * 256] = rng.uniform(-limit, limit, 256)       # block 6: the whole short range
    x[7 * 256 + 5] = -0.0
    e = float(ml.EXP_SHORT32 if dt == np.float32 else ml.EXP_SHORT64)
    x[7 * 256 + 6] = np.nextafter(dt(-e), dt(-np.inf))           # block 7: exp's argument just beyond
    x[8 * 256:9 * 256] = rng.uniform(-e, e, 256)               # block 8: exp's whole short range
    x[8 * 256:8 * 256 + 2] = [e, -e]
    return x.astype(dt)


@pytest.mark.parametrize("dt", [np.float32, np.float64], ids=["f32", "f64"])
def test_compiled_short_calls_match_the_full_range_functions_bit_for_bit(jit, dt):
    sfx = "f32" if dt == np.float32 else "f64"
    sin, cos, tan, exp = (getattr(ml, f"{f}_{sfx}") for f in ("sin", "cos", "tan", "exp"))
    three = dt(3)

    @njit
    def reference(x, out):
        for i in range(x.shape[0]):
            out[i] = ((sin(x[i]) + cos(x[i]) * three) + tan(x[i])) + exp(-x[i])

    xn = _mixed_blocks(dt)
    x = fa.asarray(xn)
    with fa.profile() as p:
        got = (((fa.sin(x) + fa.cos(x) * 3) + fa.tan(x)) + fa.exp(-x)).numpy()
    assert [k.tier for k in p.kernels] == ["numba"], str(p)
    want = np.empty_like(xn)
    reference(xn, want)
    assert np.array_equal(got.view(np.uint8), want.view(np.uint8)), np.flatnonzero(got != want)[:10]
