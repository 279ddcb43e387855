"""Run under `mpiexec -n 2` with one argument; every mode must end the whole job quickly with an error.

  raise-one   rank 1 raises while rank 0 waits in a collective (with a long timeout)
  raise-both  both ranks raise different errors: both tracebacks must be printed
  timeout     rank 1 never joins; rank 0's all_reduce times out after 1 s
  init        (ends cleanly) ranks ask for different debug modes: every rank gets the same error
"""
import sys
import time

import fastad as fa
import fastad.distributed as dist

mode = sys.argv[1]
if mode == "init":
    from mpi4py import MPI
    world_rank = MPI.COMM_WORLD.Get_rank()
    try:
        dist.init("cpu", timeout=30, debug=world_rank == 1)
    except dist.DistributedError as e:
        assert "ranks called init() differently" in str(e) and "rank 1: device cpu, debug True" in str(e), str(e)
        try:
            dist.all_reduce(fa.ones(2))
        except dist.NotInitializedError:
            print(f"rank {world_rank}: init mismatch ok", flush=True)
            sys.exit(0)
    raise AssertionError("no error")
dist.init("cpu", timeout=120)
R = dist.rank()
if mode == "raise-one":
    if R == 1:
        raise ValueError("boom on rank 1")
    dist.all_reduce(fa.ones(3))
elif mode == "raise-both":
    raise RuntimeError(f"failure number {R}")
elif mode == "timeout":
    if R == 1:
        time.sleep(120)
    dist.all_reduce(fa.ones(3), timeout=1.0)
print(f"rank {R}: unreachable", flush=True)
