"""ops: the one op table. Every primitive is defined here once, and nowhere else.

Start at `OPS` (built by the `defop` calls below) and `apply`.

An entry gives: the name, kind and arity; the dtype rule (`domain` of the
inputs and `out`put rule); the shape rule (by kind unless given); a numpy
reference (the test oracle and the reference executor); the kernel expression
that the renderers turn into Numba or CUDA C; and the derivative rule (`vjp`),
which builds more graph from the output gradient through the builder `f`
(`fastad.rules`). Adding an op means adding one `defop` call.

Primitives are strict: elementwise inputs already share shape and dtype. The
frontend (`fastad.tensor`) does broadcasting (explicit `expand`) and type
promotion (explicit `cast`) before calling `apply`, so derivative rules never
see either.

Kernel expressions are a small language shared by every renderer: infix
arithmetic and comparisons on `{0}`, `{1}`, ..., plus calls to named
intrinsics (`exp(...)`, `where(...)`) that each renderer maps per dtype.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from threading import get_ident
from typing import Callable, Optional

import numpy as np

from . import dtypes as dt
from . import numpy_refs as refs
from .numpy_refs import py_slices
from .graph import Node

__all__ = ["Op", "OPS", "apply", "const", "f"]

ELEMENTWISE, REDUCE, MOVEMENT, MATMUL, SOURCE, LIBRARY = (
    "elementwise", "reduce", "movement", "matmul", "source", "library")


@dataclass(frozen=True)
class Op:
    name: str
    kind: str
    arity: int                      # -1: any number of inputs
    domain: str = "any"             # inputs allowed: any | numeric | float | bool | integer
    out: str = "same"               # output dtype: same | bool | arg (cast)
    ref: Optional[Callable] = None  # numpy reference: ref(*arrays, arg) -> array
    expr: Optional[str] = None      # kernel expression template (elementwise ops)
    vjp: Optional[Callable] = None  # derivative rule: vjp(ctx, g) -> one gradient (or None) per input
    shape: Optional[Callable] = None  # shape rule: shape(srcs, arg) -> tuple (elementwise: none needed)
    reduce_identity: Optional[str] = None  # reductions: the accumulator's start ("0", "1", "-inf", "inf")
    ref_out: Optional[Callable] = None  # ref writing into an array: ref_out(*arrays, out=); equal to ref
                                        # on real inputs (a ufunc, or where every input has the out dtype)

    def __repr__(self) -> str:
        return f"Op({self.name}, {self.kind})"


OPS: dict[str, Op] = {}


def defop(name, kind, arity, singular: bool = False, **kw) -> Op:
    """Add an op. `singular`: its local derivative can be infinite or NaN at finite inputs
    (sqrt at 0, log at 0, 1/x at 0, ...); its rule is made NaN-safe (`nan_safe`)."""
    if name in OPS:
        raise ValueError(f"op {name!r} defined twice")
    if singular and kw.get("vjp") is not None:
        kw["vjp"] = nan_safe(kw["vjp"])
    OPS[name] = op = Op(name, kind, arity, **kw)
    if "add_builder" in globals():   # added after the table was built (a package's own ops): join `f`
        add_builder(name)
    return op


def nan_safe(vjp):
    """The NaN-safe form of an elementwise rule: where the cotangent is exactly zero the input
    gradient is exactly zero, whatever the local derivative (0 * inf would be NaN). So the
    branch `where` did not select contributes nothing (where(x > 0, sqrt(x), 0) at x < 0), while a
    genuine NaN or inf with a nonzero cotangent still propagates."""
    def rule(c, g):
        return tuple(None if pg is None else f.nan_guard(g, pg) for pg in vjp(c, g))
    return rule


# ---------------------------------------------------------------------------
# Building nodes
# ---------------------------------------------------------------------------

# While `fastad.backward_memo` records a backward pass: (its thread, the nodes built on that thread).
built_log: Optional[tuple] = None


def _note_built(node: Node) -> None:
    owner, log = built_log
    if owner == get_ident():   # another thread's nodes are not the walk's
        log.append(node)


def const(value, shape: tuple, dtype, device) -> Node:
    """A constant filled with `value`: no buffer, its value becomes a kernel argument."""
    value = _scalar(value, dtype)
    node = Node("const", (), tuple(shape), dtype, device, value)
    if built_log is not None:
        _note_built(node)
    return node


def _scalar(value, dtype):
    """The Python scalar `value` rounded to `dtype`, so folding and printing agree with the buffer.
    A Python int out of an integer dtype's range raises OverflowError (numpy's rule), never wraps."""
    if type(value) in (float, int, bool) and dtype.kind == "f":
        if type(value) is int and -16777216 <= value <= 16777216:
            return float(value)   # exact in every float dtype (float32 has 24 bits): no numpy round trip
        return dtype.np.type(value).item()
    if type(value) is int and dtype.kind in "iu":
        info = np.iinfo(dtype.np)
        if not info.min <= value <= info.max:
            raise OverflowError(f"Python integer {value} out of bounds for {dtype.name}")
        return value
    return refs.cast(np.asarray(value), dtype.np).item()


_DOMAIN_KINDS = {"any": "biufc", "numeric": "iufc", "float": "fc", "bool": "b", "integer": "iu"}


def domain_allows(domain: str, dtype) -> bool:
    """Whether an op whose inputs have `domain` accepts `dtype`."""
    return dtype.kind in _DOMAIN_KINDS[domain]


def apply(name: str, *srcs: Node, arg=None) -> Node:
    """Build the node `name(*srcs)`, checking the op table's shape and dtype rules and folding constants."""
    op = OPS[name]
    if op.arity >= 0 and len(srcs) != op.arity:
        raise TypeError(f"{name} takes {op.arity} inputs, got {len(srcs)}")
    device = arg if name == "copy_to" else srcs[0].device
    for s in srcs[1:]:
        if s.device is not device:
            raise ValueError(f"{name}: operands on different devices: {device} and {s.device}")
    if op.kind == ELEMENTWISE:
        data = srcs[1:] if name == "where" else srcs
        shape = srcs[0].shape
        for s in srcs[1:]:
            if s.shape != shape:
                raise ValueError(f"{name}: shapes {shape} and {s.shape} differ (broadcast first)")
        in_dtype = data[0].dtype
        for s in data[1:]:
            if s.dtype is not in_dtype:
                raise TypeError(f"{name}: dtypes {in_dtype.name} and {s.dtype.name} differ (promote first)")
        if name == "where" and srcs[0].dtype is not dt.bool:
            raise TypeError("where: the condition must be bool")
        if in_dtype.kind not in _DOMAIN_KINDS[op.domain]:
            raise TypeError(f"{name} is not defined for {in_dtype.name} (needs {op.domain})")
        out_dtype = (in_dtype if op.out == "same" else dt.bool if op.out == "bool" else
                     _REAL_OF.get(in_dtype, in_dtype) if op.out == "real" else arg)
        folded = _fold(op, srcs, arg, shape, out_dtype)
        if folded is not None:
            return folded
    else:
        shape = op.shape(srcs, arg)
        if all(s.op == "const" for s in srcs) and name in ("reshape", "permute", "expand", "sum", "copy_to"):
            value = srcs[0].arg
            if name == "sum":
                n = math.prod(srcs[0].shape[a] for a in arg)
                value = np.asarray(value, srcs[0].dtype.np) * n
            return const(value, shape, srcs[0].dtype, device)
        # a non-elementwise op computes in its first input's dtype unless its `out` rule names one (indices)
        out_dtype = op.out(srcs, arg) if callable(op.out) else srcs[0].dtype
    node = Node(name, srcs, shape, out_dtype, device, arg)
    if built_log is not None:
        _note_built(node)
    return node


