"""collectives: `all_reduce`, `broadcast`, `all_gather`, `reduce_scatter` on Tensors, with derivative rules.

Start at `all_reduce` and `_run`. Each collective is one op-table entry of
library kind (`dist_all_reduce`, ...), added to `fastad.ops.OPS` with the
table's own `defop` when this package is imported: its shape rule, its
reference (`comm.execute` on the realized input buffer, MPI or NCCL) and its
derivative rule, like `matmul` or `concat`.

When they run. A collective runs when it is called, not when its value is
first read: the input is realized, the collective runs on its buffer, and
the result is a computed node (`_run`). MPI and NCCL match collectives by
the order in which ranks issue them, so that order must be the program's
order on every rank. A lazy collective would run whenever some rank reads
a value that depends on it, say only rank 0 printing a loss, and the ranks
would then pair different collectives. For the same reason a derivative
rule runs its collective while the backward pass walks the graph, which
visits the same ops in the same order on every rank.

Derivative rules (the loss being the sum of every rank's loss, as in SPMD
programs): all_reduce(sum) -> all_reduce(sum) of the cotangents, mean ->
mean; max/min -> the summed cotangent goes to the ranks holding the
extremum, split evenly among ties; broadcast -> reduce to the root (zero
elsewhere) and back; all_gather <-> reduce_scatter.
"""
from __future__ import annotations

from .. import profiling as profile
from .. import capture
from ..ops import LIBRARY, OPS, apply, defop, f
from ..realize import realize
from ..runtime import backend_for
from ..runtime.reference import const_array
from ..tensor import Tensor, _apply
from . import comm
from .comm import REDUCE_OPS, Spec

__all__ = ["all_reduce", "broadcast", "all_gather", "reduce_scatter", "reduce"]

# the dtypes each reduction accepts (kinds: b bool, i/u integers, f float, c complex)
_OP_KINDS = {"sum": "iufc", "mean": "fc", "max": "iuf", "min": "iuf"}


def _run(node):
    """Run the collective `node` now, on its realized input, and store the result on it."""
    src = node.srcs[0]
    realize([src])
    if src.buffer is not None:
        buf = src.buffer
    else:
        buf = const_array(src, backend_for(src.device).xp)
    profile.record_launch(node.op, node.device, node.size, kind="library")
    rec = capture.recorder()
    if rec is not None:          # a fastad.compile'd step replays its collectives in the same order
        rec.reference(node, [src])
    node.settle(OPS[node.op].ref(buf, node.arg))
    return node


def _collective(name: str, g, spec: Spec):
    """A collective on a gradient inside a derivative rule: built and run at once. On tensors
    (create_graph, nested tapes) it is recorded like any op, so it can be differentiated again."""
    if isinstance(g, Tensor):
        out = _apply(name, g, arg=spec)
        _run(out._node)
        return out
    return _run(apply(name, g, arg=spec))


def _ref(kind):
    return lambda x, spec: comm.execute(kind, x, spec)


def _same_shape(srcs, spec):
    return srcs[0].shape


def _gather_shape(srcs, spec):
    return comm.out_shape("all_gather", srcs[0].shape, comm.world_size())


def _scatter_shape(srcs, spec):
    return comm.out_shape("reduce_scatter", srcs[0].shape, comm.world_size())


def _all_reduce_vjp(c, g):
    spec = c.arg
    if spec.op in ("sum", "mean"):
        return (_collective("dist_all_reduce", g, spec),)
    # max/min: every rank's cotangent flows to the ranks whose input is the extremum
    total = _collective("dist_all_reduce", g, spec._replace(op="sum"))
    hit = f.cast(f.eq(c.x, c.y), arg=c.x.dtype)
    count = _collective("dist_all_reduce", hit, spec._replace(op="sum"))
    return (f.div(f.mul(total, hit), count),)


def _reduce_scatter_vjp(c, g):
    gathered = _collective("dist_all_gather", g, Spec(timeout=c.arg.timeout))
    if c.arg.op == "mean":
        gathered = f.div(gathered, f.like(comm.world_size(), gathered))
    return (gathered,)


