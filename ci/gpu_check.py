"""ci/gpu_check.py: the Python steps of ci/gpu-check (run on a machine with an NVIDIA GPU).

    python ci/gpu_check.py env OUT        GPU and versions -> OUT/env.json
    python ci/gpu_check.py preflight OUT  one fastad kernel compiled, loaded, run -> OUT/preflight.json
    python ci/gpu_check.py extras OUT     host overhead per launch, deterministic bit-identity,
                                          a launch over 2^31 elements -> OUT/extras.json
    python ci/gpu_check.py summary OUT    everything so far -> OUT/gpu-check.json and
                                          OUT/gpu-<date>.json (+ benchmarks/results/ in a checkout,
                                          or $GPU_CHECK_RESULTS; "" for none)

Every step writes its JSON as soon as it has something, atomically, so whatever a timeout cuts
short leaves the results measured before it. `summary` imports neither fastad nor CuPy and can run
after any failure. Start at `main`.
"""
from __future__ import annotations

import datetime
import glob
import json
import os
import pathlib
import platform
import statistics
import sys
import time
import traceback
import xml.etree.ElementTree as ET

ROOT = pathlib.Path(__file__).resolve().parent.parent


def write_json(path: pathlib.Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: pathlib.Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _version(name: str):
    try:
        import importlib.metadata
        return importlib.metadata.version(name)
    except Exception:  # noqa: BLE001
        return None


# ---------------------------------------------------------------------------
# env and preflight
# ---------------------------------------------------------------------------

def step_env(out: pathlib.Path) -> int:
    env = {"python": platform.python_version(), "platform": platform.platform(),
           "versions": {d: _version(d) for d in ("numpy", "numba", "cupy-cuda13x", "cupy-cuda12x", "cupy",
                                                 "nvidia-cuda-nvrtc", "cuda-toolkit", "torch", "jax", "jaxlib",
                                                 "pytest", "hypothesis")}}
    env["versions"] = {k: v for k, v in env["versions"].items() if v}
    write_json(out / "env.json", env)
    try:
        import cupy
        rt = cupy.cuda.runtime
        n = rt.getDeviceCount()
        gpus = []
        for i in range(n):
            p = rt.getDeviceProperties(i)
            name = p["name"].decode() if isinstance(p["name"], bytes) else p["name"]
            gpus.append({"index": i, "name": name, "compute_capability": f"{p['major']}.{p['minor']}",
                         "sms": p["multiProcessorCount"], "memory_gb": round(p["totalGlobalMem"] / 2 ** 30, 1)})
        env["gpus"] = gpus
        env["cuda_runtime"] = _cuda_version(rt.runtimeGetVersion())
        env["cuda_driver_api"] = _cuda_version(rt.driverGetVersion())
        try:
            from cupy_backends.cuda.libs import nvrtc
            env["nvrtc"] = ".".join(map(str, nvrtc.getVersion()))
        except Exception as e:  # noqa: BLE001
            env["nvrtc"] = f"unavailable ({type(e).__name__}: {e})"
    except Exception as e:  # noqa: BLE001
        env["gpu_error"] = f"{type(e).__name__}: {e}"
    env["driver"] = _nvidia_smi("driver_version")
    try:
        import torch
        env["torch_cuda"] = torch.version.cuda
        env["torch_gpu"] = torch.cuda.is_available()
    except Exception as e:  # noqa: BLE001
        env["torch_error"] = f"{type(e).__name__}"
    try:
        import jax
        env["jax_devices"] = [str(d) for d in jax.devices()]
    except Exception as e:  # noqa: BLE001
        env["jax_error"] = f"{type(e).__name__}: {str(e)[:200]}"
    write_json(out / "env.json", env)
    print(json.dumps({k: env.get(k) for k in ("gpus", "driver", "cuda_runtime", "nvrtc", "versions")}, default=str))
    return 0 if env.get("gpus") else 3


def _cuda_version(v: int) -> str:
    return f"{v // 1000}.{(v % 1000) // 10}"


def _nvidia_smi(field: str):
    import shutil
    import subprocess
    if not shutil.which("nvidia-smi"):
        return None
    try:
        res = subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return res.stdout.strip().splitlines()[0] if res.returncode == 0 and res.stdout.strip() else None
    except Exception:  # noqa: BLE001
        return None


def step_preflight(out: pathlib.Path) -> int:
    t0 = time.perf_counter()
    result = {}
    try:
        from fastad.runtime import cuda_probe
        result["available"] = cuda_probe.is_available()
        result["why_unavailable"] = cuda_probe.why_unavailable()
        if result["available"]:
            result["preflight_s"] = round(cuda_probe.preflight(0), 3)   # compiled already: a cached run
    except Exception as e:  # noqa: BLE001
        result.update(available=False, why_unavailable=f"{type(e).__name__}: {e}",
                      traceback=traceback.format_exc()[-3000:])
    result["seconds"] = round(time.perf_counter() - t0, 2)
    write_json(out / "preflight.json", result)
    print(("preflight ok: " if result["available"] else "PREFLIGHT FAILED: ")
          + (result["why_unavailable"] or f"one kernel compiled, loaded and run in {result['seconds']} s"))
    return 0 if result["available"] else 1


# ---------------------------------------------------------------------------
# extras: host overhead, determinism, > 2^31 elements
# ---------------------------------------------------------------------------

def step_extras(out: pathlib.Path) -> int:
    import numpy as np
    import cupy as cp
    import fastad as fa
    from fastad import config

    res: dict = {}
    path = out / "extras.json"

    def measure(name, fn):
        t0 = time.perf_counter()
        try:
            res[name] = fn()
        except Exception as e:  # noqa: BLE001 - one failing measurement must not hide the others
            res[name] = {"error": f"{type(e).__name__}: {str(e)[:500]}"}
        res[name + "_seconds"] = round(time.perf_counter() - t0, 2)
        write_json(path, res)
        print(name, json.dumps(res[name], default=str)[:400])

    def host_overhead():
        """Launch-bound loop at N=1000: fused graphs of one kernel each, synchronised once at the end."""
        x = fa.tensor(np.linspace(-1, 1, 1000, dtype=np.float32), device="cuda")
        y = x

        def burst(k):
            nonlocal y
            for _ in range(k):
                y = fa.sin(y) * 0.5 + 0.1
                fa.realize(y)
            cp.cuda.runtime.deviceSynchronize()
        burst(20)
        with fa.profile() as p:
            burst(10)
        per_iter = p.launched / 10
        times = []
        for _ in range(7):
            t0 = time.perf_counter()
            burst(200)
            times.append(time.perf_counter() - t0)
        xc = cp.asarray(np.linspace(-1, 1, 1000, dtype=np.float32))
        ctimes = []
        for _ in range(7):
            t0 = time.perf_counter()
            z = xc
            for _ in range(200):
                z = cp.sin(z) * 0.5 + 0.1
            cp.cuda.runtime.deviceSynchronize()
            ctimes.append(time.perf_counter() - t0)
        best = min(times) / 200
        return {"launches_per_iteration": per_iter, "us_per_iteration": round(best * 1e6, 2),
                "us_per_launch": round(best / max(per_iter, 1) * 1e6, 2),
                "cupy_eager_us_per_launch": round(min(ctimes) / 200 / 3 * 1e6, 2),
                "median_us_per_iteration": round(statistics.median(times) / 200 * 1e6, 2)}

    def determinism():
        old = config.is_deterministic()
        config.set_deterministic(True)
        try:
            x0 = np.random.default_rng(0).uniform(-3, 3, 10_000_000).astype(np.float32)
            outs = set()
            for _ in range(5):
                x = fa.tensor(x0, device="cuda", requires_grad=True)
                y = fa.sum(fa.sin(x) * fa.exp(-x * x) + fa.tanh(3 * x) * x)
                s0 = fa.sum(fa.reshape(x, (10_000, 1000)), axis=0)       # a leading-axis reduction
                y.backward()
                outs.add((y.numpy().tobytes(), x.grad.numpy().tobytes(), s0.numpy().tobytes()))
            return {"runs": 5, "bit_identical": len(outs) == 1, "distinct_results": len(outs)}
        finally:
            config.set_deterministic(old)

    def over_2_31():
        n = 2 ** 31 + 4097
        free, total = cp.cuda.runtime.memGetInfo()
        if free < 3 * n + (1 << 30):
            return {"skipped": f"needs ~{3 * n / 2 ** 30:.1f} GiB free, {free / 2 ** 30:.1f} GiB free"}
        src = cp.full(n, 7, dtype=cp.uint8)
        src[-3:] = cp.asarray(np.array([250, 9, 1], np.uint8))
        x = fa.from_dlpack(src)
        cp.cuda.runtime.deviceSynchronize()
        t0 = time.perf_counter()
        y = x + np.uint8(3)
        fa.realize(y)
        cp.cuda.runtime.deviceSynchronize()
        secs = time.perf_counter() - t0
        buf = y._node.buffer
        tail = cp.asnumpy(buf[-5:]).tolist()
        head = cp.asnumpy(buf[:5]).tolist()
        ok = head == [10] * 5 and tail == [10, 10, 253, 12, 4]
        del y, buf, x, src
        cp.get_default_memory_pool().free_all_blocks()
        return {"elements": n, "correct": ok, "seconds_incl_compile": round(secs, 4),
                "GBps": round(2 * n / secs / 1e9, 1)}

    measure("host_overhead", host_overhead)
    measure("determinism", determinism)
    measure("over_2_31", over_2_31)
    return 0 if all("error" not in v for v in res.values() if isinstance(v, dict)) else 1


# ---------------------------------------------------------------------------
# summary
# ---------------------------------------------------------------------------

def _junit(path: pathlib.Path) -> dict:
    counts = {"tests": 0, "passed": 0, "failed": 0, "errors": 0, "skipped": 0, "failed_tests": []}
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        return {"missing": f"{type(e).__name__}"}
    for case in root.iter("testcase"):
        counts["tests"] += 1
        kind = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), None)
        if kind is None:
            counts["passed"] += 1
        else:
            counts[{"failure": "failed", "error": "errors", "skipped": "skipped"}[kind]] += 1
            if kind != "skipped":
                counts["failed_tests"].append(f"{case.get('classname')}::{case.get('name')}")
    return counts