def _fold(op: Op, srcs, arg, shape, out_dtype) -> Optional[Node]:
    """Constant folding and the identities the derivative rules rely on (x*1, x+0, casts of constants)."""
    n_const = 0
    for s in srcs:
        n_const += s.op == "const"
    if n_const == len(srcs):
        vals = [np.asarray(s.arg, s.dtype.np) for s in srcs]
        with np.errstate(all="ignore"):
            value = op.ref(*vals, arg)
        return const(value, shape, out_dtype, srcs[0].device)
    if n_const and op.name in ("mul", "add", "sub"):
        a, b = srcs
        unit = 1 if op.name == "mul" else 0
        if b.op == "const" and b.arg == unit and out_dtype is a.dtype:
            return a
        if a.op == "const" and a.arg == unit and out_dtype is b.dtype and op.name != "sub":
            return b
    if op.name == "cast" and srcs[0].dtype is arg:
        return srcs[0]
    if op.name == "nan_guard" and srcs[0].op == "const":   # a known cotangent: zero, or the value
        return srcs[1] if srcs[0].arg != 0 else srcs[0]
    return None


# ---------------------------------------------------------------------------
# Elementwise: unary
# ---------------------------------------------------------------------------

def _unary(name, ref, expr, vjp, domain="float", out="same", singular=False, ref_out=None):
    defop(name, ELEMENTWISE, 1, domain=domain, out=out, ref=lambda x, arg: ref(x), expr=expr, vjp=vjp,
          singular=singular, ref_out=ref_out or (ref if isinstance(ref, np.ufunc) else None))


