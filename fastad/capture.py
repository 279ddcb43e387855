"""capture: `fastad.compile(fn)` captures what a function runs once, then replays it.

Start at `compile` and `_Compiled.__call__`. The first call with a new input
signature runs `fn` normally under a `_Recorder`, which the scheduler tells
about every step it executes (fused kernels, library calls, views, device
copies). At the end the recorder resolves each buffer the steps read:

* made by an earlier recorded step: a slot filled during replay;
* the buffer of an argument: read from the new argument at each call;
* held by a tensor reachable from the arguments or the function's closure
  (model parameters, `.grad`, state rebound inside the step): read from that
  tensor at each call, so updates made outside the function are seen;
* anything else (a constant made inside the function): kept, as buffers are
  immutable.

Later calls with the same signature replay the steps with the new buffers
(`fastad.replay`): no graph building, no autodiff, no planning, only the
kernels and library calls. Tensors the function rebound (`p -= lr * p.grad`, `p.grad`) are rebound
to the replayed results, and the returned tensors hold the new values.

Limits (documented in docs/TRAINING.md, "Step capture"): Python float arguments
become 0-d float32 tensors inside the function, so a changed value (a learning
rate) replays without retracing; int, bool and other Python arguments are part
of the signature (a new value retraces). Python control flow on tensor values
and reading values (`item()`, `numpy()`, `bool()`) inside the function are not
captured and raise `CompileError`; other Python side effects (printing,
counters) happen only while tracing. Returned tensors carry no graph (a
returned `.grad` is that tensor's `.grad` at replay too).
"""
from __future__ import annotations

import functools
import types

import numpy as np

from . import profiling
from .errors import CompileError
from .graph import Node
from . import replay as _replay
from .replay import _deps, _positional, _Program, single

__all__ = ["compile", "capturing"]

_recorder = None   # the active _Recorder while a function is being traced


def capturing() -> bool:
    """True while `fastad.compile` traces a function (replay needs every value to come from tensors)."""
    return _recorder is not None


def recorder():
    """The active recorder, or None (also inside an `eager` call, whose work is not recorded)."""
    return None if _recorder is None or _recorder.paused else _recorder


