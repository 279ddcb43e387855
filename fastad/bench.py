"""bench: `python -m fastad bench`, which times fastad against numpy, Numba, PyTorch, JAX and Dr.Jit.

Start at `run` (the whole command) and `run_group` (the timed rows of one workload and size). The
workloads themselves are in `fastad._bench_workloads` (re-exported as
`benchmarks/workloads.py` in the repository); this module only schedules,
times, checks, prints and saves them. Every optional library (torch, jax,
drjit, cupy, matplotlib) is imported lazily by the case that needs it, so
importing this module costs nothing.

How a row is timed (`run_group`): `make()` builds inputs; the first call is
timed alone (`first_s`: compilation included); `warmup - 1` more calls follow
untimed (fastad needs 3 so its tiered CPU runtime reaches compiled kernels).
Then the implementations of one workload and size are timed round-robin, one
call each per round, until each has `min_repeats` and has spent its time
budget (or reached `max_repeats`); best and median are reported. The output of
the last timed call is checked against a float64 reference; a row that fails
the check is marked MISMATCH and the command exits 1. For fastad rows two
`fastad.profile()` records are kept: the warm-up (compiles, cache hits) and one
extra steady-state call (kernels launched per iteration, by tier).

Ratios are `time(other) / time(fastad)` for the same workload and size:
"numpy/fastad 5.30x" means numpy took 5.3 times as long as fastad. Floor rows
(copy kernels, interpreter start-up) are shown the other way round,
"fastad/floor 2.1x": how far fastad is above what the hardware allows.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

__all__ = ["main", "run", "add_arguments", "run_case", "run_group", "format_tables"]

WORKLOAD_ORDER = ("chain", "memory", "seed", "mlp", "train", "adam", "firstcall")
# bytes a floor row moves per element, for effective GB/s (read N + write N float32; Adam: read 4, write 3)
FLOOR_BYTES = {"chain": 8, "memory": 8, "adam": 28}


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------

class Budget:
    """How long to time each row."""

    def __init__(self, quick: bool, budget_s: float | None):
        self.quick = quick
        self.budget_s = budget_s if budget_s is not None else (0.2 if quick else 1.5)
        self.min_repeats = 1 if quick else 3
        self.max_repeats = 2 if quick else 50

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
            finally:
                if self.prof_warm is not None:
                    self.prof_warm.__exit__(None, None, None)
        except Exception as e:  # a failing implementation is reported, the run goes on
            self.fail(e)

    def time_once(self) -> None:
        try:
            t0 = time.perf_counter()
            self.out = self.runner.step()
            dt = time.perf_counter() - t0
        except Exception as e:
            self.fail(e)
            return
        self.spent += dt
        self.times.append(dt / self.runner.inner)

    def finish(self) -> dict:
        """Statistics, the fastad steady-state profile and the correctness check; releases the runner."""
        row, r = self.row, self.runner
        try:
            if row["status"] == "ok" and self.times:
                row.update(best_s=min(self.times), median_s=statistics.median(self.times),
                           repeats=len(self.times), inner=r.inner, times=[round(t, 9) for t in self.times[:50]])
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
    while active:
        for st in active:
            st.time_once()
        active = [st for st in active if st.active]
    return [st.finish() for st in states]


def run_case(case, budget: Budget) -> dict:
    """Make, warm up, time and check one case on its own; never raises."""
    return run_group([case], budget)[0]


def add_ratios(rows: list) -> None:
    """Set `vs_fastad` on every timed row: time / fastad time (same workload, size and group)."""
    fastad = {}
    for r in rows:
        if r["role"] == "fastad" and r["status"] == "ok":
            fastad[(r["workload"], r["size"], r["group"])] = r["best_s"]
    for r in rows:
        ref = fastad.get((r["workload"], r["size"], r["group"]))
        if ref and "best_s" in r and r["role"] != "fastad":
            r["vs_fastad"] = r["best_s"] / ref
    floors = {}
    for r in rows:
        if r["role"] == "floor" and "best_s" in r and r["workload"] in FLOOR_BYTES:
            key = (r["workload"], r["size"])
            floors[key] = min(floors.get(key, float("inf")), r["best_s"])
    for r in rows:
        f = floors.get((r["workload"], r["size"]))
        if f and "best_s" in r and r["role"] != "floor":
            r["vs_floor"] = r["best_s"] / f
            r["effective_GBps"] = FLOOR_BYTES[r["workload"]] * r["size"] / r["best_s"] / 1e9


# ---------------------------------------------------------------------------
# Printing
# ---------------------------------------------------------------------------

def fmt_time(s) -> str:
    if s is None:
        return "-"
    if s < 1e-6:
        return f"{s * 1e9:.0f} ns"
    if s < 1e-3:
        return f"{s * 1e6:.3g} µs"
    if s < 1.0:
        return f"{s * 1e3:.3g} ms"
    return f"{s:.3g} s"


def fmt_size(workload: str, n) -> str:
    if n is None:
        return "-"
    if workload in ("mlp", "train"):
        return f"B={n}"
    for div, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if n >= div and n % div == 0:
            return f"{n // div}{suffix}"
    return str(n)


def _short(impl: str) -> str:
    return impl.split(" (")[0].replace("floor: ", "")


def _ratio_label(r: dict) -> str:
    v = r.get("vs_fastad")
    if r["role"] == "fastad":
        return "(reference)" if r["status"] == "ok" else ""
    if v is None:
        return ""
    if r["role"] == "floor":
        return f"fastad/floor {1 / v:.2f}x"
    return f"{_short(r['impl'])}/fastad {v:.2f}x"


def _notes(r: dict) -> str:
    parts = []
    p = r.get("profile")
    if p:
        s, w = p["steady"], p["warmup"]
        kinds = ", ".join(f"{k} {v:g}" for k, v in sorted(s["per_iter_by_kind_tier"].items())) or "none recorded"
        parts.append(f"{s['launched_per_iter']:g} kernel(s)/iter [{kinds}]")
        parts.append(f"warm-up: {w['compiled']} compiled ({w['compile_seconds']:.2f} s), "
                     f"{w['cache_hits']} cache hits")
    if "vs_floor" in r:
        parts.append(f"{r['vs_floor']:.1f}x floor, {r['effective_GBps']:.1f} GB/s")
    e = r.get("extra")
    if e:
        if "import_s" in e:
            parts.append(f"import {e['import_s']:.2f} s, first call {e['first_s']:.2f} s")
        if "compiled" in e:
            parts.append(f"{e['compiled']} compiled ({e['compile_seconds']:.2f} s), {e['cache_hits']} cache hits")
    if r["status"] in ("error", "skipped"):
        parts.append(r["detail"])
    elif r["status"] == "mismatch":
        parts.append("CHECK FAILED: " + r["detail"])
    return "; ".join(parts)


def format_tables(rows: list, unit_per_iter=("seed",)) -> str:
    from ._bench_workloads import DESCRIPTIONS
    out = []
    headers = ("size", "impl", "best", "median", "first call", "ratio", "check", "notes")
    for w in WORKLOAD_ORDER:
        wr = [r for r in rows if r["workload"] == w]
        if not wr:
            continue
        per = " (per iteration)" if w in unit_per_iter else " (per step)" if w in ("mlp", "train", "adam") else \
            " (whole process)" if w == "firstcall" else ""
        out.append(f"\n== {w}: {DESCRIPTIONS[w]}" + ("" if w == "firstcall" else per))
        table = []
        for r in wr:
            status = {"ok": "ok", "mismatch": "MISMATCH", "error": "ERROR", "skipped": "skipped"}[r["status"]]
            if r["role"] == "floor" and r["status"] == "ok":
                status = "-" if r["workload"] != "firstcall" else "ok"
            table.append((fmt_size(w, r["size"]), r["impl"], fmt_time(r.get("best_s")),
                          fmt_time(r.get("median_s")),
                          fmt_time(r.get("first_s")) if r["workload"] != "firstcall" else "-",
                          _ratio_label(r), status, _notes(r)))
        widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(headers[:-1])]
        def line(cells, widths=widths):
            return "  ".join(c.ljust(wd) for c, wd in zip(cells, widths)) + "  " + cells[-1]
        out.append(line(headers))
        out.append(line(["-" * wd for wd in widths] + ["-----"]))
        out += [line(t).rstrip() for t in table]
    return "\n".join(out)


class Progress:
    """A one-line text progress bar on stderr (one line per case when stderr is not a terminal)."""

    def __init__(self, total: int, enabled: bool = True, stream=None):
        self.total, self.enabled = total, enabled
        self.stream = stream or sys.stderr
        self.tty = self.enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.perf_counter()

    def show(self, done: int, label: str) -> None:
        if not self.enabled:
            return
        el = time.perf_counter() - self.t0
        clock = f"{int(el // 60):02d}:{int(el % 60):02d}"
        if self.tty:
            width = 24
            fill = int(width * done / max(self.total, 1))
            text = f"[{'#' * fill}{'.' * (width - fill)}] {done}/{self.total} {clock} {label}"
            cols = shutil.get_terminal_size((100, 20)).columns
            self.stream.write("\r" + text[:cols - 1].ljust(cols - 1))
        else:
            self.stream.write(f"[{done}/{self.total} {clock}] {label}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# ---------------------------------------------------------------------------
# Environment, JSON and plot
# ---------------------------------------------------------------------------

def _version(dist: str):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _repo_root() -> Path | None:
    """The checkout holding this package (with benchmarks/ next to fastad/), or None when installed."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "benchmarks").is_dir() and (root / "fastad").is_dir() else None


