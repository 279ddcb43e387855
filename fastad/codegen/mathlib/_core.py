"""mathlib._core: the LLVM intrinsics, dtype-generic helpers and the export mechanism shared by
the float32 (`f32.py`) and float64 (`f64.py`) functions.

Start at `_export` (how a public name is compiled once and force-inlined), then the intrinsics
(`_select`, `_div`, `_pow2`, ...): the primitives that keep the bodies branch-free.
"""
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

# Private helpers (and the implementations behind the public names) are
# inlined at numba-IR level into whatever calls them.
_HELPER = dict(inline="always", error_model="numpy", fastmath=False)
_f = np.float32
_h = float.fromhex

# ----------------------------------------------------------------------------
# LLVM intrinsics.  Each accepts float32 or float64 and refuses mixed types,
# so an accidental float64 constant in f32 code fails to compile.
# ----------------------------------------------------------------------------

def _llvm_unary(name):
    """An intrinsic f(x) -> llvm.<name>.f32/f64 (fabs, rint, floor vectorize)."""
    def impl(typingctx, x):
        if not isinstance(x, types.Float):
            return None

        def codegen(context, builder, sig, args):
            ty = args[0].type
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ty, [ty]),
                "llvm.%s.%s" % (name, "f32" if ty == ir.FloatType() else "f64"))
            return builder.call(fn, [args[0]])
        return x(x), codegen
    impl.__name__ = "_" + name
    return intrinsic(impl)


_fabs = _llvm_unary("fabs")
_rint = _llvm_unary("rint")    # round-half-even in the default fp mode
_floor = _llvm_unary("floor")


@intrinsic
def _select(typingctx, cond, a, b):
    """cond ? a : b as an LLVM select: both sides are computed, no branch."""
    if not (isinstance(cond, types.Boolean) and isinstance(a, types.Float) and a == b):
        return None

    def codegen(context, builder, sig, args):
        return builder.select(args[0], args[1], args[2])
    return a(cond, a, b), codegen


@intrinsic
def _div(typingctx, a, b):
    """IEEE a / b (x/0 = ±inf, 0/0 = nan) with no zero-division check."""
    if not (isinstance(a, types.Float) and a == b):
        return None

    def codegen(context, builder, sig, args):
        return builder.fdiv(args[0], args[1])
    return a(a, b), codegen


@intrinsic
def _copysign(typingctx, mag, sgn):
    """|mag| with the sign bit of sgn (keeps -0.0, unlike a comparison)."""
    if not (isinstance(mag, types.Float) and mag == sgn):
        return None

    def codegen(context, builder, sig, args):
        ty = args[0].type
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ty, [ty, ty]),
            "llvm.copysign." + ("f32" if ty == ir.FloatType() else "f64"))
        return builder.call(fn, args)
    return mag(mag, sgn), codegen


def _target_has_fma() -> bool:
    """Whether the CPU numba compiles for has FMA: the host, or NUMBA_CPU_NAME/NUMBA_CPU_FEATURES
    where set (a portable build for "generic" has none, and llvm.fma would become a libm call)."""
    from numba.core import config
    from numba.core.codegen import get_host_cpu_features
    if config.CPU_NAME and config.CPU_NAME != "host":
        features = config.CPU_FEATURES or ""
    else:
        features = config.CPU_FEATURES or get_host_cpu_features()
    return "+fma" in features.split(",")


_FUSED = _target_has_fma()


