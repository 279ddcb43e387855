"""Run as a plain process: fastad imports nothing of MPI or NCCL until fastad.distributed.init();
then a one-rank job works without mpiexec. Prints "single process ok".
"""
import sys

import numpy as np

import fastad as fa

x = fa.tensor(np.arange(4.0), requires_grad=True)
(fa.sin(x) * 2).sum().backward()
import fastad.distributed as dist  # noqa: E402

loaded = sorted(m for m in sys.modules if m.startswith(("mpi4py", "cupy.cuda.nccl", "cupy_backends.cuda.libs.nccl")))
assert not loaded, f"imported before init(): {loaded}"
try:
    dist.all_reduce(x)
except dist.NotInitializedError as e:
    assert "init()" in str(e)
else:
    raise AssertionError("a collective before init() must raise")
dev = dist.init("cpu")
assert "mpi4py" in sys.modules and str(dev) == "cpu"
assert (dist.rank(), dist.world_size(), dist.local_rank()) == (0, 1, 0)
assert dist.init() is dev  # a second init returns the same device
y = dist.all_reduce(x, "mean")
assert np.array_equal(y.numpy(), x.numpy()) and y._node.buffer is not x._node.buffer
assert dist.all_gather(x).shape == (4,)
model = dist.DataParallel([x])
(y * y).sum().backward()
print("single process ok", flush=True)
