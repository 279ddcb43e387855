"""codegen.cuda: render a `kernel_ir.Kernel` as CUDA C (for CuPy's RawModule) and plan its launches.

Start at `render`, which returns a `CudaSource`: the source text, its
`extern "C"` entry names and the kernel it came from. `CudaSource.plan` turns a
runtime shape into a `LaunchPlan` (grid, block, reduction strategy, index
width) and `execute` runs a plan through any array module and launcher: the
CUDA runtime (`fastad.runtime.cuda`) passes CuPy and the functions of the
NVRTC-compiled module; the tests pass numpy and the same source compiled as
host C++. Compiling (the NVRTC flags, nvcc checks) is in
`fastad.codegen.cuda_compile`, re-exported here. Nothing here imports CuPy.

Generated source
----------------
`fastad/kernels/elementwise.cu` (types, `fa_<intrinsic>` helpers per dtype, casts)
and, for reductions, `fastad/kernels/reduce.cu` (combine operators, warp/block
reduce, atomics) are pasted above the kernel. Each statement of the IR body
becomes one line, `const <ctype> v<i> = <expr>;`, where `<expr>` is the op
table's `expr` template with `{k}` replaced by the source variables and each
intrinsic `name(` by `fa_name(` (C++ overloading picks the dtype). The source
never contains a size, offset, stride or scalar value: all are arguments.

Arguments (the kernel_ir order, then the renderer's own):
  long long n_0 .. n_{ndim-1}                      iteration shape
  per input k: const T* in_k, long long off_k, long long st_k_d for each "n" dim d
  per output k: T* out_k
  per scalar k: T s_k                               passed by value
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
`_finish` entry (the deterministic two-pass path). docs/CUDA.md has details.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import os
import pathlib
import re
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..kernel_ir import Kernel
from ..ops import OPS
from .cuda_compile import (compile_with_nvcc, compile_with_nvrtc, defines, nvcc_path, nvrtc_arch,  # noqa: F401
                           nvrtc_options, nvrtc_supported_archs, nvrtc_version)

__all__ = ["render", "CudaSource", "LaunchPlan", "execute", "kernel_template_dir", "acc_dtype",
           "compile_with_nvcc", "compile_with_nvrtc", "nvrtc_options", "nvrtc_arch", "nvrtc_version",
           "nvrtc_supported_archs", "nvcc_path",
           "CTYPES", "ACC_TYPES"]

# C type of every dtype the renderer supports (complex is not supported on CUDA yet)
CTYPES = {
    "bool": "bool", "int8": "signed char", "int16": "short", "int32": "int", "int64": "long long",
    "uint8": "unsigned char", "uint16": "unsigned short", "uint32": "unsigned int",
    "uint64": "unsigned long long", "float32": "float", "float64": "double",
}
# accumulator dtype of a reduced output of each dtype (reduce.cu handles these four C types);
# float32 sums are the exception, see `acc_dtype`
ACC_TYPES = {
    "bool": "uint64", "int8": "int64", "int16": "int64", "int32": "int64", "int64": "int64",
    "uint8": "uint64", "uint16": "uint64", "uint32": "uint64", "uint64": "uint64",
    "float32": "float32", "float64": "float64",
}
# output dtypes that reduce.cu can combine atomically (finish 1)
ATOMIC_DTYPES = frozenset({"float32", "float64", "int64", "uint64"})
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

BLOCK = 256              # threads per block of every launch (kernels declare __launch_bounds__(256))
BLOCKS_PER_SM = 16       # grid-stride loops: at most this many blocks per multiprocessor
REDUCE_BLOCKS_PER_SM = 8  # block-mode reductions aim at this many blocks per multiprocessor
MAX_CHUNKS = 1024        # most blocks one row of a reduction is split into
COLUMN_CHUNK = 64        # thread-per-row reductions: fewest elements one thread adds before combining
DETERMINISTIC_SMS = 128  # deterministic mode plans for this SM count whatever the device has
_INDEX_LIMIT = 2 ** 31 - 1

_PLACEHOLDER = re.compile(r"\{(\d+)\}")
_CALL = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*\(")


# ---------------------------------------------------------------------------
# Templates
# ---------------------------------------------------------------------------

def kernel_template_dir() -> pathlib.Path | None:
    """$FASTAD_KERNEL_DIR when set (a folder holding elementwise.cu and reduce.cu), else None:
    the templates then come from the package itself (`fastad/kernels/`, package data)."""
    env = os.environ.get("FASTAD_KERNEL_DIR")
    return pathlib.Path(env) if env else None


def _template(name: str) -> str:
    folder = kernel_template_dir()
    if folder is not None:
        return _read_file(str(folder / name))
    return _read_resource(name)


@functools.lru_cache(maxsize=None)
def _read_file(path: str) -> str:
    try:
        return pathlib.Path(path).read_text()
    except OSError as e:
        raise FileNotFoundError(f"fastad's CUDA template {path} cannot be read ($FASTAD_KERNEL_DIR): {e}") from None


@functools.lru_cache(maxsize=None)
def _read_resource(name: str) -> str:
    # importlib.resources finds package data wherever pip put the package (--user, --prefix, --target, a zip)
    try:
        return importlib.resources.files("fastad.kernels").joinpath(name).read_text()
    except (OSError, ModuleNotFoundError) as e:
        raise FileNotFoundError(f"fastad's CUDA template {name} is missing from the installed package "
                                f"(fastad/kernels/): {e}") from None


# ---------------------------------------------------------------------------
# The rendered source and its launch plan
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class LaunchPlan:
    """How one call of a kernel runs: index width, grid and, for reductions, the strategy."""
    index_bits: int               # 32 or 64: which build of the source to use
    total: int                    # iteration points
    rows: int                     # reductions: outputs per reduced output (1 for elementwise: unused)
    cols: int                     # reductions: points combined into one output
    grid: tuple                   # (x, y, z) of the main entry; x == 0 means nothing to launch
    block: tuple
    group: int = 0                # 0 thread / 1 warp / 2 block per row (reductions)
    finish: int = 0               # 0 direct / 1 atomic / 2 partials + `_finish` entry
    chunks: int = 1               # blocks per row in group 2
    finish_grid: tuple | None = None
    finish_block: tuple | None = None


@dataclass(frozen=True)
class CudaSource:
    """CUDA C for one Kernel: `source`, its entries, and the launch protocol (`plan`, `arguments`)."""
    kernel: Kernel
    source: str
    entry: str                    # main entry (grid-stride elementwise loop or reduction pass)
    finish_entry: str | None      # reductions: the fixed-order second pass
    atomic_ok: bool               # every reduced output has an atomic combine for its dtype
    columns: bool = False         # reductions: inputs are contiguous across rows, strided along them

    @property
    def name(self) -> str:
        return self.entry

    @property
    def entries(self) -> tuple[str, ...]:
        return (self.entry,) if self.finish_entry is None else (self.entry, self.finish_entry)

    @staticmethod
    def options(index_bits: int = 32, fast_math: bool = False) -> tuple[str, ...]:
        """The -D options of one build of the source (`cuda_compile.defines`)."""
        return defines(index_bits, fast_math)

    def cache_key(self, index_bits: int = 32, fast_math: bool = False) -> tuple:
        """Structure only: the same for every size and scalar value (the device is the runtime's to add)."""
        return (self.kernel.key, index_bits, bool(fast_math))

    # -- planning -----------------------------------------------------------

    def plan(self, shape: Sequence[int], *, sm_count: int = 132, deterministic: bool = False,
             max_elements: int = 0, block: int = BLOCK, warp: int = 32,
             force_group: int | None = None, force_chunks: int | None = None,
             force_bits: int | None = None) -> LaunchPlan:
        """The launch for iteration `shape`. `max_elements`: the largest input buffer (for the index width).

        `block` and `warp` are 256 and 32 on a GPU (the host emulation uses 1 and 1);
        `force_group` / `force_chunks` pin the reduction strategy and `force_bits` the
        index build (tests; forcing 32 bits where 64 are needed is refused).
        """
        plan = self._plan(shape, sm_count, deterministic, max_elements, block, warp, force_group, force_chunks)
        if force_bits is not None and force_bits != plan.index_bits:
            if force_bits < plan.index_bits:
                raise ValueError(f"{self.entry}: shape {tuple(shape)} needs 64-bit indexing")
            plan = dataclasses.replace(plan, index_bits=force_bits)
        return plan

    def _plan(self, shape, sm_count, deterministic, max_elements, block, warp, force_group,
              force_chunks) -> LaunchPlan:
        k = self.kernel
        shape = tuple(int(s) for s in shape)
        if len(shape) != k.ndim:
            raise ValueError(f"{self.entry}: shape {shape} has {len(shape)} dims, the kernel {k.ndim}")
        total = _prod(shape)
        if deterministic:
            sm_count = DETERMINISTIC_SMS     # same plan, hence same summation order, on every device
        if not k.is_reduction:
            blocks = min(_cdiv(total, block), sm_count * BLOCKS_PER_SM)
            bits = _bits(total + blocks * block, max_elements)
            return LaunchPlan(bits, total, 1, total, (blocks, 1, 1), (block, 1, 1))

        split = k.ndim - k.reduce_ndim
        rows, cols = _prod(shape[:split]), _prod(shape[split:])
        columns = self.columns and rows >= 32     # at least one full warp of neighbouring rows
        if force_group is not None:
            group = force_group
        elif cols < 32 or columns:
            group = 0
        elif cols > 2048 and rows < sm_count * 32:
            group = 2
        else:
            group = 1
        chunks = 1
        if group == 0:
            xblocks = min(max(_cdiv(rows, block), 1), sm_count * BLOCKS_PER_SM)
            if force_chunks is not None:
                chunks = force_chunks
            elif columns and force_group is None:   # split the strided rows over blockIdx.y
                chunks = max(1, min(_cdiv(sm_count * REDUCE_BLOCKS_PER_SM, xblocks),
                                    _cdiv(cols, COLUMN_CHUNK), MAX_CHUNKS))
            grid = (xblocks, chunks, 1)
        elif group == 1:
            grid = (min(max(_cdiv(rows * warp, block), 1), sm_count * BLOCKS_PER_SM), 1, 1)
        else:
            ys = max(min(rows, 65535), 1)
            if force_chunks is not None:
                chunks = force_chunks
            else:
                chunks = max(1, min(_cdiv(sm_count * REDUCE_BLOCKS_PER_SM, ys),
                                    _cdiv(cols, block * 4), MAX_CHUNKS))
            grid = (chunks, ys, 1)
        if rows == 0:
            grid = (0, 1, 1)
        if chunks == 1:
            finish = 0
        elif self.atomic_ok and not deterministic:
            finish = 1
        else:
            finish = 2
        threads = grid[0] * grid[1] * block
        # the largest value an fa_idx reaches: m + ngroups, r + gsize, rbeg + clen, m*cols + r, m*chunks + chunk
        largest = max(total, rows + threads, 2 * cols + block, rows * chunks)
        bits = _bits(largest, max_elements)
        fgrid = fblock = None
        if finish == 2:
            fgrid, fblock = (min(rows, 65535), 1, 1), (block, 1, 1)
        return LaunchPlan(bits, total, rows, cols, grid, (block, 1, 1), group, finish, chunks,
                          fgrid, fblock)

    # -- arguments ----------------------------------------------------------

    def arguments(self, plan: LaunchPlan, shape, inputs, outputs, scalars, partials=()) -> list:
        """The main entry's argument list: buffers as given, integers and scalars as numpy scalars."""
        k = self.kernel
        if len(inputs) != len(k.inputs):
            raise ValueError(f"{self.entry}: {len(inputs)} inputs given, the kernel takes {len(k.inputs)}")
        if len(scalars) != len(k.scalars):
            raise ValueError(f"{self.entry}: {len(scalars)} scalars given, the kernel takes {len(k.scalars)}")
        args: list = [np.int64(n) for n in shape]
        for (buf, offset, strides), inp in zip(inputs, k.inputs):
            if len(strides) != k.ndim:
                raise ValueError(f"{self.entry}: input strides {tuple(strides)} need {k.ndim} entries")
            args.append(buf)
            args.append(np.int64(offset))
            args.extend(np.int64(s) for s, p in zip(strides, inp.pattern) if p == "n")
        args.extend(outputs)
        args.extend(d.np.type(v) for v, d in zip(scalars, k.scalars))
        if k.is_reduction:
            args.extend(partials)
            args += [np.int32(plan.group), np.int32(plan.finish)]
        return args

    def finish_arguments(self, plan: LaunchPlan, partials, outputs) -> list:
        args: list = [np.int64(plan.rows), np.int64(plan.chunks)]
        for part, (i, _) in zip(partials, self.reduced()):
            args += [part, outputs[i]]
        return args

    def reduced(self) -> list[tuple[int, object]]:
        """(output index, Output) of every reduced output, in order."""
        return [(i, o) for i, o in enumerate(self.kernel.outputs) if o.reduce]


def execute(src: CudaSource, shape, inputs, scalars, *, xp, functions: Callable, sm_count: int,
            deterministic: bool, block: int = BLOCK, warp: int = 32, **force) -> list:
    """Run `src` over `shape`: allocate outputs with `xp`, launch through `functions(index_bits)`.

    `functions(bits)` returns a mapping entry name -> callable(grid, block, args).
    `inputs` are (flat buffer, element offset, element strides per dim). Returns
    the flat output buffers. Shared by the CUDA runtime and the host emulation.
    """
    k = src.kernel
    max_elements = max([int(b.size) for b, _, _ in inputs] + [0])
    plan = src.plan(shape, sm_count=sm_count, deterministic=deterministic, max_elements=max_elements,
                    block=block, warp=warp, **force)
    outs = []
    for o in k.outputs:
        n = plan.rows if o.reduce else plan.total
        if o.reduce and plan.finish == 1:      # atomics combine into the identity
            start = identity(o.reduce, o.dtype)
            outs.append(xp.zeros(n, dtype=o.dtype.np) if start == 0 else xp.full(n, start, dtype=o.dtype.np))
        else:
            outs.append(xp.empty(n, dtype=o.dtype.np))
    if plan.grid[0] == 0:
        return outs
    reduced = src.reduced()
    if plan.finish == 2:
        partials = [xp.empty(plan.rows * plan.chunks, dtype=np.dtype(acc_dtype(o.reduce, o.dtype)))
                    for _, o in reduced]
    else:
        partials = [outs[i] for i, _ in reduced]       # never dereferenced: a typed placeholder
    fns = functions(plan.index_bits)
    fns[src.entry](plan.grid, plan.block, tuple(src.arguments(plan, shape, inputs, outs, scalars, partials)))
    if plan.finish == 2:
        fns[src.finish_entry](plan.finish_grid, plan.finish_block,
                              tuple(src.finish_arguments(plan, partials, outs)))
    return outs


def identity(reduce: str, dtype) -> object:
    """The start value of a reduction as a Python number (what an atomic output is filled with)."""
    if reduce == "sum":
        return 0
    if reduce == "prod":
        return 1
    if dtype.is_floating:
        return -np.inf if reduce == "max" else np.inf
    info = np.iinfo(dtype.np) if dtype.kind != "b" else None
    if info is None:
        return reduce == "min"
    return int(info.min) if reduce == "max" else int(info.max)


def _prod(xs) -> int:
    n = 1
    for x in xs:
        n *= int(x)
    return n


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _bits(largest_index: int, largest_buffer: int) -> int:
    return 32 if largest_index <= _INDEX_LIMIT and largest_buffer <= _INDEX_LIMIT else 64


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------

def _ctype(d) -> str:
    try:
        return CTYPES[d.name]
    except KeyError:
        raise NotImplementedError(f"the CUDA renderer does not support dtype {d.name}") from None


def acc_dtype(reduce: str, d) -> str:
    """Name of the accumulator dtype of a `reduce` output of dtype `d`. float32 sums accumulate in
    double: a thread may add up thousands of elements in a row, and float there loses digits that
    numpy's pairwise sum keeps; the double add is free next to the memory traffic."""
    if reduce == "sum" and d.name == "float32":
        return "float64"
    return ACC_TYPES[d.name]


def _acc_ctype(o) -> str:
    return CTYPES[acc_dtype(o.reduce, o.dtype)]


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
        self.atomic_ok = all(_check(o.dtype).name in ATOMIC_DTYPES for o in k.outputs if o.reduce)
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
