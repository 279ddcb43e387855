"""comm: the process group. Start-up from the launcher, the MPI and NCCL calls, timeouts and aborts.

Start at `init`, then `start` (begin one collective on a realized buffer,
return a `Pending`) and `Pending.wait`. Everything above this module (the
op-table entries in `collectives.py`, `DataParallel`) goes through `start`.

* CPU buffers (numpy) go through mpi4py's buffer interface: MPI reads the
  input array in place and writes into a fresh output array, so nothing is
  copied on the way (a non-contiguous view is made contiguous first).
* CUDA buffers (CuPy) go through NCCL (`cupy.cuda.nccl`) on a stream of its
  own, after the work already queued on the current stream, so kernels
  queued later run alongside the transfer; `wait` makes the current stream
  wait for it. The NCCL communicator is bootstrapped through MPI in `init`: rank 0
  makes the unique id and broadcasts it, each rank takes GPU
  `local_rank % device_count`.
* Every collective is non-blocking underneath and is waited for with a
  deadline: past it a `CollectiveTimeoutError` is raised. A rank that dies on
  an uncaught exception (a timeout included) prints its traceback, tagged
  with its rank, and aborts the whole job (`MPI_Abort`), so no rank hangs.
* Debug mode (`init(debug=True)` or `FASTAD_DIST_DEBUG=1`) first exchanges
  each collective's kind, shape and dtype and raises
  `CollectiveMismatchError` on every rank when they differ.

Nothing here imports mpi4py or CuPy before `init` is called.
"""
from __future__ import annotations

import atexit
import os
import sys
import time
import traceback
from typing import NamedTuple, Optional

import numpy as np

__all__ = ["init", "is_initialized", "rank", "world_size", "local_rank", "device", "barrier",
           "start", "execute", "Spec", "Pending", "DistributedError", "NotInitializedError",
           "CollectiveTimeoutError", "CollectiveMismatchError"]


class DistributedError(RuntimeError):
    """A failure of the process group (base class of the errors below)."""


class NotInitializedError(DistributedError):
    """A collective was called before `fastad.distributed.init()`."""


class CollectiveTimeoutError(DistributedError, TimeoutError):
    """A collective did not complete within its timeout (a rank failed, exited, or called another one)."""


class CollectiveMismatchError(DistributedError, ValueError):
    """Ranks called a collective with different kinds, shapes or dtypes (found in debug mode)."""


class Spec(NamedTuple):
    """The static part of one collective: the node's `arg` in the op table (hashable, printable)."""
    op: Optional[str] = None      # sum | mean | max | min, for the reducing collectives
    root: Optional[int] = None    # broadcast and reduce
    timeout: float = 300.0        # seconds


KINDS = ("all_reduce", "broadcast", "reduce", "all_gather", "reduce_scatter")
REDUCE_OPS = ("sum", "mean", "max", "min")


class _State:
    def __init__(self, comm, MPI, local_rank, local_size, device, timeout, debug):
        self.comm, self.MPI = comm, MPI
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.local_rank, self.local_size = local_rank, local_size
        self.device, self.timeout, self.debug = device, timeout, debug
        self.nccl = None          # cupy.cuda.nccl.NcclCommunicator on CUDA
        self.nccl_stream = None   # the stream NCCL runs on
        self.broken = False       # a collective timed out: its request can't be cancelled


_state: Optional[_State] = None


def _env_float(name, default):
    v = os.environ.get(name)
    return default if v in (None, "") else float(v)


def init(device=None, *, timeout: float | None = None, debug: bool | None = None,
         abort_on_error: bool = True):
    """Join the job started by `mpiexec`/`srun` (or run as a one-rank job) and return this rank's device.

    `device`: "cpu" (MPI), "cuda" (NCCL, one GPU per rank by local rank) or
    None (CUDA when a GPU is usable, else the CPU). `timeout`: default seconds
    a collective may take (env FASTAD_DIST_TIMEOUT, else 300). `debug`: check
    shapes and dtypes across ranks before each collective (env
    FASTAD_DIST_DEBUG=1). `abort_on_error`: an uncaught exception on any rank
    prints its traceback and aborts every rank. Calling `init` again returns
    the same device.
    """
    global _state
    from ..device import Device
    if _state is not None:
        return _state.device
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError("fastad.distributed needs mpi4py and an MPI library: "
                          "pip install 'fastad[distributed]' (mpi4py and the mpich wheel)") from e
    timeout = _env_float("FASTAD_DIST_TIMEOUT", 300.0) if timeout is None else float(timeout)
    if not timeout > 0:
        raise ValueError(f"init: timeout must be a positive number of seconds, got {timeout}")
    if debug is None:
        debug = os.environ.get("FASTAD_DIST_DEBUG", "0") == "1"
    comm = MPI.COMM_WORLD.Dup()  # our own context: user MPI traffic never matches our collectives
    node_comm = comm.Split_type(MPI.COMM_TYPE_SHARED)  # ranks sharing this machine
    local_rank, local_size = node_comm.Get_rank(), node_comm.Get_size()
    node_comm.Free()
    if device is None:
        from ..runtime.cuda_probe import is_available
        device = "cuda" if is_available() else "cpu"
    dev = Device(device)
    state = _State(comm, MPI, local_rank, local_size, dev, timeout, bool(debug))
    _state = state
    atexit.register(_at_exit)
    if abort_on_error:  # from here on, a failing rank (NCCL bootstrap included) ends the job
        _install_excepthook()
    _check_setup(state)
    if dev.type == "cuda":
        # "cuda" alone: the GPU is picked by local rank; "cuda:N" pins it
        explicit = isinstance(device, str) and ":" in device
        state.device = _init_nccl(state, dev.index if explicit else None)
    return state.device


