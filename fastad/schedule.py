"""schedule: split a graph into fused kernels and library calls, then run them in order.

Start at `run` (plan + execute) and `plan`. The rules:

* A node is *materialized* (gets a buffer) when something outside one kernel
  needs it: a requested output, every reduction, the inputs and outputs of
  library ops (matmul, embed, concat), and the source of a broadcast that
  would otherwise be recomputed per broadcast element. Every other
  elementwise intermediate is recomputed inside each kernel that uses it,
  never stored: this is how backward kernels re-derive cheap forward values.
* Movement ops (reshape, permute, expand, slice) are not kernels: they are
  pushed down to the loads as strided views (`View`). A reshape that no view
  can express materializes its source, and planning restarts.
* Each materialized node becomes a kernel *root*: a store over its own shape,
  or a reduction over its source with the reduced axes last. Roots that share
  an iteration space and do not depend on each other are fused into one
  multi-output kernel (a loss value and its gradient in one pass).

Kernels are described by `fastad.kernel_ir.Kernel` (structure only) plus the
runtime values (`KernelStep`): sizes, views and scalars. The device backend
runs them (`fastad.runtime`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .graph import Node, toposort
from .donation import with_donations
from .kernel_ir import Input, Kernel, Output, Stmt
from .ops import ELEMENTWISE, LIBRARY, MATMUL, MOVEMENT, OPS, REDUCE
from . import capture
from . import profiling as profile
from .config import settings
from .runtime import backend_for, device_scope
from .runtime.reference import evaluate_in_place

__all__ = ["plan", "run", "describe_plan", "View"]


# ---------------------------------------------------------------------------
# Views: how a kernel reads a C-contiguous buffer (strides and offset in elements)
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class View:
    shape: tuple
    strides: tuple
    offset: int = 0

    @staticmethod
    def contiguous(shape) -> "View":
        strides, acc = [], 1
        for d in reversed(shape):
            strides.append(acc)
            acc *= d
        return View(tuple(shape), tuple(reversed(strides)), 0)

    def apply(self, op: str, arg) -> "View | None":
        """This view after one movement op, or None when no strided view can express it."""
        if op == "permute":
            return View(tuple(self.shape[p] for p in arg), tuple(self.strides[p] for p in arg), self.offset)
        if op == "expand":
            return View(tuple(arg), tuple(0 if a != b else s for a, b, s in zip(self.shape, arg, self.strides)),
                        self.offset)
        if op == "slice":
            off = self.offset + sum(start * s for (start, _, _), s in zip(arg, self.strides))
            return View(tuple(len(range(*sl)) for sl in arg),
                        tuple(s * step for (_, _, step), s in zip(arg, self.strides)), off)
        if op == "reshape":
            strides = _reshape_strides(self.shape, self.strides, tuple(arg))
            return None if strides is None else View(tuple(arg), strides, self.offset)
        raise ValueError(f"not a movement op: {op}")


def _reshape_strides(old_shape, old_strides, new_shape):
    """Strides that read `new_shape` from the same memory, or None (numpy's no-copy reshape rule)."""
    if math.prod(old_shape) == 0:
        return View.contiguous(new_shape).strides
    old = [(d, s) for d, s in zip(old_shape, old_strides) if d != 1]
    new_strides = [0] * len(new_shape)
    oi = ni = 0
    new_idx = [i for i, d in enumerate(new_shape) if d != 1]
    while oi < len(old) and ni < len(new_idx):
        # grow a group of old dims and new dims with equal element counts
        oj, nj = oi + 1, ni + 1
        op, np_ = old[oi][0], new_shape[new_idx[ni]]
        while op != np_:
            if op < np_:
                op *= old[oj][0]
                oj += 1
            else:
                np_ *= new_shape[new_idx[nj]]
                nj += 1
        for k in range(oi, oj - 1):  # the old group must be one contiguous run
            if old[k][1] != old[k + 1][1] * old[k + 1][0]:
                return None
        stride = old[oj - 1][1]
        for k in range(nj - 1, ni - 1, -1):
            new_strides[new_idx[k]] = stride
            stride *= new_shape[new_idx[k]]
        oi, ni = oj, nj
    return tuple(new_strides)


# ---------------------------------------------------------------------------
# Plan
# ---------------------------------------------------------------------------

@dataclass
class KernelStep:
    kernel: Kernel
    shape: tuple                 # the iteration shape (after collapsing dims)
    inputs: list                 # (node, View) per kernel input
    scalars: list                # the const node behind each scalar argument
    outputs: list                # the node each kernel output settles


@dataclass
class LibraryStep:
    node: Node                   # a matmul, embed or concat node


@dataclass
class Plan:
    steps: list = field(default_factory=list)
    materialized: set = field(default_factory=set)

    def kernels(self) -> list:
        return [s for s in self.steps if isinstance(s, KernelStep)]


class _Materialize(Exception):
    """Raised while building a kernel: this node must get a buffer of its own."""

    def __init__(self, node: Node):
        self.node = node


def _is_source(node: Node) -> bool:
    return node.buffer is not None or node.op in ("const", "buffer")


def _identity_perm(n):
    return tuple(range(n))


class _KernelBuilder:
    """Builds one Kernel body from root nodes, memoising (node, view chain) pairs. A root of the
    same kernel (`local`) that another root reads is computed in the kernel, not loaded."""

    def __init__(self, materialized: set, local: frozenset = frozenset()):
        self.materialized = materialized
        self.local = local
        self.body: list[Stmt] = []
        self.memo: dict = {}
        self.inputs: list = []        # (node, View)
        self.input_index: dict = {}
        self.scalars: list = []       # const nodes, one per scalar argument
        self.scalar_index: dict = {}

    def _emit(self, stmt: Stmt) -> int:
        """Append `stmt` unless an identical statement exists (common subexpressions, repeated constants)."""
        k = self.memo.get(stmt)
        if k is None:
            self.body.append(stmt)
            k = self.memo[stmt] = len(self.body) - 1
        return k

    def value(self, node: Node, moves: tuple, root: bool = False) -> int:
        """The statement computing `node` read through `moves`; `root`: compute it even if materialized.

        Iterative (an explicit stack, children before parents): a chain of thousands of
        elementwise ops is one deep expression, far past Python's recursion limit."""
        memo = self.memo
        stack = [(node, moves, root)]
        while stack:
            n, mv, is_root = stack[-1]
            key = (id(n), mv)
            if key in memo:
                stack.pop()
                continue
            if n.op == "const":
                out = self._scalar(n)
            elif n.buffer is not None or (id(n) in self.materialized and not is_root
                                          and not (id(n) in self.local and not mv)):
                out = self._load(n, mv)
            elif OPS[n.op].kind == MOVEMENT:
                below = (n.srcs[0], ((n.op, n.arg, n.srcs[0]),) + mv)
                hit = memo.get((id(below[0]), below[1]))
                if hit is None:
                    stack.append(below + (False,))
                    continue
                out = hit
            elif OPS[n.op].kind == ELEMENTWISE:
                if any(op == "expand" and b.shape != arg for op, arg, b in mv):
                    raise _Materialize(n)  # don't recompute a subgraph once per broadcast element
                missing = [(s, mv, False) for s in n.srcs if (id(s), mv) not in memo]
                if missing:
                    stack.extend(reversed(missing))
                    continue
                srcs = tuple(memo[(id(s), mv)] for s in n.srcs)
                out = self._emit(Stmt(n.op, srcs, n.dtype, n.arg))
            else:  # a reduction or library op not yet materialized
                raise _Materialize(n)
            memo[key] = out
            stack.pop()
        return memo[(id(node), moves)]

    def _scalar(self, node: Node) -> int:
        # one argument per const node, never merged by value: a cached plan must stay valid
        # when the same structure comes back with other constants
        k = self.scalar_index.get(id(node))
        if k is None:
            k = self.scalar_index[id(node)] = len(self.scalars)
            self.scalars.append(node)
        return self._emit(Stmt("scalar", (), node.dtype, k))

    def _load(self, node: Node, moves: tuple) -> int:
        view = View.contiguous(node.shape)
        for op, arg, below in moves:
            nxt = view.apply(op, arg)
            if nxt is None:
                raise _Materialize(below)
            view = nxt
        ikey = (id(node), view)
        k = self.input_index.get(ikey)
        if k is None:
            k = self.input_index[ikey] = len(self.inputs)
            self.inputs.append((node, view))
        return self._emit(Stmt("load", (), node.dtype, k))


def plan(outputs: list[Node]) -> Plan:
    """The kernels and library calls that compute `outputs`, in an order that respects dependencies."""
    materialized = {id(n) for n in outputs if not _is_source(n)}
    while True:
        try:
            return _plan(outputs, materialized)
        except _Materialize as m:
            if id(m.node) in materialized:
                raise RuntimeError(f"scheduler: cannot express {m.node}") from None
            materialized.add(id(m.node))


def _library_operand_needs(node: Node, materialized: set) -> None:
    """Library ops read their operands as arrays: a view chain over a buffer, or a materialized node."""
    for s in node.srcs:
        base = s
        while base.buffer is None and OPS[base.op].kind == MOVEMENT:
            base = base.srcs[0]
        if not _is_source(base) and id(base) not in materialized:
            raise _Materialize(base)


def _plan(outputs: list[Node], materialized: set) -> Plan:
    order = [n for n in toposort(outputs) if n.buffer is None and n.op not in ("const", "buffer")]
    for n in order:
        if OPS[n.op].kind in (REDUCE, LIBRARY, MATMUL):
            materialized.add(id(n))
            if OPS[n.op].kind != REDUCE:
                _library_operand_needs(n, materialized)
    roots = [n for n in order if id(n) in materialized]
    # each root is a unit: a library call, or a kernel with its iteration space
    units = []
    for n in roots:
        if OPS[n.op].kind in (LIBRARY, MATMUL) or _is_view_of_buffer(n, materialized):
            units.append(("library", n, None, None))
            continue
        units.append(("kernel", n) + _root_space(n))
    depth: dict[int, int] = {}  # 1 + the deepest root it reads; equal depth means independent
    deps_of: dict[int, list] = {}
    for u in units:
        n = u[1]
        deps = deps_of[id(n)] = _direct_deps(n, materialized)
        depth[id(n)] = 1 + max((depth.get(id(d), 0) for d in deps), default=0)
    # fuse roots with a compatible iteration space that are independent (the same depth), or
    # where one reads the other at the point it computes (a producer and its consumer: the
    # consumer joins the producer's kernel, which computes the producer's value once and also
    # stores it)
    groups: list[dict] = []
    group_of: dict[int, dict] = {}
    for u in units:
        n = u[1]
        if u[0] == "library":
            groups.append({"library": n, "depth": depth[id(n)]})
            continue
        _, _, shape, rnd, perm = u
        deps = deps_of[id(n)]
        for g in groups:
            if "roots" not in g or not _compatible(g, shape, rnd, perm):
                continue
            inside = [d for d in deps if group_of.get(id(d)) is g]
            if g["depth"] == depth[id(n)] and not inside or inside and _joins(n, inside, deps, g, depth, perm,
                                                                               materialized):
                g["roots"].append(n)
                group_of[id(n)] = g
                if rnd:
                    g["rnd"], g["perm"] = rnd, perm
                depth[id(n)] = g["depth"]
                break
        else:
            g = {"roots": [n], "shape": shape, "rnd": rnd, "perm": perm, "depth": depth[id(n)]}
            groups.append(g)
            group_of[id(n)] = g
    p = Plan(materialized=materialized)
    for g in sorted(groups, key=lambda g: g["depth"]):
        if "library" in g:
            p.steps.append(LibraryStep(g["library"]))
        else:
            p.steps.append(_build_kernel(g, materialized))
    return p


def _joins(n: Node, inside: list, deps: list, g: dict, depth: dict, perm, materialized: set) -> bool:
    """Whether root `n`, which reads roots `inside` of kernel group `g`, can join it: its other
    reads come from earlier steps, it reads its source in order (no permuted reduction), and it
    reads each of those roots only at the point it computes (through elementwise ops, no view),
    where the kernel has that root's value."""
    targets = {id(d) for d in inside}
    if any(depth[id(d)] >= g["depth"] for d in deps if id(d) not in targets):
        return False
    if perm is not None and perm != _identity_perm(len(perm)):
        return False
    stack, seen = [(s, False) for s in n.srcs], set()
    while stack:
        s, viewed = stack.pop()
        if id(s) in targets:
            if viewed:
                return False   # read through a view: at another point than the kernel computes it
            continue
        if (id(s), viewed) in seen or s.buffer is not None or s.op == "const" or id(s) in materialized:
            continue
        seen.add((id(s), viewed))
        below = viewed or OPS[s.op].kind != ELEMENTWISE
        stack.extend((t, below) for t in s.srcs)
    return True


def _is_view_of_buffer(n: Node, materialized: set) -> bool:
    """A movement chain over a computed node: numpy makes it a view (or one copy), no kernel needed."""
    if OPS[n.op].kind != MOVEMENT:
        return False
    base = n
    while base.buffer is None and OPS[base.op].kind == MOVEMENT:
        base = base.srcs[0]
    return base.buffer is not None or (id(base) in materialized and OPS[base.op].kind != MOVEMENT)


def _root_space(n: Node):
    """(iteration shape, reduced trailing dims, permutation of the source) for a root."""
    if OPS[n.op].kind == REDUCE:
        src = n.srcs[0]
        kept = tuple(i for i in range(src.ndim) if i not in n.arg)
        perm = kept + tuple(n.arg)
        return tuple(src.shape[p] for p in perm), len(n.arg), perm
    return tuple(n.shape), 0, None


def _compatible(g, shape, rnd, perm) -> bool:
    if g["shape"] != shape:
        return False
    if rnd and g["rnd"]:
        return rnd == g["rnd"] and perm == g["perm"]
    # a store kernel can join a reduction only when the reduction reads its source in order
    other_perm = perm if rnd else g["perm"]
    return other_perm is None or other_perm == _identity_perm(len(other_perm))


def _direct_deps(n: Node, materialized: set) -> list:
    """Materialized or computed nodes that the kernel (or call) for `n` reads."""
    out, seen, stack = [], set(), list(n.srcs)
    while stack:
        s = stack.pop()
        if id(s) in seen:
            continue
        seen.add(id(s))
        if id(s) in materialized:
            out.append(s)
        elif s.buffer is None and s.op not in ("const", "buffer"):
            stack.extend(s.srcs)
    return out


def _build_kernel(g: dict, materialized: set) -> KernelStep:
    b = _KernelBuilder(materialized, frozenset(id(n) for n in g["roots"]))
    shape, rnd, perm = g["shape"], g["rnd"], g["perm"]
    outs = []
    for n in g["roots"]:
        if OPS[n.op].kind == REDUCE:
            src = n.srcs[0]
            moves = () if perm == _identity_perm(src.ndim) else (("permute", perm, src),)
            outs.append(Output(b.value(src, moves), n.dtype, n.op))
        else:
            outs.append(Output(b.value(n, (), root=True), n.dtype, None))
    full_shape = tuple(shape)
    views = [v for _, v in b.inputs]
    shape2, strides2, rnd2 = _collapse(full_shape, rnd, [v.strides for v in views])
    inputs = tuple(Input(node.dtype, _pattern(st)) for (node, _), st in zip(b.inputs, strides2))
    kernel = Kernel(len(shape2), rnd2, inputs, tuple(c.dtype for c in b.scalars), tuple(b.body), tuple(outs))
    step_inputs = [(node, View(shape2, st, v.offset)) for (node, v), st in zip(b.inputs, strides2)]
    return KernelStep(kernel, shape2, step_inputs, list(b.scalars), list(g["roots"]))


def _pattern(strides) -> str:
    return "".join("0" if s == 0 else "1" if s == 1 else "n" for s in strides)


def _collapse(shape, rnd, strides_list):
    """Drop size-1 dims and merge neighbours every input reads contiguously (fewer loops, unit strides)."""
    n = len(shape)
    boundary = n - rnd
    dims = [i for i in range(n) if shape[i] != 1]
    if not dims:
        return (1,), [(0,) for _ in strides_list], 1 if rnd else 0
    groups = [[dims[0]]]
    for d in dims[1:]:
        prev = groups[-1][-1]
        same_side = (prev < boundary) == (d < boundary)
        if same_side and all(st[prev] == st[d] * shape[d] for st in strides_list):
            groups[-1].append(d)
        else:
            groups.append([d])
    new_shape = tuple(math.prod(shape[d] for d in grp) for grp in groups)
    new_strides = [tuple(st[grp[-1]] for grp in groups) for st in strides_list]
    new_rnd = sum(1 for grp in groups if grp[0] >= boundary)
    if new_rnd == 0 and rnd:
        # every reduced dim had size 1: keep one so the kernel still reduces (over one element)
        new_shape += (1,)
        new_strides = [st + (0,) for st in new_strides]
        new_rnd = 1
    return new_shape, new_strides, new_rnd


# ---------------------------------------------------------------------------
# Execution
# ---------------------------------------------------------------------------

def _operand(node: Node, xp):
    """A library operand as an array: a buffer, or numpy views over one."""
    if node.buffer is not None:
        return node.buffer
    if node.op == "const":
        return xp.broadcast_to(xp.asarray(node.arg, dtype=node.dtype.np), node.shape)
    return OPS[node.op].ref(_operand(node.srcs[0], xp), node.arg)


def run(outputs: list[Node], order: list[Node] | None = None, donate: dict | None = None) -> None:
    """Compute `outputs` (all on one device) and store every materialized value on its node.
    `order` is their graph in topological order, when the caller has it. `donate` maps an output
    to a computed node whose buffer it may be written over (`fastad.realize.realize`)."""
    if not outputs:
        return
    rec = capture.recorder()
    if rec is not None:
        donate = None   # a recorded step replays over other buffers, whose owners nobody checked
    if rec is None and _small_graph(outputs, order):   # (a step being captured must be replayable)
        # tiny tensors: numpy op by op beats planning and launching a kernel
        evaluate_in_place(order if order is not None else toposort(outputs))
        return
    backend = backend_for(outputs[0].device)
    xp = backend.xp
    with device_scope(outputs[0].device):   # CuPy allocates views and constants on its current device
        _run_steps(backend, xp, outputs, order, rec, donate if getattr(backend, "donates", False) else None)


def _run_steps(backend, xp, outputs: list[Node], order, rec=None, donate=None) -> None:
    """Run the plan's steps; `rec`: a `fastad.capture` recorder told about each one."""
    steps = _cached_plan(outputs, order)
    for at, step in enumerate(steps):
        if isinstance(step, LibraryStep):
            n = step.node
            if OPS[n.op].kind == MOVEMENT:  # a view of a computed buffer: no kernel
                profile.record_launch(n.op, n.device, n.size, kind="view")
                if rec is not None:
                    rec.view(n)
                n.settle(xp.ascontiguousarray(_operand(n, xp)).reshape(n.shape))
                continue
            args = [_operand(s, xp) for s in n.srcs]
            profile.record_launch(n.op, n.device, n.size, kind="library")
            if rec is not None:
                rec.library(n, list(n.srcs))
            n.settle(backend.run_library(n.op, n.arg, args, device=n.device))
            continue
        # kernel inputs are computed nodes (constants are scalar arguments)
        inputs = [(node.buffer.reshape(-1), view.offset, view.strides) for node, view in step.inputs]
        scalars = [c.arg for c in step.scalars]
        kernel = with_donations(step, donate, steps[:at] + steps[at + 1:]) if donate else step.kernel
        results = backend.run_kernel(kernel, step.shape, inputs, scalars, device=outputs[0].device)
        for node, buf in zip(step.outputs, results):
            node.settle(buf.reshape(node.shape))
        if rec is not None:
            rec.kernel(step, outputs[0].device)


# Plans are cached by graph structure: a training loop rebuilds the same graph every step,
# and planning it again costs far more than walking it once to compute the key.
_PLAN_CACHE: dict = {}
_PLAN_CACHE_SIZE = 512


def _structure(outputs: list[Node], order: list[Node]):
    """(key, index): a hashable description of the graph that leaves out constant values, and each
    node's position in `order`. One flat tuple: per node a tag (0 a buffer, 1 a constant, else
    the op), its shape and dtype, and for an op its arg, source count and sources' positions."""
    index = {}
    parts: list = []
    for i, n in enumerate(order):   # nodes hash by identity
        index[n] = i
        op = n.op
        if op == "const":
            parts += (1, n.shape, n.dtype)
        elif n.buffer is not None:
            parts += (0, n.shape, n.dtype)
        else:
            srcs = n.srcs
            parts += (op, n.shape, n.dtype, n.arg, len(srcs))
            for s in srcs:
                parts.append(index[s])
    parts.append(tuple([index[o] for o in outputs]))   # (a tuple: never equal to a node's tag)
    return tuple(parts), index


def _cached_plan(outputs: list[Node], order: list[Node] | None) -> list:
    """The steps for `outputs`: from the plan cache when this structure was planned before."""
    if order is None:
        order = toposort(outputs)
    key, index = _structure(outputs, order)
    template = _PLAN_CACHE.get(key)
    if template is None:
        steps = plan(outputs).steps
        if len(_PLAN_CACHE) >= _PLAN_CACHE_SIZE:
            _PLAN_CACHE.pop(next(iter(_PLAN_CACHE)))
        _PLAN_CACHE[key] = [_to_template(s, index) for s in steps]
        return steps
    return [_from_template(t, order) for t in template]


def _to_template(step, index):
    if isinstance(step, LibraryStep):
        return ("library", index[step.node])
    return ("kernel", step.kernel, step.shape, [(index[n], v) for n, v in step.inputs],
            [index[c] for c in step.scalars], [index[n] for n in step.outputs])


def _from_template(t, order):
    if t[0] == "library":
        return LibraryStep(order[t[1]])
    _, kernel, shape, inputs, scalars, outs = t
    return KernelStep(kernel, shape, [(order[i], v) for i, v in inputs], [order[i] for i in scalars],
                      [order[i] for i in outs])


def _small_graph(outputs: list[Node], order) -> bool:
    """Whether every node has at most `settings.small_graph_elements` elements (CPU, tiered mode)."""
    limit = settings.small_graph_elements
    if settings.cpu_mode == "jit" or limit <= 0 or outputs[0].device.type != "cpu":
        return False
    prod = math.prod
    for n in order if order is not None else toposort(outputs):
        if n.shape and prod(n.shape) > limit:   # () is one element
            return False
    return True


def describe_plan(outputs: list[Node], source: bool = False) -> list[str]:
    """Readable fusion plan lines for `fastad.explain`."""
    pending = [n for n in outputs if n.buffer is None and n.op != "const"]
    if not pending:
        return ["plan: nothing to compute (values are known)"]
    p = plan(pending)
    lines = [f"plan: {len(p.kernels())} fused kernel(s), "
             f"{len(p.steps) - len(p.kernels())} library call(s)"]
    for i, s in enumerate(p.steps):
        if isinstance(s, LibraryStep):
            lines.append(f"  step {i}: library {s.node.op} -> {s.node.dtype.name}{list(s.node.shape)}")
            continue
        lines.append(f"  step {i}: kernel {s.kernel.name} over {list(s.shape)}")
        lines += ["    " + l for l in s.kernel.describe().splitlines()]
        if source:
            from .codegen.numba import render
            lines += ["    | " + l for l in render(s.kernel).splitlines()]
    return lines
