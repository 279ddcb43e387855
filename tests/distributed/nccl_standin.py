"""Run under `mpiexec -n 2`: the NCCL path of fastad.distributed.comm, with host stand-ins for CuPy and NCCL.

No GPU is needed. A stand-in `cupy` module (host arrays that expose `.data.ptr`
and `.device.id`, streams and events that are always done) and a stand-in NCCL
communicator that performs each NCCL call with MPI on the memory behind the
pointers it is given, with NCCL's argument conventions (counts in elements of
`datatype`, reduceScatter's recvcount, root-only receive buffers). What runs
for real is `comm._start_nccl`: dtype mapping, element counts, output shapes,
roots, the mean, the stream hand-offs. Results must equal the MPI path's.
Prints "nccl stand-in ok" on each rank.
"""
import ctypes
import sys
import types

import numpy as np

# ---- stand-in CuPy ---------------------------------------------------------------


class _Ptr:
    def __init__(self, ptr):
        self.ptr = ptr


class FakeArray:
    """A host array dressed as a CuPy array (not an ndarray, so comm takes its CUDA path)."""

    def __init__(self, a):
        self.a = np.ascontiguousarray(a)

    shape = property(lambda self: self.a.shape)
    dtype = property(lambda self: self.a.dtype)
    size = property(lambda self: self.a.size)
    data = property(lambda self: _Ptr(self.a.ctypes.data))
    device = property(lambda self: types.SimpleNamespace(id=0))

    def fill(self, v):
        self.a.fill(v)

    def __itruediv__(self, v):
        self.a /= v
        return self


class _Event:
    done = True


class _Stream:
    ptr = 0
    waited = 0

    def __init__(self, non_blocking=False):
        pass

    def record(self):
        return _Event()

    def wait_event(self, event):
        assert isinstance(event, _Event)
        _Stream.waited += 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _Device:
    def __init__(self, index):
        assert index == 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_current = _Stream()
cupy = types.ModuleType("cupy")
cupy.ascontiguousarray = lambda x: x
cupy.empty = lambda shape, dtype: FakeArray(np.empty(shape, dtype))
cupy.cuda = types.ModuleType("cupy.cuda")
cupy.cuda.Device, cupy.cuda.Stream = _Device, _Stream
cupy.cuda.get_current_stream = lambda: _current
nccl = types.ModuleType("cupy.cuda.nccl")
_NCCL_DTYPES = [np.int8, np.uint8, np.int32, np.uint32, np.int64, np.uint64, np.float16, np.float32, np.float64]
for _i, _name in enumerate(["INT8", "UINT8", "INT32", "UINT32", "INT64", "UINT64", "FLOAT16", "FLOAT32", "FLOAT64"]):
    setattr(nccl, "NCCL_" + _name, _i)
for _i, _name in enumerate(["SUM", "PROD", "MAX", "MIN", "AVG"]):
    setattr(nccl, "NCCL_" + _name, _i)
cupy.cuda.nccl = nccl
sys.modules.update({"cupy": cupy, "cupy.cuda": cupy.cuda, "cupy.cuda.nccl": nccl})

import fastad.distributed as dist  # noqa: E402
from fastad.distributed import comm  # noqa: E402
from mpi4py import MPI  # noqa: E402


def _host(ptr, count, datatype):
    dtype = np.dtype(_NCCL_DTYPES[datatype])
    raw = (ctypes.c_char * (count * dtype.itemsize)).from_address(ptr)
    return np.frombuffer(raw, dtype)


class FakeNccl:
    """NCCL's communicator calls, carried out by MPI on the host memory behind the pointers."""

    def __init__(self, mpi):
        self.mpi, self.calls = mpi, []
        self.ops = [MPI.SUM, MPI.PROD, MPI.MAX, MPI.MIN]

    def allReduce(self, send, recv, count, dt, op, stream):
        self.calls.append("allReduce")
        self.mpi.Allreduce(_host(send, count, dt), _host(recv, count, dt), self.ops[op])

    def broadcast(self, send, recv, count, dt, root, stream):
        self.calls.append("broadcast")
        r = _host(recv, count, dt)
        if self.mpi.rank == root:
            r[...] = _host(send, count, dt)
        self.mpi.Bcast(r, root=root)

    def reduce(self, send, recv, count, dt, op, root, stream):
        self.calls.append("reduce")
        out = _host(recv, count, dt) if self.mpi.rank == root else None
        self.mpi.Reduce(_host(send, count, dt), out, self.ops[op], root=root)

    def allGather(self, send, recv, count, dt, stream):
        self.calls.append("allGather")
        self.mpi.Allgather(_host(send, count, dt), _host(recv, count * self.mpi.size, dt))

    def reduceScatter(self, send, recv, recvcount, dt, op, stream):
        self.calls.append("reduceScatter")
        self.mpi.Reduce_scatter_block(_host(send, recvcount * self.mpi.size, dt), _host(recv, recvcount, dt),
                                      self.ops[op])


dist.init("cpu", timeout=60)
st = comm._state
st.nccl = FakeNccl(MPI.COMM_WORLD)
R = dist.rank()
CASES = [("all_reduce", comm.Spec(op=op)) for op in ("sum", "mean", "max", "min")] + [
    ("broadcast", comm.Spec(root=1)), ("reduce", comm.Spec(op="sum", root=0)), ("all_gather", comm.Spec()),
    ("reduce_scatter", comm.Spec(op="sum")), ("reduce_scatter", comm.Spec(op="mean"))]
checked = 0
for name in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint32", "uint64", "float32", "float64",
             "complex64", "complex128"):
    a = np.arange(24).reshape(4, 6) * (R + 2) % 11
    x = (a % 2 == 0) if name == "bool" else (a + 1j * R if name.startswith("complex") else a).astype(name)
    for kind, spec in CASES:
        kinds = {"sum": "iufc", "mean": "fc", "max": "iuf", "min": "iuf", None: "biufc"}[spec.op]
        if x.dtype.kind not in kinds:
            continue
        want = comm.execute(kind, x, spec)  # the MPI path
        if spec.op is not None and name in ("int16",):
            try:
                comm.execute(kind, FakeArray(x), spec)
            except TypeError as e:
                assert "NCCL cannot reduce int16" in str(e)
                continue
            raise AssertionError("int16 reductions must be refused on NCCL")
        got = comm.execute(kind, FakeArray(x), spec)
        assert isinstance(got, FakeArray) and got.shape == want.shape and got.dtype == want.dtype, (kind, name)
        assert np.array_equal(got.a, want), (kind, spec, name, got.a, want)
        checked += 1
assert checked >= 78 and _Stream.waited >= 2 * checked, (checked, _Stream.waited)
assert set(st.nccl.calls) == {"allReduce", "broadcast", "reduce", "allGather", "reduceScatter"}
print(f"rank {R}: nccl stand-in ok ({checked} cases)", flush=True)