def eager(fn):
    """Decorator for methods whose Python state matters (an optimizer's step, an LR schedule):
    a call made while a function is captured is not recorded but runs again, eagerly, at that
    point of every replay, after the tensors it reads have been brought up to date."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        rec = _recorder
        if rec is None or rec.paused:
            return fn(*args, **kwargs)
        before = rec.snapshot()
        rec.paused = True
        try:
            out = fn(*args, **kwargs)
        finally:
            rec.paused = False
        rec.steps.append(("eager", fn, args, kwargs, before, rec.snapshot()))
        return out
    return wrapper


# ---------------------------------------------------------------------------
# Recording (called by the scheduler and realize)
# ---------------------------------------------------------------------------

def _recipe(node: Node):
    """(base node, movement chain) for a library operand: a buffer read through views."""
    chain = []
    while node.buffer is None and node.op != "const" and node.op in ("reshape", "permute", "expand", "slice"):
        chain.append((node.op, node.arg))
        node = node.srcs[0]
    return node, tuple(reversed(chain))


class _Recorder:
    def __init__(self, state: list):
        self.steps: list = []
        self.produced: dict[int, Node] = {}     # id(node) -> node made by a recorded step
        self.keep: list = []                    # nodes referenced by the program (kept alive)
        self.state = state                      # tensors the function may read or rebind
        self.paused = False

    def snapshot(self) -> dict:
        """{id(tensor): (its node, its .grad's node or None)} for every state tensor."""
        from .realize import realize
        realize([t._node for t in self.state] + [t.grad._node for t in self.state if t.grad is not None])
        snap = {id(t): (t._node, t.grad._node if t.grad is not None else None) for t in self.state}
        self.keep.extend(n for pair in snap.values() for n in pair if n is not None)
        return snap

    def _made(self, node: Node) -> None:
        self.produced[id(node)] = node
        self.keep.append(node)

    def kernel(self, step, device) -> None:
        self.keep.extend(n for n, _ in step.inputs)
        self.steps.append(("kernel", step.kernel, step.shape, [(n, v.offset, v.strides) for n, v in step.inputs],
                           [c.arg for c in step.scalars], list(step.outputs), device))
        for n in step.outputs:
            self._made(n)

    def library(self, node: Node, srcs: list) -> None:
        recipes = [_recipe(s) for s in srcs]
        self.keep.extend(b for b, _ in recipes)
        self.steps.append(("library", node.op, node.arg, recipes, node))
        self._made(node)

    def reference(self, node: Node, srcs: list) -> None:
        """An op run through its numpy reference at once (collectives): replayed the same way."""
        recipes = [_recipe(s) for s in srcs]
        self.keep.extend(b for b, _ in recipes)
        self.steps.append(("reference", node.op, node.arg, recipes, node))
        self._made(node)

    def view(self, node: Node) -> None:
        base, chain = _recipe(node)
        self.keep.append(base)
        self.steps.append(("view", (base, chain), node))
        self._made(node)

    def transfer(self, node: Node, src: Node) -> None:
        self.keep.append(src)
        self.steps.append(("transfer", src, node))
        self._made(node)

    def host_read(self, what: str) -> None:
        raise CompileError(f"{what} inside a function being compiled: the value would be frozen at "
                           "trace time. Return the tensor and read it outside, or use fastad.where "
                           "instead of Python control flow on values")


# ---------------------------------------------------------------------------
# Finding the state a function reads: tensors reachable from its arguments and closure
# ---------------------------------------------------------------------------

def _reachable_tensors(roots, limit: int = 100_000) -> list:
    from .tensor import Tensor
    out, seen, stack = [], set(), list(roots)
    while stack and len(seen) < limit:
        obj = stack.pop()
        if id(obj) in seen or obj is None or isinstance(obj, (str, bytes, int, float, complex, bool, np.ndarray,
                                                               types.ModuleType, type, Node)):
            continue
        seen.add(id(obj))
        if isinstance(obj, Tensor):
            out.append(obj)
            continue
        if isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        elif isinstance(obj, (types.FunctionType, types.MethodType, functools.partial)):
            stack.extend(_closure_roots(obj))
        elif hasattr(obj, "__dict__"):
            stack.extend(vars(obj).values())
        elif hasattr(obj, "__slots__"):
            stack.extend(getattr(obj, s, None) for s in obj.__slots__ if isinstance(s, str))
    return out


def _closure_roots(fn) -> list:
    roots = []
    if isinstance(fn, functools.partial):
        return [fn.func, fn.args, fn.keywords]
    if isinstance(fn, types.MethodType):
        roots.append(fn.__self__)
        fn = fn.__func__
    code = getattr(fn, "__code__", None)
    if code is None:
        return roots + ([vars(fn)] if hasattr(fn, "__dict__") else [])
    roots += [c.cell_contents for c in (fn.__closure__ or ()) if _filled(c)]
    g = getattr(fn, "__globals__", {})
    roots += [g[name] for name in code.co_names if name in g and not isinstance(g[name], types.ModuleType)]
    return roots


def _filled(cell) -> bool:
    try:
        cell.cell_contents
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------------------
# The compiled function
# ---------------------------------------------------------------------------

def _flatten(obj):
    """(leaves, rebuild) for nested lists, tuples and dicts."""
    if isinstance(obj, (list, tuple)):
        if type(obj) in (list, tuple) and not any(isinstance(o, (list, tuple, dict)) for o in obj):
            return list(obj), type(obj)     # flat: rebuilt in one call
        parts = [_flatten(o) for o in obj]
        leaves = [l for p in parts for l in p[0]]

        def rebuild(xs, parts=parts, kind=type(obj)):
            out, i = [], 0
            for ls, rb in parts:
                out.append(rb(xs[i:i + len(ls)]))
                i += len(ls)
            return kind(out) if kind in (list, tuple) else kind(*out)
        return leaves, rebuild
    if isinstance(obj, dict):
        keys = list(obj)
        leaves, rebuild = _flatten([obj[k] for k in keys])
        return leaves, lambda xs: dict(zip(keys, rebuild(xs)))
    return [obj], single


class _Compiled:
    def __init__(self, fn):
        self.fn = fn
        self.programs: dict = {}
        functools.update_wrapper(self, fn)

    def __get__(self, obj, objtype=None):   # decorating a method
        return self if obj is None else functools.partial(self, obj)

    # ---- signature ---------------------------------------------------------------
    @staticmethod
    def _signature(leaves) -> tuple | None:
        """The call signature of `leaves`; None where one is a list, tuple or dict (to flatten)."""
        deps = _replay._DEPS
        Tensor = deps[4] if deps is not None else _deps()[4]
        sig = []
        for x in leaves:
            if isinstance(x, Tensor):
                node = x._node   # (`_tracked` inlined: this runs on every call)
                sig.append(("T", node.shape, node.dtype, node.device, x._ctx is not None or x._leaf_requires_grad))
            elif type(x) is float:
                sig.append(("f",))     # dynamic: a 0-d tensor inside
            elif isinstance(x, (list, tuple, dict)):
                return None            # nested: flatten first
            else:
                try:
                    hash(x)
                except TypeError:
                    raise CompileError(f"fastad.compile: argument of type {type(x).__name__} is neither a "
                                       "tensor nor a hashable Python value") from None
                sig.append(("v", type(x), x))
        return tuple(sig)

    def __call__(self, *args, **kwargs):
        key = None if kwargs else self._signature(args)
        if key is not None:
            leaves, rebuild = args, _positional
        else:
            leaves, rebuild = _flatten([list(args), kwargs])
            key = self._signature(leaves)
        prog = self.programs.get(key)
        if prog is not None and (prog.state_guard is None or prog.state_guard()):
            if profiling._active:
                profiling.record_replay()
            return prog.run(leaves)
        return self._trace(key, list(leaves), rebuild)

    # ---- tracing -------------------------------------------------------------------
    def _trace(self, key, leaves, rebuild):
        global _recorder
        from .realize import realize
        from .tensor import Tensor
        from .creation import tensor as make_tensor
        if _recorder is not None:
            raise CompileError("fastad.compile: a compiled function called while another one is being "
                               "traced; compile the outer function only")
        call_leaves = [make_tensor(x) if type(x) is float else x for x in leaves]
        arg_tensors = [x for x in call_leaves if isinstance(x, Tensor)]
        realize([t._node for t in arg_tensors])
        arg_slots = {id(t._node): i for i, t in enumerate(call_leaves) if isinstance(t, Tensor)}
        # state: tensors reachable from the arguments and the closure, and their .grad
        arg_ids = {id(t) for t in arg_tensors}
        state = [t for t in _reachable_tensors(_closure_roots(self.fn) + list(leaves)) if id(t) not in arg_ids]
        realize([t._node for t in state] + [t.grad._node for t in state if t.grad is not None])
        arg_index = {id(t): i for i, t in enumerate(call_leaves) if isinstance(t, Tensor)}
        rec = _Recorder(state + arg_tensors)      # arguments too: the function may set their .grad
        start = rec.snapshot()
        args, kwargs = rebuild(call_leaves)
        _recorder = rec
        try:
            result = self.fn(*args, **kwargs)
            out_leaves, out_rebuild = _flatten(result)
            outs = [o for o in out_leaves if isinstance(o, Tensor)]
            realize([o._node for o in outs])          # also flushes pending in-place updates
            end = rec.snapshot()
        finally:
            _recorder = None
        profiling.record_trace()
        # a node held by a state tensor at the start or after an eager call is read from that tensor
        owners: dict[int, tuple] = {}
        for snap in [start] + [st[5] for st in rec.steps if st[0] == "eager"]:
            for t in rec.state:
                node, grad = snap[id(t)]
                owners.setdefault(id(node), (t, "node"))
                if grad is not None:
                    owners.setdefault(id(grad), (t, "grad"))

        def slot(node):
            """Where `node`'s buffer comes from at replay."""
            if node.op == "const" and node.buffer is None:
                return ("const", node.arg, node.shape, node.dtype)
            if id(node) in rec.produced:
                return ("made", id(node))
            if id(node) in arg_slots:
                return ("arg", arg_slots[id(node)])
            if id(node) in owners:
                t, attr = owners[id(node)]
                return ("state", t, attr)
            return ("kept", node.buffer)

        def rebinds_between(prev, now):
            """What recorded steps rebound between two snapshots (replay rebinds the same)."""
            out = []
            for t in rec.state:
                (n0, g0), (n1, g1) = prev[id(t)], now[id(t)]
                who = arg_index.get(id(t), t)     # an argument is found by position at replay
                if n1 is not n0:
                    out.append((who, "node", slot(n1), n1.shape, n1.dtype, n1.device))
                if g1 is not g0:
                    out.append((who, "grad", None if g1 is None else slot(g1), n1.shape, n1.dtype, n1.device))
            return out

        prev = start
        for st in rec.steps:
            if st[0] == "eager":
                prev = st[5]
        rebinds = rebinds_between(prev, end)
        # an output that is some tensor's .grad at the end (`return x.grad`) is that .grad at replay
        # too, the same object as in an eager call
        grad_of = {id(t.grad): arg_index.get(id(t), t) for t in rec.state if t.grad is not None}
        outputs = [(i, ("grad_of", grad_of[id(o)]) if id(o) in grad_of else slot(o._node), o.shape, o.dtype,
                    o.device) if isinstance(o, Tensor) else (i, None, o, None, None)
                   for i, o in enumerate(out_leaves)]
        steps = []
        prev_snap = start
        for st in rec.steps:
            if st[0] == "kernel":
                _, kernel, shape, ins, scalars, outs_, device = st
                steps.append(("kernel", kernel, shape, [(slot(n), off, strides) for n, off, strides in ins],
                              scalars, [(id(n), n.shape) for n in outs_], device))
            elif st[0] in ("library", "reference"):
                _, op, arg, recipes, node = st
                steps.append((st[0], op, arg, [(slot(b), chain) for b, chain in recipes], id(node),
                              node.shape, node.device))
            elif st[0] == "view":
                _, (base, chain), node = st
                steps.append(("view", (slot(base), chain), id(node), node.shape, node.device))
            elif st[0] == "eager":
                _, fn, eargs, ekwargs, before, after = st
                steps.append(("eager", fn, eargs, ekwargs, rebinds_between(prev_snap, before)))
                prev_snap = after
            else:
                _, src, node = st
                steps.append(("transfer", slot(src), id(node), node.device))
        shapes = {id(t): (t._node.shape, t._node.dtype, t._node.device) for t in state}

        def state_guard(state=state, shapes=shapes):
            for t in state:
                node = t._node
                if (node.shape, node.dtype, node.device) != shapes[id(t)]:
                    return False
            return True
        self.programs[key] = _Program(steps, state, rebinds, outputs, out_rebuild, state_guard if state else None,
                                      key)
        return result


def compile(fn=None):
    """Capture `fn` (a training step, a loss and its gradient, ...) on its first call and replay it after.

    `step = fastad.compile(step)` or `@fastad.compile`. See this module's docstring for what is
    captured and for the limits; `fastad.profile()` counts traces and replays."""
    if fn is None:
        return compile
    if not callable(fn):
        raise TypeError(f"fastad.compile: expected a function, got {type(fn).__name__}")
    return _Compiled(fn)
