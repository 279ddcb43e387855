"""mathlib: branch-free, vectorizable exp/log/trig/pow for Numba-generated kernels.

Role: numba lowers ``math.exp``/``math.sin``/... to scalar libm calls, which
LLVM cannot vectorize (no SVML).  The functions here are written so that a
``for i in prange(n): out[i] = exp_f32(x[i])`` loop becomes 16-lane AVX-512
(8-lane AVX2) code: no branches (only ``select``), no data-dependent loops,
no calls, and the ``*_f32`` variants never touch float64.

Public API, callable from numba-compiled code only (``from
fastad.codegen.mathlib import exp_f32``), one function per dtype:
    exp, expm1, log, log1p, sin, cos, tan, tanh, sigmoid   -> name_f32(x), name_f64(x)
    sincos                                                 -> (sin, cos) = sincos_f32(x), ...
    sin_short, cos_short, tan_short, sincos_short          -> the same for |x| <= TRIG_SHORT32/64
    exp_short                                              -> exp for |x| <= EXP_SHORT32/64
    pow                                                    -> pow_f32(x, y), pow_f64(x, y)
    floordiv, mod (numpy's divmod), ipow, upow (integers)  -> intops.py
    stack_array, opaque, select, acc_add, acc_mul (kernel plumbing, not math) -> scratch.py
Arguments must already have exactly the function's dtype (float32 for
``_f32``); anything else is a numba TypingError.  Special values (±0, ±inf,
nan, overflow, underflow, domain errors, pow's integer-exponent rules) follow
numpy.  Accuracy (1-3 ulp), methods and speed: docs/MATHLIB.md.

Files: ``_core.py`` (the LLVM intrinsics, dtype-generic helpers and ``_export``,
which compiles a public name once and force-inlines it), ``f32.py`` and
``f64.py`` (the functions per dtype), ``intops.py`` (floordiv, mod, integer
pow), ``scratch.py`` (stack tiles and an optimization barrier for the renderer's
column-form reductions).  Where to start reading: ``_core._export``, then ``f32._exp_f32``: the
template every function follows -- clamp the input so the core never sees
inf/nan, reduce the range, evaluate a polynomial, then patch special cases
with selects.

Rules for editing these files (the tests check the first two):
  * f32 code: every constant is an ``np.float32`` module global.  A Python
    float or int literal mixed with float32 makes numba promote to float64.
  * Use ``_select`` instead of ``if``/ternaries and ``&``/``|`` instead of
    ``and``/``or``: those create branches, which block vectorization.
  * Division goes through ``_div`` (plain ``fdiv``): numba's default
    error_model='python' would add a zero check + exception path.
  * Operation order matters (Cody-Waite reduction, two-sum, Veltkamp split);
    it holds because the bodies are compiled without fastmath even when the
    caller uses fastmath (see ``_core._export``).
  * Fused multiply-add only where it is written: ``_core._fma`` for Horner
    steps, never inside an error-free transform.
"""
import hashlib
from pathlib import Path

from .f32 import *  # noqa: F401,F403  (the public names; constants below for tests and docs)
from .f32 import EXP_SHORT32, TRIG_LIMIT32, TRIG_SHORT32
from .f64 import *  # noqa: F401,F403
from .f64 import EXP_SHORT64, TRIG_LIMIT64, TRIG_SHORT64
from .intops import floordiv_f32, floordiv_f64, ipow, mod_f32, mod_f64, upow
from .scratch import acc_add, acc_mul, opaque, select, stack_array

_UNARY = ("exp", "expm1", "log", "log1p", "sin", "cos", "tan", "tanh", "sigmoid", "sincos",
          "sin_short", "cos_short", "tan_short", "sincos_short", "exp_short")
__all__ = [f"{name}_{sfx}" for name in _UNARY + ("pow", "floordiv", "mod") for sfx in ("f32", "f64")]
__all__ += ["stack_array", "opaque", "select", "acc_add", "acc_mul", "ipow", "upow",
            "TRIG_SHORT32", "TRIG_SHORT64", "EXP_SHORT32", "EXP_SHORT64"]


def source_hash(directory=Path(__file__).parent) -> str:
    """sha256 prefix over this package's .py files (names and contents, in name order).
    fastad.codegen.numba computes the same from the files without importing Numba."""
    h = hashlib.sha256()
    try:
        for p in sorted(Path(directory).glob("*.py")):
            h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    except OSError:
        return "unknown"
    return h.hexdigest()[:16]


# Callers' numba caches hold inlined copies of these functions and numba does
# not notice when this package changes: put SOURCE_HASH into generated kernel
# source (e.g. a comment) so that a new mathlib gives new cache entries.
SOURCE_HASH = source_hash()
