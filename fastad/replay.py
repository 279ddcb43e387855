"""replay: a program captured by `fastad.compile`, run again with new buffers.

Role: `fastad.capture` traces a function once and resolves what it recorded
into steps (kernels, library calls, views, transfers, eager optimizer calls)
and the tensors it rebound. `_Program` is that program ready to replay: each
step bound to its backend, each buffer to a reader. `_Program.run` walks the
steps with a dispatch on each step's kind. For the common small case, where
every step is a compiled CPU kernel (a loss and its gradient, an optimizer
update), that walk costs more than the kernels, so `straight_line` writes the
replay out as straight-line Python instead: read the input buffers, call each
kernel's bound launch (`fastad.runtime.cpu.CpuBackend.replay_launcher`; an
output nothing reads goes to scratch, `unread_outputs`), rebind the tensors the
function rebound, build the outputs.

The generated function returns `MISS`, before anything is rebound, whenever a
replay needs the general path: an input with no value yet (lazy, or a
constant), a launch that declines (a non-contiguous buffer, a kernel that
raised). The general path then replays the whole program, which is correct
because kernels have no side effects.

Start at `_Program.run`, then `straight_line`.
"""
from __future__ import annotations

import functools

import numpy as np

from .graph import Node

__all__ = ["MISS", "single", "straight_line", "unread_outputs"]

MISS = object()   # the generated replay cannot run this call: use the general path


def single(xs):
    """The rebuild of a result that is one leaf (`fastad.capture._flatten`)."""
    return xs[0]


class _Writer:
    def __init__(self):
        self.lines: list[str] = []
        self.names: dict = {}
        self.made: dict[int, str] = {}   # id of a node made by a step -> local name

    def bind(self, value, prefix: str) -> str:
        """A global name in the generated function for `value` (one per distinct object)."""
        key = (prefix, id(value))
        if key not in self.names:
            self.names[key] = (f"{prefix}{len(self.names)}", value)
        return self.names[key][0]

    def emit(self, line: str) -> None:
        self.lines.append("    " + line)


def _read(w: _Writer, slot, key, local: str) -> bool:
    """Emit code that sets `local` to the buffer `slot` names, or returns MISS; False if unsupported."""
    kind = slot[0]
    if kind == "made":
        w.emit(f"{local} = {w.made[slot[1]]}")
        return True
    if kind == "arg":
        i = slot[1]
        if key[i][0] == "f":   # a Python float argument runs as a 0-d float32 tensor
            w.emit(f"{local} = np.asarray(leaves[{i}], np.float32)")
            return True
        if key[i][0] != "T":
            return False
        w.emit(f"{local} = leaves[{i}]._node.buffer")
    elif kind == "state":
        t, attr = slot[1], slot[2]
        name = w.bind(t, "T")
        if attr == "node":
            w.emit(f"{local} = {name}._node.buffer")
        else:
            w.emit(f"{local} = {name}.grad")
            w.emit(f"if {local} is None: return MISS")
            w.emit(f"{local} = {local}._node.buffer")
    elif kind == "kept":
        w.emit(f"{local} = {w.bind(slot[1], 'K')}")
        return True
    else:       # a constant as a kernel input: never planned so (constants are scalar arguments)
        return False
    w.emit(f"if {local} is None: return MISS")   # lazy or constant: the general path realises it
    return True


class _Unsupported(Exception):
    pass


def _node_expr(w: _Writer, slot, shape, dtype, device, key) -> str:
    """Emit the read of `slot` and return an expression for a new node holding its value
    (as `capture._node_for` makes it)."""
    sh, dt, dev = repr(tuple(shape)), w.bind(dtype, "D"), w.bind(device, "V")
    if slot[0] == "const":
        return f"const({slot[1]!r}, {sh}, {dt}, {dev})"
    local = f"v{len(w.lines)}"
    if not _read(w, slot, key, local):
        raise _Unsupported
    return f"Node('buffer', (), {sh}, {dt}, {dev}, None, {local})"   # (positional: cheaper)


