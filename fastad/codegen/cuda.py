"""codegen.cuda: render a `kernel_ir.Kernel` as CUDA C (for CuPy's RawModule).

Start at `render`, which returns a `CudaSource`: the source text, its
`extern "C"` entry names and the kernel it came from. The launch side lives in
`fastad.codegen.cuda_launch` (`CudaSource.plan` turns a runtime shape into a
`LaunchPlan`; `execute` runs a plan through any array module and launcher), the
C types of the dtypes and the template files in `fastad.codegen.cuda_types`,
compiling (NVRTC flags, nvcc checks) in `fastad.codegen.cuda_compile`; all are
re-exported here. Nothing here imports CuPy.

Generated source
----------------
`fastad/kernels/elementwise.cu` (types, `fa_<intrinsic>` helpers per dtype, casts),
`fastad/kernels/complex.cu` when a complex dtype occurs (the `fa_c64`/`fa_c128`
structs, their operators and functions) and, for reductions,
`fastad/kernels/reduce.cu` (combine operators, warp/block reduce, atomics) are
pasted above the kernel. Each statement of the IR body becomes one line,
`const <ctype> v<i> = <expr>;`, where `<expr>` is the op table's `expr`
template with `{k}` replaced by the source variables and each intrinsic
`name(` by `fa_name(` (C++ overloading picks the dtype). An op on complex
operands must be one complex.cu implements (`cuda_types.COMPLEX_OPS`), else
rendering raises NotImplementedError naming the op and dtype. The source never
contains a size, offset, stride or scalar value: all are arguments.

Arguments (the kernel_ir order, then the renderer's own):
  long long n_0 .. n_{ndim-1}                      iteration shape
  per input k: const T* in_k, long long off_k, long long st_k_d for each "n" dim d
  per output k: T* out_k
  per scalar k: T s_k                               passed by value (complex: the {re, im} struct)
  reductions only: per reduced output k: ACC* part_k (scratch), int fa_group, int fa_finish
A reduction kernel has a second entry `<name>_finish(long long rows, long long
chunks, then per reduced output: const ACC* part_k, T* out_k)`.

Index math uses `fa_idx`, a 32-bit int unless the source is compiled with
-DFA_INDEX_BITS=64; `LaunchPlan.index_bits` says which build a launch needs (64
only when the iteration space or a buffer reaches 2^31 elements). A linear
index is split into coordinates by div/mod over the dims that some input
reads with a non-zero stride; a "1" dim adds the coordinate, an "n" dim
coordinate*stride, a "0" dim nothing.

Reductions (the trailing reduce_ndim dims): rows = prod(outer dims), cols =
prod(reduced dims). `fa_group` picks who reduces one row: 0 a thread (cols <
32), 1 a warp, 2 a block, and in mode 2 a row may be split into `chunks`
blocks (gridDim.x). `fa_finish` says how a group's result lands: 0 written
directly (one chunk), 1 atomically combined into an output pre-filled with
the identity (several chunks, deterministic flag off, dtype with atomics),
2 written to `part_k[row*chunks+chunk]` and combined in fixed order by the
`_finish` entry (the deterministic two-pass path, and always for complex).
docs/CUDA.md has details.
"""
from __future__ import annotations

import re

from ..kernel_ir import Kernel
from ..ops import OPS
from .cuda_compile import (compile_with_nvcc, compile_with_nvrtc, defines, nvcc_path, nvrtc_arch,  # noqa: F401
                           nvrtc_options, nvrtc_supported_archs, nvrtc_version)
from .cuda_launch import (BLOCK, BLOCKS_PER_SM, COLUMN_CHUNK, DETERMINISTIC_SMS, MAX_CHUNKS,  # noqa: F401
                          REDUCE_BLOCKS_PER_SM, CudaSource, LaunchPlan, _bits, _cdiv, _prod, execute)
from .cuda_types import (ACC_TYPES, ATOMIC_DTYPES, COMPLEX_OPS, COMPLEX_REDUCE, CTYPES,  # noqa: F401
                         acc_ctype as _acc_ctype, acc_dtype, ctype as _ctype, identity, kernel_template_dir,
                         template as _template)

