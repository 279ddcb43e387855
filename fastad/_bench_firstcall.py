"""_bench_firstcall: the firstcall workload, the chain's value+grad in a fresh Python process.

Start at `firstcall_cases`: each step is a child process (`_run_process`) that
runs `_FIRSTCALL_TEMPLATE` for one system, with a cold (fresh temporary) or a
warm (filled once) disk cache, next to the start-up floors (`python -c pass`,
Numba, CuPy). The child prints its timings and value as one JSON line.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Callable

from ._bench_common import VALUE_RTOL, Case, Runner, _reference, _require_fastad_cuda


_FIRSTCALL_TEMPLATE = r'''
import time
_t0 = time.perf_counter()
import json, sys
import numpy as np
{imports}
_t1 = time.perf_counter()
x_np = np.random.default_rng(0).uniform(-3.0, 3.0, {n}).astype(np.float32)
_t2 = time.perf_counter()
info = {{}}
{body}
_t3 = time.perf_counter()
info.update(import_s=_t1 - _t0, first_s=_t3 - _t2, value=float(v))
print("FIRSTCALL " + json.dumps(info))
'''

_FIRSTCALL_BODIES = {
    "fastad": ("import fastad as fa", """
with fa.profile() as p:
    x = fa.tensor(x_np, requires_grad=True, device={device!r})
    y = fa.sum(fa.sin(x)*fa.exp(-x*x) + fa.tanh(3*x)*x + 1/(1+fa.exp(-x)))
    y.backward()
    v = float(y)
    g = x.grad.numpy()
info.update(launched=p.launched, compiled=p.compiled, cache_hits=p.cache_hits,
            compile_seconds=p.compile_seconds)
"""),
    "jax": ("import jax, jax.numpy as jnp", """
f = lambda x: jnp.sum(jnp.sin(x)*jnp.exp(-x*x) + jnp.tanh(3*x)*x + 1/(1+jnp.exp(-x)))
v, g = jax.jit(jax.value_and_grad(f))(jnp.asarray(x_np))
g.block_until_ready()
"""),
    "torch.compile": ("import torch", """
f = lambda x: torch.sum(torch.sin(x)*torch.exp(-x*x) + torch.tanh(3*x)*x + 1/(1+torch.exp(-x)))
g, v = torch.compile(torch.func.grad_and_value(f))(torch.from_numpy(x_np).to({device!r}))
v = v.item()
"""),
    "drjit": ("import drjit as dr\nfrom drjit.{drjit_backend}.ad import Float", """
