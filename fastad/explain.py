"""explain: `fastad.explain(t)` prints the graph behind a tensor, and the fusion plan on request.

Start at `explain`.
"""
from __future__ import annotations

from .graph import explain_lines

__all__ = ["explain"]


def explain(*tensors, plan: bool = True, source: bool = False, file=None) -> str:
    """Print (and return) one line per graph node; with `plan`, the kernels the scheduler would run;
    with `source`, their generated code."""
    nodes = [t._node for t in tensors]
    lines = ["graph:"] + ["  " + l for l in explain_lines(nodes)]
    if plan:
        from .schedule import describe_plan
        lines += describe_plan(nodes, source=source)
    text = "\n".join(lines)
    print(text, file=file)
    return text