_unary("neg", np.negative, "(-{0})", lambda c, g: (f.neg(g),), domain="numeric")
_unary("abs", np.abs, "abs({0})", lambda c, g: (f.mul(g, f.sign(c.x)),), domain="numeric")
_unary("sign", np.sign, "sign({0})", lambda c, g: (f.like(0, c.x),), domain="numeric")
_unary("exp", np.exp, "exp({0})", lambda c, g: (f.mul(g, c.y),), singular=True)
_unary("log", np.log, "log({0})", lambda c, g: (f.div(g, c.x),), singular=True)
_unary("log1p", np.log1p, "log1p({0})", lambda c, g: (f.div(g, f.add(c.x, f.like(1, c.x))),), singular=True)
_unary("expm1", refs.expm1, "expm1({0})", lambda c, g: (f.mul(g, f.add(c.y, f.like(1, c.y))),), singular=True,
       ref_out=np.expm1)
_unary("sqrt", np.sqrt, "sqrt({0})", lambda c, g: (f.div(g, f.mul(c.y, f.like(2, c.y))),), singular=True)
_unary("sin", np.sin, "sin({0})", lambda c, g: (f.mul(g, f.cos(c.x)),))
_unary("cos", np.cos, "cos({0})", lambda c, g: (f.neg(f.mul(g, f.sin(c.x))),))
_unary("tan", np.tan, "tan({0})",
       lambda c, g: (f.mul(g, f.add(f.like(1, c.y), f.mul(c.y, c.y))),), singular=True)
_unary("tanh", refs.tanh, "tanh({0})",
       lambda c, g: (f.mul(g, f.sub(f.like(1, c.y), f.mul(c.y, c.y))),), ref_out=np.tanh)
_unary("sigmoid", refs.sigmoid, "sigmoid({0})",
       lambda c, g: (f.mul(g, f.mul(c.y, f.sub(f.like(1, c.y), c.y))),))
_unary("relu", lambda x: np.maximum(x, np.zeros((), x.dtype)), "relu({0})",
       lambda c, g: (f.where(f.gt(c.x, f.like(0, c.x)), g, f.like(0, g)),), domain="numeric")
_unary("logical_not", np.logical_not, "logical_not({0})", None, domain="bool")
_unary("isnan", np.isnan, "isnan({0})", None, out="bool")
_unary("isinf", np.isinf, "isinf({0})", None, out="bool")
_unary("isfinite", np.isfinite, "isfinite({0})", None, out="bool")
_unary("floor", np.floor, "floor({0})", lambda c, g: (f.like(0, c.x),))
_unary("ceil", np.ceil, "ceil({0})", lambda c, g: (f.like(0, c.x),))
_unary("round", np.round, "round({0})", lambda c, g: (f.like(0, c.x),))
# erf (gelu's exact form): libm's erf, as numpy has none; d/dx erf(x) = 2/sqrt(pi) exp(-x*x)
_unary("erf", refs.erf, "erf({0})",
       lambda c, g: (f.mul(g, f.mul(f.like(2 / math.sqrt(math.pi), c.x), f.exp(f.neg(f.mul(c.x, c.x))))),))


# the array API's remaining elementwise functions (inverse/hyperbolic trig, log2/log10, trunc)
_unary("acos", np.arccos, "acos({0})", lambda c, g: (
    f.neg(f.div(g, f.sqrt(f.sub(f.like(1, c.x), f.mul(c.x, c.x))))),), singular=True)
_unary("asin", np.arcsin, "asin({0})", lambda c, g: (
    f.div(g, f.sqrt(f.sub(f.like(1, c.x), f.mul(c.x, c.x)))),), singular=True)
