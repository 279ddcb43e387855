"""bench: measure fastad.distributed on this machine. `python -m fastad.distributed.bench`.

Start at `main`. Run plainly, it is the launcher: it starts `mpiexec` for each
part and prints one table.

* `allreduce` (2 ranks): `fastad.distributed.all_reduce` on a realized float32
  tensor against raw mpi4py `Allreduce` on the same numpy buffer (and a
  reused output array), for each size; median of the repeats, algorithm
  bandwidth = bytes of one buffer / time.
* `step`: the DataParallel MLP step (784-256-10, tanh, global batch 256,
  float32, SGD from fastad.optim): 1 rank with 1 thread, 2 ranks with 1
  thread each (batch 128 per rank), and one process with 2 threads (no MPI).
  Strong-scaling efficiency = t(1 rank) / (2 * t(2 ranks)).

Each part can be run under mpiexec by hand: `mpiexec -n 2 python -m
fastad.distributed.bench --part allreduce`. Rank 0 prints one JSON line per
result, prefixed with `RESULT `.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

_SIZES = {"k": 1_000, "m": 1_000_000}


def _parse_size(text: str) -> int:
    t = text.strip().lower()
    return int(float(t[:-1]) * _SIZES[t[-1]]) if t[-1] in _SIZES else int(t)


def _emit(**row) -> None:
    print("RESULT " + json.dumps(row), flush=True)


def _allreduce(args) -> None:
    import fastad as fa
    import fastad.distributed as dist
    from mpi4py import MPI
    dist.init("cpu")
    comm = MPI.COMM_WORLD
    for n in [_parse_size(s) for s in args.sizes.split(",")]:
        reps = max(3, min(args.repeats, int(2e9 // (4 * n))))
        x = np.random.default_rng(dist.rank()).standard_normal(n).astype(np.float32)
        t = fa.asarray(x)
        out = np.empty_like(x)
        raw, ours = [], []
        for _ in range(reps):  # interleaved, so both see the same machine load
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(x, out, MPI.SUM)
            raw.append(time.perf_counter() - t0)
            comm.Barrier()
            t0 = time.perf_counter()
            y = dist.all_reduce(t)
            ours.append(time.perf_counter() - t0)
            del y
        check = dist.all_reduce(t).numpy()
        assert np.array_equal(check, out), "fastad and mpi4py disagree"
        if dist.rank() == 0:
            r, o = statistics.median(raw), statistics.median(ours)
            _emit(part="allreduce", elements=n, repeats=reps, mpi4py_s=r, fastad_s=o,
                  mpi4py_gbs=4 * n / r / 1e9, fastad_gbs=4 * n / o / 1e9,
                  mpi4py_best_s=min(raw), fastad_best_s=min(ours))


def _mlp_step(args) -> None:
    import fastad as fa
    import fastad.optim
    use_mpi = args.ranks > 0
    if use_mpi:
        import fastad.distributed as dist
        dist.init("cpu")
        rank, size = dist.rank(), dist.world_size()
    else:
        rank, size = 0, 1
    rng = np.random.default_rng(0)
    batch = 256 // size
    X = rng.standard_normal((256, 784)).astype(np.float32)[rank * batch:(rank + 1) * batch]
    Y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 256)][rank * batch:(rank + 1) * batch]
    x, y = fa.asarray(X), fa.asarray(Y)
    w1 = fa.tensor(rng.standard_normal((784, 256)).astype(np.float32) * 0.05, requires_grad=True)
    b1 = fa.zeros(256, requires_grad=True)
    w2 = fa.tensor(rng.standard_normal((256, 10)).astype(np.float32) * 0.05, requires_grad=True)
    b2 = fa.zeros(10, requires_grad=True)
    params = [w1, b1, w2, b2]
    opt = fastad.optim.SGD(params, lr=0.01)
    model = dist.DataParallel(params, opt) if use_mpi else None

    def step():
        d = fa.tanh(x @ w1 + b1) @ w2 + b2 - y
        loss = (d * d).mean()
        if model is not None:
            model.backward(loss)
            model.step()
        else:
            loss.backward()
            opt.step()
        opt.zero_grad()
        return loss

    for _ in range(args.warmup):
        step()
    try:
        from fastad.runtime.cpu import wait_for_compiles
        wait_for_compiles()
        step()
    except ImportError:
        pass
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step().numpy()
        times.append(time.perf_counter() - t0)
    if rank == 0:
        _emit(part="step", ranks=args.ranks, threads=int(os.environ.get("FASTAD_NUM_THREADS", "0") or 0),
              step_s=statistics.median(times), steps=args.steps)


def _mpiexec() -> str:
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if found is None:
        raise SystemExit("no mpiexec found: pip install 'fastad[distributed]'")
    return found


def _run(cmd, env_extra) -> list:
    env = dict(os.environ, **env_extra)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    return [json.loads(line[7:]) for line in r.stdout.splitlines() if line.startswith("RESULT ")]


def _one_thread(n) -> dict:
    n = str(n)
    return {"FASTAD_NUM_THREADS": n, "NUMBA_NUM_THREADS": n, "OMP_NUM_THREADS": n,
            "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n}


def _launch(args) -> int:
    me = [sys.executable, "-m", "fastad.distributed.bench"]
    common = ["--steps", str(args.steps), "--warmup", str(args.warmup)]
    rows = []
    if "allreduce" in args.only:
        rows += _run([_mpiexec(), "-n", "2"] + me + ["--part", "allreduce", "--sizes", args.sizes,
                                                      "--repeats", str(args.repeats)], _one_thread(1))
    if "step" in args.only:
        rows += _run([_mpiexec(), "-n", "1"] + me + ["--part", "step", "--ranks", "1"] + common, _one_thread(1))
        rows += _run([_mpiexec(), "-n", "2"] + me + ["--part", "step", "--ranks", "2"] + common, _one_thread(1))
        rows += _run(me + ["--part", "step", "--ranks", "0"] + common, _one_thread(2))
    _report(rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"results": rows}, indent=1))
    return 0


def _report(rows) -> None:
    ar = [r for r in rows if r["part"] == "allreduce"]
    if ar:
        print("all_reduce, 2 ranks over loopback (float32; median and best of the interleaved repeats; "
              "algorithm bandwidth = one buffer / median time; ratio = fastad / mpi4py bandwidth)")
        print(f"{'elements':>12} {'mpi4py':>10} {'fastad':>10} {'mpi4py GB/s':>12} {'fastad GB/s':>12} "
              f"{'ratio':>6} {'best mpi4py':>12} {'best fastad':>12} {'ratio':>6}")
        for r in ar:
            print(f"{r['elements']:>12,d} {r['mpi4py_s'] * 1e3:>8.2f}ms {r['fastad_s'] * 1e3:>8.2f}ms "
                  f"{r['mpi4py_gbs']:>12.2f} {r['fastad_gbs']:>12.2f} {r['mpi4py_s'] / r['fastad_s']:>6.2f} "
                  f"{r['mpi4py_best_s'] * 1e3:>10.2f}ms {r['fastad_best_s'] * 1e3:>10.2f}ms "
                  f"{r['mpi4py_best_s'] / r['fastad_best_s']:>6.2f}")
    steps = {(r["ranks"], r["threads"]): r["step_s"] for r in rows if r["part"] == "step"}
    if steps:
        print("DataParallel MLP step (784-256-10, tanh, global batch 256, float32, SGD; median)")
        one, two, threads = steps.get((1, 1)), steps.get((2, 1)), steps.get((0, 2))
        for label, v in (("1 rank, 1 thread", one), ("2 ranks, 1 thread each", two),
                         ("1 process, 2 threads", threads)):
            if v is not None:
                print(f"  {label:<24} {v * 1e3:8.2f} ms")
        if one and two:
            print(f"  scaling efficiency, 2 ranks: {one / (2 * two):.2f}  "
                  f"(2 ranks vs 2 threads: {threads / two if threads else float('nan'):.2f}x)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fastad.distributed.bench",
                                description="Measure fastad.distributed: all_reduce against raw mpi4py, and "
                                            "the DataParallel MLP step on 1 and 2 ranks.")
    p.add_argument("--part", choices=["allreduce", "step"], help="run one part (under mpiexec); default: launch all")
    p.add_argument("--only", default="allreduce,step", help="parts to launch (comma-separated)")
    p.add_argument("--sizes", default="1M,10M,100M", help="all_reduce sizes in float32 elements")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--ranks", type=int, default=2, help=argparse.SUPPRESS)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    if args.part == "allreduce":
        _allreduce(args)
    elif args.part == "step":
        _mlp_step(args)
    else:
        return _launch(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
