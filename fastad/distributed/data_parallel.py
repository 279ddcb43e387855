"""data_parallel: `DataParallel`, the same model on every rank, each on its share of the batch.

Start at `DataParallel.backward`. Construction broadcasts the parameters
from the root rank. Each step then runs

    loss = loss_fn(model(x_local), y_local)
    model.backward(loss)      # instead of loss.backward(): gradients averaged over the ranks
    optimizer.step()          # identical gradients, identical parameters, on every rank

Gradients travel in flat buckets: parameters of one dtype and device laid end
to end (at most `bucket_mb` each, the last parameters first, since backward
produces their gradients first). `backward` builds the whole backward graph,
then realizes it bucket by bucket: as soon as a bucket's flat gradient is
computed its all-reduce starts, non-blocking, and the next bucket's kernels
run while it is in flight. Averaged gradients come back as views of the
reduced flat buffers (`flat_grads`), the same layout the fused optimizers
use for their flat gradient, so nothing is copied after the reduction.

Every rank issues the same buckets in the same order; MPI and NCCL give every
rank the same reduced bits, so parameters stay bit-identical across ranks as
long as every rank runs the same update (`check_synchronized` verifies it).
"""
from __future__ import annotations

import hashlib

import numpy as np

from .. import profiling as profile
from ..autodiff import backward as run_backward, no_grad
from ..graph import Node
from ..ops import apply, const
from ..realize import realize
from ..runtime import backend_for
from ..runtime.reference import const_array
from ..tensor import Tensor
from . import comm
from .comm import DistributedError, Spec

__all__ = ["DataParallel"]


class _Layout:
    """Parameters of one dtype and device laid end to end: the flat gradient buffer's layout.
    With an optimizer these are its flat buckets, so its update reads the reduced buffer as it is."""

    def __init__(self, params):
        self.params = list(params)
        self.dtype, self.device = self.params[0].dtype, self.params[0].device
        self.shapes = [p.shape for p in self.params]
        self.offsets = [int(o) for o in np.cumsum([0] + [p.size for p in self.params])]
        self.numel = self.offsets[-1]
        self.flat_grad = None   # the averaged flat gradient of the last step (a Tensor)

    def gather(self, nodes) -> Node:
        """One 1-d node holding `nodes` end to end (one concat)."""
        flat = [n if n.shape == (n.size,) else apply("reshape", n, arg=(n.size,)) for n in nodes]
        return flat[0] if len(flat) == 1 else apply("concat", *flat, arg=0)

    def views(self, buf) -> list:
        """Each parameter's slice of the flat buffer `buf`, as computed nodes (views, no copy)."""
        return [Node("buffer", (), tuple(shape), self.dtype, self.device,
                     buffer=buf[lo:hi].reshape(shape))
                for shape, lo, hi in zip(self.shapes, self.offsets, self.offsets[1:])]


class _Bucket:
    """A run of consecutive parameters `lo..hi` of one layout: the unit of one all-reduce."""

    def __init__(self, layout: _Layout, lo: int, hi: int):
        self.layout, self.lo, self.hi = layout, lo, hi
        self.params = layout.params[lo:hi]
        self.start, self.stop = layout.offsets[lo], layout.offsets[hi]


def _parameters(module) -> list:
    params = module.parameters() if hasattr(module, "parameters") else module
    out, seen = [], set()
    for p in params:
        if not isinstance(p, Tensor):
            raise TypeError(f"DataParallel: parameters must be fastad Tensors, got {type(p).__name__}")
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    if not out:
        raise ValueError("DataParallel: the model has no parameters")
    for p in out:
        if not p.requires_grad or not p.is_leaf:
            raise ValueError(f"DataParallel: every parameter must be a leaf that requires grad "
                             f"(got a {p.dtype.name}{list(p.shape)} that is not)")
    return out


def _layouts(params, optimizer) -> list:
    """The optimizer's flat buckets (every parameter must be in them), else one per dtype and device."""
    if optimizer is not None:
        layouts = [_Layout(b.params) for gi in range(len(optimizer.param_groups)) for b in optimizer.buckets(gi)]
        covered = {id(p) for lay in layouts for p in lay.params}
        if covered != {id(p) for p in params}:
            raise ValueError("DataParallel: the optimizer must hold exactly the model's parameters")
        return layouts
    groups: dict = {}
    for p in params:
        groups.setdefault((p.dtype, p.device), []).append(p)
    return [_Layout(ps) for ps in groups.values()]