def _check_setup(st: _State) -> None:
    """Every rank must use the same kind of device and the same debug mode (debug mode adds a
    collective to each one): compare them once, with the deadline."""
    mine = np.array([st.device.type == "cuda", st.debug], np.int64)
    every = np.empty((st.size, 2), np.int64)
    _wait_mpi(st, st.comm.Iallgather(mine, every), "init", st.timeout)
    if not (every == every[0]).all():
        global _state
        _state = None  # not initialized: collectives refuse to run
        rows = "\n".join(f"  rank {r}: device {'cuda' if c else 'cpu'}, debug {bool(d)}"
                         for r, (c, d) in enumerate(every))
        raise DistributedError(f"ranks called init() differently (rank {st.rank} raising):\n{rows}")


def _init_nccl(state: _State, index):
    """One GPU per rank (local rank modulo the GPUs here), and a NCCL communicator bootstrapped through MPI."""
    import cupy
    from cupy.cuda import nccl
    from ..device import Device
    if not nccl.available:
        raise ImportError("fastad.distributed on CUDA needs NCCL: pip install nvidia-nccl-cu13")
    n = cupy.cuda.runtime.getDeviceCount()
    index = state.local_rank % n if index is None else index
    cupy.cuda.Device(index).use()
    uid = nccl.get_unique_id() if state.rank == 0 else None
    uid = state.comm.bcast(uid, root=0)
    state.nccl = nccl.NcclCommunicator(state.size, uid, state.rank)
    return Device("cuda", index)


def _require() -> _State:
    if _state is None:
        raise NotInitializedError("call fastad.distributed.init() first (under mpiexec -n N, or alone "
                                  "for a one-rank job)")
    if _state.broken:
        raise DistributedError("an earlier collective timed out; the process group can't be used any more")
    return _state


def is_initialized() -> bool:
    return _state is not None


def rank() -> int:
    return _require().rank


def world_size() -> int:
    return _require().size


def local_rank() -> int:
    return _require().local_rank


def device():
    """This rank's device, as chosen by `init`."""
    return _require().device


def barrier(timeout: float | None = None) -> None:
    """Wait until every rank gets here (with a deadline, as every collective)."""
    st = _require()
    _wait_mpi(st, st.comm.Ibarrier(), "barrier", st.timeout if timeout is None else timeout)


# ---------------------------------------------------------------------------
# Faults: uncaught exceptions end the whole job; exit with a stuck request aborts
# ---------------------------------------------------------------------------

def _install_excepthook() -> None:
    previous = sys.excepthook

    def hook(etype, value, tb):
        st = _state
        if st is None or st.size == 1:
            return previous(etype, value, tb)
        text = "".join(traceback.format_exception(etype, value, tb))
        sys.stderr.write("".join(f"[rank {st.rank}] {line}\n" for line in text.rstrip().splitlines()))
        sys.stderr.write(f"[rank {st.rank}] fastad.distributed: aborting all {st.size} ranks\n")
        sys.stderr.flush()
        sys.stdout.flush()
        # a short grace, so ranks failing at the same moment print their errors too
        time.sleep(_env_float("FASTAD_DIST_ABORT_GRACE", 0.5))
        st.comm.Abort(1)

    sys.excepthook = hook


def _at_exit() -> None:
    st = _state
    if st is not None and st.broken and st.size > 1:
        # MPI_Finalize would wait forever on the request that timed out
        sys.stderr.flush()
        st.comm.Abort(1)


