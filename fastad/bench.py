"""bench: `python -m fastad bench`, which times fastad against numpy, Numba, PyTorch, JAX and Dr.Jit.

Start at `run` (the whole command) and `run_group` (the timed rows of one workload and size). The
workloads themselves are in `fastad._bench_workloads` (re-exported as
`benchmarks/workloads.py` in the repository); this module only schedules,
times and checks them, and `fastad._bench_report` prints and saves the
results (tables, JSON metadata, plot). Every optional library (torch, jax,
drjit, cupy, matplotlib) is imported lazily by the case that needs it, so
importing this module costs nothing.

How a row is timed (`run_group`): `make()` builds inputs; the first call is
timed alone (`first_s`: compilation included); `warmup - 1` more calls follow
untimed (fastad needs 3 so its tiered CPU runtime reaches compiled kernels).
Then the implementations of one workload and size are timed round-robin, one
sample each per round, until each has `min_repeats` and has spent its time
budget (or reached `max_repeats`); best and median are reported. A sample is
`reps` consecutive calls, as many as fill about `SAMPLE_S` (from the fastest
of up to 3 timed calls after the warm-up; 1 for calls longer than that): a
single call of a few microseconds would measure the timer and caches left cold
by the other rows, not the call a loop repeats. The output of the last timed
call is checked against a float64 reference; a row that fails the check is
marked MISMATCH and the command exits 1. For fastad rows two
`fastad.profile()` records are kept: the warm-up (compiles, cache hits) and one
extra steady-state call (kernels launched per iteration, by tier).

Ratios are `time(other) / time(fastad)` for the same workload and size:
"numpy/fastad 5.30x" means numpy took 5.3 times as long as fastad. Floor rows
(copy kernels, interpreter start-up) are shown the other way round,
"fastad/floor 2.1x": how far fastad is above what the hardware allows.
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import statistics
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

# fmt_time, format_tables, FLOOR_BYTES, WORKLOAD_ORDER: still importable from here, as before the split
from ._bench_report import (FLOOR_BYTES, WORKLOAD_ORDER, Progress, _load, add_ratios, collect_meta,  # noqa: F401
                            default_json_path, fmt_size, fmt_time, format_tables, write_png)

__all__ = ["main", "run", "add_arguments", "run_case", "run_group", "format_tables"]


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------

SAMPLE_S = 1e-3   # a timed sample repeats a short call until it lasts about this long (`_Timed.reps`)


class Budget:
    """How long to time each row."""

    def __init__(self, quick: bool, budget_s: float | None):
        self.quick = quick
        self.budget_s = budget_s if budget_s is not None else (0.2 if quick else 1.5)
        self.min_repeats = 1 if quick else 3
        # up to 200 samples within the budget: on a shared machine the best of 50 often misses every
        # quiet moment for an implementation that needs both cores at once
        self.max_repeats = 2 if quick else 200

    def for_case(self, case) -> tuple[int, int, float]:
        if case.subprocess:
            if self.quick:
                return 1, 1, 0.0
            return (1 if case.slow else 2), 5, max(self.budget_s * 2, 3.0)
        return self.min_repeats, self.max_repeats, self.budget_s


def _profile():
    import fastad
    return fastad.profile()


def _profile_summary(p, inner: int = 1) -> dict:
    launches = list(getattr(p, "launches", []))
    tiers = Counter(f"{getattr(ln, 'kind', '?')}:{getattr(ln, 'tier', '') or '-'}" for ln in launches)
    return {"launched": p.launched, "launched_per_iter": p.launched / inner, "compiled": p.compiled,
            "cache_hits": p.cache_hits, "compile_seconds": round(p.compile_seconds, 4),
            "per_iter_by_kind_tier": {k: v / inner for k, v in tiers.items()}}


class _Timed:
    """One case being timed: its row, its runner and the times so far."""

    def __init__(self, case, budget: Budget):
        self.case = case
        self.row = {"workload": case.workload, "size": case.size, "impl": case.impl, "role": case.role,
                    "group": case.group, "status": "ok", "detail": ""}
        self.min_rep, self.max_rep, self.budget_s = budget.for_case(case)
        self.runner = None
        self.times: list = []
        self.spent = 0.0
        self.out = None
        self.prof_warm = None
        self.reps = 1   # calls per timed sample (set after the warm-up)

    @property
    def active(self) -> bool:
        return self.row["status"] == "ok" and self.runner is not None and len(self.times) < self.max_rep \
            and (len(self.times) < self.min_rep or self.spent < self.budget_s)

    def fail(self, e: BaseException) -> None:
        from ._bench_workloads import Skip
        if isinstance(e, Skip):
            self.row.update(status="skipped", detail=str(e))
            return
        tb = traceback.extract_tb(e.__traceback__)
        where = f" ({Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
        msg = str(e).strip().splitlines()
        self.row.update(status="error", detail=f"{type(e).__name__}: {msg[0][:300] if msg else ''}{where}",
                        traceback="".join(traceback.format_exception(e))[-4000:])

    def prepare(self) -> None:
        """make(), then the first call (timed alone: first_s) and the other warm-up calls."""
        case = self.case
        missing = [m for m in case.requires if importlib.util.find_spec(m) is None]
        if missing:
            self.row.update(status="skipped", detail="not installed: " + ", ".join(missing))
            return
        if case.role == "fastad" and not case.subprocess:
            self.prof_warm = _profile()
        try:
            if self.prof_warm is not None:
                self.prof_warm.__enter__()
            try:
                self.runner = r = case.make()
                first_s = r.first_s
                if first_s is None and case.warmup > 0:
                    t0 = time.perf_counter()
                    r.step()
                    first_s = (time.perf_counter() - t0) / r.inner
                for _ in range(case.warmup - 1):
                    r.step()
                if case.role == "fastad" and case.warmup > 0:
                    # CPU kernels compile in the background: wait, then let the compiled versions take over
                    from .runtime.cpu import wait_for_compiles
                    wait_for_compiles()
                    r.step()
                self.row["first_s"] = first_s
                if not case.subprocess:
                    once = []
                    for _ in range(3):   # the fastest of 3, so one preempted call does not decide
                        t0 = time.perf_counter()
                        r.step()
                        once.append(time.perf_counter() - t0)
                        if once[-1] > SAMPLE_S:
                            break
                    self.reps = max(1, min(1000, int(SAMPLE_S / max(min(once), 1e-9))))
            finally:
                if self.prof_warm is not None:
                    self.prof_warm.__exit__(None, None, None)
        except Exception as e:  # a failing implementation is reported, the run goes on
            self.fail(e)

    def time_once(self) -> None:
        try:
            step = self.runner.step
            t0 = time.perf_counter()
            for _ in range(self.reps):
                self.out = step()
            dt = time.perf_counter() - t0
            if self.case.subprocess and isinstance(self.out, dict) and "wall_s" in self.out:
                dt = self.out["wall_s"]   # the process alone, not the harness's set-up and clean-up around it
        except Exception as e:
            self.fail(e)
            return
        self.spent += dt
        self.times.append(dt / (self.runner.inner * self.reps))

    def finish(self) -> dict:
        """Statistics, the fastad steady-state profile and the correctness check; releases the runner."""
        row, r = self.row, self.runner
        try:
            if row["status"] == "ok" and self.times:
                row.update(best_s=min(self.times), median_s=statistics.median(self.times),
                           repeats=len(self.times), inner=r.inner, reps=self.reps,
                           times=[round(t, 9) for t in self.times[:50]])
                if r.extra is not None:
                    row["extra"] = r.extra(self.out)
                if self.case.role == "fastad" and not self.case.subprocess:
                    with _profile() as prof_steady:
                        r.step()
                    row["profile"] = {"warmup": _profile_summary(self.prof_warm),
                                      "steady": _profile_summary(prof_steady, r.inner)}
                if r.check is not None:
                    ok, detail = r.check(self.out)
                    row["detail"] = detail
                    if not ok:
                        row["status"] = "mismatch"
        except Exception as e:
            self.fail(e)
        finally:
            if r is not None and r.close is not None:
                try:
                    r.close()
                except Exception:  # noqa: BLE001 - cleanup only
                    pass
            self.runner = None
        return row


def run_group(cases: list, budget: Budget, progress=None, done: int = 0) -> list:
    """Time cases that are compared with each other (one workload and size), never raising.

    All are made and warmed up first; then the timed calls go round-robin, one
    call per implementation per round, until each has its repeats and budget.
    A burst of load from another process then hits every implementation alike
    instead of one row, which keeps the ratios honest on a shared machine.
    Each round starts one implementation further on, so every implementation
    follows every other equally often: threads that one library leaves spinning
    after its call (OpenMP's wait policy) slow whichever call comes next, and a
    fixed order would charge that to the same row every round.
    """
    states = []
    for i, case in enumerate(cases):
        if progress is not None:
            progress.show(done + i, f"{case.workload} {fmt_size(case.workload, case.size)} {case.impl}")
        st = _Timed(case, budget)
        st.prepare()
        states.append(st)
    if progress is not None and cases:
        progress.show(done + len(cases) - 1, f"{cases[0].workload} {fmt_size(cases[0].workload, cases[0].size)}"
                                             " timing")
    gc.collect()
    active = [st for st in states if st.active]
    start = 0
    while active:
        start %= len(active)
        for st in active[start:] + active[:start]:
            st.time_once()
        start += 1
        active = [st for st in active if st.active]
    return [st.finish() for st in states]


def run_case(case, budget: Budget) -> dict:
    """Make, warm up, time and check one case on its own; never raises."""
    return run_group([case], budget)[0]


# ---------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------

def parse_sizes(text: str) -> tuple:
    """'1000,1M,1e7,100k' -> (1000, 1000000, 10000000, 100000)."""
    out = []
    for tok in text.replace(" ", ",").split(","):
        if not tok:
            continue
        t = tok.strip().lower().replace("_", "")
        mult = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}.get(t[-1], 1)
        if mult != 1:
            t = t[:-1]
        try:
            n = int(float(t) * mult)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad size {tok!r} (examples: 1000, 1M, 1e7)") from None
        if n < 1:
            raise argparse.ArgumentTypeError(f"size must be positive, got {tok!r}")
        out.append(n)
    return tuple(out)


def parse_only(text: str) -> tuple:
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [n for n in names if n not in WORKLOAD_ORDER]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown workload(s) {', '.join(bad)}; choose from "
                                         f"{','.join(WORKLOAD_ORDER)}")
    return names


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="where to run (default: the CPU, then CUDA as well when a GPU is present)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run for CI: small sizes, 1-2 repeats, no torch.compile; first-call test only "
                        "with --only firstcall (then at N=100k)")
    p.add_argument("--only", type=parse_only, metavar="LIST", default=None,
                   help=f"comma-separated workloads (default: all of {','.join(WORKLOAD_ORDER)})")
    p.add_argument("--sizes", type=parse_sizes, metavar="LIST", default=None,
                   help="N for chain and memory, e.g. 1000,1M,1e7 (default cpu: 1k,1M,10M; cuda: up to 100M)")
    p.add_argument("--impl", metavar="LIST", default=None,
                   help="only implementations whose name contains one of these words (fastad is always kept)")
    p.add_argument("--budget", type=float, metavar="SECONDS", default=None,
                   help="timing budget per row after warm-up (default 1.5, quick 0.2)")
    p.add_argument("--json", metavar="PATH", default=None,
                   help="where to write results (default benchmarks/results/<device>-<date>.json, -2, -3, ... for "
                        "later runs of the day)")
    p.add_argument("--png", metavar="PATH", default=None,
                   help="where to write the plot (default: next to the JSON; skipped without matplotlib)")
    p.add_argument("--no-save", action="store_true", help="print the table only, write no files")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def build_cases(args) -> list:
    from ._bench_workloads import DEFAULT_SIZES, QUICK_SIZES, WORKLOADS
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)[args.device]
    cases = []
    # --quick leaves out the fresh-process first-call test (a cold compile costs seconds) unless asked for
    names = args.only or tuple(w for w in WORKLOAD_ORDER if not (args.quick and w == "firstcall"))
    for w in names:
        cs = WORKLOADS[w](args.device, sizes, args.quick)
        if args.quick:
            cs = [c for c in cs if not c.slow]
        if args.impl:
            words = [x.strip().lower() for x in args.impl.split(",") if x.strip()]
            cs = [c for c in cs if c.role == "fastad" or any(x in c.impl.lower() for x in words)]
        cases += cs
    return cases


def run(args, argv=()) -> int:
    """Run the benchmark described by parsed `args`; returns the exit status."""
    if args.device == "cuda":
        from .runtime.cuda_probe import is_available, why_unavailable
        if not is_available():
            print(f"fastad bench: --device cuda needs a CUDA GPU: {why_unavailable()}", file=sys.stderr)
            return 2
    t_start = time.perf_counter()
    meta = collect_meta(args, list(argv))
    cases = build_cases(args)
    budget = Budget(args.quick, args.budget)
    progress = Progress(len(cases), enabled=not args.no_progress)
    rows = []
    groups: dict = {}
    for case in cases:
        groups.setdefault((case.workload, case.size), []).append(case)
    for group in groups.values():
        rows += run_group(group, budget, progress, len(rows))
    progress.show(len(cases), "done")
    progress.close()
    add_ratios(rows)
    meta["elapsed_s"] = round(time.perf_counter() - t_start, 2)
    meta["load_average_1min_at_end"] = _load()
    m = meta["machine"]
    print(f"fastad bench {meta['date']}  device={args.device}{'  (quick)' if args.quick else ''}")
    print(f"machine: {m['cpu']}, {m['cores']} cores" + (f", GPU {m['gpu']}" if m.get("gpu") else "")
          + f"; python {m['python']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()))
    fa = meta["fastad"]
    print(f"fastad {fa['version']}" + (f" @ {fa.get('git_commit')}" if fa.get("git_commit") else "")
          + (f" (+{fa['git_dirty_files']} uncommitted files)" if fa.get("git_dirty_files") else "")
          + f"; schedule: {fa['schedule']}")
    print(f"command: {meta['command']}")
    loads = [x for x in (meta["load_average_1min_at_start"], meta["load_average_1min_at_end"]) if x is not None]
    if loads and max(loads) > 0.5 * (m["cores"] or 1):
        print(f"WARNING: load average {max(loads):.1f} on {m['cores']} cores: other processes were running, "
              "timings are noisy")
    print("ratios: X/fastad = time(X) / time(fastad), above 1 means fastad is faster; "
          "fastad/floor = how far fastad is above the floor")
    print(format_tables(rows))
    failed = [r for r in rows if r["status"] == "mismatch" or (r["role"] == "fastad" and r["status"] == "error")]
    print(f"\n{len(rows)} rows in {meta['elapsed_s']:.1f} s: "
          + ", ".join(f"{n} {s}" for s, n in Counter(r['status'] for r in rows).items()))
    if not args.no_save:
        path = Path(args.json) if args.json else default_json_path(args.device, args.quick)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"meta": meta, "results": rows}, indent=1, default=str) + "\n")
        os.replace(tmp, path)
        print(f"wrote {path}")
        png = Path(args.png) if args.png else path.with_suffix(".png")
        if write_png(rows, meta, png):
            print(f"wrote {png}")
    if failed:
        print("FAILED: " + "; ".join(f"{r['workload']} {fmt_size(r['workload'], r['size'])} {r['impl']}: "
                                     f"{r['status']}" for r in failed), file=sys.stderr)
        return 1
    return 0


def run_devices(args, argv=()) -> int:
    """`run` on the chosen device; with none chosen, on the CPU and then on CUDA when a GPU is present."""
    if args.device is not None:
        return run(args, argv)
    from .runtime.cuda_probe import is_available
    devices = ["cpu"] + (["cuda"] if is_available() else [])
    status = 0
    for device in devices:
        one = argparse.Namespace(**vars(args))
        one.device = device
        if args.json and len(devices) > 1:
            one.json = str(Path(args.json).with_name(f"{Path(args.json).stem}-{device}.json"))
        if args.png and len(devices) > 1:
            one.png = str(Path(args.png).with_name(f"{Path(args.png).stem}-{device}.png"))
        status = max(status, run(one, argv))
    return status


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m fastad bench", description=__doc__.split("\n")[0])
    add_arguments(p)
    return run_devices(p.parse_args(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
