"""donation: let a kernel write an output over an input buffer that nobody else can see.

Role: `fastad.realize.realize(nodes, donate={new: old})` says that `new` may be
written over `old`'s buffer; the caller vouches that nothing else can observe
that buffer (`fastad.runtime.buffers.unobserved`; the optimizer is the one
caller, `fastad.optim.flat.FlatBucket.donors`). The scheduler asks
`with_donations` for each kernel step; where the kernel allows it, the answer is
a variant of the kernel whose output is marked `into` the input
(`fastad.kernel_ir.Output.into`), which the Numba renderer stores through the
input's own pointer and the CPU runtime returns as the output.

Start at `with_donations`.
"""
from __future__ import annotations

import dataclasses

__all__ = ["with_donations"]


def with_donations(step, donate: dict, others: list):
    """`step.kernel` (`step`: a `fastad.schedule.KernelStep`; `others`: the plan's other steps),
    with each output that may take over its donor's buffer marked `into` it.

    An output takes over when the step is a 1-D map of real floats and bools (no reduction;
    such a kernel never raises halfway, which would leave the donor half overwritten) that
    reads the donor once, at the index it writes (unit stride, offset 0, the output's size and
    dtype), and no other step of the plan reads the donor (a view step would alias it). The
    caller vouches that nothing else can observe the donor's buffer."""
    kernel = step.kernel
    if kernel.ndim != 1 or kernel.reduce_ndim or not all(st.dtype.kind in "fb" for st in kernel.body):
        return kernel
    into = {}
    for k, node in enumerate(step.outputs):
        donor = donate.get(node)
        if donor is None or donor.dtype is not node.dtype or donor.buffer is None:
            continue
        slots = [j for j, (n, _) in enumerate(step.inputs) if n is donor]
        if len(slots) != 1 or slots[0] in into.values():
            continue
        j = slots[0]
        view, buf = step.inputs[j][1], donor.buffer
        if (kernel.inputs[j].pattern != "1" or view.offset != 0 or buf.size != step.shape[0]
                or not buf.flags.c_contiguous or _read_by(donor, others)):
            continue
        into[k] = j
    if not into:
        return kernel
    key = (kernel.key, tuple(sorted(into.items())))
    donating = _DONATING.get(key)
    if donating is None:
        outs = tuple(dataclasses.replace(o, into=into.get(k)) for k, o in enumerate(kernel.outputs))
        donating = _DONATING[key] = dataclasses.replace(kernel, outputs=outs)
    return donating


def _read_by(node, steps: list) -> bool:
    """Whether a step of `steps` reads `node` (directly: views are steps of their own). A
    `fastad.schedule.LibraryStep` reads its node's sources, a `KernelStep` its inputs."""
    for step in steps:
        srcs = step.node.srcs if hasattr(step, "node") else [n for n, _ in step.inputs]
        if any(s is node for s in srcs):
            return True
    return False


_DONATING: dict = {}   # (kernel key, donations) -> the donating kernel