def _git(root: Path, *args) -> str | None:
    try:
        p = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        return p.stdout.strip() if p.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def collect_meta(args, argv) -> dict:
    import fastad
    try:
        from . import schedule
        sched = (schedule.__doc__ or "").strip().splitlines()[0][:200]
    except Exception as e:  # noqa: BLE001 - a work-in-progress scheduler must not stop the benchmark
        sched = f"(import failed: {type(e).__name__}: {e})"
    now = _dt.datetime.now().astimezone()
    root = _repo_root()
    meta = {
        "date": now.isoformat(timespec="seconds"),
        "command": "python -m fastad bench " + " ".join(argv),
        "device": args.device,
        "quick": args.quick,
        "load_average_1min_at_start": _load(),
        "machine": {"cpu": _cpu_model(), "cores": os.cpu_count(),
                    "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                    "platform": platform.platform(), "python": platform.python_version()},
        "versions": {d: _version(d) for d in ("numpy", "numba", "llvmlite", "torch", "jax", "jaxlib", "drjit",
                                              "cupy-cuda13x", "cupy-cuda12x", "cupy", "matplotlib")},
        "fastad": {"version": fastad.__version__, "path": str(Path(fastad.__file__).parent),
                   "schedule": sched,
                   "env": {k: v for k, v in os.environ.items() if k.startswith(("FASTAD_", "NUMBA_", "OMP_"))}},
    }
    meta["versions"] = {k: v for k, v in meta["versions"].items() if v}
    if root is not None and (root / ".git").exists():
        meta["fastad"]["git_commit"] = _git(root, "rev-parse", "--short", "HEAD")
        status = _git(root, "status", "--porcelain", "--", "fastad")
        meta["fastad"]["git_dirty_files"] = len(status.splitlines()) if status else 0
    if args.device == "cuda":
        try:
            import cupy
            props = cupy.cuda.runtime.getDeviceProperties(0)
            meta["machine"]["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        except Exception as e:  # noqa: BLE001 - informative only
            meta["machine"]["gpu"] = f"unknown ({type(e).__name__})"
    return meta


def default_json_path(device: str, quick: bool) -> Path:
    stem = f"{device}-{_dt.date.today().isoformat()}" + ("-quick" if quick else "")
    root = _repo_root()
    if root is not None:
        return root / "benchmarks" / "results" / f"{stem}.json"
    return Path.cwd() / f"fastad-bench-{stem}.json"


def write_png(rows: list, meta: dict, path: Path) -> bool:
    """A summary plot; returns False (silently) when matplotlib is not importable."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return False
    panels = [w for w in WORKLOAD_ORDER if any(r["workload"] == w and "best_s" in r for r in rows)]
    if not panels:
        return False
    from matplotlib.ticker import NullFormatter
    ncols = min(3, len(panels))
    nrows = (len(panels) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.0 * ncols, 4.4 * nrows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, w in zip(axes.flat, panels):
        wr = [r for r in rows if r["workload"] == w and "best_s" in r]
        if w in ("chain", "memory"):
            for impl in dict.fromkeys(r["impl"] for r in wr):
                pts = sorted((r["size"], r["best_s"]) for r in wr if r["impl"] == impl)
                style = dict(lw=2.5, color="black") if impl == "fastad" else \
                    dict(ls="--", lw=1) if impl.startswith("floor") else {}
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=impl, **style)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("N (float32 elements)")
            ax.set_ylabel("seconds (value+grad, best)")
            ax.legend(fontsize=7)
        else:
            labels = [r["impl"] for r in wr]
            vals = [r["best_s"] * (1e6 if w == "seed" else 1e3 if w == "mlp" else 1) for r in wr]
            colors = ["black" if r["role"] == "fastad" else "grey" if r["role"] == "floor" else "tab:blue"
                      for r in wr]
            ax.barh(range(len(vals)), vals, color=colors)
            ax.set_yticks(range(len(vals)), labels, fontsize=7)
            ax.invert_yaxis()
            ax.set_xscale("log")
            if max(vals) / max(min(vals), 1e-30) >= 10:  # else the minor ticks are the only labels
                ax.xaxis.set_minor_formatter(NullFormatter())
            for i, v in enumerate(vals):
                ax.text(v, i, f" {v:.3g}", va="center", fontsize=7)
            ax.set_xlabel({"seed": "µs per iteration", "mlp": "ms per step"}.get(w, "seconds (whole process)"))
        ax.set_title(w, fontsize=10)
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(f"fastad bench, {meta['device']}, {meta['machine']['cpu']} ({meta['machine']['cores']} cores), "
                 f"{meta['date'][:10]}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


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
                   help="where to write results (default benchmarks/results/<device>-<date>.json)")
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
