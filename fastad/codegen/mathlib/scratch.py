"""mathlib.scratch: stack memory, an optimization barrier and reduction steps for Numba-generated kernels.

`stack_array(n, dtype)` returns a `CPointer(dtype)` to `n` elements (an integer literal) of
uninitialized memory in the calling function's stack frame. Kernels compile with `_nrt=False`
(no `np.empty`); the column form of reductions (`fastad.codegen.numba`) keeps a tile of
accumulators here. The memory is one `alloca` in the function's entry block, so it is allocated
once per call however often the expression runs, needs no external symbol, and lives until the
function returns. A non-literal size or a non-numeric dtype is a Numba TypingError.

`opaque(x)` returns `x` unchanged through an empty inline-asm statement. Kernels must not call
`memset`/`memcpy` (their object code must be self-contained, `fastad.runtime.native`), and
LLVM turns loops that store a constant (or copy between non-aliasing arrays) into such calls;
a value that LLVM cannot see through stops that.

`select(cond, a, b)` is `a if cond else b` as one LLVM `select` (numbers of one type): no branch,
so a loop that stores it back to where `b` came from stores unconditionally and vectorizes
without masked stores.

`acc_add(acc, v)` and `acc_mul(acc, v)` are `acc + v` and `acc * v` (floats of one type) as one
`fadd`/`fmul` with LLVM's `reassoc` flag, the only arithmetic in a kernel that may be
reassociated: a reduction's chain of them vectorizes (partial sums per lane), while every other
operation is compiled without fast-math and rounds as numpy does.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["stack_array", "opaque", "select", "acc_add", "acc_mul"]


@intrinsic
def stack_array(typingctx, n, dtype):
    """A `CPointer(dtype)` to `n` (a literal) uninitialized elements in the caller's stack frame."""
    if not (isinstance(n, types.IntegerLiteral) and n.literal_value > 0
            and isinstance(dtype, types.NumberClass) and isinstance(dtype.instance_type, types.Number)):
        return None
    elem, count = dtype.instance_type, n.literal_value

    def codegen(context, builder, sig, args):
        ty = context.get_data_type(elem)
        ptr = cgutils.alloca_once(builder, ty, size=count)   # entry block: once per call
        ptr.align = 64
        return ptr
    return types.CPointer(elem)(n, dtype), codegen


@intrinsic
def opaque(typingctx, x):
    """`x` unchanged, passed through an empty inline-asm statement: the optimizer cannot see its
    value. A kernel stores its reduction identities through this so that LLVM does not turn a
    loop of constant stores into a call to `memset` (an external symbol: see the docstring)."""
    if not isinstance(x, (types.Integer, types.Float)):
        return None

    def codegen(context, builder, sig, args):
        ty = args[0].type
        bits = ir.IntType(x.bitwidth)
        as_int = builder.bitcast(args[0], bits) if isinstance(x, types.Float) else args[0]
        out = builder.asm(ir.FunctionType(bits, [bits]), "", "=r,0", [as_int], side_effect=False)
        return builder.bitcast(out, ty) if isinstance(x, types.Float) else out
    return x(x), codegen


@intrinsic
def select(typingctx, cond, a, b):
    """`a if cond else b` without a branch (see the module docstring)."""
    if not (isinstance(cond, types.Boolean) and isinstance(a, (types.Integer, types.Float)) and a == b):
        return None

    def codegen(context, builder, sig, args):
        return builder.select(args[0], args[1], args[2])
    return a(cond, a, b), codegen


def _reassociable(op: str):
    def impl(typingctx, acc, v):
        if not (isinstance(acc, types.Float) and acc == v):
            return None

        def codegen(context, builder, sig, args):
            return getattr(builder, op)(args[0], args[1], flags=("reassoc",))
        return acc(acc, v), codegen
    impl.__name__ = "acc_" + op[1:]
    impl.__doc__ = f"acc {'+' if op == 'fadd' else '*'} v, reassociable (see the module docstring)."
    return intrinsic(impl)


acc_add = _reassociable("fadd")
acc_mul = _reassociable("fmul")
