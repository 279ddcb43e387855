"""_bench_common: what every benchmark workload shares: `Case`, `Runner`, `Skip`, inputs, references, checks.

Start at `Case` and `Runner`; the workloads themselves are in `_bench_elementwise`,
`_bench_seed`, `_bench_mlp`, `_bench_firstcall` and `_bench_training`, and
`_bench_workloads.WORKLOADS` lists them.

A `Case` is one (workload, size, implementation). Its `make()` builds the
inputs (and, for JIT systems, nothing else: compilation happens in the first
timed-or-warm-up call, which the harness records as `first_s`) and returns a
`Runner`: `step()` does one complete iteration and returns its output, with
every value the workload asks for materialised (device work finished);
`check(out)` compares that output with a float64 numpy reference and returns
`(ok, detail)`, so a broken backend cannot post a fast number.

Optional systems (torch, jax, drjit, cupy) are imported only inside the helpers
below, which `make()` calls; they raise `Skip` when a backend is unusable here.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


CHAIN_SRC = "sum(sin(x)*exp(-x*x) + tanh(3*x)*x + 1/(1+exp(-x)))"
MEMORY_SRC = "sum(x**2 + 2*x + 2)"

DEFAULT_SIZES = {"cpu": (1_000, 1_000_000, 10_000_000), "cuda": (1_000, 1_000_000, 10_000_000, 100_000_000)}
QUICK_SIZES = {"cpu": (1_000, 100_000), "cuda": (1_000, 1_000_000)}

DESCRIPTIONS = {
    "chain": f"value+grad of {CHAIN_SRC}, float32 (value and gradient materialised)",
    "memory": f"value+grad of {MEMORY_SRC}, float32, against the copy floor (read N + write N)",
    "seed": "per iteration: x = tensor(5.0, requires_grad=True); y = x**2; y.backward(); float(x.grad)",
    "mlp": "SGD step of a 784-256-10 relu MLP, batch 256, softmax cross-entropy (logsumexp, max-subtracted)",
    "firstcall": "the chain's value+grad in a fresh Python process: wall time of the whole process, start-up "
                 "included (N=1M and 10M; --quick: 100k)",
}

# Tolerances of the correctness checks (float32 results against float64 references).
VALUE_RTOL = 1e-3     # |v - ref| <= VALUE_RTOL * sum(|f(x)|)
GRAD_RTOL = 1e-3      # |g - ref| <= GRAD_ATOL + GRAD_RTOL * |ref|, elementwise
GRAD_ATOL = 1e-3
LOSS_RTOL = 2e-3      # MLP losses against the float64 numpy trajectory, step by step


class Skip(Exception):
    """Raised by `make()` when an implementation cannot run here (no GPU backend, ...)."""


@dataclass
class Runner:
    step: Callable[[], object]                       # one iteration, fully materialised; returns its output
    check: Callable[[object], tuple] | None = None   # output -> (ok, detail)
    inner: int = 1                                   # iterations per step(): times are divided by it
    close: Callable[[], None] | None = None          # release temp dirs, GPU memory, ...
    extra: Callable[[object], dict] | None = None    # output -> extra fields for the JSON row
    first_s: float | None = None                     # set when make() already ran the first step (MLP guard)


@dataclass
class Case:
    workload: str
    size: int | None
    impl: str
    make: Callable[[], Runner]
    requires: tuple = ()       # importable modules needed ("torch", ...)
    role: str = "baseline"     # "fastad", "baseline" or "floor"
    group: str = ""            # rows are compared with the fastad row of the same (workload, size, group)
    warmup: int = 2            # untimed calls before timing (the first one is recorded as first_s)
    slow: bool = False         # skipped by --quick (compiles that take tens of seconds)
    subprocess: bool = False   # each step is a fresh process (firstcall)
    meta: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------
# Inputs and float64 references (cached: every implementation at a size shares them)
# ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=2)
def chain_input(n: int) -> np.ndarray:
    x = np.random.default_rng(0).uniform(-3.0, 3.0, n).astype(np.float32)
    x.setflags(write=False)
    return x


def chain_vg_xp(xp, x):
    """Value and hand-written gradient of the chain with whole-array calls (numpy, CuPy)."""
    e = xp.exp(-x * x)
    s = xp.sin(x)
    t = xp.tanh(3 * x)
    sg = 1 / (1 + xp.exp(-x))
    v = xp.sum(s * e + t * x + sg)
    g = xp.cos(x) * e - 2 * x * s * e + 3 * (1 - t * t) * x + t + sg * (1 - sg)
    return v, g


def memory_vg_xp(xp, x):
    v = xp.sum(x * x + 2 * x + 2)
    g = 2 * x + 2
    return v, g


@functools.lru_cache(maxsize=2)
def _reference(kind: str, n: int):
    """(value, grad, scale) in float64 for the chain or memory workload at size n."""
    x = chain_input(n).astype(np.float64)
    if kind == "chain":
        v, g = chain_vg_xp(np, x)
        scale = float(np.sum(np.abs(np.sin(x) * np.exp(-x * x) + np.tanh(3 * x) * x + 1 / (1 + np.exp(-x)))))
    else:
        v, g = memory_vg_xp(np, x)
        scale = float(np.sum(np.abs(x * x + 2 * x + 2)))
    return float(v), g, scale


def _to_host(a) -> np.ndarray:
    if isinstance(a, np.ndarray):
        return a
    mod = type(a).__module__.split(".")[0]
    if mod == "cupy":
        return a.get()
    if mod == "torch":
        return a.detach().cpu().numpy()
    if hasattr(a, "numpy"):
        return np.asarray(a.numpy())
    return np.asarray(a)


def _vg_checker(kind: str, n: int):
    """A check for outputs (value, grad) of the chain or memory workload."""
    def check(out):
        value, grad = out
        ref_v, ref_g, scale = _reference(kind, n)
        g = _to_host(grad).reshape(-1)
        value = float(value)
        if g.shape != ref_g.shape:
            return False, f"gradient shape {g.shape}, expected {ref_g.shape}"
        verr = abs(value - ref_v) / max(scale, 1e-30)
        if not verr <= VALUE_RTOL:
            return False, f"value {value!r} vs reference {ref_v!r} (rel. error {verr:.2e})"
        err = np.abs(g.astype(np.float64) - ref_g)
        bad = ~(err <= GRAD_ATOL + GRAD_RTOL * np.abs(ref_g))
        if bad.any():
            i = int(np.argmax(bad))
            return False, (f"gradient differs at {int(bad.sum())} of {g.size} elements "
                           f"(first at {i}: {g[i]!r} vs {ref_g[i]!r})")
        return True, f"value rel. err {verr:.1e}, grad max abs err {float(err.max()):.1e}"
    return check


# ---------------------------------------------------------------------------
# Small helpers for optional systems
# ---------------------------------------------------------------------------

def _cuda_sync():
    import cupy
    cupy.cuda.runtime.deviceSynchronize()


def _require_fastad_cuda():
    import fastad as fa
    if not fa.cuda.is_available():
        from fastad.runtime.cuda_probe import why_unavailable
        raise Skip(f"no CUDA GPU ({why_unavailable()})")


def _torch_device(device: str):
    import torch
    if device == "cuda" and not torch.cuda.is_available():
        raise Skip("this torch build has no CUDA (or no GPU)")
    return torch.device(device)


def _torch_sync(device: str):
    if device == "cuda":
        import torch
        torch.cuda.synchronize()


def _jax_device(device: str):
    if device == "cpu":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    try:
        return jax.devices("cpu" if device == "cpu" else "gpu")[0]
    except RuntimeError as e:
        raise Skip(f"jax has no {device} backend ({str(e).splitlines()[0][:80]})") from None


def _drjit_types(device: str):
    import drjit as dr
    try:
        if device == "cpu":
            from drjit.llvm.ad import Float
        else:
            from drjit.cuda.ad import Float
        Float([1.0]).numpy()
    except Exception as e:  # no libLLVM, no CUDA driver
        raise Skip(f"drjit {('llvm' if device == 'cpu' else 'cuda')} backend unusable: {e}") from None
    return dr, Float


def _torch_grad_and_value(f):
    """torch.compile of torch.func.grad_and_value(f): returns (grad, value) of a 1-argument f."""
    import torch
    return torch.compile(torch.func.grad_and_value(f))
