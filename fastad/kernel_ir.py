"""kernel_ir: the backend-neutral description of one fused kernel. Both renderers read it.

Start at `Kernel`. The scheduler (`fastad.schedule`) builds a Kernel from a
group of graph nodes; `fastad.codegen.numba` and `fastad.codegen.cuda` render
it. A Kernel holds structure only (ops, dtypes, ranks, stride patterns), never
sizes or scalar values, so `Kernel.key` is a cache key that a new N or a new
learning rate does not change.

Semantics
---------
The iteration space has `ndim` >= 1 dimensions; its shape is a runtime
argument. The trailing `reduce_ndim` dimensions are reduced (0: a pure
elementwise kernel). For every point of the iteration space the kernel
evaluates `body`, a list of SSA statements (`Stmt`); statement `i` may use
statements before it.

* `load`   reads input `arg` at the current point. Input k is a flat 1-D buffer
  read at `offset_k + sum(i_d * stride_kd)`; its `pattern` says per dimension
  whether the stride is 0 (`"0"`, broadcast), 1 (`"1"`, unit) or a runtime
  value (`"n"`). Renderers use the pattern to emit `x[o + i]` (vectorizable)
  rather than `x[o + i*s]`.
* `scalar` is runtime scalar argument `arg` (constants, learning rates).
* any other op is an elementwise op-table entry applied to its `srcs`;
  `cast` converts to the statement's dtype.

Each `Output` names a statement. A `store` output (reduce=None) is written to
a fresh C-contiguous buffer of the full iteration shape, or, with `into=j`,
over input j (buffer donation, `fastad.donation`: a 1-D map whose input j is
read at the same unit-stride index as the output is written, so each element
is read before it is overwritten and by nothing else). A reduced output
(reduce = "sum" | "prod" | "max" | "min") is combined over the trailing
`reduce_ndim` dims into a C-contiguous buffer of shape `shape[:ndim-reduce_ndim]`.

Runtime arguments, in this order (both renderers): the iteration shape
(`ndim` int64), then per input its flat buffer, its int64 offset and one int64
stride per `"n"` in its pattern, then each output's flat buffer, then the
scalars. A renderer may append arguments of its own (scratch space).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

from .dtypes import DType

__all__ = ["Stmt", "Input", "Output", "Kernel"]


@dataclass(frozen=True)
class Stmt:
    op: str                 # "load", "scalar", or an elementwise op-table name
    srcs: tuple[int, ...]   # earlier statements
    dtype: DType
    arg: object = None      # load: input index; scalar: scalar index; otherwise the op's arg

    def __str__(self) -> str:
        if self.op in ("load", "scalar"):
            return f"{self.op}[{self.arg}]"
        args = ", ".join(f"v{s}" for s in self.srcs)
        return f"{self.op}({args})"


@dataclass(frozen=True)
class Input:
    dtype: DType
    pattern: str            # one of "0", "1", "n" per iteration dimension

    @property
    def n_strides(self) -> int:
        return self.pattern.count("n")


@dataclass(frozen=True)
class Output:
    value: int              # the statement stored
    dtype: DType
    reduce: str | None = None  # None (store), "sum", "prod", "max" or "min"
    into: int | None = None    # a store written over this input's buffer (donated), not a fresh one


@dataclass(frozen=True)
class Kernel:
    ndim: int
    reduce_ndim: int
    inputs: tuple[Input, ...]
    scalars: tuple[DType, ...]
    body: tuple[Stmt, ...]
    outputs: tuple[Output, ...]

    @cached_property
    def key(self) -> str:
        """A stable structural hash: equal for kernels that differ only in sizes and scalar values."""
        return hashlib.sha256(self.describe().encode()).hexdigest()[:20]

    @cached_property
    def name(self) -> str:
        reduces = [o.reduce for o in self.outputs if o.reduce]
        kind = "_".join(dict.fromkeys(reduces)) if reduces else "map"
        ops = [s.op for s in self.body if s.op not in ("load", "scalar")]
        head = "_".join(dict.fromkeys(ops))[:40] or "copy"
        return f"fa_{kind}_{head}_{self.key[:8]}"

    @property
    def is_reduction(self) -> bool:
        return self.reduce_ndim > 0

    def describe(self) -> str:
        """A readable listing of the kernel, also the text hashed into `key`."""
        lines = [f"kernel ndim={self.ndim} reduce_ndim={self.reduce_ndim}"]
        for k, inp in enumerate(self.inputs):
            lines.append(f"  in{k}: {inp.dtype.name} pattern={inp.pattern}")
        for k, d in enumerate(self.scalars):
            lines.append(f"  s{k}: {d.name}")
        for i, st in enumerate(self.body):
            lines.append(f"  v{i} = {st}  : {st.dtype.name}" + (f" arg={st.arg!r}" if st.op not in (
                "load", "scalar") and st.arg is not None else ""))
        for k, o in enumerate(self.outputs):
            lines.append(f"  out{k} = {o.reduce + ' ' if o.reduce else ''}v{o.value} : {o.dtype.name}"
                         + (f" into in{o.into}" if o.into is not None else ""))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()
