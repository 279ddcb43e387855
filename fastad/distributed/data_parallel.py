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


class _Bucket:
    """Parameters sharing a dtype and device, laid end to end in one flat buffer."""

    def __init__(self, params):
        self.params = params
        self.dtype, self.device = params[0].dtype, params[0].device
        self.shapes = [p.shape for p in params]
        self.offsets = list(np.cumsum([0] + [p.size for p in params[:-1]]))
        self.numel = sum(p.size for p in params)
        self.flat_grad = None   # the averaged flat gradient of the last step (a Tensor)

    def gather(self, nodes) -> Node:
        """One 1-d node holding `nodes` end to end (one concat)."""
        flat = [n if n.shape == (n.size,) else apply("reshape", n, arg=(n.size,)) for n in nodes]
        return flat[0] if len(flat) == 1 else apply("concat", *flat, arg=0)

    def views(self, buf) -> list:
        """Each parameter's slice of the flat buffer `buf`, as computed nodes (views, no copy)."""
        out = []
        for off, shape in zip(self.offsets, self.shapes):
            size = int(np.prod(shape, dtype=np.int64))
            out.append(Node("buffer", (), tuple(shape), self.dtype, self.device,
                            buffer=buf[int(off):int(off) + size].reshape(shape)))
        return out


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


def _buckets(params, bucket_bytes) -> list:
    """Reverse parameter order (backward's order), one dtype/device per bucket, at most bucket_bytes."""
    buckets, current, size = [], [], 0
    for p in reversed(params):
        nbytes = p.size * p.dtype.itemsize
        if current and ((p.dtype, p.device) != (current[0].dtype, current[0].device)
                        or size + nbytes > bucket_bytes):
            buckets.append(_Bucket(current))
            current, size = [], 0
        current.append(p)
        size += nbytes
    buckets.append(_Bucket(current))
    return buckets


def _array(node: Node):
    """The realized value of `node` as an array of its device (constants broadcast, not copied)."""
    if node.buffer is not None:
        return node.buffer
    return const_array(node, backend_for(node.device).xp)


class DataParallel:
    """Wrap `module` (anything with `.parameters()`, or a list of parameter tensors) for data parallelism.

    `bucket_mb`: the size of one gradient bucket in MiB; `root`: the rank whose
    parameters every rank starts from; `timeout`: seconds per all-reduce
    (default: `init`'s). Calling the wrapper calls the module; other
    attributes are the module's.
    """

    def __init__(self, module, *, bucket_mb: float = 25.0, root: int = 0, timeout: float | None = None):
        st = comm._require()
        if not bucket_mb > 0:
            raise ValueError(f"DataParallel: bucket_mb must be positive, got {bucket_mb}")
        self.module = module
        self.params = _parameters(module)
        self._ids = {id(p) for p in self.params}
        self.buckets = _buckets(self.params, int(bucket_mb * 2 ** 20))
        self.timeout = st.timeout if timeout is None else float(timeout)
        self.broadcast_parameters(root)

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
        """The averaged flat gradient of each bucket from the last step (parameters' grads are views of them)."""
        return [b.flat_grad for b in self.buckets]

    # ---- the step ------------------------------------------------------------
    def broadcast_parameters(self, root: int = 0) -> None:
        """Give every rank the root's parameter values (one broadcast per bucket)."""
        for b in self.buckets:
            flat = b.gather([p._node for p in b.params])
            realize([flat])
            out = comm.execute("broadcast", _array(flat), Spec(root=root, timeout=self.timeout))
            profile.record_launch("dist_broadcast", b.device, b.numel, kind="library")
            with no_grad():
                for p, view in zip(b.params, b.views(out)):
                    p.copy_(Tensor(view))

    def backward(self, loss: Tensor, retain_graph: bool = False) -> None:
        """`loss.backward()`, with every parameter's gradient averaged over the ranks.

        Non-parameter leaves get their local gradient, as with `Tensor.backward`.
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
        per_bucket = [[grads[id(p)] if id(p) in grads else const(0, p.shape, p.dtype, p.device)
                       for p in b.params] for b in self.buckets]
        self._reduce(per_bucket, [loss._node] + others)

    def sync_gradients(self) -> None:
        """Average the `.grad` of every parameter over the ranks (after a plain `loss.backward()`);
        a parameter without a gradient counts as zeros."""
        per_bucket = [[p.grad._node if p.grad is not None else const(0, p.shape, p.dtype, p.device)
                       for p in b.params] for b in self.buckets]
        for b in self.buckets:
            for p in b.params:
                p.grad = None
        self._reduce(per_bucket, [])

    def _reduce(self, per_bucket, first: list) -> None:
        """Realize each bucket's flat gradient in turn and start its all-reduce at once; then wait."""
        pending = []
        for k, (b, nodes) in enumerate(zip(self.buckets, per_bucket)):
            flat = b.gather(nodes)
            realize([flat] + (first if k == 0 else []))
            pending.append(comm.start("all_reduce", _array(flat), Spec(op="mean", timeout=self.timeout)))
            profile.record_launch("dist_all_reduce", b.device, b.numel, kind="library")
            for q in pending:
                q.test()  # MPI moves data only inside its calls
        for b, q in zip(self.buckets, pending):
            out = q.wait()
            b.flat_grad = Tensor(Node("buffer", (), out.shape, b.dtype, b.device, buffer=out))
            for p, view in zip(b.params, b.views(out)):
                p.grad = Tensor(view) if p.grad is None else Tensor(apply("add", p.grad._node, view))

    # ---- checks ----------------------------------------------------------------
    def check_synchronized(self) -> None:
        """Raise DistributedError unless every parameter is bit-identical on every rank."""
        digests = np.array([_digest(p) for p in self.params], np.int64)
        every = comm.execute("all_gather", digests, Spec(timeout=self.timeout)).reshape(-1, digests.size)
        differ = [i for i in range(digests.size) if not (every[:, i] == every[0, i]).all()]
        if differ:
            names = ", ".join(f"#{i} {self.params[i].dtype.name}{list(self.params[i].shape)}" for i in differ)
            raise DistributedError(f"parameters differ across ranks (rank {comm.rank()}): {names}")


def _digest(p: Tensor) -> int:
    data = np.ascontiguousarray(p.numpy())
    h = hashlib.blake2b(data.view(np.uint8).reshape(-1), digest_size=8).digest()
    return int.from_bytes(h, "little", signed=True)