def unread_outputs(steps, rebinds, outputs) -> list:
    """Per kernel step, the numbers of its outputs that no later step, rebind or result reads
    (a value realized only because it was alive when traced, as `y` in `y.backward()`)."""
    read = {s[1] for st in steps if st[0] == "kernel" for s, _, _ in st[3] if s[0] == "made"}
    read |= {r[2][1] for r in rebinds if r[2] is not None and r[2][0] == "made"}
    read |= {o[1][1] for o in outputs if o[1] is not None and o[1][0] == "made"}
    return [frozenset(j for j, (nid, _) in enumerate(st[5]) if nid not in read) if st[0] == "kernel"
            else frozenset() for st in steps]


def straight_line(steps, launchers, rebinds, outputs, rebuild, key, deps):
    """The generated replay of a program whose steps are all CPU kernels, or None if it has others.

    `steps`, `rebinds`, `outputs`: the program as `capture._Compiled._trace` resolved it;
    `launchers`: the bound launch of each step; `key`: the call signature (which arguments are
    floats); `deps`: (Tensor, const)."""
    if not steps or any(st[0] != "kernel" or st[6].type != "cpu" for st in steps):
        return None
    Tensor, const = deps
    w = _Writer()
    # reads of everything the function got (arguments, state) come first, then the kernels
    for k, (st, launch) in enumerate(zip(steps, launchers)):
        _, kernel, shape, ins, scalars, outs, device = st
        args = []
        for j, (slot, _, _) in enumerate(ins):
            local = f"b{k}_{j}"
            if not _read(w, slot, key, local):
                return None
            args.append(local)
        w.emit(f"r = {w.bind(launch, 'L')}([{', '.join(args)}])")
        w.emit("if r is None: return MISS")
        names = [f"m{k}_{j}" for j in range(len(outs))]
        for (nid, _), name in zip(outs, names):
            w.made[nid] = name
        w.emit(f"{', '.join(names)}, = r")
    # every read comes before the first rebind, so a MISS leaves nothing half done; a slot of a
    # tensor that is itself rebound would be read after that rebind by the general path
    rebound = {id(who) for who, *_ in rebinds if type(who) is not int}
    if any(s is not None and s[0] == "state" and id(s[1]) in rebound
           for s in [r[2] for r in rebinds] + [o[1] for o in outputs]):
        return None
    try:
        assigns = []
        for who, attr, slot, shape, dtype, device in rebinds:
            target = f"leaves[{who}]" if type(who) is int else w.bind(who, "T")
            if attr == "node":
                assigns.append(f"{target}._node = {_node_expr(w, slot, shape, dtype, device, key)}")
            elif slot is None:
                assigns.append(f"{target}.grad = None")
            else:
                assigns.append(f"{target}.grad = Tensor({_node_expr(w, slot, shape, dtype, device, key)})")
        results = [w.bind(v, "K") if slot is None else
                   (f"leaves[{slot[1]}].grad" if type(slot[1]) is int else f"{w.bind(slot[1], 'T')}.grad")
                   if slot[0] == "grad_of" else f"Tensor({_node_expr(w, slot, v, dtype, device, key)})"
                   for _, slot, v, dtype, device in outputs]
    except _Unsupported:
        return None
    for line in assigns:
        w.emit(line)
    if rebuild is single:   # one result: returned as it is
        w.emit(f"return {results[0]}")
    else:
        w.emit(f"return rebuild([{', '.join(results)}])")
    source = "def replay(leaves):\n" + "\n".join(w.lines) + "\n"
    namespace = {"np": np, "Node": Node, "Tensor": Tensor, "const": const, "MISS": MISS, "rebuild": rebuild}
    namespace.update(dict(w.names.values()))
    exec(compile(source, "<fastad replay>", "exec"), namespace)
    replay = namespace["replay"]
    replay.source = source
    return replay


_DEPS = None


def _deps():
    """What replay uses from the layers around it, imported once (they import this module)."""
    global _DEPS
    if _DEPS is None:
        from .ops import OPS, const
        from .realize import realize
        from .runtime import backend_for, device_scope
        from .runtime.reference import const_array
        from .tensor import Tensor
        _DEPS = (OPS, realize, backend_for, device_scope, Tensor, const, const_array)
    return _DEPS


def _through(a, chain):
    """`a` read through a recorded chain of movement ops (views, as the scheduler's operands)."""
    OPS = _deps()[0]
    for op, arg in chain:
        a = OPS[op].ref(a, arg)
    return a