@intrinsic
def _fma(typingctx, a, b, c):
    """a*b + c rounded once (llvm.fma) where the CPU has fused multiply-add, else a*b rounded
    then + c: a polynomial's Horner step in one instruction. Only for steps whose error
    analysis holds either way (Horner steps, exact Cody-Waite products): never inside a
    two-sum or a split, which rely on each product being rounded on its own."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, sig, args):
        if not _FUSED:
            return builder.fadd(builder.fmul(args[0], args[1]), args[2])
        ty = args[0].type
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ty, [ty, ty, ty]),
            "llvm.fma." + ("f32" if ty == ir.FloatType() else "f64"))
        return builder.call(fn, args)
    return a(a, a, a), codegen


def _fmt(ty):
    """(int type, mantissa bits, exponent bias, bit pattern of sqrt(0.5))."""
    if ty == ir.FloatType():
        return ir.IntType(32), 23, 127, 0x3F3504F3
    return ir.IntType(64), 52, 1023, 0x3FE6A09E667F3BCD


@intrinsic
def _pow2(typingctx, n):
    """2**n for an integer-valued float n inside the *normal* exponent range
    ([-126, 127] / [-1022, 1023]); built by writing the exponent field, which
    is what makes exp vectorize (ldexp would be a libm call)."""
    if not isinstance(n, types.Float):
        return None

    def codegen(context, builder, sig, args):
        ity, mbits, bias, _ = _fmt(args[0].type)
        i = builder.fptosi(args[0], ity)
        i = builder.shl(builder.add(i, ir.Constant(ity, bias)), ir.Constant(ity, mbits))
        return builder.bitcast(i, args[0].type)
    return n(n), codegen


@intrinsic
def _frexp_sqrt2(typingctx, x):
    """Split a positive normal x into (m, k), x = m * 2**k, m in [sqrt(.5), sqrt(2)),
    k returned as a float.  Centring m on 1 keeps |log(m)| <= ln(2)/2.
    Integer trick: subtracting bits(sqrt(.5)) makes the exponent field carry
    exactly when the mantissa is >= sqrt(.5)'s mantissa."""
    if not isinstance(x, types.Float):
        return None
    rty = types.UniTuple(x, 2)

    def codegen(context, builder, sig, args):
        fty = args[0].type
        ity, mbits, _, sqrt_half = _fmt(fty)
        i = builder.bitcast(args[0], ity)
        k = builder.ashr(builder.sub(i, ir.Constant(ity, sqrt_half)), ir.Constant(ity, mbits))
        m = builder.bitcast(builder.sub(i, builder.shl(k, ir.Constant(ity, mbits))), fty)
        return context.make_tuple(builder, sig.return_type, [m, builder.sitofp(k, fty)])
    return rty(x), codegen


# ----------------------------------------------------------------------------
# Shared helpers (generic over dtype: no constants inside).
# ----------------------------------------------------------------------------

@njit(**_HELPER)
def _clamp(x, lo, hi):
    """Clamp with nan -> hi, so later integer conversions never see nan."""
    t = _select(x < hi, x, hi)
    return _select(t > lo, t, lo)


@njit(**_HELPER)
def _two_sum(a, b):
    """a + b = s + e exactly (Knuth; no ordering requirement)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@njit(**_HELPER)
def _fast_two_sum(a, b):
    """a + b = s + e exactly, valid when |a| >= |b| (or a == 0)."""
    s = a + b
    return s, b - (s - a)


# ----------------------------------------------------------------------------
# Public names.
#
# Each public function is an intrinsic that compiles its implementation once
# per process as a separate LLVM function (numba's compile_subroutine, with
# default flags: no fastmath, whatever the caller uses) and calls it with a
# call-site ``alwaysinline`` attribute.  Why not njit(inline="always")?  That
# re-types and re-lowers the whole body at every call site: a prange kernel
# calling 5 of these compiled in 1.9 s instead of 0.5 s.  Why not a plain
# njit call?  LLVM then inlines only below its size threshold, so loops
# calling sin/pow stay scalar.  The argument types must match exactly.
# ----------------------------------------------------------------------------

def _export(impl, ty, ret=1):
    """The public intrinsic for `impl` on arguments of type `ty`; `ret` > 1 returns a tuple of
    that many `ty` values (sincos)."""
    py = impl.py_func
    rty = ty if ret == 1 else types.UniTuple(ty, ret)

    def codegen(context, builder, sig, args):
        context = context.subtarget(fastmath=False)   # the caller's fastmath must not leak in
        cres = context.compile_subroutine(builder, py, sig)   # once per process and signature
        fn = context.declare_function(builder.module, cres.fndesc)
        call = context.call_conv.call_function
        try:
            status, res = call(builder, fn, sig.return_type, sig.args, args, attrs=("alwaysinline",))
        except TypeError:   # numba without call-site attrs: LLVM's own inline threshold decides
            status, res = call(builder, fn, sig.return_type, sig.args, args)
        with cgutils.if_unlikely(builder, status.is_error):   # never taken; folded away
            context.call_conv.return_status_propagate(builder, status)
        return res

    if py.__code__.co_argcount == 1:
        def typer(typingctx, x):
            return (rty(ty), codegen) if x == ty else None
    else:
        def typer(typingctx, x, y):
            return (rty(ty, ty), codegen) if (x == ty and y == ty) else None
    typer.__name__ = py.__name__.lstrip("_")
    typer.__doc__ = py.__doc__
    return intrinsic(typer)


_f32t, _f64t = types.float32, types.float64
