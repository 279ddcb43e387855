"""optim.flat: the flat buffers behind an optimizer's parameters (one per group, dtype and device).

Start at `FlatBucket`. A bucket lays the parameters of one group that share a
dtype and a device end to end in one 1-d buffer; each parameter tensor is
rebound to a reshaped slice (a view) of it. Optimizer state (momentum, Adam's
moments) lives in flat buffers of the same layout, and the gradients are
gathered into one flat tensor (`gather_grads`) with a single concat. The
update is then one elementwise graph over the flat length, which the
scheduler turns into one fused multi-output kernel per bucket.

Each step computes new flat values and rebinds the parameters to views of the
new flat buffer, so a state dict, a `numpy()` result or a detached parameter
taken earlier keeps its values. Where nothing outside the bucket can see an old
buffer (`donors`: no such reference exists), the update is written over it in
place instead of into fresh memory: a large update then reads and writes each
buffer once, the bandwidth floor, with no new memory. A parameter rebound by
someone else (`p.copy_(x)`, `Module.load_state_dict`) is noticed by identity
and gathered again.
"""
from __future__ import annotations

import math
import sys

import numpy as np

from ..autodiff import no_grad
from ..creation import buffer_node
from ..graph import Node
from ..ops import apply, const
from ..realize import realize
from ..runtime.buffers import MIN_BYTES, unobserved

__all__ = ["FlatBucket", "flat_view"]


def flat_view(flat: Node, offset: int, shape: tuple) -> Node:
    """A computed node whose buffer is `flat`'s elements offset..offset+size, reshaped (a view, no copy)."""
    size = math.prod(shape)
    buf = flat.buffer[offset:offset + size].reshape(shape)
    return Node("buffer", (), tuple(shape), flat.dtype, flat.device, buffer=buf)


def _flatten(node: Node) -> Node:
    return node if node.shape == (node.size,) else apply("reshape", node, arg=(node.size,))


def _gather(nodes: list) -> Node:
    """One 1-d node holding `nodes` end to end (a single concat; none for one node)."""
    flat = [_flatten(n) for n in nodes]
    return flat[0] if len(flat) == 1 else apply("concat", *flat, arg=0)


