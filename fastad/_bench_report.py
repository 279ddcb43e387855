"""_bench_report: what `python -m fastad bench` shows and saves: ratios, tables, progress, metadata, JSON path, plot.

Start at `format_tables` (the printed tables, one per workload in `WORKLOAD_ORDER`)
and `add_ratios` (the `vs_fastad` and `vs_floor` columns); `collect_meta` records
the machine, versions and git state saved with the JSON, and `write_png` draws
the summary plot (matplotlib, imported only there). `fastad.bench` times the
rows and calls these; nothing here times anything.
"""
from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

WORKLOAD_ORDER = ("chain", "memory", "seed", "mlp", "train", "adam", "firstcall")
# bytes a floor row moves per element, for effective GB/s (read N + write N float32; Adam: read 4, write 3)
FLOOR_BYTES = {"chain": 8, "memory": 8, "adam": 28}


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
    """benchmarks/results/<device>-<date>.json in a checkout (else in the working directory); a
    later run of the same day gets -2, -3, ... so no earlier result is overwritten."""
    stem = f"{device}-{_dt.date.today().isoformat()}" + ("-quick" if quick else "")
    root = _repo_root()
    folder, prefix = (root / "benchmarks" / "results", "") if root is not None else (Path.cwd(), "fastad-bench-")
    path, k = folder / f"{prefix}{stem}.json", 1
    while path.exists():
        k += 1
        path = folder / f"{prefix}{stem}-{k}.json"
    return path


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
