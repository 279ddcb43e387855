"""realize: decide when and where a graph runs, and run it.

Start at `realize`. Given nodes whose values are needed, it adds the tensors
updated in place since the last run (so an optimizer step fuses into the next
forward), splits the work by device, and hands each part to the scheduler and
the device's backend. On the CPU a graph runs through the numpy reference
executor until its structure repeats or it is large (tiering, see
`fastad.config`), then as compiled Numba kernels.
"""
from __future__ import annotations

import weakref

from . import capture
from ._util import contiguous
from .graph import Node, toposort
from .runtime import backend_for
from .runtime.reference import const_array
from .schedule import run

__all__ = ["realize", "realize_tensors", "mark_dirty"]

# id -> tensor, held weakly; keyed by id because Tensor.__eq__ is elementwise
_dirty: "weakref.WeakValueDictionary" = weakref.WeakValueDictionary()


def mark_dirty(tensor) -> None:
    """Note a tensor updated in place; its new value is computed with the next realization."""
    if tensor._node.buffer is None and tensor._node.op != "const":
        _dirty[id(tensor)] = tensor


def realize(nodes: list[Node], donate: dict | None = None) -> None:
    """Compute every node in `nodes` that has no value yet, and store the values on the nodes.

    `donate` maps a node of `nodes` to a computed node whose buffer its value may be written
    over, in place, where the kernel allows it (`fastad.donation`). The caller vouches that
    nothing can observe that buffer any more (`fastad.runtime.buffers.unobserved`): the donor
    node and its buffer are dropped once this returns."""
    pending = [n for n in nodes if n.buffer is None and n.op != "const"]
    if _dirty:
        pending += [t._node for t in list(_dirty.values()) if t._node.buffer is None and t._node.op != "const"]
        _dirty.clear()
    if not pending:
        return
    order = toposort(pending)
    for n in order:
        if n.op == "copy_to":
            _realize_transfers(order)
            order = toposort(pending)
            break
    run(pending, order, donate)


def _realize_transfers(order: list[Node]) -> None:
    """Run every device-to-device copy in the graph first, so each part below it is single-device."""
    for n in order:
        if n.op == "copy_to" and n.buffer is None:
            src = n.srcs[0]
            realize([src])
            host = src.buffer if src.buffer is not None else const_array(src)
            if src.device.type != "cpu":
                host = backend_for(src.device).to_numpy(host)
            host = contiguous(host)
            rec = capture.recorder()
            if rec is not None:
                rec.transfer(n, src)
            n.settle(host if n.device.type == "cpu" else backend_for(n.device).from_numpy(host, n.device))


def realize_tensors(*tensors) -> None:
    """`fastad.realize(a, b, ...)`: compute several tensors in one schedule, so they can share kernels."""
    realize([t._node for t in tensors])
