"""tensor: the user-facing `Tensor` and the array functions that build graph from it.

Start at `Tensor` and `_apply`. Every operation ends in `_apply(op, *tensors)`,
which builds one node through `fastad.ops.apply` and, when gradients are
wanted, records a `GradFn`. The user-facing work the primitives do not do
(Python scalars, type promotion, broadcasting, axis normalisation, clear
errors) is in `fastad.operands`, re-exported here. Values are computed only when read
(`numpy()`, `item()`, `repr`, `backward()`), by `fastad.realize`.
"""
from __future__ import annotations

import builtins
import numbers

import numpy as np

from . import dtypes as dt
from . import capture
from .autodiff import GradFn, active_tapes, is_grad_enabled, no_grad, recording_tapes
from .autodiff import _state as _grad_mode
from .autodiff import backward as run_backward
from .device import Device
from .graph import freeze
from .ops import apply, const, install_tensor_builder
from .realize import mark_dirty, realize

__all__ = ["Tensor"]

_SCALARS = (builtins.bool, int, float, numbers.Number)


class Tensor:
    """A lazy n-dimensional array that can record gradients (PyTorch-style API)."""

    __slots__ = ("_node", "_ctx", "_leaf_requires_grad", "_retains_grad", "grad", "__weakref__")
    __array_priority__ = 1000  # numpy defers `ndarray op Tensor` to us

    def __init__(self, node, ctx: GradFn | None = None, requires_grad: bool = False):
        self._node = node
        self._ctx = ctx
        self._leaf_requires_grad = requires_grad
        self._retains_grad = False
        self.grad: Tensor | None = None

    # ---- attributes -------------------------------------------------------
    shape = property(lambda self: self._node.shape)
    ndim = property(lambda self: len(self._node.shape))
    size = property(lambda self: self._node.size)
    dtype = property(lambda self: self._node.dtype)
    device = property(lambda self: self._node.device)
    is_leaf = property(lambda self: self._ctx is None)
    grad_fn = property(lambda self: self._ctx)

    @property
    def _tracked(self) -> bool:
        """True when gradients can flow into this tensor (a leaf requiring grad, or made from one)."""
        return self._ctx is not None or self._leaf_requires_grad

    @property
    def requires_grad(self) -> bool:
        return self._tracked

    @requires_grad.setter
    def requires_grad(self, flag: bool) -> None:
        self.requires_grad_(flag)

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        if self._ctx is not None and not requires_grad:
            raise RuntimeError("you can only change requires_grad flags of leaf tensors; use detach()")
        if requires_grad and not self.dtype.is_floating:
            raise TypeError(f"only floating point tensors can require gradients, not {self.dtype.name}")
        if requires_grad and self.dtype.kind == "c":  # docs/ARRAY_API.md, "Complex numbers"
            raise TypeError(f"complex gradients are not supported yet ({self.dtype.name}): only real floating "
                            "point tensors can require gradients; hold real and imaginary parts as real tensors")
        self._leaf_requires_grad = builtins.bool(requires_grad)
        return self

    def retain_grad(self) -> None:
        if not self._tracked:
            raise RuntimeError("can't retain_grad on a tensor that does not require grad")
        if self._ctx is not None:
            self._retains_grad = True

    def detach(self) -> "Tensor":
        return Tensor(self._node)

    @property
    def T(self) -> "Tensor":
        n = len(self._node.shape)
        if n > 2:
            raise ValueError(f".T needs a tensor of at most 2 dimensions, got {n}; use .mT")
        return _apply("permute", self, arg=(1, 0)) if n == 2 else _fresh(self)

    @property
    def mT(self) -> "Tensor":
        n = len(self._node.shape)
        if n < 2:
            raise ValueError(f".mT needs at least 2 dimensions, got shape {self.shape}")
        return _apply("permute", self, arg=tuple(range(n - 2)) + (n - 1, n - 2))

    # ---- values -----------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """The value as a read-only numpy array (copied to the host for a CUDA tensor).

        Read-only on every device and for every tensor: buffers are immutable, so a
        write through the result can never change this tensor or any value computed,
        or still pending, from it. `np.array(t)` (or `t.numpy().copy()`) gives a
        writable copy."""
        from .runtime import backend_for
        rec = capture.recorder()
        if rec is not None:   # a value read while fastad.compile traces would be frozen
            rec.host_read("reading a tensor (numpy(), item(), float(), bool(), print)")
        realize([self._node])
        buf = self._node.buffer
        if buf is None:  # a constant: one element broadcast (read-only, no memory per element)
            return np.broadcast_to(np.asarray(self._node.arg, self.dtype.np), self.shape)
        if self.device.type != "cpu":
            return freeze(backend_for(self.device).to_numpy(buf))
        return buf

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        if dtype is not None and np.dtype(dtype) != a.dtype:
            if copy is False:
                raise ValueError(f"__array__(copy=False): converting {a.dtype} to {np.dtype(dtype)} needs a copy")
            return a.astype(dtype)
        return np.array(a) if copy else a

    def item(self):
        buf = self._node.buffer
        if buf is not None and type(buf) is np.ndarray and capture._recorder is None:
            if buf.size == 1:   # a computed host value: no realisation, no checks (a training loop reads one per step)
                return buf.item()
        if self.size != 1:
            raise ValueError(f"only one-element tensors can be converted to Python scalars, got shape {self.shape}")
        return self.numpy().reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.dtype.kind not in "iu":
            raise TypeError(f"only integer tensors can be used as an index, not {self.dtype.name}")
        return int(self.item())

    def __bool__(self):
        if self.size != 1:
            raise ValueError(f"the truth value of a tensor with {self.size} elements is ambiguous")
        return builtins.bool(self.item())

    def __complex__(self):
        return complex(self.item())

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    def __repr__(self) -> str:
        from ._format import format_tensor
        return format_tensor(self)

    __str__ = __repr__

    def __hash__(self):
        return id(self)

    # ---- devices ----------------------------------------------------------
    def to(self, device=None, dtype=None) -> "Tensor":
        """A copy on `device` and/or as `dtype` (self when nothing changes), differentiable."""
        out = self
        if isinstance(device, (dt.DType, type)) and dtype is None:
            device, dtype = None, device
        if dtype is not None:
            out = _cast(out, dtype)
        if device is not None and Device(device) != out.device:
            out = _apply("copy_to", out, arg=Device(device))
        return out

    def to_device(self, device, /, *, stream=None) -> "Tensor":
        """A new tensor on `device` (the array API's method; `.to` returns self when nothing changes)."""
        out = self.to(device)
        return _fresh(out) if out is self else out

    def cpu(self) -> "Tensor":
        return self.to("cpu")

    def cuda(self, index: int = 0) -> "Tensor":
        return self.to(f"cuda:{index}")

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        """Array API export: copy=True always copies; copy=False never copies (BufferError where
        only a copy could serve, e.g. another device); dl_device=(1, 0) exports a CUDA tensor
        through a host copy.

        A constant has no memory yet: its value is written into a new buffer on its device (that
        computes the value, it copies nothing), so copy=False works for it too. fastad's host
        buffers are read-only; a consumer older than DLPack 1.0 (no max_version) cannot be told so.
        With copy=None such a consumer gets a copy (nothing can write into fastad's values); with
        copy=False it gets the memory itself, writable to it, as the standard recommends over
        raising: the caller asked not to copy and must not write to it."""
        from .runtime import backend_for, device_scope
        realize([self._node])
        buf = self._node.buffer
        if dl_device is not None and tuple(int(v) for v in dl_device) != self.__dlpack_device__():
            if copy is False or int(dl_device[0]) != 1:
                raise BufferError(f"__dlpack__: cannot export a tensor on {self.device} to DLPack device "
                                  f"{tuple(dl_device)}{' without a copy' if copy is False else ''}")
            buf, stream = self.numpy(), None          # a fresh host copy
        elif buf is None:                             # a constant: its value in new memory
            buf = np.array(self.numpy())
            if self.device.type != "cpu":
                buf = backend_for(self.device).from_numpy(buf, self.device)
        elif copy:
            with device_scope(self.device):
                buf = buf.copy()
        elif not getattr(buf.flags, "writeable", True) and (max_version is None or tuple(max_version) < (1, 0)):
            if copy is None:
                buf = np.array(buf)
            else:   # the same memory through a writable alias that keeps `buf` alive (its base)
                face = dict(buf.__array_interface__)
                face["data"] = (face["data"][0], False)
                import types
                buf = np.asarray(types.SimpleNamespace(__array_interface__=face, keep=buf))
        kw = {} if stream is None else {"stream": stream}
        if max_version is not None:
            try:
                return buf.__dlpack__(max_version=max_version, **kw)
            except TypeError:                         # a producer older than DLPack 1.0
                pass
        return buf.__dlpack__(**kw)

    def __dlpack_device__(self):
        return (1, 0) if self.device.type == "cpu" else (2, self.device.index)

    def __array_namespace__(self, *, api_version=None):
        """The `fastad` module, which implements the array API standard (2024.12 and the earlier
        versions, which it contains)."""
        if api_version is not None and api_version not in ("2021.12", "2022.12", "2023.12", "2024.12"):
            raise ValueError(f"__array_namespace__: unsupported api_version {api_version!r}")
        import fastad
        return fastad

    # ---- autodiff ---------------------------------------------------------
    def backward(self, gradient=None, retain_graph: builtins.bool | None = None, create_graph: builtins.bool = False,
                 inputs=None) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's `.grad` (PyTorch semantics).

        With `create_graph=True` the gradients are recorded too (`.grad` has a grad_fn),
        so they can be differentiated again; `retain_graph` then defaults to True."""
        if self._ctx is None and not self._leaf_requires_grad:
            raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
        if gradient is None:
            if self._node.shape and self.size != 1:
                raise RuntimeError(f"grad can be implicitly created only for scalar outputs; this tensor "
                                   f"has shape {self.shape}: pass backward(gradient=...)")
            seed = const(1, self.shape, self.dtype, self.device)
        else:
            g = gradient if isinstance(gradient, Tensor) else asarray(gradient, dtype=self.dtype,
                                                                     device=self.device)
            if g.shape != self.shape:
                raise ValueError(f"backward: gradient shape {g.shape} does not match tensor shape {self.shape}")
            if g.device != self.device:
                raise ValueError(f"backward: gradient on {g.device}, tensor on {self.device}")
            seed = g._node if g.dtype is self.dtype else apply("cast", g._node, arg=self.dtype)
        if create_graph:
            seed = gradient if isinstance(gradient, Tensor) and gradient.dtype is self.dtype else Tensor(seed)
        if retain_graph is None:
            retain_graph = create_graph
        touched = []

        def sink(t, g):
            if create_graph:  # out of place, so the recorded gradient keeps its history
                t.grad = g if t.grad is None else _apply("add", t.grad, g)
            elif t.grad is None:
                t.grad = Tensor(g)
            else:
                t.grad._node = apply("add", t.grad._node, g)
            touched.append(t)

        only = None
        if inputs is not None:
            only = {id(t) for t in (inputs if isinstance(inputs, (list, tuple)) else [inputs])}
            inner = sink

            def sink(t, g):  # noqa: F811 - restricts the sink to `inputs`
                if id(t) in only:
                    inner(t, g)
        run_backward([self], [seed], sink, retain_graph=builtins.bool(retain_graph), stop_at=only,
                     create_graph=create_graph)
        # value and gradients in one realisation, so the scheduler can fuse them
        realize([self._node] + [t.grad._node for t in touched])

    def zero_(self) -> "Tensor":
        return self._assign(const(0, self.shape, self.dtype, self.device), "zero_")

    # ---- in-place updates (rebind the node; the Tensor object keeps its identity) -------
    def _assign(self, node, opname: str) -> "Tensor":
        if self._ctx is None and self._leaf_requires_grad and is_grad_enabled():
            raise RuntimeError(f"{opname}: a leaf tensor that requires grad is being used in an in-place "
                               "operation; wrap the update in `with fastad.no_grad():`")
        if node.shape != self.shape:
            raise ValueError(f"{opname}: result shape {node.shape} does not match the tensor's {self.shape}")
        if node.dtype is not self.dtype:
            if not dt.can_cast(node.dtype, self.dtype) and not (
                    node.dtype.kind == self.dtype.kind or self.dtype.kind in "fc"):
                raise TypeError(f"{opname}: result type {node.dtype.name} can't be cast to {self.dtype.name}")
            node = apply("cast", node, arg=self.dtype)
        self._node = node
        if self._ctx is None:
            mark_dirty(self)
        return self

    def _inplace(self, name, other):
        """`self op= other`: recorded as an op on the old value when a gradient flows through it
        (self is a non-leaf, or `other` requires grad), else the value is replaced (`_assign`)."""
        record = self._ctx is not None or (isinstance(other, Tensor) and other._tracked)
        if is_grad_enabled() and record and not (self._ctx is None and self._leaf_requires_grad):
            # the old value becomes its own tensor: with `self` as the parent the graph would be a cycle
            out = _inplace_op(name, Tensor(self._node, self._ctx), other)
            if out.shape != self.shape:
                raise ValueError(f"in-place {name}: result shape {out.shape} differs from {self.shape}")
            if out.dtype is not self.dtype:
                if not self.dtype.is_floating:
                    raise TypeError(f"in-place {name}: result type {out.dtype.name} can't be cast to "
                                    f"{self.dtype.name}")
                out = _cast(out, self.dtype)
            self._node, self._ctx = out._node, out._ctx
            return self
        with no_grad():
            out = _inplace_op(name, self, other)
        return self._assign(out._node, f"in-place {name}")

    __iadd__ = lambda self, o: self._inplace("add", o)
    __isub__ = lambda self, o: self._inplace("sub", o)
    __imul__ = lambda self, o: self._inplace("mul", o)
    __itruediv__ = lambda self, o: self._inplace("div", o)
    __ipow__ = lambda self, o: self._inplace("pow", o)
    __ifloordiv__ = lambda self, o: self._inplace("floordiv", o)
    __imod__ = lambda self, o: self._inplace("mod", o)
    __imatmul__ = lambda self, o: self._inplace("matmul", o)
    __iand__ = lambda self, o: self._inplace("bitwise_and", o)
    __ior__ = lambda self, o: self._inplace("bitwise_or", o)
    __ixor__ = lambda self, o: self._inplace("bitwise_xor", o)
    __ilshift__ = lambda self, o: self._inplace("bitwise_left_shift", o)
    __irshift__ = lambda self, o: self._inplace("bitwise_right_shift", o)

    def add_(self, other):
        return self._inplace("add", other)

    def sub_(self, other):
        return self._inplace("sub", other)

    def mul_(self, other):
        return self._inplace("mul", other)

    def copy_(self, other):
        other = _as_tensor(other, self)
        with no_grad():
            node = _broadcast(other, self.shape)._node
        return self._assign(node, "copy_")

    # ---- operators --------------------------------------------------------
    __add__ = lambda a, b: _binary("add", a, b)
    __radd__ = lambda a, b: _binary("add", b, a)
    __sub__ = lambda a, b: _binary("sub", a, b)
    __rsub__ = lambda a, b: _binary("sub", b, a)
    __mul__ = lambda a, b: _binary("mul", a, b)
    __rmul__ = lambda a, b: _binary("mul", b, a)
    __truediv__ = lambda a, b: _binary("div", a, b)
    __rtruediv__ = lambda a, b: _binary("div", b, a)
    __floordiv__ = lambda a, b: _binary("floordiv", a, b)
    __rfloordiv__ = lambda a, b: _binary("floordiv", b, a)
    __mod__ = lambda a, b: _binary("mod", a, b)
    __rmod__ = lambda a, b: _binary("mod", b, a)
    __pow__ = lambda a, b: pow(a, b)
    __rpow__ = lambda a, b: pow(b, a)
    __matmul__ = lambda a, b: matmul(a, b)
    __rmatmul__ = lambda a, b: matmul(b, a)
    __neg__ = lambda a: negative(a)
    __pos__ = lambda a: positive(a)
    __abs__ = lambda a: abs(a)
    __invert__ = lambda a: bitwise_invert(a)
    __lt__ = lambda a, b: _binary("lt", a, b)
    __le__ = lambda a, b: _binary("le", a, b)
    __gt__ = lambda a, b: _binary("gt", a, b)
    __ge__ = lambda a, b: _binary("ge", a, b)
    __eq__ = lambda a, b: _binary("eq", a, b)
    __ne__ = lambda a, b: _binary("ne", a, b)
    __and__ = lambda a, b: bitwise_and(a, b)
    __rand__ = lambda a, b: bitwise_and(b, a)
    __or__ = lambda a, b: bitwise_or(a, b)
    __ror__ = lambda a, b: bitwise_or(b, a)
    __xor__ = lambda a, b: bitwise_xor(a, b)
    __rxor__ = lambda a, b: bitwise_xor(b, a)
    __lshift__ = lambda a, b: bitwise_left_shift(a, b)
    __rlshift__ = lambda a, b: bitwise_left_shift(b, a)
    __rshift__ = lambda a, b: bitwise_right_shift(a, b)
    __rrshift__ = lambda a, b: bitwise_right_shift(b, a)
    __getitem__ = lambda self, index: getitem(self, index)

    def __setitem__(self, index, value):
        setitem(self, index, value)  # a functional update that rebinds self (fastad.api.indexing)


def _inplace_op(name, a, b):
    """The out-of-place op behind `a op= b` (matmul and the bitwise ops go through their functions)."""
    if name == "matmul":
        return matmul(a, b)
    if name.startswith("bitwise_"):
        return globals()[name](a, b)
    return _binary(name, a, b)


def _type_error(op, *xs):
    names = ", ".join(type(x).__name__ if not isinstance(x, Tensor) else f"Tensor[{x.dtype.name}]" for x in xs)
    raise TypeError(f"unsupported operand type(s) for {op}: {names}")



# ---------------------------------------------------------------------------
# The one place where tensors meet the op table
# ---------------------------------------------------------------------------

def _apply(name: str, *inputs: Tensor, arg=None) -> Tensor:
    """Build `name(*inputs)` and record its GradFn when a gradient may flow through it
    (an input requires grad, or an active GradientTape sees an input)."""
    nodes = tuple([t._node for t in inputs])
    node = apply(name, *nodes, arg=arg)
    if node.dtype.kind in "fc" and _grad_mode.enabled:
        if active_tapes:
            tapes = recording_tapes(inputs)
            parents = tuple([t if t._ctx is not None or t._leaf_requires_grad
                             or builtins.any(tp._sees(t) for tp in tapes) else None for t in inputs])
            sessions = tuple([tp._session for tp in tapes])
        else:   # (`_tracked` inlined: this runs for every op)
            parents = tuple([t if t._ctx is not None or t._leaf_requires_grad else None for t in inputs])
            sessions = ()
        for p in parents:
            if p is not None:
                return Tensor(node, GradFn(name, parents, nodes, arg, node, sessions))
    return Tensor(node)


def _builder_apply(name, srcs, arg):
    """Derivative rules on tensors (create_graph): each op recorded like any other."""
    return _apply(name, *[s if isinstance(s, Tensor) else Tensor(s) for s in srcs], arg=arg)


install_tensor_builder(_builder_apply, lambda value, like: Tensor(const(value, like.shape, like.dtype,
                                                                          like.device)))


def _fresh(x: Tensor) -> Tensor:
    """A new tensor with `x`'s value (sharing its immutable buffer) and a gradient path to `x`.

    The aliasing rule says every function returns a new tensor: an in-place update
    of the result must rebind only the result, never the input it was made from."""
    return _apply("reshape", x, arg=x.shape)


# Operand preparation (scalars, broadcasting, promotion, axes) lives in `fastad.operands`.
from .operands import (_as_tensor, _as_tensor_checked, _binary, _broadcast, _cast, _common_dtype,  # noqa: E402
                       _expand_to, _promote, _unary, asarray, broadcast_shapes, normalize_axes)


# The array functions live in `fastad.api`, one module per section of the standard. They are
# re-exported here because Tensor's methods call them by name and older code imports them from here.
from .api.elementwise import *  # noqa: E402,F401,F403
from .api.reductions import *  # noqa: E402,F401,F403
from .api.manipulation import *  # noqa: E402,F401,F403
from .api.indexing import *  # noqa: E402,F401,F403
from .api.linear_algebra import *  # noqa: E402,F401,F403
from .api.methods import install as _install_methods  # noqa: E402

_install_methods()