def _positional(xs):
    return [list(xs), {}]


class _Program:
    """One traced call, ready to replay: each step is bound to its backend, and each input to a
    reader of where its buffer comes from (an earlier step, an argument, a state tensor)."""

    def __init__(self, steps, state, rebinds, outputs, rebuild, state_guard, key):
        from .runtime import backend_for
        self.state, self.rebuild, self.state_guard = state, rebuild, state_guard
        self.resolved = (steps, rebinds, outputs, key)   # for the straight-line replay
        self.straight = None       # `fastad.replay.straight_line`'s function, once every kernel is compiled
        self.straight_possible = all(st[0] == "kernel" for st in steps)
        self.steps = []
        for st in steps:
            kind = st[0]
            if kind == "kernel":
                _, kernel, shape, ins, scalars, outs, device = st
                backend = backend_for(device)
                # the backend's launch with the static arguments bound, made once the kernel is compiled
                launcher = getattr(backend, "replay_launcher", None)
                make = None if launcher is None else functools.partial(
                    launcher, kernel, shape, [(off, strides) for _, off, strides in ins], scalars,
                    [nshape for _, nshape in outs])
                self.steps.append((0, backend.run_kernel, kernel, shape,
                                   [(_reader(s), off, strides) for s, off, strides in ins], scalars, outs, device,
                                   [None, make], [nid for nid, _ in outs]))
            elif kind in ("library", "reference"):
                _, op, arg, recipes, nid, shape, device = st
                run = backend_for(device).run_library if kind == "library" else _run_reference
                self.steps.append((1, run, op, arg, [(_reader(s), chain) for s, chain in recipes], nid, device))
            elif kind == "view":
                _, (s, chain), nid, shape, device = st
                self.steps.append((2, backend_for(device).xp, _reader(s), chain, nid, shape))
            elif kind == "eager":
                _, fn, eargs, ekwargs, rebinds_before = st
                self.steps.append((4, fn, eargs, ekwargs, _rebind_readers(rebinds_before)))
            else:
                _, s, nid, device = st
                self.steps.append((3, _reader(s), nid, device))
        self.rebind_readers = _rebind_readers(rebinds)
        self.output_readers = [(None if s is None or s[0] == "grad_of" else _reader(s), s, v, dtype, device)
                               for _, s, v, dtype, device in outputs]
        devices = {st[-1] for st in steps if st[0] == "kernel"}
        # replay on one accelerator runs inside its device scope (CuPy allocates on the current device)
        self.scope_device = next(iter(devices)) if len(devices) == 1 and next(iter(devices)).type != "cpu" else None

    def _straight_line(self):
        """The generated replay (`fastad.replay`) once every kernel step has a bound launch, else None."""
        if None in [_bound_launch(st[8]) for st in self.steps]:
            return None      # not compiled yet: tried again at the next call
        steps, rebinds, outputs, key = self.resolved
        if any(st[6].type != "cpu" for st in steps):
            self.straight_possible = False   # (straight-line replays are for CPU kernels)
            return None
        # its own launches: outputs that nothing reads go to scratch arrays (`unread_outputs`)
        launchers = [st[8][1](unread=unread) for st, unread in zip(self.steps, unread_outputs(steps, rebinds,
                                                                                               outputs))]
        if None in launchers:
            return None
        self.straight = straight_line(steps, launchers, rebinds, outputs, self.rebuild, key,
                                      (_deps()[4], _deps()[5]))
        self.straight_possible = self.straight is not None
        return self.straight

    def run(self, leaves):
        straight = self.straight
        if straight is None and self.straight_possible:
            straight = self._straight_line()
        if straight is not None:
            out = straight(leaves)
            if out is not MISS:
                return out
        _, realize, backend_for, device_scope, Tensor, _, _ = _deps()
        pending = [x._node for x in leaves if isinstance(x, Tensor) and x._node.buffer is None]
        for t in self.state:
            if t._node.buffer is None and t._node.op != "const":
                pending.append(t._node)
            if t.grad is not None and t.grad._node.buffer is None and t.grad._node.op != "const":
                pending.append(t.grad._node)
        if pending:
            realize(pending)
        env: dict = {}
        scope = None if self.scope_device is None else device_scope(self.scope_device)
        if scope is not None:
            scope.__enter__()
        try:
            for st in self.steps:
                kind = st[0]
                if kind == 0:
                    _, run_kernel, kernel, shape, ins, scalars, outs, device, fast, out_ids = st
                    launch = _bound_launch(fast)
                    if launch is not None:
                        results = launch([read(env, leaves) for read, _, _ in ins])
                        if results is not None:
                            env.update(zip(out_ids, results))
                            continue
                    results = run_kernel(kernel, shape, [(read(env, leaves).reshape(-1), off, strides)
                                                         for read, off, strides in ins], scalars, device=device)
                    for (nid, nshape), buf in zip(outs, results):
                        env[nid] = buf.reshape(nshape)
                elif kind == 1:
                    _, run_library, op, arg, recipes, nid, device = st
                    operands = [_through(read(env, leaves), chain) for read, chain in recipes]
                    env[nid] = run_library(op, arg, operands, device=device)
                elif kind == 2:
                    _, xp, read, chain, nid, shape = st
                    env[nid] = xp.ascontiguousarray(_through(read(env, leaves), chain)).reshape(shape)
                elif kind == 4:
                    _, fn, eargs, ekwargs, rebinds_before = st
                    _apply_rebinds(rebinds_before, env, leaves, Tensor)
                    fn(*eargs, **ekwargs)
                else:
                    _, read, nid, device = st
                    src = read(env, leaves)
                    host = src if isinstance(src, np.ndarray) else src.get()
                    env[nid] = host if device.type == "cpu" else backend_for(device).from_numpy(
                        np.ascontiguousarray(host), device)
        finally:
            if scope is not None:
                scope.__exit__(None, None, None)
        _apply_rebinds(self.rebind_readers, env, leaves, Tensor)
        outs = [_grad_of(s[1], leaves) if s is not None and s[0] == "grad_of" else
                v if read is None else Tensor(_node_for(read, s, env, leaves, v, dtype, device))
                for read, s, v, dtype, device in self.output_readers]
        return self.rebuild(outs)