x = Float(x_np)
dr.enable_grad(x)
y = dr.sum(dr.sin(x)*dr.exp(-x*x) + dr.tanh(3*x)*x + 1/(1+dr.exp(-x)))
dr.backward(y)
g = dr.grad(x)
dr.eval(y, g)
v = y[0]
"""),
}


def _fastad_pythonpath() -> str:
    """The directory holding the imported fastad package, so child processes import the same code."""
    import fastad
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastad.__file__)))
    return os.pathsep.join([root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])


def _run_process(argv, env_extra: dict, timeout: float = 600.0) -> dict:
    env = dict(os.environ)
    # a fresh process of an installed package finds its bytecode (pip compiles it at install);
    # where the environment forbids writing it, every child would compile fastad from source
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = _fastad_pythonpath()
    env.update(env_extra)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"child process exited {proc.returncode}: " + " | ".join(tail))
    info = {}
    for line in proc.stdout.splitlines():
        if line.startswith("FIRSTCALL "):
            info = json.loads(line[len("FIRSTCALL "):])
    info["wall_s"] = wall
    return info


def firstcall_cases(device: str, sizes, quick: bool) -> list:
    """At N=1M and N=10M (--quick: 100k), each in fresh processes."""
    return [c for n in ([100_000] if quick else [1_000_000, 10_000_000]) for c in _cases_at(device, n, quick)]


def _wait_for_compile(cache_dir: str, timeout: float = 180.0) -> None:
    """Wait until the compile a finished fastad process left running has stored its kernel, so it
    neither competes with the next timed process nor writes into a removed cache directory."""
    deadline = time.monotonic() + timeout
    while not glob.glob(os.path.join(cache_dir, "native-*", "*.o")) and time.monotonic() < deadline:
        time.sleep(0.2)


def _cases_at(device: str, n: int, quick: bool) -> list:
    cases = []

    def value_check(out):
        ref_v, _, scale = _reference("chain", n)
        v = out.get("value")
        if v is None:
            return True, "start-up floor (no result to check)"
        err = abs(v - ref_v) / scale
        return err <= VALUE_RTOL, f"value {v!r} vs reference {ref_v!r} (rel. error {err:.1e})"

    def extra(out):
        return {k: v for k, v in out.items() if k != "wall_s"}

    def script(system: str) -> list:
        imports, body = _FIRSTCALL_BODIES[system]
        fmt = dict(device=device, drjit_backend="llvm" if device == "cpu" else "cuda")
        src = _FIRSTCALL_TEMPLATE.format(imports=imports.format(**fmt), n=n, body=body.format(**fmt))
        return [sys.executable, "-c", src]

    def cold(system: str, cache_env: Callable[[str], dict]):
        def make():
            if system == "fastad" and device == "cuda":
                _require_fastad_cuda()
            dirs = []

            def step():
                d = tempfile.mkdtemp(prefix="fastad-bench-cold-")
                dirs.append(d)
                try:
                    out = _run_process(script(system), cache_env(d))
                    if system == "fastad" and device == "cpu":
                        _wait_for_compile(d)   # untimed: the process's wall time is already taken
                    return out
                finally:
                    shutil.rmtree(d, ignore_errors=True)
            return Runner(step, value_check, extra=extra)
        return make

    def warm(system: str, cache_env: Callable[[str], dict]):
        def make():
            if system == "fastad" and device == "cuda":
                _require_fastad_cuda()
            d = tempfile.mkdtemp(prefix="fastad-bench-warm-")
            # fills the cache (fastad: compiling before it exits, not in a process left running)
            _run_process(script(system), dict(cache_env(d), FASTAD_BACKGROUND_COMPILE="0"))
            return Runner(lambda: _run_process(script(system), cache_env(d)), value_check, extra=extra,
                          close=lambda: shutil.rmtree(d, ignore_errors=True))
        return make

    def floor(argv):
        def make():
            return Runner(lambda: _run_process(argv, {}), value_check, extra=extra)
        return make

    fastad_env = lambda d: {"FASTAD_CACHE_DIR": d}
    torch_env = lambda d: {"TORCHINDUCTOR_CACHE_DIR": d}
    drjit_env = lambda d: {"HOME": d}  # Dr.Jit keeps its kernel cache in $HOME/.drjit
    jax_env = lambda d: {"JAX_PLATFORMS": "cpu"} if device == "cpu" else {}
    common = dict(subprocess=True, warmup=0)

    cases.append(Case("firstcall", n, "fastad (cold cache)", cold("fastad", fastad_env), role="fastad",
                      group="cold", **common))
    cases.append(Case("firstcall", n, "fastad (warm disk cache)", warm("fastad", fastad_env), role="fastad",
                      group="warm", **common))
    cases.append(Case("firstcall", n, "floor: python -c pass", floor([sys.executable, "-c", "pass"]),
                      role="floor", group="warm", **common))
    cases.append(Case("firstcall", n, "floor: numba start-up",
                      floor([sys.executable, "-c", "import numba; numba.njit(lambda x: x)(1)"]),
                      role="floor", group="warm", requires=("numba",), **common))
    if device == "cuda":
        cases.append(Case("firstcall", n, "floor: cupy start-up",
                          floor([sys.executable, "-c", "import cupy; (cupy.arange(3) + 1).sum().item()"]),
                          role="floor", group="warm", requires=("cupy",), **common))
    if quick:
        return cases
    cases.append(Case("firstcall", n, "jax jit (no disk cache)", cold("jax", jax_env), requires=("jax",),
                      group="cold", **common))
    dj = "drjit " + ("llvm" if device == "cpu" else "cuda")
    cases.append(Case("firstcall", n, f"{dj} (cold cache)", cold("drjit", drjit_env), requires=("drjit",),
                      group="cold", **common))
    cases.append(Case("firstcall", n, f"{dj} (warm disk cache)", warm("drjit", drjit_env), requires=("drjit",),
                      group="warm", **common))
    cases.append(Case("firstcall", n, "torch.compile (cold cache)", cold("torch.compile", torch_env),
                      requires=("torch",), group="cold", slow=True, **common))
    cases.append(Case("firstcall", n, "torch.compile (warm disk cache)", warm("torch.compile", torch_env),
                      requires=("torch",), group="warm", slow=True, **common))
    return cases
