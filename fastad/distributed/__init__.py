"""fastad.distributed: data-parallel training and collectives over MPI (CPU) and NCCL (CUDA).

Launch with `mpiexec -n N python script.py` (or Slurm's `srun`), then::

    import fastad.distributed as dist
    dev = dist.init()                  # this rank's device; NCCL on CUDA, MPI on the CPU
    y = dist.all_reduce(x, "mean")     # differentiable, like every collective here
    model = dist.DataParallel(model)   # parameters broadcast from rank 0
    model.backward(loss)               # gradients averaged in buckets, overlapping backward

Start reading at `comm` (process group, MPI/NCCL calls, timeouts, aborts),
then `collectives` (the op-table entries and their derivative rules) and
`data_parallel`. docs/DISTRIBUTED.md covers launching, what overlaps, and
measured figures. Importing this package imports neither mpi4py nor NCCL;
`init()` does.
"""
from __future__ import annotations

from .comm import (init, is_initialized, rank, world_size, local_rank, device, barrier, DistributedError,
                   NotInitializedError, CollectiveTimeoutError, CollectiveMismatchError)
from .collectives import all_reduce, broadcast, reduce, all_gather, reduce_scatter
from .data_parallel import DataParallel

__all__ = ["init", "is_initialized", "rank", "world_size", "local_rank", "device", "barrier",
           "all_reduce", "broadcast", "reduce", "all_gather", "reduce_scatter", "DataParallel",
           "DistributedError", "NotInitializedError", "CollectiveTimeoutError", "CollectiveMismatchError"]