def _bench_rows(out: pathlib.Path) -> list:
    rows = []
    for f in sorted(glob.glob(str(out / "bench-*.json"))):
        data = read_json(pathlib.Path(f))
        for r in (data or {}).get("results", []):
            rows.append({k: r.get(k) for k in ("workload", "size", "impl", "role", "status", "best_s",
                                               "median_s", "repeats", "first_s", "vs_fastad", "vs_floor",
                                               "effective_GBps", "error") if r.get(k) is not None})
    return rows


def _targets(rows: list, extras: dict) -> dict:
    best: dict = {}       # best time of each (workload, size, impl) over every bench run of this check
    for r in rows:
        if r.get("status") == "ok" and r.get("best_s"):
            key = (r["workload"], r["size"], r["impl"])
            best[key] = min(best.get(key, float("inf")), r["best_s"])
    ratios, targets = {}, {}
    for w in ("chain", "memory"):
        for n in (10_000_000, 100_000_000):
            f = best.get((w, n, "fastad"))
            if f is None:
                continue
            key = f"{w}@{n // 1_000_000}M"
            ratios[key] = {"fastad_ms": round(f * 1e3, 3)}
            for impl in ("torch eager", "torch.compile", "jax jit", "cupy eager", "floor: cupy copy"):
                t = best.get((w, n, impl))
                if t is not None:
                    ratios[key][f"{impl}/fastad"] = round(t / f, 3)
    for n in (10_000_000, 100_000_000):
        r = ratios.get(f"memory@{n // 1_000_000}M", {})
        if "floor: cupy copy/fastad" in r:
            targets[f"memory@{n // 1_000_000}M copy-bandwidth fraction >= 0.8"] = r["floor: cupy copy/fastad"]
        c = ratios.get(f"chain@{n // 1_000_000}M", {})
        if "torch eager/fastad" in c:
            targets[f"chain@{n // 1_000_000}M vs torch eager >= 10"] = c["torch eager/fastad"]
    for w in ("chain", "memory"):
        r = ratios.get(f"{w}@100M", {})
        for impl in ("torch.compile", "jax jit"):
            if f"{impl}/fastad" in r:
                targets[f"{w}@100M vs {impl} > 1"] = r[f"{impl}/fastad"]
    ho = (extras or {}).get("host_overhead", {})
    if "us_per_launch" in ho:
        targets["host overhead us per launch <= 30"] = ho["us_per_launch"]
    met = {}
    for k, v in targets.items():
        bound = float(k.split()[-1])
        met[k] = {"value": v, "met": (v <= bound) if "<=" in k else (v >= bound if ">=" in k else v > bound)}
    return {"ratios": ratios, "targets": met}