_unary("atan", np.arctan, "atan({0})", lambda c, g: (
    f.div(g, f.add(f.like(1, c.x), f.mul(c.x, c.x))),))
_unary("acosh", np.arccosh, "acosh({0})", lambda c, g: (
    f.div(g, f.sqrt(f.sub(f.mul(c.x, c.x), f.like(1, c.x)))),), singular=True)
_unary("asinh", np.arcsinh, "asinh({0})", lambda c, g: (
    f.div(g, f.sqrt(f.add(f.mul(c.x, c.x), f.like(1, c.x)))),))
_unary("atanh", np.arctanh, "atanh({0})", lambda c, g: (
    f.div(g, f.sub(f.like(1, c.x), f.mul(c.x, c.x))),), singular=True)
_unary("sinh", np.sinh, "sinh({0})", lambda c, g: (f.mul(g, f.cosh(c.x)),), singular=True)
_unary("cosh", np.cosh, "cosh({0})", lambda c, g: (f.mul(g, f.sinh(c.x)),), singular=True)
_unary("log2", np.log2, "log2({0})", lambda c, g: (
    f.div(g, f.mul(c.x, f.like(math.log(2), c.x))),), singular=True)
_unary("log10", np.log10, "log10({0})", lambda c, g: (
    f.div(g, f.mul(c.x, f.like(math.log(10), c.x))),), singular=True)
_unary("trunc", np.trunc, "trunc({0})", lambda c, g: (f.like(0, c.x),))
_unary("signbit", np.signbit, "signbit({0})", None, out="bool")
# bitwise_invert on integers (bool goes to logical_not in the frontend)
_unary("bitwise_invert", np.invert, "bitwise_invert({0})", None, domain="integer")


# complex parts (on real floats: the value, zero and the value). Gradients follow the conjugate
# Wirtinger convention (PyTorch's): the cotangent of real(z) enters as g + 0j, of imag(z) as 0 + g*1j
# (the frontend forms those), conj's is conj(g).
_REAL_OF = {dt.complex64: dt.float32, dt.complex128: dt.float64}


def _complex_part_vjp(c, g):
    raise NotImplementedError("gradients through complex intermediates (real/imag of a complex tensor) "
                              "are not supported yet; docs/ARRAY_API.md")


_unary("real", np.real, "real({0})", _complex_part_vjp, out="real")
_unary("imag", lambda x: np.imag(x) if x.dtype.kind == "c" else np.zeros_like(x), "imag({0})",
       _complex_part_vjp, out="real")
_unary("conj", np.conj, "conj({0})", lambda c, g: (f.conj(g),))


def _cast_vjp(c, g):
    return (f.cast(g, arg=c.x.dtype),) if c.x.dtype.is_floating else (None,)


defop("cast", ELEMENTWISE, 1, out="arg", ref=lambda x, arg: refs.cast(x, arg.np),
      expr="cast({0})", vjp=_cast_vjp)
# copy: the same value in a buffer of its own (clone, copy=True); never folded into its source
defop("copy", ELEMENTWISE, 1, ref=lambda x, arg: np.array(x, copy=True), expr="{0}",
      vjp=lambda c, g: (g,))


# ---------------------------------------------------------------------------
# Elementwise: binary and ternary
# ---------------------------------------------------------------------------

def _binary(name, ref, expr, vjp, domain="numeric", out="same", singular=False):
    defop(name, ELEMENTWISE, 2, domain=domain, out=out, ref=lambda a, b, arg: ref(a, b),
          expr=expr, vjp=vjp, singular=singular, ref_out=ref if isinstance(ref, np.ufunc) else None)


def _div_vjp(c, g):
    ga = f.div(g, c.b)
    return ga, f.neg(f.mul(ga, c.y))


def _pow_vjp(c, g):
    a, b, y = c.a, c.b, c.y
    bn = node_of(b)
    # d/da a**b = b * a**(b-1); 0 where b == 0, as in PyTorch (not the nan of 0 * 0**-1)
    ga = f.mul(g, f.mul(b, f.pow(a, f.sub(b, f.like(1, b)))))
    if bn.op == "const" and bn.arg == 0:
        ga = f.like(0, g)
    elif bn.op != "const":
        ga = f.where(f.eq(b, f.like(0, b)), f.like(0, g), ga)
    # no shortcut for a constant b: a constant leaf (fastad.full(..., requires_grad=True)) needs gb too;
    # the backward pass drops gb, unrealized, when b wants no gradient.
    # d/db a**b = a**b * log(a); as in PyTorch it is 0 where a == 0 and b >= 0.
    zero = f.logical_and(f.eq(a, f.like(0, a)), f.ge(b, f.like(0, b)))
    gb = f.where(zero, f.like(0, g), f.mul(g, f.mul(y, f.log(a))))
    return ga, gb


