"""transforms: functional autodiff (`grad`, `value_and_grad`, `vjp`, `jvp`, `jacobian`, `hessian`, `hvp`).

Start at `_fresh_inputs` and `_pullback`. Each transform calls the user's function on fresh inputs that
record gradients, then runs the shared reverse pass (`fastad.autodiff.backward`)
and hands back the gradients at those inputs. When an input already carries a
gradient history (a transform inside another transform, or inside a tape or a
`backward(create_graph=True)`), the pass runs with `create_graph`, so the result
can be differentiated again: `grad(grad(f))` is the second derivative, computed by
the same derivative rules and fused like any other graph.

`jvp` (forward mode) uses the transpose trick rather than forward-mode rules in
the op table: the vector-Jacobian product `u -> J^T u` is linear in `u`, so
differentiating `<J^T u, t>` with respect to `u` gives `J t`. It costs two reverse
passes (about three forward passes of work) and keeps one derivative rule per op.
"""
from __future__ import annotations

import functools

import numpy as np

from .autodiff import backward
from .creation import asarray
from .ops import const, f as build
from .realize import realize
from .tensor import Tensor, _apply, _fresh, reshape, stack

__all__ = ["grad", "value_and_grad", "vjp", "jvp", "jacobian", "hessian", "hvp"]


def _as_input(x) -> Tensor:
    """A fresh tensor for `x` that records gradients, connected to `x`'s own history if it has one."""
    t = x if isinstance(x, Tensor) else asarray(x)
    if not t.dtype.is_floating:
        raise TypeError(f"can only differentiate with respect to floating point inputs, not {t.dtype.name}")
    if t._tracked:
        return _fresh(t)   # keeps the path to t, so an outer transform can differentiate through
    return Tensor(t._node, requires_grad=True)


def _argnums(argnums, n: int) -> tuple:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for a in nums:
        if not -n <= a < n:
            raise ValueError(f"argnums {argnums!r} out of range for a function called with {n} arguments")
    return tuple(a % n for a in nums)


def _fresh_inputs(args, argnums):
    """(inputs, args with the differentiated ones replaced by those fresh inputs)."""
    args = list(args)
    inputs = []
    for a in argnums:
        args[a] = _as_input(args[a])
        inputs.append(args[a])
    return inputs, args


def _pullback(outputs: list, seeds: list, inputs: list, create_graph: bool) -> list:
    """Gradients of `outputs` (with cotangents `seeds`) at `inputs`; zeros where unconnected."""
    got: dict[int, object] = {}
    wanted = {id(t) for t in inputs}

    def sink(t, g):
        if id(t) in wanted:
            prev = got.get(id(t))
            got[id(t)] = g if prev is None else build.add(prev, g)   # nodes, or tensors with create_graph

    roots = [o for o in outputs if o._tracked]
    rseeds = [s for o, s in zip(outputs, seeds) if o._tracked]
    if roots:
        if create_graph:
            rseeds = [s if isinstance(s, Tensor) else Tensor(s) for s in rseeds]
        else:
            rseeds = [s._node if isinstance(s, Tensor) else s for s in rseeds]
        backward(roots, rseeds, sink, retain_graph=True, stop_at=wanted, create_graph=create_graph)
    out = []
    for t in inputs:
        g = got.get(id(t))
        if g is None:
            g = Tensor(const(0, t.shape, t.dtype, t.device))
        elif not isinstance(g, Tensor):
            g = Tensor(g)
        out.append(g)
    return out


def _tangents(name, inputs, tangents) -> list:
    """The tangents as tensors shaped like their primals."""
    out = []
    for x, t in zip(inputs, tangents):
        t = t if isinstance(t, Tensor) else asarray(t, dtype=x.dtype, device=x.device)
        if t.shape != x.shape:
            raise ValueError(f"{name}: tangent shape {t.shape} does not match its primal's {x.shape}")
        out.append(t if t.dtype is x.dtype else t.astype(x.dtype))
    return out


def _inner(gs, ts) -> Tensor:
    """sum over pairs of sum(g * t): a scalar, recorded like any graph."""
    total = None
    for g, t in zip(gs, ts):
        term = _apply("mul", g, t)
        if term.ndim:
            term = _apply("sum", term, arg=tuple(range(term.ndim)))
        total = term if total is None else total + term
    return total


def _needs_graph(inputs) -> bool:
    """Record the gradient graph when an input is connected to an outer history."""
    return any(t._ctx is not None for t in inputs)


def _scalar_output(out, name):
    if not isinstance(out, Tensor):
        raise TypeError(f"{name}: the function must return a fastad Tensor, got {type(out).__name__}")
    if out.size != 1:
        raise ValueError(f"{name}: the function must return a single-element tensor, got shape {out.shape}")
    if not out.dtype.is_floating:
        raise TypeError(f"{name}: the output must be floating point, got {out.dtype.name}")
    return out