__all__ = ["render", "CudaSource", "LaunchPlan", "execute", "kernel_template_dir", "acc_dtype",
           "compile_with_nvcc", "compile_with_nvrtc", "nvrtc_options", "nvrtc_arch", "nvrtc_version",
           "nvrtc_supported_archs", "nvcc_path",
           "CTYPES", "ACC_TYPES"]

_COMBINE = {"sum": "FaSum", "prod": "FaProd", "max": "FaMax", "min": "FaMin"}

# intrinsic names of the op table's expression language; each maps to fa_<name> in elementwise.cu
INTRINSICS = frozenset({
    "abs", "sign", "exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tan", "tanh", "sigmoid",
    "erf", "relu", "logical_not", "isnan", "isinf", "isfinite", "floor", "ceil", "round", "cast", "pow",
    "floordiv", "mod", "maximum", "minimum", "where", "nan_guard",
    "acos", "asin", "atan", "acosh", "asinh", "atanh", "sinh", "cosh", "log2", "log10", "trunc", "signbit",
    "atan2", "hypot", "copysign", "nextafter", "logaddexp", "bitwise_invert", "lshift", "rshift",
    "real", "imag", "conj",
})

_PLACEHOLDER = re.compile(r"\{(\d+)\}")
_CALL = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*\(")


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------

def render(kernel: Kernel) -> CudaSource:
    """CUDA C for `kernel`. Cached by the kernel's structural key (sizes never enter the text)."""
    return _RENDERED.get(kernel.key) or _RENDERED.setdefault(kernel.key, _Renderer(kernel).render())


_RENDERED: dict[str, CudaSource] = {}   # kernel.key -> source (kernels with one key render alike)


class _Renderer:
    def __init__(self, k: Kernel):
        self.k = k
        self.name = re.sub(r"[^A-Za-z0-9_]", "_", k.name)
        self.red = k.is_reduction
        self.split = k.ndim - k.reduce_ndim if self.red else k.ndim
        for inp in k.inputs:
            if len(inp.pattern) != k.ndim or set(inp.pattern) - set("01n"):
                raise ValueError(f"{self.name}: bad input pattern {inp.pattern!r} for ndim {k.ndim}")
        # the atomic finish adds each group's total in the output's dtype: only where that is the
        # accumulator too (a float32 sum adds up in double on every tier: the two-pass finish)
        self.atomic_ok = all(_check(o.dtype).name in ATOMIC_DTYPES and acc_dtype(o.reduce, o.dtype) == o.dtype.name
                             for o in k.outputs if o.reduce)
        for o in k.outputs:
            if o.reduce and o.dtype.kind == "c" and o.reduce not in COMPLEX_REDUCE:
                raise NotImplementedError(f"{self.name}: a {o.reduce} reduction of {o.dtype.name} has no "
                                          "CUDA kernel (complex values have no order)")
        dts = [i.dtype for i in k.inputs] + list(k.scalars) + [st.dtype for st in k.body] + \
              [o.dtype for o in k.outputs]
        self.complex = any(d.kind == "c" for d in dts)
        self.columns = self.red and _reads_across_rows(k, self.split)

    # -- pieces ---------------------------------------------------------------

    def params(self) -> list[str]:
        k = self.k
        ps = [f"const long long n{d}" for d in range(k.ndim)]
        for i, inp in enumerate(k.inputs):
            ps.append(f"const {_ctype(inp.dtype)}* __restrict__ in{i}")
            ps.append(f"const long long off{i}")
            ps += [f"const long long st{i}_{d}" for d, p in enumerate(inp.pattern) if p == "n"]
        for i, o in enumerate(k.outputs):
            ps.append(f"{_ctype(o.dtype)}* __restrict__ out{i}")
        for i, d in enumerate(k.scalars):
            ps.append(f"const {_ctype(d)} s{i}")
        if self.red:
            for i, o in enumerate(k.outputs):
                if o.reduce:
                    ps.append(f"{_acc_ctype(o)}* __restrict__ part{i}")
            ps += ["const int fa_group", "const int fa_finish"]
        return ps

    def needed_dims(self, lo: int, hi: int) -> list[int]:
        """Dims in [lo, hi) whose coordinate some input reads."""
        return [d for d in range(lo, hi) if any(inp.pattern[d] != "0" for inp in self.k.inputs)]

    def decompose(self, lin: str, lo: int, hi: int, ind: str) -> list[str]:
        """Lines splitting linear index `lin` over dims [lo, hi) into the coordinates c<d> that are read."""
        need = self.needed_dims(lo, hi)
        if not need:
            return []
        if hi - lo == 1:
            return [f"{ind}const fa_idx c{lo} = {lin};"]
        t = f"t{lin}_"
        lines = [f"{ind}fa_idx {t} = {lin};"]
        lowest = need[0]
        for d in range(hi - 1, lowest, -1):
            if d in need:
                lines.append(f"{ind}const fa_idx c{d} = {t} % (fa_idx)n{d};")
            lines.append(f"{ind}{t} /= (fa_idx)n{d};")
        lines.append(f"{ind}const fa_idx c{lowest} = {t};")
        return lines

    def offset_terms(self, i: int, lo: int, hi: int) -> list[str]:
        terms = []
        for d in range(lo, hi):
            p = self.k.inputs[i].pattern[d]
            if p == "1":
                terms.append(f"c{d}")
            elif p == "n":
                terms.append(f"c{d} * (fa_idx)st{i}_{d}")
        return terms

    def statements(self, ind: str, index_of) -> list[str]:
        """One line per IR statement; `index_of(i)` is the element index of input i at this point."""
        k, lines = self.k, []
        for j, st in enumerate(k.body):
            ct = _ctype(st.dtype)
            if st.op == "load":
                inp = k.inputs[st.arg]
                val = f"in{st.arg}[{index_of(st.arg)}]"
                if inp.dtype is not st.dtype:
                    val = f"fa_cast<{ct}>({val})"
            elif st.op == "scalar":
                val = f"s{st.arg}"
                if k.scalars[st.arg] is not st.dtype:
                    val = f"fa_cast<{ct}>({val})"
            elif st.op == "cast":
                val = f"fa_cast<{ct}>(v{st.srcs[0]})"
            else:
                op = OPS.get(st.op)
                if op is None or op.expr is None:
                    raise NotImplementedError(f"{self.name}: op {st.op!r} has no kernel expression")
                for s in st.srcs:
                    if s >= j:
                        raise ValueError(f"{self.name}: statement {j} uses v{s}, not computed before it")
                operand = k.body[st.srcs[1 if st.op == "where" else 0]].dtype
                if operand.kind == "c" and st.op not in COMPLEX_OPS:
                    raise NotImplementedError(f"{self.name}: {st.op} of {operand.name} has no CUDA kernel "
                                              "(complex ops on CUDA: docs/CUDA.md)")
                wrap = None
                if st.op in _WRAPPING and st.dtype.is_integer:
                    wrap = "unsigned long long" if st.dtype.itemsize == 8 else "unsigned int"
                val = f"({ct})({_expr(op.expr, st.srcs, wrap)})"
            lines.append(f"{ind}const {ct} v{j} = {val};")
        return lines

    def store(self, o, i: int, index: str, ind: str) -> str:
        v = f"v{o.value}"
        if self.k.body[o.value].dtype is not o.dtype:
            v = f"fa_cast<{_ctype(o.dtype)}>({v})"
        return f"{ind}out{i}[{index}] = {v};"

    # -- kernels ------------------------------------------------------------------

    def elementwise(self) -> list[str]:
        k = self.k
        total = " * ".join(f"n{d}" for d in range(k.ndim))
        L = [f"    const fa_idx total = (fa_idx)({total});"]
        L.append("    for (fa_idx i = fa_thread_start(); i < total; i += fa_thread_step()) {")
        L += self.decompose("i", 0, k.ndim, "        ")

        def index_of(i):
            return " + ".join([f"(fa_idx)off{i}"] + self.offset_terms(i, 0, k.ndim))
        L += self.statements("        ", index_of)
        for i, o in enumerate(k.outputs):
            L.append(self.store(o, i, "i", "        "))
        L.append("    }")
        return L

    def reduction(self) -> list[str]:
        k, s = self.k, self.split
        rows = " * ".join(f"n{d}" for d in range(s)) or "1"
        cols = " * ".join(f"n{d}" for d in range(s, k.ndim))
        L = [f"    const fa_idx rows = (fa_idx)({rows});",
             f"    const fa_idx cols = (fa_idx)({cols});",
             "    fa_idx lane, gsize, gid, ngroups, chunk, nchunks;",
             "    if (fa_group == 0) {          // one thread per row; row chunks over blockIdx.y",
             "        lane = 0; gsize = 1; gid = fa_thread_start(); ngroups = fa_thread_step();",
             "        chunk = (fa_idx)blockIdx.y; nchunks = (fa_idx)gridDim.y;",
             "    } else if (fa_group == 1) {   // one warp per row",
             "        lane = (fa_idx)threadIdx.x % FA_WARP; gsize = FA_WARP;",
             "        gid = fa_thread_start() / FA_WARP; ngroups = fa_thread_step() / FA_WARP;",
             "        chunk = 0; nchunks = 1;",
             "    } else {                      // one block per (row, chunk)",
             "        lane = (fa_idx)threadIdx.x; gsize = (fa_idx)blockDim.x;",
             "        gid = (fa_idx)blockIdx.y; ngroups = (fa_idx)gridDim.y;",
             "        chunk = (fa_idx)blockIdx.x; nchunks = (fa_idx)gridDim.x;",
             "    }",
             "    const fa_idx clen = (cols + nchunks - 1) / nchunks;",
             "    const fa_idx rbeg = chunk * clen;",
             "    const fa_idx rend = cols < rbeg + clen ? cols : rbeg + clen;",
             "    for (fa_idx m = gid; m < rows; m += ngroups) {"]
        L += self.decompose("m", 0, s, "        ")
        for i in range(len(k.inputs)):
            L.append(f"        const fa_idx b{i} = " + " + ".join(
                [f"(fa_idx)off{i}"] + self.offset_terms(i, 0, s)) + ";")
        reduced = [(i, o) for i, o in enumerate(k.outputs) if o.reduce]
        for i, o in reduced:
            acc = _acc_ctype(o)
            L.append(f"        {acc} a{i} = {_COMBINE[o.reduce]}::identity<{acc}>();")
        L.append("        for (fa_idx r = rbeg + lane; r < rend; r += gsize) {")
        L += self.decompose("r", s, k.ndim, "            ")

        def index_of(i):
            return " + ".join([f"b{i}"] + self.offset_terms(i, s, k.ndim))
        L += self.statements("            ", index_of)
        for i, o in enumerate(k.outputs):
            if o.reduce:
                acc = _acc_ctype(o)
                L.append(f"            a{i} = {_COMBINE[o.reduce]}::apply(a{i}, fa_cast<{acc}>(v{o.value}));")
            else:
                L.append(self.store(o, i, "m * cols + r", "            "))
        L.append("        }")
        for i, o in reduced:
            L.append(f"        a{i} = fa_group_reduce<{_COMBINE[o.reduce]}>(a{i}, fa_group);")
        L.append("        if (lane == 0) {")
        for i, o in reduced:
            ct, op = _ctype(o.dtype), _COMBINE[o.reduce]
            L.append(f"            if (fa_finish == 0) out{i}[m] = fa_cast<{ct}>(a{i});")
            if o.dtype.name in ATOMIC_DTYPES:
                L.append(f"            else if (fa_finish == 1) fa_atomic_combine<{op}>(out{i} + m, fa_cast<{ct}>(a{i}));")
            L.append(f"            else part{i}[m * nchunks + chunk] = a{i};")
        L.append("        }")
        L.append("    }")
        return L

    def finish(self) -> list[str]:
        reduced = [(i, o) for i, o in enumerate(self.k.outputs) if o.reduce]
        ps = ["const long long rows", "const long long nchunks"]
        for i, o in reduced:
            ps += [f"const {_acc_ctype(o)}* __restrict__ part{i}", f"{_ctype(o.dtype)}* __restrict__ out{i}"]
        L = [f'extern "C" __global__ void __launch_bounds__({BLOCK}) {self.name}_finish(',
             "    " + ",\n    ".join(ps) + ")", "{",
             "    // fixed order: thread t combines chunks t, t+blockDim, ...; then the block tree",
             "    for (long long m = blockIdx.x; m < rows; m += gridDim.x) {"]
        for i, o in reduced:
            acc, op = _acc_ctype(o), _COMBINE[o.reduce]
            L += [f"        {acc} a{i} = {op}::identity<{acc}>();",
                  "        for (long long c = threadIdx.x; c < nchunks; c += blockDim.x)",
                  f"            a{i} = {op}::apply(a{i}, part{i}[m * nchunks + c]);",
                  f"        a{i} = fa_block_reduce<{op}>(a{i});",
                  f"        if (threadIdx.x == 0) out{i}[m] = fa_cast<{_ctype(o.dtype)}>(a{i});"]
        L += ["    }", "}"]
        return L

    def render(self) -> CudaSource:
        k = self.k
        head = ["// generated by fastad.codegen.cuda from this kernel:"]
        head += ["//   " + line for line in k.describe().splitlines()]
        head += ["#define FA_RENDERED 1", _template("elementwise.cu")]
        if self.complex:
            head.append(_template("complex.cu"))
        if self.red:
            head.append(_template("reduce.cu"))
        body = self.reduction() if self.red else self.elementwise()
        src = "\n".join(head + [
            f'extern "C" __global__ void __launch_bounds__({BLOCK}) {self.name}(',
            "    " + ",\n    ".join(self.params()) + ")",
            "{"] + body + ["}"] + (self.finish() if self.red else [])) + "\n"
        return CudaSource(k, src, self.name, f"{self.name}_finish" if self.red else None, self.atomic_ok,
                          self.columns)


def _check(d):
    _ctype(d)
    return d


def _reads_across_rows(k: Kernel, split: int) -> bool:
    """A reduction whose neighbouring rows are neighbours in memory while a row itself is strided
    (a sum over a leading axis: bias gradients, `reduce_to` of a broadcast). A thread per row, the
    threads of a warp on neighbouring rows, then reads coalesced; a warp or block per row would read
    one element per 32-byte sector. Kernels with store outputs keep the row-major strategies, since
    their stores (`out[m*cols + r]`) would become the strided side."""
    if split == 0 or any(not o.reduce for o in k.outputs):
        return False
    read = [inp.pattern for inp in k.inputs if set(inp.pattern[split:]) != {"0"}]
    return (bool(read) and all(p[split - 1] in "01" and p[-1] != "1" for p in read)
            and any(p[split - 1] == "1" for p in read))


# integer ops that may overflow: evaluated on unsigned operands so they wrap (defined behaviour) like numpy
_WRAPPING = frozenset({"add", "sub", "mul", "neg"})


def _expr(template: str, srcs: tuple[int, ...], wrap: str | None = None) -> str:
    """The op table's expression with {k} -> v<srcs[k]> (or `((wrap)v<k>)`) and intrinsic calls -> fa_ helpers."""
    def call(m):
        name = m.group(1)
        if name not in INTRINSICS:
            raise NotImplementedError(f"unknown intrinsic {name!r} in kernel expression {template!r}")
        return f"fa_{name}("
    out = _CALL.sub(call, template)
    if wrap:
        return _PLACEHOLDER.sub(lambda m: f"(({wrap})v{srcs[int(m.group(1))]})", out)
    return _PLACEHOLDER.sub(lambda m: f"v{srcs[int(m.group(1))]}", out)