def _minmax_vjp(wins):
    def vjp(c, g):
        # ties split the gradient evenly, as PyTorch does
        half, zero = f.mul(g, f.like(0.5, g)), f.like(0, g)
        tie, a_wins = f.eq(c.a, c.b), wins(c.a, c.b)
        return (f.where(tie, half, f.where(a_wins, g, zero)),
                f.where(tie, half, f.where(a_wins, zero, g)))
    return vjp


_binary("add", np.add, "({0} + {1})", lambda c, g: (g, g))
_binary("sub", np.subtract, "({0} - {1})", lambda c, g: (g, f.neg(g)))
_binary("mul", np.multiply, "({0} * {1})", lambda c, g: (f.mul(g, c.b), f.mul(g, c.a)))
_binary("div", np.true_divide, "({0} / {1})", _div_vjp, domain="float", singular=True)
_binary("pow", np.power, "pow({0}, {1})", _pow_vjp, singular=True)
_binary("floordiv", refs.floordiv, "floordiv({0}, {1})",
        lambda c, g: (f.like(0, c.a), f.like(0, c.b)))
_binary("mod", np.remainder, "mod({0}, {1})",
        lambda c, g: (g, f.neg(f.mul(g, f.floordiv(c.a, c.b)))))
# maximum/minimum take bool too (logical or/and), as numpy and PyTorch do
_binary("maximum", np.maximum, "maximum({0}, {1})", _minmax_vjp(lambda a, b: f.gt(a, b)), domain="any")
_binary("minimum", np.minimum, "minimum({0}, {1})", _minmax_vjp(lambda a, b: f.lt(a, b)), domain="any")
for _name, _ref, _sym in (("lt", np.less, "<"), ("le", np.less_equal, "<="), ("gt", np.greater, ">"),
                          ("ge", np.greater_equal, ">="), ("eq", np.equal, "=="),
                          ("ne", np.not_equal, "!=")):
    _binary(_name, _ref, "({0} %s {1})" % _sym, None, domain="any", out="bool")
_binary("logical_and", np.logical_and, "({0} & {1})", None, domain="bool")
_binary("logical_or", np.logical_or, "({0} | {1})", None, domain="bool")
_binary("logical_xor", np.logical_xor, "({0} ^ {1})", None, domain="bool")

def _atan2_vjp(c, g):
    r2 = f.add(f.mul(c.a, c.a), f.mul(c.b, c.b))
    return f.div(f.mul(g, c.b), r2), f.neg(f.div(f.mul(g, c.a), r2))


def _copysign_vjp(c, g):
    same = f.eq(f.signbit(c.a), f.signbit(c.b))   # |a| carries b's sign: +-1 times g
    return f.where(same, g, f.neg(g)), f.like(0, c.b)


_binary("atan2", np.arctan2, "atan2({0}, {1})", _atan2_vjp, domain="float", singular=True)
_binary("hypot", np.hypot, "hypot({0}, {1})",
        lambda c, g: (f.div(f.mul(g, c.a), c.y), f.div(f.mul(g, c.b), c.y)), domain="float", singular=True)
_binary("copysign", np.copysign, "copysign({0}, {1})", _copysign_vjp, domain="float")
_binary("logaddexp", np.logaddexp, "logaddexp({0}, {1})",
        lambda c, g: (f.mul(g, f.exp(f.sub(c.a, c.y))), f.mul(g, f.exp(f.sub(c.b, c.y)))),
        domain="float", singular=True)
# nextafter is a step function of its inputs: zero gradient, as floor's
_binary("nextafter", np.nextafter, "nextafter({0}, {1})", lambda c, g: (f.like(0, c.a), f.like(0, c.b)),
        domain="float")