class FlatBucket:
    """The parameters of one group with one dtype and device, their flat buffer and flat state."""

    def __init__(self, params: list):
        self.params = list(params)
        self.dtype, self.device = params[0].dtype, params[0].device
        self.shapes = [p.shape for p in params]
        self.sizes = [p.size for p in params]
        self.offsets = [int(o) for o in np.cumsum([0] + self.sizes[:-1])]
        self.numel = int(sum(self.sizes))
        self.state: dict[str, Node] = {}        # state name -> realized flat node
        self.steps = [0] * len(params)          # updates applied to each parameter
        self._bound: list = [None] * len(params)
        self._mask_cache: dict = {}
        flat = _gather([p._node for p in params])
        realize([flat])
        if flat.buffer is None:  # the parameters were constants (fastad.zeros(..., requires_grad=True))
            flat = buffer_node(np.full(flat.shape, flat.arg, self.dtype.np), self.device)
        elif len(params) == 1 and type(flat.buffer) is np.ndarray:
            # one parameter's flat node shares its buffer, which others (the array it was made from)
            # may hold; a copy of its own lets the first step update in place as the later ones do
            flat = buffer_node(flat.buffer.copy(), self.device)
        self.bind(flat)

    # ---- parameters ---------------------------------------------------------
    def bind(self, flat: Node) -> None:
        """Make `flat` (realized) the parameters' storage: each parameter becomes a view of its slice.

        The rebinding goes through `Tensor._assign`, the one path of in-place updates."""
        self.flat = flat
        with no_grad():
            for i, p in enumerate(self.params):
                p._assign(flat_view(flat, self.offsets[i], self.shapes[i]), "optimizer step")
                self._bound[i] = p._node

    def flat_params(self) -> Node:
        """The parameters as one flat node: the bound buffer, or a fresh gather if any was rebound."""
        if all(p._node is b for p, b in zip(self.params, self._bound)):
            return self.flat
        for p, shape in zip(self.params, self.shapes):
            if p._node.shape != shape or p._node.dtype is not self.dtype or p._node.device != self.device:
                raise RuntimeError(f"an optimized parameter changed its shape, dtype or device "
                                   f"(now {p.dtype.name}{list(p.shape)} on {p.device}, was "
                                   f"{self.dtype.name}{list(shape)} on {self.device})")
        return _gather([p._node for p in self.params])

    def donors(self, new_flat: Node, new_state: dict) -> dict:
        """{new node: old node} for the old flat buffers that the update may write over in place
        (`fastad.realize.realize`): the parameters' buffer where no tensor but its parameter
        holds a parameter's node, and each state buffer; in both cases where nothing outside
        this bucket references the memory (`fastad.runtime.buffers.unobserved`), and only in
        buckets large enough for fresh buffers to come from the pool (MIN_BYTES)."""
        if self.numel * self.dtype.itemsize < MIN_BYTES:
            # small buffers come from malloc's heap, still in cache: a fresh one costs less than
            # these checks (about 20 us for the 784-256-10 MLP's 0.8 MB)
            return {}
        out = {new: self.state[name] for name, new in new_state.items() if unobserved([self.state[name]])}
        bound = self._bound
        for i, p in enumerate(self.params):
            # a parameter's node is held by the tensor, `_bound`, and getrefcount's argument;
            # another holder (a detached tensor, a pending graph) still needs the old values
            if p._node is not bound[i] or sys.getrefcount(bound[i]) != 3:
                return out
        if unobserved([self.flat, *bound]):
            out[new_flat] = self.flat
        return out

    # ---- gradients ------------------------------------------------------------
    def active(self) -> list:
        """Which parameters have a gradient (the others are skipped, as in PyTorch)."""
        return [p.grad is not None for p in self.params]

    def gather_grads(self) -> Node:
        """The gradients as one flat node (zeros where a parameter has none): a single concat."""
        nodes = []
        for p, shape in zip(self.params, self.shapes):
            g = p.grad
            if g is None:
                nodes.append(const(0, (math.prod(shape),), self.dtype, self.device))
                continue
            if g.shape != shape:
                raise RuntimeError(f"a gradient has shape {g.shape}, its parameter {shape}")
            if g.device != self.device:
                raise RuntimeError(f"a gradient is on {g.device}, its parameter on {self.device}")
            node = g._node if g.dtype is self.dtype else apply("cast", g._node, arg=self.dtype)
            nodes.append(node)
        return _gather(nodes)

    # ---- per-element values -----------------------------------------------------
    def per_param(self, values: list, dtype) -> Node:
        """A flat node holding values[i] over parameter i's slice (a constant when all are equal)."""
        if all(v == values[0] for v in values):
            return const(values[0], (self.numel,), dtype, self.device)
        host = np.repeat(np.asarray(values, dtype=dtype.np), self.sizes)
        return buffer_node(host, self.device)

    def mask(self, active: list) -> Node:
        """A flat bool node: True over the parameters being updated."""
        key = tuple(active)
        node = self._mask_cache.get(key)
        if node is None:
            node = self._mask_cache[key] = buffer_node(np.repeat(np.asarray(active, bool), self.sizes),
                                                       self.device)
        return node

    # ---- state ----------------------------------------------------------------
    def zeros(self) -> Node:
        """A realized flat buffer of zeros (state starts here, so every step runs the same kernel)."""
        return buffer_node(np.zeros(self.numel, self.dtype.np), self.device)

    def state_view(self, name: str, i: int) -> Node:
        return flat_view(self.state[name], self.offsets[i], self.shapes[i])

    def load_state(self, name: str, values: list) -> None:
        """Set flat state `name` from one array (or None: zeros) per parameter."""
        host = np.zeros(self.numel, self.dtype.np)
        for i, v in enumerate(values):
            if v is None:
                continue
            arr = np.asarray(v.numpy() if hasattr(v, "numpy") else v)
            if arr.size != self.sizes[i]:
                raise ValueError(f"optimizer state {name!r} of parameter {i} has shape {arr.shape}, "
                                 f"the parameter {self.shapes[i]}")
            host[self.offsets[i]:self.offsets[i] + self.sizes[i]] = arr.reshape(-1)
        self.state[name] = buffer_node(host, self.device)
