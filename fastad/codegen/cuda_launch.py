"""codegen.cuda_launch: how a rendered CUDA kernel is launched: its plan, arguments and the launch itself.

Start at `CudaSource` (what `fastad.codegen.cuda.render` returns: the source, its
entries and the launch protocol), `CudaSource.plan` (a runtime shape -> a
`LaunchPlan`: grid, block, reduction strategy, index width) and `execute`, which
runs a plan through any array module and launcher: the CUDA runtime
(`fastad.runtime.cuda`) passes CuPy and the functions of the NVRTC-compiled
module; the tests pass numpy and the same source compiled as host C++. The
argument layout and the reduction strategies are described in
`fastad.codegen.cuda` and docs/CUDA.md. Nothing here imports CuPy.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..kernel_ir import Kernel
from .cuda_compile import defines
from .cuda_types import acc_dtype, identity

__all__ = ["LaunchPlan", "CudaSource", "execute", "BLOCK", "BLOCKS_PER_SM", "REDUCE_BLOCKS_PER_SM",
           "MAX_CHUNKS", "COLUMN_CHUNK", "DETERMINISTIC_SMS"]

BLOCK = 256              # threads per block of every launch (kernels declare __launch_bounds__(256))
BLOCKS_PER_SM = 16       # grid-stride loops: at most this many blocks per multiprocessor
REDUCE_BLOCKS_PER_SM = 8  # block-mode reductions aim at this many blocks per multiprocessor
MAX_CHUNKS = 1024        # most blocks one row of a reduction is split into
COLUMN_CHUNK = 64        # thread-per-row reductions: fewest elements one thread adds before combining
DETERMINISTIC_SMS = 128  # deterministic mode plans for this SM count whatever the device has
_INDEX_LIMIT = 2 ** 31 - 1


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


def _prod(xs) -> int:
    n = 1
    for x in xs:
        n *= int(x)
    return n


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _bits(largest_index: int, largest_buffer: int) -> int:
    return 32 if largest_index <= _INDEX_LIMIT and largest_buffer <= _INDEX_LIMIT else 64
