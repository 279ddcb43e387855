"""replay: a captured program of compiled CPU kernels replayed as one generated Python function.

Role: `fastad.capture._Program.run` replays any captured program by walking its
steps, with a reader closure per buffer and a dispatch on each step's kind. For
the common small case, where every step is a compiled CPU kernel (a loss and
its gradient, an optimizer update), that walk costs more than the kernels.
`straight_line` writes the replay out as straight-line Python instead: read the
input buffers, call each kernel's bound launch
(`fastad.runtime.cpu.CpuBackend.replay_launcher`), rebind the tensors the
function rebound, build the outputs.

The generated function returns `MISS`, before anything is rebound, whenever a
replay needs the general path: an input with no value yet (lazy, or a
constant), a launch that declines (a non-contiguous buffer, a kernel that
raised). The general path then replays the whole program, which is correct
because kernels have no side effects.

Start at `straight_line`.
"""
from __future__ import annotations

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
