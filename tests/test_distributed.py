"""fastad.distributed: collectives, gradients, DataParallel and fault handling, on 2 ranks over loopback.

Each test launches `mpiexec -n 2` on a script in tests/distributed/ (the checks are batched into few
launches: each costs 1-2 s of imports). Skipped, with the reason, when mpi4py or mpiexec is missing:
install them with `pip install -e '.[test,distributed]'`.
"""
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
import time

import pytest

HERE = pathlib.Path(__file__).parent
ROOT = HERE.parent


def _mpiexec():
    beside = pathlib.Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


MPIEXEC = _mpiexec()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None,
                       reason="mpi4py is not installed (pip install -e '.[test,distributed]')"),
    pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec found (pip install mpich, or a system MPI)"),
]


def _env():
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("FASTAD_DIST_DEBUG", None)
    return env


def _launch(script, *args, n=2, timeout=120):
    """Run tests/distributed/<script> on n ranks; (return code, combined output, seconds)."""
    cmd = [MPIEXEC, "-n", str(n), sys.executable, str(HERE / "distributed" / script), *args]
    t0 = time.monotonic()
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return r.returncode, r.stdout + r.stderr, time.monotonic() - t0


def test_every_collective_every_dtype_and_gradients_and_debug_mismatch():
    rc, out, _ = _launch("collectives.py")
    assert rc == 0, out[-6000:]
    assert "rank 0: collectives ok" in out and "rank 1: collectives ok" in out


def test_the_nccl_path_against_host_stand_ins_for_cupy_and_nccl():
    rc, out, _ = _launch("nccl_standin.py")
    assert rc == 0, out[-6000:]
    assert "rank 0: nccl stand-in ok" in out and "rank 1: nccl stand-in ok" in out


def test_data_parallel_matches_one_process_and_stays_bit_identical():
    rc, out, _ = _launch("data_parallel.py")
    assert rc == 0, out[-6000:]
    assert "rank 0: data parallel ok" in out and "rank 1: data parallel ok" in out
    assert "rank 0: data parallel mismatch ok" in out and "rank 1: data parallel mismatch ok" in out


def test_a_raising_rank_ends_the_job_with_its_error_shown():
    rc, out, seconds = _launch("faults.py", "raise-one", timeout=60)
    assert rc != 0 and "unreachable" not in out, out
    assert "[rank 1] ValueError: boom on rank 1" in out, out
    assert seconds < 30  # rank 0 waited with a 120 s timeout: the abort ended it


def test_every_failing_rank_shows_its_error():
    rc, out, _ = _launch("faults.py", "raise-both", timeout=60)
    assert rc != 0, out
    assert "[rank 0] RuntimeError: failure number 0" in out, out
    assert "[rank 1] RuntimeError: failure number 1" in out, out


def test_a_collective_times_out_and_ends_the_job():
    rc, out, seconds = _launch("faults.py", "timeout", timeout=60)
    assert rc != 0 and "unreachable" not in out, out
    assert "CollectiveTimeoutError" in out and "did not complete within 1 s" in out, out
    assert seconds < 30  # rank 1 sleeps for 120 s: the abort ended it


def test_ranks_that_init_differently_all_get_the_same_error():
    rc, out, _ = _launch("faults.py", "init", timeout=60)
    assert rc == 0, out
    assert "rank 0: init mismatch ok" in out and "rank 1: init mismatch ok" in out, out


def test_no_mpi_import_until_init_and_a_one_rank_job_without_mpiexec():
    r = subprocess.run([sys.executable, str(HERE / "distributed" / "single_process.py")], env=_env(),
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0 and "single process ok" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]



def test_result_buffers_are_recycled_only_once_nothing_refers_to_them():
    import numpy as np

    from fastad.distributed.comm import _Recycler

    def addr(x):
        return x.__array_interface__["data"][0]

    r = _Recycler(slots=3, min_bytes=16)
    a = r.empty((4, 4), np.float32)
    first = addr(a)
    b = r.empty((4, 4), np.float32)
    assert not np.shares_memory(a, b)
    view = a[1:]
    del a
    c = r.empty((2, 8), np.float32)
    assert addr(c) != first  # a view still holds the first buffer
    del view, c
    c = r.empty((2, 8), np.float32)
    assert addr(c) == first  # idle now: reused, under another shape
    d = r.empty((16,), np.float32)
    assert not np.shares_memory(d, b) and not np.shares_memory(d, c)
    assert r.empty((2,), np.float32).base is None  # below min_bytes: a plain allocation


def test_the_demo_trains_data_parallel_like_one_process():
    import re
    if importlib.util.find_spec("fastad.demo") is None:
        pytest.skip("fastad.demo is not in this checkout")
    cmd = [MPIEXEC, "-n", "2", sys.executable, "-m", "fastad.distributed.demo", "--epochs", "2", "--hidden", "32",
           "--verify", "--no-progress", "--no-compile", "--device", "cpu"]
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300, cwd=ROOT)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    assert out.count("test accuracy:") == 1, out  # only rank 0 prints
    acc = float(re.search(r"test accuracy: ([\d.]+)%", out).group(1))
    diff = float(re.search(r"largest parameter difference .*: (\S+)", out).group(1))
    assert acc > 50 and diff < 1e-4, out


def test_a_compiled_step_replays_its_collectives_and_second_order_goes_through_them():
    rc, out, _ = _launch("compiled.py")
    assert rc == 0, out[-6000:]
    assert "rank 0: compiled ok" in out and "rank 1: compiled ok" in out
