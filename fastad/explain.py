"""explain: `fastad.explain(t)` prints the graph behind a tensor, and the fusion plan on request.

Start at `explain`. With the plan, each CPU kernel also says which tier would
run it now (see `fastad.runtime.cpu`): compiled, compiling in the background
(the numpy tier runs it meanwhile), failed to compile, or the numpy tier.
"""
from __future__ import annotations

from .graph import explain_lines

__all__ = ["explain"]

_TIERS = {
    "compiled": "compiled (native code)",
    "compiling": "numpy tier while it compiles in the background",
    "failed": "numpy tier (its compile failed)",
    "numpy": "numpy tier (compiled once it repeats or is large)",
}


def explain(*tensors, plan: bool = True, source: bool = False, file=None) -> str:
    """Print (and return) one line per graph node; with `plan`, the kernels the scheduler would run
    and the tier each runs on; with `source`, their generated code."""
    nodes = [t._node for t in tensors]
    lines = ["graph:"] + ["  " + l for l in explain_lines(nodes)]
    if plan:
        from .schedule import describe_plan
        lines += describe_plan(nodes, source=source)
        lines += _tier_lines(nodes)
    text = "\n".join(lines)
    print(text, file=file)
    return text


def _tier_lines(nodes) -> list:
    from .runtime import _backends
    from .schedule import plan
    pending = [n for n in nodes if n.buffer is None and n.op != "const"]
    cpu = _backends.get("cpu")
    if not pending or any(n.device.type != "cpu" for n in pending):
        return []
    kernels = plan(pending).kernels()
    if not kernels:
        return []
    lines = ["tiers (CPU):"]
    for s in kernels:
        tier = "numpy" if cpu is None else cpu.tier_of(s.kernel)
        lines.append(f"  kernel {s.kernel.name}: {_TIERS[tier]}")
    return lines