def _bound_launch(fast: list):
    """A kernel step's bound launch ([launch, make]): made by `make` once the kernel is compiled
    (None until then, and on backends without bound launches)."""
    if fast[0] is None and fast[1] is not None:
        fast[0] = fast[1]()
    return fast[0]


def _run_reference(op, arg, operands, device=None):
    """Collectives run through their reference at once (see `_Recorder.reference`), in replay too."""
    return _deps()[0][op].ref(*operands, arg)


def _rebind_readers(rebinds) -> list:
    return [(t, attr, None if s is None else _reader(s), s, shape, dtype, device)
            for t, attr, s, shape, dtype, device in rebinds]


def _apply_rebinds(readers, env, leaves, Tensor) -> None:
    for t, attr, read, s, shape, dtype, device in readers:
        if type(t) is int:
            t = leaves[t]
        if attr == "node":
            t._node = _node_for(read, s, env, leaves, shape, dtype, device)
        else:
            t.grad = None if read is None else Tensor(_node_for(read, s, env, leaves, shape, dtype, device))


def _reader(s):
    """A function (env, args) -> the buffer slot `s` names at replay."""
    kind = s[0]
    if kind == "made":
        nid = s[1]
        return lambda env, args: env[nid]
    if kind == "arg":
        i = s[1]

        def arg(env, args):
            x = args[i]
            return np.asarray(x, np.float32) if type(x) is float else x._node.buffer
        return arg
    if kind == "state":
        t, attr = s[1], s[2]

        const_array = _deps()[6]

        def state(env, args):
            node = t._node if attr == "node" else t.grad._node
            return node.buffer if node.buffer is not None else const_array(node)
        return state
    if kind == "const":
        value = np.broadcast_to(np.asarray(s[1], s[3].np), s[2])   # a const node's value, as const_array
        return lambda env, args: value
    buf = s[1]
    return lambda env, args: buf


def _grad_of(who, leaves):
    return (leaves[who] if type(who) is int else who).grad


def _node_for(read, s, env, args, shape, dtype, device):
    if s[0] == "const":
        return _deps()[5](s[1], shape, dtype, device)
    return Node("buffer", (), tuple(shape), dtype, device, buffer=read(env, args))