# bitwise ops on integers (bool and/or/xor are the logical ops); shifts follow numpy: a count at or
# past the bit width gives 0 (or -1 for a negative value shifted right)
_binary("bitwise_and", np.bitwise_and, "({0} & {1})", None, domain="integer")
_binary("bitwise_or", np.bitwise_or, "({0} | {1})", None, domain="integer")
_binary("bitwise_xor", np.bitwise_xor, "({0} ^ {1})", None, domain="integer")
_binary("bitwise_left_shift", np.left_shift, "lshift({0}, {1})", None, domain="integer")
_binary("bitwise_right_shift", np.right_shift, "rshift({0}, {1})", None, domain="integer")

# nan_guard(g, v): v, or g itself (an exact zero) where g == 0. The NaN-safe rules' mask, one node;
# piecewise constant in g, so only v gets a gradient
defop("nan_guard", ELEMENTWISE, 2, domain="float",
      ref=lambda g, v, arg: np.where(g == 0, g, v), ref_out=refs.nan_guard_into, expr="nan_guard({0}, {1})",
      vjp=lambda c, gout: (None, f.nan_guard(c.a, gout)))
defop("where", ELEMENTWISE, 3, ref=lambda cond, a, b, arg: np.where(cond, a, b),
      expr="where({0}, {1}, {2})",
      vjp=lambda c, g: (None, f.where(c.srcs[0], g, f.like(0, g)),
                        f.where(c.srcs[0], f.like(0, g), g)))


# ---------------------------------------------------------------------------
# Reductions over `arg` = sorted tuple of axes; keepdims is a reshape in the frontend
# ---------------------------------------------------------------------------

def _extremum_vjp(c, g):
    # the gradient goes to every element equal to the extremum, split evenly among ties
    x, axes = c.x, c.arg
    hit = f.cast(f.eq(x, f.unreduce(c.y, axes, x.shape)), arg=x.dtype)
    count = f.unreduce(f.sum(hit, arg=axes), axes, x.shape)
    return (f.div(f.mul(f.unreduce(g, axes, x.shape), hit), count),)


def _reduce(name, identity, vjp, domain="numeric"):
    defop(name, REDUCE, 1, domain=domain, ref=lambda x, arg: refs.reduction(name, x, arg).astype(x.dtype),
          vjp=vjp, reduce_identity=identity,
          shape=lambda srcs, axes: tuple(d for i, d in enumerate(srcs[0].shape) if i not in axes))


_reduce("sum", "0", lambda c, g: (f.unreduce(g, c.arg, c.x.shape),))
# prod: d/dx_i = prod / x_i, which is nan where x_i == 0 (documented limitation)
_reduce("prod", "1", lambda c, g: (
    f.div(f.mul(f.unreduce(g, c.arg, c.x.shape), f.unreduce(c.y, c.arg, c.x.shape)), c.x),))
_reduce("max", "-inf", _extremum_vjp)
_reduce("min", "inf", _extremum_vjp)


# ---------------------------------------------------------------------------
# Movement: views of their source (no arithmetic). Shapes are static args.
# ---------------------------------------------------------------------------

def _reshape_shape(srcs, shape):
    if math.prod(shape) != srcs[0].size:
        raise ValueError(f"reshape: cannot reshape {srcs[0].shape} ({srcs[0].size} elements) into {shape}")
    return tuple(shape)


def _expand_shape(srcs, shape):
    src = srcs[0].shape
    if len(src) != len(shape) or any(a != b and a != 1 for a, b in zip(src, shape)):
        raise ValueError(f"expand: cannot broadcast {src} to {shape}")
    return tuple(shape)


def _slice_shape(srcs, slices):
    return tuple(len(range(*s)) for s in slices)


def _invert(perm):
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


defop("reshape", MOVEMENT, 1, ref=lambda x, shape: x.reshape(shape), shape=_reshape_shape,
      vjp=lambda c, g: (f.reshape(g, arg=c.x.shape),))


def _permute_vjp(c, g):
    inv = _invert(c.arg)
    n = len(inv)
    if isinstance(g, Node) and g.op == "matmul" and n >= 2 and inv == tuple(range(n - 2)) + (n - 1, n - 2):
        # (A @ B) transposed, as the weight gradient of x @ W.T arrives: B.T @ A.T is the same value
        # made in the transposed layout, which saves a transposing copy of the result
        a, b = g.srcs
        return (f.matmul(_mT(b), _mT(a)),)
    return (f.permute(g, arg=inv),)


defop("permute", MOVEMENT, 1, ref=lambda x, perm: x.transpose(perm),
      shape=lambda srcs, perm: tuple(srcs[0].shape[p] for p in perm), vjp=_permute_vjp)