defop("dist_all_reduce", LIBRARY, 1, ref=_ref("all_reduce"), shape=_same_shape, vjp=_all_reduce_vjp)
# broadcast from spec.root; its transpose is a sum onto the root, zero elsewhere (dist_reduce)
defop("dist_broadcast", LIBRARY, 1, ref=_ref("broadcast"), shape=_same_shape,
      vjp=lambda c, g: (_collective("dist_reduce", g, c.arg._replace(op="sum")),))
defop("dist_reduce", LIBRARY, 1, ref=_ref("reduce"), shape=_same_shape,
      vjp=lambda c, g: (_collective("dist_broadcast", g, c.arg._replace(op=None)),))
defop("dist_all_gather", LIBRARY, 1, ref=_ref("all_gather"), shape=_gather_shape,
      vjp=lambda c, g: (_collective("dist_reduce_scatter", g, c.arg._replace(op="sum")),))
defop("dist_reduce_scatter", LIBRARY, 1, ref=_ref("reduce_scatter"), shape=_scatter_shape,
      vjp=_reduce_scatter_vjp)


# ---------------------------------------------------------------------------
# The Tensor functions
# ---------------------------------------------------------------------------

def _check(name: str, t, op, timeout) -> Spec:
    comm._require()
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} takes a fastad Tensor, got {type(t).__name__}")
    if op is not None:
        if op not in REDUCE_OPS:
            raise ValueError(f"{name}: op must be one of {', '.join(REDUCE_OPS)}, got {op!r}")
        if t.dtype.kind not in _OP_KINDS[op]:
            raise TypeError(f"{name}: op={op!r} is not defined for {t.dtype.name}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"{name}: timeout must be a positive number of seconds, got {timeout}")
    return Spec(op=op, timeout=comm._state.timeout if timeout is None else float(timeout))


def _call(name: str, t: Tensor, spec: Spec) -> Tensor:
    out = _apply(name, t, arg=spec)
    _run(out._node)
    return out


def all_reduce(t: Tensor, op: str = "sum", *, timeout: float | None = None) -> Tensor:
    """The elementwise `op` (sum, mean, max, min) of `t` over every rank, on every rank. Differentiable."""
    return _call("dist_all_reduce", t, _check("all_reduce", t, op, timeout))


def broadcast(t: Tensor, root: int = 0, *, timeout: float | None = None) -> Tensor:
    """Rank `root`'s `t` on every rank (each rank passes a tensor of the same shape and dtype)."""
    spec = _check("broadcast", t, None, timeout)
    return _call("dist_broadcast", t, spec._replace(root=_root(root)))


def reduce(t: Tensor, op: str = "sum", root: int = 0, *, timeout: float | None = None) -> Tensor:
    """The elementwise `op` over every rank on rank `root`; zeros on the other ranks."""
    spec = _check("reduce", t, op, timeout)
    return _call("dist_reduce", t, spec._replace(root=_root(root)))


def all_gather(t: Tensor, *, timeout: float | None = None) -> Tensor:
    """Every rank's `t` stacked along axis 0 in rank order (a 0-d tensor gives shape (world_size,))."""
    return _call("dist_all_gather", t, _check("all_gather", t, None, timeout))


def reduce_scatter(t: Tensor, op: str = "sum", *, timeout: float | None = None) -> Tensor:
    """Reduce `t` over the ranks (sum or mean) and keep block `rank` of axis 0 on each rank;
    the first dimension must be a multiple of the world size."""
    if op not in ("sum", "mean"):
        raise ValueError(f"reduce_scatter: op must be 'sum' or 'mean', got {op!r}")
    return _call("dist_reduce_scatter", t, _check("reduce_scatter", t, op, timeout))


def _root(root) -> int:
    size = comm.world_size()
    if not isinstance(root, int) or isinstance(root, bool) or not 0 <= root < size:
        raise ValueError(f"root must be a rank in 0..{size - 1}, got {root!r}")
    return root