def _buckets(layouts, bucket_bytes) -> list:
    """Runs of at most bucket_bytes, the last parameters first: backward produces their gradients first."""
    buckets = []
    for lay in reversed(layouts):
        hi, size = len(lay.params), 0
        for i in range(len(lay.params) - 1, -1, -1):
            nbytes = lay.params[i].size * lay.dtype.itemsize
            if size and size + nbytes > bucket_bytes:
                buckets.append(_Bucket(lay, i + 1, hi))
                hi, size = i + 1, 0
            size += nbytes
        buckets.append(_Bucket(lay, 0, hi))
    return buckets


def _array(node: Node):
    """The realized value of `node` as an array of its device (constants broadcast, not copied)."""
    if node.buffer is not None:
        return node.buffer
    return const_array(node, backend_for(node.device).xp)


class DataParallel:
    """Wrap `module` (anything with `.parameters()`, or a list of parameter tensors) for data parallelism.

    `optimizer`: a `fastad.optim` optimizer over the same parameters; the
    gradient buffers then follow its flat buckets and `step()` hands them to
    it as they are. `bucket_mb`: the most MiB one all-reduce carries; `root`:
    the rank whose parameters every rank starts from; `timeout`: seconds per
    collective (default: `init`'s). Calling the wrapper calls the module;
    other attributes are the module's.
    """

    def __init__(self, module, optimizer=None, *, bucket_mb: float = 25.0, root: int = 0,
                 timeout: float | None = None):
        st = comm._require()
        if not bucket_mb > 0:
            raise ValueError(f"DataParallel: bucket_mb must be positive, got {bucket_mb}")
        self.module, self.optimizer = module, optimizer
        self.params = _parameters(module)
        self._ids = {id(p) for p in self.params}
        self.layouts = _layouts(self.params, optimizer)
        self.buckets = _buckets(self.layouts, int(bucket_mb * 2 ** 20))
        self.timeout = st.timeout if timeout is None else float(timeout)
        # every rank must hold the same parameters: mismatched buffers would reduce silently wrong
        comm.check_same(self._layout_signature(), "the model's parameters (DataParallel)", self.timeout,
                        lambda s: f"{s[0]} parameters, {s[1]} elements, {s[2]} buckets, layout hash {s[3]}")
        self.broadcast_parameters(root)

    def _layout_signature(self) -> np.ndarray:
        desc = repr([(lay.dtype.name, str(lay.device), lay.shapes) for lay in self.layouts]
                    + [(b.start, b.stop) for b in self.buckets])
        digest = int.from_bytes(hashlib.blake2b(desc.encode(), digest_size=8).digest(), "little", signed=True)
        return np.array([len(self.params), sum(lay.numel for lay in self.layouts), len(self.buckets), digest])

    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def __getattr__(self, name):
        if name == "module":  # not set yet (failed __init__): no recursion
            raise AttributeError(name)
        return getattr(self.module, name)

    def parameters(self) -> list:
        return list(self.params)

    @property
    def flat_grads(self) -> list:
        """The averaged flat gradient of each layout from the last step (the parameters' grads view them)."""
        return [lay.flat_grad for lay in self.layouts]

    # ---- the step ------------------------------------------------------------
    def broadcast_parameters(self, root: int = 0) -> None:
        """Give every rank the root's parameter values (one broadcast per layout)."""
        for lay in self.layouts:
            flat = lay.gather([p._node for p in lay.params])
            realize([flat])
            out = comm.execute("broadcast", _array(flat), Spec(root=root, timeout=self.timeout))
            profile.record_launch("dist_broadcast", lay.device, lay.numel, kind="library")
            with no_grad():
                for p, view in zip(lay.params, lay.views(out)):
                    p.copy_(Tensor(view))

    def backward(self, loss: Tensor, retain_graph: bool = False) -> None:
        """`loss.backward()`, with every parameter's gradient averaged over the ranks.

        Non-parameter leaves get their local gradient, as with `Tensor.backward`.
        A parameter the loss does not reach counts as a zero gradient.
        """
        if not isinstance(loss, Tensor) or loss.size != 1:
            raise ValueError("DataParallel.backward: the loss must be a one-element Tensor")
        if not loss.requires_grad:
            raise RuntimeError("DataParallel.backward: the loss does not require grad")
        grads: dict[int, Node] = {}
        others: list = []

        def sink(t, g):
            if id(t) in self._ids:
                grads[id(t)] = g if id(t) not in grads else apply("add", grads[id(t)], g)
            else:
                t.grad = Tensor(g) if t.grad is None else Tensor(apply("add", t.grad._node, g))
                others.append(t.grad._node)

        seed = const(1, loss.shape, loss.dtype, loss.device)
        run_backward([loss], [seed], sink, retain_graph=bool(retain_graph))
        self._reduce(lambda p: grads.get(id(p)), [loss._node] + others)

    def sync_gradients(self) -> None:
        """Average every parameter's `.grad` over the ranks, after a plain `loss.backward()`."""
        self._reduce(lambda p: None if p.grad is None else p.grad._node, [])

    def step(self):
        """`optimizer.step()` on the averaged flat gradients, read in place (no gather)."""
        if self.optimizer is None:
            raise RuntimeError("DataParallel.step needs DataParallel(module, optimizer)")
        flat, k = {}, 0
        for gi in range(len(self.optimizer.param_groups)):
            n = len(self.optimizer.buckets(gi))
            flat[gi] = [lay.flat_grad for lay in self.layouts[k:k + n]]
            k += n
        return self.optimizer.step(flat_grads=flat)

    def _reduce(self, grad_of, first: list) -> None:
        """Realize each bucket's flat gradient in turn and start its all-reduce at once, into its slice
        of the layout's flat buffer; then wait for all and point each parameter's grad at its slice."""
        outs = {id(lay): _empty(lay) for lay in self.layouts}
        pending = []
        for k, b in enumerate(self.buckets):
            lay = b.layout
            nodes = []
            for p in b.params:
                g = grad_of(p)
                if g is None:
                    g = const(0, p.shape, p.dtype, p.device)
                elif g.dtype is not lay.dtype:
                    g = apply("cast", g, arg=lay.dtype)
                nodes.append(g)
            flat = lay.gather(nodes)
            realize([flat] + (first if k == 0 else []))
            out = outs[id(lay)][b.start:b.stop]
            pending.append(comm.start("all_reduce", _array(flat), Spec(op="mean", timeout=self.timeout), out=out))
            profile.record_launch("dist_all_reduce", lay.device, b.stop - b.start, kind="library")
            for q in pending:
                q.test()  # MPI moves data only inside its calls
        for q in pending:
            q.wait()
        for lay in self.layouts:
            buf = outs[id(lay)]
            lay.flat_grad = Tensor(Node("buffer", (), buf.shape, lay.dtype, lay.device, buffer=buf))
            for p, view in zip(lay.params, lay.views(buf)):
                p.grad = Tensor(view)

    # ---- checks ----------------------------------------------------------------
    def check_synchronized(self) -> None:
        """Raise DistributedError unless every parameter is bit-identical on every rank."""
        digests = np.array([_digest(p) for p in self.params], np.int64)
        every = comm.execute("all_gather", digests, Spec(timeout=self.timeout)).reshape(-1, digests.size)
        differ = [i for i in range(digests.size) if not (every[:, i] == every[0, i]).all()]
        if differ:
            names = ", ".join(f"#{i} {self.params[i].dtype.name}{list(self.params[i].shape)}" for i in differ)
            raise DistributedError(f"parameters differ across ranks (rank {comm.rank()}): {names}")


def _empty(lay: _Layout):
    """The flat buffer a step's reduced gradients land in (on the CPU, recycled once unreferenced)."""
    if lay.device.type == "cpu":
        return comm.empty((lay.numel,), lay.dtype.np)
    xp = backend_for(lay.device).xp
    with xp.cuda.Device(lay.device.index):
        return xp.empty(lay.numel, lay.dtype.np)


def _digest(p: Tensor) -> int:
    data = np.ascontiguousarray(p.numpy())
    h = hashlib.blake2b(data.view(np.uint8).reshape(-1), digest_size=8).digest()
    return int.from_bytes(h, "little", signed=True)