defop("expand", MOVEMENT, 1, ref=lambda x, shape: np.broadcast_to(x, shape), shape=_expand_shape,
      vjp=lambda c, g: (f.reduce_to(g, c.x.shape),))
# slice: arg is one normalised (start, stop, step) per dimension
defop("slice", MOVEMENT, 1, ref=lambda x, sl: x[py_slices(sl)], shape=_slice_shape,
      vjp=lambda c, g: (f.embed(g, arg=(c.x.shape, c.arg)),))


# ---------------------------------------------------------------------------
# Library ops: run as whole-array calls (BLAS, copies), never fused
# ---------------------------------------------------------------------------

# embed: the zero tensor of `shape` with `g` written at `slices`; the gradient of slice
defop("embed", LIBRARY, 1, ref=refs.embed, shape=lambda srcs, arg: tuple(arg[0]),
      vjp=lambda c, g: (f.slice(g, arg=c.arg[1]),))


def _concat_shape(srcs, axis):
    first = srcs[0].shape
    for s in srcs[1:]:
        if s.ndim != len(first) or any(a != b for i, (a, b) in enumerate(zip(first, s.shape)) if i != axis):
            raise ValueError(f"concat: shapes {first} and {s.shape} differ off axis {axis}")
    return first[:axis] + (sum(s.shape[axis] for s in srcs),) + first[axis + 1:]


def _concat_vjp(c, g):
    grads, start = [], 0
    for s in c.srcs:
        sl = tuple((start, start + s.shape[i], 1) if i == c.arg else (0, d, 1)
                   for i, d in enumerate(g.shape))
        grads.append(f.slice(g, arg=sl))
        start += s.shape[c.arg]
    return tuple(grads)


defop("concat", LIBRARY, -1, ref=lambda *xs: np.concatenate(xs[:-1], axis=xs[-1]),
      shape=_concat_shape, vjp=_concat_vjp)


# take: gather along axis `arg` at the int64 indices of the second input (in range, non-negative;
# the frontend checks and wraps them); its gradient scatters back with add (repeated indices sum)
def _take_shape(srcs, axis):
    x, idx = srcs[0].shape, srcs[1].shape
    return x[:axis] + idx + x[axis + 1:]


defop("take", LIBRARY, 2, ref=lambda x, idx, axis: x.take(idx, axis=axis), shape=_take_shape,
      vjp=lambda c, g: (f.scatter_add(g, c.b, arg=(c.arg, c.x.shape)), None))
# scatter_add: zeros of shape arg[1] plus g added at the indices along axis arg[0]
defop("scatter_add", LIBRARY, 2, ref=refs.scatter_add, shape=lambda srcs, arg: tuple(arg[1]),
      vjp=lambda c, g: (f.take(g, c.b, arg=c.arg[0]), None))


def _matmul_shape(srcs, arg):
    a, b = srcs[0].shape, srcs[1].shape
    if len(a) < 2 or len(b) < 2 or a[:-2] != b[:-2]:
        raise ValueError(f"matmul: bad operand shapes {a} and {b}")
    if a[-1] != b[-2]:
        raise ValueError(f"matmul: inner dimensions differ: {a} @ {b} ({a[-1]} != {b[-2]})")
    return a[:-1] + b[-1:]


def _mT(x):
    return f.permute(x, arg=tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2))


# matmul: (..., n, k) @ (..., k, m) with equal batch dims (the frontend broadcasts them)
defop("matmul", MATMUL, 2, domain="numeric", ref=lambda a, b, arg: refs.matmul(a, b),
      shape=_matmul_shape,
      vjp=lambda c, g: (f.matmul(g, _mT(c.b)), f.matmul(_mT(c.a), g)))

# copy_to: the same value on device `arg` (a transfer, run between kernels)
defop("copy_to", LIBRARY, 1, ref=lambda x, device: x, shape=lambda srcs, device: srcs[0].shape,
      vjp=lambda c, g: (f.copy_to(g, arg=c.x.device),))

# sources: a constant (value in arg) and a computed buffer
defop("const", SOURCE, 0)
defop("buffer", SOURCE, 0)


# The rule builder `f` (and what rules see) is `fastad.rules`; the rules above read it when they run.
from .rules import VJPContext, add_builder, f, install_tensor_builder, node_of  # noqa: E402,F401

for _op in OPS:
    add_builder(_op)
del _op