def value_and_grad(f, argnums=0, has_aux: bool = False):
    """`f`'s value and its gradient with respect to the arguments `argnums` (a tuple of them for a tuple)."""
    @functools.wraps(f)
    def wrapped(*args, **kwargs):
        nums = _argnums(argnums, len(args))
        inputs, call_args = _fresh_inputs(args, nums)
        res = f(*call_args, **kwargs)
        out, aux = (res if has_aux else (res, None))
        _scalar_output(out, "grad")
        graph = _needs_graph(inputs)
        seed = const(1, out.shape, out.dtype, out.device)
        grads = _pullback([out], [seed], inputs, graph)
        realize([out._node] + [g._node for g in grads])
        g = grads[0] if isinstance(argnums, int) else tuple(grads)
        return ((out, aux), g) if has_aux else (out, g)
    return wrapped


def grad(f, argnums=0, has_aux: bool = False):
    """The gradient of the scalar function `f` with respect to argument `argnums` (composable)."""
    vg = value_and_grad(f, argnums, has_aux)

    @functools.wraps(f)
    def wrapped(*args, **kwargs):
        (value, g) = vg(*args, **kwargs)
        return (g, value[1]) if has_aux else g
    return wrapped


def vjp(f, *primals):
    """(f(*primals), vjp_fn): vjp_fn(cotangent) gives one gradient per primal."""
    inputs, call_args = _fresh_inputs(primals, tuple(range(len(primals))))
    out = f(*call_args)
    if not isinstance(out, Tensor):
        raise TypeError(f"vjp: the function must return a fastad Tensor, got {type(out).__name__}")
    graph = _needs_graph(inputs)

    def vjp_fn(cotangent):
        ct = cotangent if isinstance(cotangent, Tensor) else asarray(cotangent, dtype=out.dtype,
                                                                      device=out.device)
        if ct.shape != out.shape:
            raise ValueError(f"vjp: cotangent shape {ct.shape} does not match the output's {out.shape}")
        grads = _pullback([out], [ct if graph or ct._tracked else ct._node], inputs, graph or ct._tracked)
        realize([g._node for g in grads])
        return tuple(grads)
    return out, vjp_fn


def jvp(f, primals, tangents):
    """(f(*primals), J @ tangents): forward mode by the transpose trick (see the module docstring)."""
    primals, tangents = tuple(primals), tuple(tangents)
    if len(primals) != len(tangents):
        raise ValueError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    inputs, call_args = _fresh_inputs(primals, tuple(range(len(primals))))
    out = f(*call_args)
    if not isinstance(out, Tensor) or not out.dtype.is_floating:
        raise TypeError("jvp: the function must return a floating point fastad Tensor")
    ts = _tangents("jvp", inputs, tangents)
    # J^T u is linear in u, so any u will do; a nonzero one keeps clear of the NaN-safe rules'
    # zero-cotangent case, where the rule is flat in u
    u = Tensor(const(1, out.shape, out.dtype, out.device), requires_grad=True)
    inner = _inner(_pullback([out], [u], inputs, True), ts)
    (tangent_out,) = _pullback([inner], [const(1, inner.shape, inner.dtype, inner.device)], [u],
                               _needs_graph(inputs) or any(t._tracked for t in ts))
    realize([out._node, tangent_out._node])
    return out, tangent_out


def jacobian(f, argnums=0):
    """d f / d args[argnums], shaped `out.shape + arg.shape` (one reverse pass per output element)."""
    @functools.wraps(f)
    def wrapped(*args):
        nums = _argnums(argnums, len(args))
        inputs, call_args = _fresh_inputs(args, nums)
        out = f(*call_args)
        if not isinstance(out, Tensor):
            raise TypeError(f"jacobian: the function must return a fastad Tensor, got {type(out).__name__}")
        graph = _needs_graph(inputs)
        rows = [[] for _ in inputs]
        for i in range(out.size):
            basis = np.zeros(out.size, out.dtype.np)
            basis[i] = 1
            seed = asarray(basis.reshape(out.shape), device=out.device)
            for k, g in enumerate(_pullback([out], [seed if graph else seed._node], inputs, graph)):
                rows[k].append(g)
        jacs = []
        for x, r in zip(inputs, rows):
            j = stack(r) if r else Tensor(const(0, (0,) + x.shape, x.dtype, x.device))
            jacs.append(reshape(j, out.shape + x.shape))
        realize([j._node for j in jacs])
        return jacs[0] if isinstance(argnums, int) else tuple(jacs)
    return wrapped


def hessian(f, argnums=0):
    """The Hessian of the scalar function `f`: the Jacobian of its gradient."""
    return jacobian(grad(f, argnums), argnums)


def hvp(f, primals, tangents):
    """(f(*primals), H @ tangents) for a scalar `f`: the gradient of <grad f, tangents> (two reverse passes)."""
    primals, tangents = tuple(primals), tuple(tangents)
    if len(primals) != len(tangents):
        raise ValueError(f"hvp: {len(primals)} primals but {len(tangents)} tangents")
    inputs, call_args = _fresh_inputs(primals, tuple(range(len(primals))))
    out = _scalar_output(f(*call_args), "hvp")
    ts = _tangents("hvp", inputs, tangents)
    gs = _pullback([out], [Tensor(const(1, out.shape, out.dtype, out.device))], inputs, True)
    inner = _inner(gs, ts)
    graph = _needs_graph(inputs)
    seed = const(1, inner.shape, inner.dtype, inner.device)
    result = _pullback([inner], [Tensor(seed) if graph else seed], inputs, graph)
    realize([out._node] + [r._node for r in result])
    return out, (result[0] if len(result) == 1 else tuple(result))

