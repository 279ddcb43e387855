"""backward_memo: a backward pass over a graph structure seen before rebuilds its gradient graph
from a recipe instead of running the derivative rules again.

Role: a training loop builds the same forward graph every step, and the walk of
`fastad.autodiff.backward` then calls the same derivative rules, which build the
same gradient graph, node by node through `fastad.ops.apply` (checks, folding,
NaN-safe guards). That costs more than the kernels at small sizes. The rules are
pure graph builders: what they build depends only on the structure of what they
read (ops, shapes, dtypes, devices, static args, constant values and which
nodes are the same node), never on buffer values. So the walk is recorded once
per structure (`record`): every node the rules built (`fastad.ops.built_log`)
and reachable from a gradient becomes a recipe (op, sources by index, shape,
dtype, device, arg). A later walk over an equal `structure_key` replays the
recipes (`replay`): the same gradient graph, built with plain `Node(...)` calls,
given to the same sink calls in the same order, the same GradFns freed.

Only the plain first-order walk is memoised (no create_graph, no tape). Anything
the key cannot vouch for falls back to the rules: a freed or modified graph (the
rules raise the error), a seed that is a lazy node (rules may look inside it), a
gradient that reaches a node the walk neither built nor was given.

Start at `structure_key`.
"""
from __future__ import annotations

import math
import threading

from . import ops
from .graph import Node

__all__ = ["structure_key", "lookup", "record", "replay", "RULES"]

enabled = True   # False: every walk runs the rules (tests compare the two)
_MEMO: dict = {}
_MEMO_SIZE = 256
_RECORDING = threading.Lock()   # one recording at a time: `ops.built_log` is one global


def _const_part(value):
    """A constant's value as a key part: 0.0 and -0.0 are equal in Python but fold differently."""
    if type(value) is float and value == 0.0:
        return ("zero", math.copysign(1.0, value))
    return value


def structure_key(order: list, roots: list, seeds: list, stop_at) -> tuple | None:
    """(key, known): the key of everything the walk over `order` (its tensors, parents before
    children) reads, and the nodes it is given (forward nodes and seeds) in first-seen order;
    None where the walk must run the rules (a freed or modified graph, a lazy seed).

    The key is one flat tuple. A node seen for the first time is described by its op, plus shape,
    dtype, device and a constant's value unless it is an op's output (its op, static arg and
    sources determine those); after that it is its first-seen index."""
    canon: dict = {}
    known: list = []
    parts: list = []
    for s in seeds:
        if s.op != "const" and s.buffer is None:
            return None     # a lazy seed: a rule may read its sources, which the key does not cover
        canon[id(s)] = len(known)
        known.append(s)
        parts += (s.op, s.shape, s.dtype, s.device, _const_part(s.arg) if s.op == "const" else None)
    pos = {id(t): i for i, t in enumerate(order)}
    for r in roots:
        parts.append(pos[id(r)])
    for t in order:
        fn = t._ctx
        if fn is None:
            parts.append(id(t) in stop_at)
            continue
        if fn.freed:
            return None
        out = fn.out
        i = canon.get(id(out))
        if i is None:
            canon[id(out)] = len(known)
            known.append(out)
            i = out.op      # (realized or not: a rule may look at a gradient's op)
        parts += (fn.op, fn.arg, len(fn.src_nodes), i)   # (concat takes any number of sources)
        for src, p in zip(fn.src_nodes, fn.parents):
            i = canon.get(id(src))
            if i is None:
                canon[id(src)] = len(known)
                known.append(src)
                parts += (src.op, src.shape, src.dtype, src.device,
                          _const_part(src.arg) if src.op == "const" else None)
            else:
                parts.append(i)
            if p is None:
                parts.append(-1)
            else:
                if p._ctx is not None and p._node is not src:
                    return None     # modified in place: the rules raise
                parts.append(pos[id(p)])
        parts.append(id(t) in stop_at or t._retains_grad)
    return tuple(parts), known


RULES = object()   # a memo saying: run the rules (`lookup`)


def lookup(key):
    """The memo of `key`: None if there is none yet, RULES where the walk must run the rules every
    time (a key that is not hashable, or a walk with side effects)."""
    try:
        return _MEMO.get(key)
    except TypeError:   # a static arg that is not hashable
        return RULES


class Recording:
    """Collects one walk (the sink calls, the GradFns it used, the nodes its rules built); on a
    clean exit `_finish` stores the recipe, or RULES where none can stand in for the rules."""

    def __init__(self, key, known, order):
        self.key, self.known, self.order = key, known, order
        self.sinks: list = []     # (tensor, gradient node) in call order
        self.freed: list = []     # positions in `order` whose GradFn the walk used (freed without retain_graph)
        self.log: list = []

    def __enter__(self):
        ops.built_log = (threading.get_ident(), self.log)
        return self

    def __exit__(self, exc_type, *exc):
        ops.built_log = None
        _RECORDING.release()
        if exc_type is None:
            self._finish()
        return False

    def _store(self, memo) -> None:
        if len(_MEMO) >= _MEMO_SIZE:
            _MEMO.pop(next(iter(_MEMO)))
        _MEMO[self.key] = memo

    def _finish(self) -> None:
        if any(n.buffer is not None for n in self.log):
            # a rule ran something as it built it (a collective talks to the other ranks): only
            # the rules do that again
            self._store(RULES)
            return
        index = {id(n): i for i, n in enumerate(self.known)}
        built = {id(n): n for n in self.log}
        recipes: list = []

        def slot(root) -> int | None:
            """The index of `root` among the known and rebuilt nodes, adding recipes for what it needs."""
            stack = [root]
            while stack:
                node = stack[-1]
                if id(node) in index:
                    stack.pop()
                    continue
                if id(node) not in built:
                    return None          # a node the walk was not given and did not build
                missing = [s for s in node.srcs if id(s) not in index]
                if missing:
                    stack.extend(missing)
                    continue
                stack.pop()
                index[id(node)] = len(self.known) + len(recipes)
                recipes.append((node.op, tuple([index[id(s)] for s in node.srcs]), node.shape, node.dtype,
                                node.device, node.arg))
            return index[id(root)]

        position = {id(t): i for i, t in enumerate(self.order)}
        sinks = []
        for t, g in self.sinks:
            i = slot(g)
            if i is None:
                self._store(RULES)
                return
            sinks.append((position[id(t)], i))
        self._store((tuple(recipes), tuple(sinks), tuple(self.freed)))


def record(key, known, order) -> Recording | None:
    """A recording of the walk about to run, or None while another thread records one."""
    if not _RECORDING.acquire(blocking=False):
        return None
    return Recording(key, known, order)


def replay(memo, known: list, order: list, sink, retain_graph: bool) -> None:
    """Build the gradient graph from `memo` for the walk's nodes `known`, then sink and free as the
    recorded walk did."""
    recipes, sinks, freed = memo
    nodes = list(known)
    add = nodes.append
    for op, srcs, shape, dtype, device, arg in recipes:
        add(Node(op, tuple([nodes[i] for i in srcs]), shape, dtype, device, arg))
    for i, g in sinks:
        sink(order[i], nodes[g])
    if not retain_graph:
        for i in freed:
            order[i]._ctx.free()