def _timed_out(st: _State, what: str, timeout: float):
    st.broken = True
    raise CollectiveTimeoutError(
        f"rank {st.rank}: {what} did not complete within {timeout:g} s: another rank failed, exited, "
        "or called a different collective (pass timeout= or set FASTAD_DIST_TIMEOUT for slow steps)")


def _wait_mpi(st: _State, req, what: str, timeout: float) -> None:
    """Poll `req` until done or the deadline. MPI moves data only inside its calls, so the first
    second is a busy loop, as MPI's own blocking calls are (yielding the core under load slowed a
    100M-element all-reduce by 15% here); after that the core is yielded between polls."""
    if req.Test():
        return
    now = time.monotonic()
    deadline, spin_until = now + timeout, now + 1.0
    test, clock = req.Test, time.monotonic
    polls = 0
    while not test():
        polls += 1
        if polls & 255:
            continue
        now = clock()
        if now > spin_until:
            if now > deadline:
                _timed_out(st, what, timeout)
            os.sched_yield()


# ---------------------------------------------------------------------------
# Collectives on buffers
# ---------------------------------------------------------------------------

def out_shape(kind: str, shape: tuple, size: int) -> tuple:
    """The result's shape: all_gather stacks the ranks' blocks along axis 0, reduce_scatter splits it."""
    if kind == "all_gather":
        if not shape:
            return (size,)
        return (shape[0] * size,) + tuple(shape[1:])
    if kind == "reduce_scatter":
        if not shape or shape[0] % size:
            raise ValueError(f"reduce_scatter: the first dimension of shape {shape} must be a multiple of "
                             f"the world size {size}")
        return (shape[0] // size,) + tuple(shape[1:])
    return tuple(shape)


class _Recycler:
    """Result buffers handed out before, taken again once nothing refers to them.

    A fresh buffer pays a page fault per 4 KiB page when MPI first writes it:
    about 17 ms for 40 MB and 180 ms for 400 MB here, as much as the transfer
    itself. An array handed out is reused only when its reference count shows
    that no tensor, view or pending collective holds it (every numpy view keeps
    its base alive), so no value anyone can see ever changes. Holds at most
    `slots` buffers of at least `min_bytes`; the oldest idle one goes first.
    """

    def __init__(self, slots: int = 8, min_bytes: int = 1 << 20):
        self.slots, self.min_bytes = slots, min_bytes
        self.items: list = []

    def empty(self, shape: tuple, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes < self.min_bytes:
            return np.empty(shape, dtype)
        items = self.items
        # idle: the list's reference and getrefcount's argument are the only ones
        idle = [i for i in range(len(items)) if sys.getrefcount(items[i]) == 2]
        hit = next((i for i in idle if items[i].nbytes == nbytes), None)
        if hit is not None:
            found = items.pop(hit)
        else:
            found = np.empty(nbytes, np.uint8)
            if len(items) >= self.slots:
                items.pop(idle[0] if idle else 0)  # the oldest idle one (else forget the oldest)
        items.append(found)  # most recently used last
        return found.view(dtype).reshape(shape)


_recycler = _Recycler()


def empty(shape: tuple, dtype) -> np.ndarray:
    """A host array for a collective's result (recycled once nobody refers to it; see `_Recycler`)."""
    return _recycler.empty(shape, dtype)


class Pending:
    """A collective in flight: `wait()` returns its result (a fresh buffer) once every rank took part."""

    __slots__ = ("_st", "_req", "_event", "_out", "_send", "_what", "_timeout", "_finish", "_result")

    def __init__(self, st, req, event, out, send, what, timeout, finish):
        self._st, self._req, self._event, self._out = st, req, event, out
        self._send = send  # the input stays alive (and unchanged) until the collective completes
        self._what, self._timeout, self._finish, self._result = what, timeout, finish, None

    def test(self) -> bool:
        """Whether it has completed (also lets MPI progress it)."""
        if self._result is not None:
            return True
        return self._req.Test() if self._req is not None else self._event.done

    def wait(self):
        if self._result is None:
            if self._req is not None:
                _wait_mpi(self._st, self._req, self._what, self._timeout)
            else:
                _wait_cuda(self._st, self._event, self._what, self._timeout)
            out = self._out
            if self._finish is not None:
                out = self._finish(out)
            self._result, self._out, self._req, self._event, self._send = out, None, None, None, None
        return self._result


def start(kind: str, x, spec: Spec, out=None) -> Pending:
    """Begin collective `kind` on the array `x` (numpy: MPI, CuPy: NCCL). The input is only read.

    `out`: a C-contiguous array of the result's shape and dtype to receive it
    (DataParallel's buckets land in slices of one flat buffer); else a new one."""
    st = _require()
    if kind not in KINDS:
        raise ValueError(f"unknown collective {kind!r}")
    if out is not None:
        want = out_shape(kind, x.shape, st.size)
        if out.shape != want or out.dtype != x.dtype or not out.flags.c_contiguous or x.dtype == np.bool_:
            raise ValueError(f"{kind}: out must be a C-contiguous {x.dtype}{list(want)} array, got "
                             f"{out.dtype}{list(out.shape)}")
    if st.debug:
        _check_agreement(st, kind, x.shape, x.dtype, spec)
    if isinstance(x, np.ndarray):
        return _start_mpi(st, kind, x, spec, out)
    return _start_nccl(st, kind, x, spec, out)


def execute(kind: str, x, spec: Spec):
    """Run collective `kind` on `x` and return the result: `start(...).wait()`."""
    return start(kind, x, spec).wait()


def _mean(size):
    def finish(out):
        out /= out.dtype.type(size)  # a fresh buffer of our own: scale it in place
        return out
    return finish


def _start_mpi(st: _State, kind: str, x: np.ndarray, spec: Spec, out=None) -> Pending:
    MPI, comm = st.MPI, st.comm
    x = np.ascontiguousarray(x)  # a no-op for a computed buffer; views of one are gathered once
    what = _describe(kind, x, spec)
    finish = _mean(st.size) if spec.op == "mean" else None
    if x.dtype == np.bool_:
        if spec.op is not None:
            raise TypeError(f"{kind}: bool tensors can be moved, not reduced")
        x = x.view(np.uint8)  # MPI moves bytes; the result is read back as bool
        finish = _as_bool
    if out is None:
        out = empty(out_shape(kind, x.shape, st.size), x.dtype)
    op = {"sum": MPI.SUM, "mean": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN, None: None}[spec.op]
    if kind == "all_reduce":
        req = comm.Iallreduce(x, out, op)
    elif kind == "broadcast":
        if st.rank == spec.root:
            out[...] = x  # the result is a new buffer, never an alias of the input
        req = comm.Ibcast(out, root=spec.root)
    elif kind == "reduce":
        if st.rank == spec.root:
            req = comm.Ireduce(x, out, op, root=spec.root)
        else:
            req = comm.Ireduce(x, None, op, root=spec.root)
            out.fill(0)
    elif kind == "all_gather":
        req = comm.Iallgather(x, out)
    else:
        req = comm.Ireduce_scatter_block(x, out, op)
    return Pending(st, req, None, out, x, what, spec.timeout, finish)


def _as_bool(out):
    return out.view(np.bool_)


def _describe(kind, x, spec) -> str:
    extra = f" op={spec.op}" if spec.op else ""
    extra += f" root={spec.root}" if spec.root is not None else ""
    return f"{kind}({x.dtype}[{','.join(map(str, x.shape))}]{extra})"


# ---------------------------------------------------------------------------
# Debug mode: every rank states what it is about to do; all raise the same error on a mismatch
# ---------------------------------------------------------------------------

_SIG_DIMS = 16
_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
           "float16", "float32", "float64", "complex64", "complex128")


def _signature(kind, shape, dtype, spec) -> np.ndarray:
    sig = np.full(5 + _SIG_DIMS, -1, np.int64)
    sig[0] = KINDS.index(kind)
    sig[1] = -1 if spec.op is None else REDUCE_OPS.index(spec.op)
    sig[2] = -1 if spec.root is None else spec.root
    name = np.dtype(dtype).name
    sig[3] = _DTYPES.index(name) if name in _DTYPES else 99
    sig[4] = len(shape)
    dims = list(shape[:_SIG_DIMS])
    if len(shape) > _SIG_DIMS:  # fold the rest into the last slot
        dims[-1] = hash(tuple(shape[_SIG_DIMS - 1:])) & 0x7FFFFFFFFFFFFFFF
    sig[5:5 + len(dims)] = dims
    return sig


def _read_signature(sig) -> str:
    kind = KINDS[sig[0]] if 0 <= sig[0] < len(KINDS) else "?"
    dtype = _DTYPES[sig[3]] if 0 <= sig[3] < len(_DTYPES) else "?"
    shape = ",".join(str(d) for d in sig[5:5 + min(int(sig[4]), _SIG_DIMS)])
    text = f"{kind} {dtype}[{shape}]"
    if sig[1] >= 0:
        text += f" op={REDUCE_OPS[sig[1]]}"
    if sig[2] >= 0:
        text += f" root={sig[2]}"
    return text


def _check_agreement(st: _State, kind, shape, dtype, spec) -> None:
    check_same(_signature(kind, shape, dtype, spec), "a collective", spec.timeout, _read_signature)


def check_same(mine: np.ndarray, what: str, timeout: float | None = None, describe=str) -> None:
    """Raise CollectiveMismatchError on every rank unless every rank passes equal int64 arrays
    (one small all-gather); `describe` renders one rank's array for the message."""
    st = _require()
    mine = np.ascontiguousarray(mine, np.int64).reshape(-1)
    every = np.empty((st.size, mine.size), np.int64)
    _wait_mpi(st, st.comm.Iallgather(mine, every), f"the check of {what}",
              st.timeout if timeout is None else timeout)
    if (every == every[0]).all():
        return
    lines = "\n".join(f"  rank {r}: {describe(s)}" for r, s in enumerate(every))
    raise CollectiveMismatchError(f"ranks disagree on {what} (rank {st.rank} raising):\n{lines}")


# ---------------------------------------------------------------------------
# NCCL (CUDA buffers): checked on paper only where no GPU is at hand
# ---------------------------------------------------------------------------

def _nccl_type(nccl, dtype, reducing: bool):
    """(NCCL datatype, elements per item) for `dtype`; data movement goes as bytes."""
    table = {"int8": nccl.NCCL_INT8, "uint8": nccl.NCCL_UINT8, "int32": nccl.NCCL_INT32,
             "uint32": nccl.NCCL_UINT32, "int64": nccl.NCCL_INT64, "uint64": nccl.NCCL_UINT64,
             "float16": nccl.NCCL_FLOAT16, "float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64}
    name = np.dtype(dtype).name
    if not reducing:
        return nccl.NCCL_UINT8, np.dtype(dtype).itemsize
    if name in table:
        return table[name], 1
    if name in ("complex64", "complex128"):  # a complex sum is a sum of its parts
        return table["float32" if name == "complex64" else "float64"], 2
    raise TypeError(f"NCCL cannot reduce {name} (it has no {name} type); cast first")


def _start_nccl(st: _State, kind: str, x, spec: Spec, out=None) -> Pending:
    import cupy
    from cupy.cuda import nccl
    if st.nccl is None:
        raise DistributedError(f"a CUDA tensor needs init(device='cuda') (this rank runs on {st.device})")
    with cupy.cuda.Device(x.device.id):
        x = cupy.ascontiguousarray(x)
        if out is None:
            out = cupy.empty(out_shape(kind, x.shape, st.size), x.dtype)
        reducing = spec.op is not None
        if reducing and spec.op in ("max", "min") and x.dtype.kind == "c":
            raise TypeError("max/min are not defined for complex numbers")
        dtype, per = _nccl_type(nccl, x.dtype, reducing)
        op = {"sum": nccl.NCCL_SUM, "mean": nccl.NCCL_SUM, "max": nccl.NCCL_MAX,
              "min": nccl.NCCL_MIN, None: None}[spec.op]
        if st.nccl_stream is None:
            st.nccl_stream = cupy.cuda.Stream(non_blocking=True)
        stream = st.nccl_stream
        stream.wait_event(cupy.cuda.get_current_stream().record())  # the input is computed
        s, n, c = stream.ptr, x.size * per, st.nccl
        if kind == "all_reduce":
            c.allReduce(x.data.ptr, out.data.ptr, n, dtype, op, s)
        elif kind == "broadcast":
            c.broadcast(x.data.ptr, out.data.ptr, n, dtype, spec.root, s)
        elif kind == "reduce":
            c.reduce(x.data.ptr, out.data.ptr, n, dtype, op, spec.root, s)
            if st.rank != spec.root:
                with stream:
                    out.fill(0)  # queued after the reduce on the same stream
        elif kind == "all_gather":
            c.allGather(x.data.ptr, out.data.ptr, n, dtype, s)
        else:
            c.reduceScatter(x.data.ptr, out.data.ptr, out.size * per, dtype, op, s)
        event = stream.record()
    finish = _mean(st.size) if spec.op == "mean" else None
    return Pending(st, None, event, out, x, _describe(kind, x, spec), spec.timeout, finish)


def _wait_cuda(st: _State, event, what: str, timeout: float) -> None:
    """Host-side wait with a deadline (a hung NCCL kernel never completes), then order the current
    stream after the collective."""
    import cupy
    deadline = time.monotonic() + timeout
    while not event.done:
        if time.monotonic() > deadline:
            st.nccl.abort()  # frees the GPU from the stuck kernel
            _timed_out(st, what, timeout)
        time.sleep(20e-6)
    cupy.cuda.get_current_stream().wait_event(event)