def step_summary(out: pathlib.Path) -> int:
    env = read_json(out / "env.json") or {}
    extras = read_json(out / "extras.json") or {}
    tests = {}
    for f in sorted(glob.glob(str(out / "pytest-*.xml"))):
        name = pathlib.Path(f).stem.removeprefix("pytest-")
        tests[name] = _junit(pathlib.Path(f))
        rc = out / f"pytest-{name}.rc"
        if rc.is_file():
            tests[name]["exit_code"] = rc.read_text().strip()
    for f in sorted(glob.glob(str(out / "pytest-*.rc"))):       # groups killed before writing their XML
        name = pathlib.Path(f).stem.removeprefix("pytest-")
        tests.setdefault(name, {"exit_code": pathlib.Path(f).read_text().strip(), "missing": "no junit xml"})
    rows = _bench_rows(out)
    gpu = (env.get("gpus") or [{}])[0]
    versions = env.get("versions", {})
    summary = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gpu": {"model": gpu.get("name"), "compute_capability": gpu.get("compute_capability"),
                "memory_gb": gpu.get("memory_gb"), "sms": gpu.get("sms"), "count": len(env.get("gpus") or [])},
        "driver": env.get("driver"), "cuda_runtime": env.get("cuda_runtime"),
        "cuda_driver_api": env.get("cuda_driver_api"), "nvrtc": env.get("nvrtc"),
        "versions": {"python": env.get("python"), "cupy": versions.get("cupy-cuda13x") or versions.get("cupy"),
                     "torch": versions.get("torch"), "jax": versions.get("jax"), "jaxlib": versions.get("jaxlib"),
                     "numpy": versions.get("numpy"), "numba": versions.get("numba")},
        "fastad_commit": os.environ.get("GPU_CHECK_COMMIT"),
        "preflight": read_json(out / "preflight.json"),
        "tests": tests,
        "extras": extras,
        "bench": {"rows": rows, **_targets(rows, extras)},
        "steps": read_json(out / "steps.json"),
        "elapsed_s": os.environ.get("GPU_CHECK_ELAPSED"),
    }
    write_json(out / "gpu-check.json", summary)
    day = datetime.date.today().isoformat()
    write_json(out / f"gpu-{day}.json", summary)
    # a copy for the repository (only runs that saw a GPU); GPU_CHECK_RESULTS="" turns it off
    results = pathlib.Path(os.environ.get("GPU_CHECK_RESULTS", ROOT / "benchmarks" / "results"))
    if env.get("gpus") and str(results) not in ("", ".") and results.is_dir() and os.access(results, os.W_OK):
        write_json(results / f"gpu-{day}.json", summary)
    print("== summary")
    print(f"gpu      {summary['gpu']['model']} (driver {summary['driver']}, CUDA {summary['cuda_runtime']}, "
          f"NVRTC {summary['nvrtc']}; cupy {summary['versions']['cupy']}, torch {summary['versions']['torch']}, "
          f"jax {summary['versions']['jax']})")
    for name, t in tests.items():
        print(f"tests    {name}: {t.get('passed', 0)} passed, {t.get('failed', 0)} failed, {t.get('errors', 0)} "
              f"errors, {t.get('skipped', 0)} skipped (exit {t.get('exit_code', '?')})")
        for ft in t.get("failed_tests", [])[:15]:
            print(f"  FAILED {ft}")
    for key, r in summary["bench"]["ratios"].items():
        print(f"bench    {key}: " + ", ".join(f"{k} {v}" for k, v in r.items()))
    for key, t in summary["bench"]["targets"].items():
        print(f"target   {key}: {t['value']} {'met' if t['met'] else 'NOT met'}")
    for key in ("host_overhead", "determinism", "over_2_31"):
        if key in extras:
            print(f"extra    {key}: {json.dumps(extras[key], default=str)[:300]}")
    print(f"wrote {out / f'gpu-{day}.json'}")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ("env", "preflight", "extras", "summary"):
        print(__doc__, file=sys.stderr)
        return 2
    out = pathlib.Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    return {"env": step_env, "preflight": step_preflight, "extras": step_extras, "summary": step_summary}[argv[0]](out)


if __name__ == "__main__":
    sys.exit(main())
