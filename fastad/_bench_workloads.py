"""_bench_workloads: the benchmark workloads, each written for fastad and for the systems it is compared with.

Start at `WORKLOADS` (name -> function returning `Case`s) and `Case`/`Runner`.
`fastad.bench` (the `python -m fastad bench` CLI) times what is here; nothing in
this module times anything itself. It lives inside the package so the CLI works
from an installed wheel; `benchmarks/workloads.py` in the repository re-exports it.

A `Case` is one (workload, size, implementation). Its `make()` builds the
inputs (and, for JIT systems, nothing else: compilation happens in the first
timed-or-warm-up call, which the harness records as `first_s`) and returns a
`Runner`: `step()` does one complete iteration and returns its output, with
every value the workload asks for materialised (device work finished);
`check(out)` compares that output with a float64 numpy reference and returns
`(ok, detail)`, so a broken backend cannot post a fast number.

Workloads (see benchmarks/README.md for what each measures):
  chain      value+grad of sum(sin(x)*exp(-x*x) + tanh(3*x)*x + 1/(1+exp(-x))), float32
  memory     value+grad of sum(x**2 + 2*x + 2), against copy-kernel bandwidth floors
  seed       x = tensor(5.0, requires_grad=True); y = x**2; y.backward(); float(x.grad), per iteration
  mlp        one SGD training step of a 784-256-10 relu MLP, batch 256, softmax cross-entropy
  firstcall  chain at N=1M in a fresh process: cold kernel cache, warm disk cache, start-up floors

Optional systems (torch, jax, drjit, cupy, numba) are imported only inside
`make()`; a Case lists them in `requires` and the harness skips it when one is
missing. Implementations, per CPU workload: fastad, numpy (hand-written
derivative), a naive hand-fused Numba kernel, PyTorch eager, torch.compile of
`torch.func.grad_and_value`, JAX `jit(value_and_grad)`, Dr.Jit (LLVM backend).
On CUDA: fastad, CuPy eager (hand-written derivative), PyTorch eager and
torch.compile, JAX and Dr.Jit where their GPU backends are present, and a copy
kernel (read N, write N) as the bandwidth floor.
"""
from __future__ import annotations

import functools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

__all__ = ["Case", "Runner", "Skip", "WORKLOADS", "DESCRIPTIONS", "DEFAULT_SIZES", "QUICK_SIZES",
           "CHAIN_SRC", "MEMORY_SRC"]

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
                 "included (N=1M; --quick: 100k)",
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


def _fastad_expr(kind):
    if kind == "chain":
        return lambda m, x: m.sum(m.sin(x) * m.exp(-x * x) + m.tanh(3 * x) * x + 1 / (1 + m.exp(-x)))
    return lambda m, x: m.sum(x ** 2 + 2 * x + 2)


# ---------------------------------------------------------------------------
# chain and memory: value + gradient of a sum over N elements
# ---------------------------------------------------------------------------

def _numba_kernels():
    """The naive hand-fused kernels: scalar math.* calls, value and gradient in one parallel pass."""
    global _NUMBA_KERNELS
    if _NUMBA_KERNELS is None:
        import numba

        @numba.njit(parallel=True)
        def chain_vg(x, g):
            s = 0.0
            for i in numba.prange(x.shape[0]):
                xi = x[i]
                e = math.exp(-xi * xi)
                sn = math.sin(xi)
                t = math.tanh(3.0 * xi)
                sg = 1.0 / (1.0 + math.exp(-xi))
                s += sn * e + t * xi + sg
                g[i] = math.cos(xi) * e - 2.0 * xi * sn * e + 3.0 * (1.0 - t * t) * xi + t + sg * (1.0 - sg)
            return s

        @numba.njit(parallel=True)
        def memory_vg(x, g):
            s = 0.0
            for i in numba.prange(x.shape[0]):
                xi = x[i]
                s += xi * xi + 2.0 * xi + 2.0
                g[i] = 2.0 * xi + 2.0
            return s

        @numba.njit(parallel=True)
        def copy(src, dst):
            for i in numba.prange(src.shape[0]):
                dst[i] = src[i]

        _NUMBA_KERNELS = {"chain": chain_vg, "memory": memory_vg, "copy": copy}
    return _NUMBA_KERNELS


_NUMBA_KERNELS = None


def _elementwise_cases(kind: str, device: str, sizes) -> list:
    xp_vg = chain_vg_xp if kind == "chain" else memory_vg_xp
    expr = _fastad_expr(kind)
    cases = []
    for n in sizes:
        check = _vg_checker(kind, n)

        def fastad_make(n=n, check=check, compiled=False):
            import fastad as fa
            if compiled and not hasattr(fa, "compile"):
                raise Skip("this fastad has no fastad.compile")
            if device == "cuda":
                _require_fastad_cuda()
            x = fa.tensor(chain_input(n), requires_grad=True, device=device)

            def value_and_grad(x):
                y = expr(fa, x)
                y.backward()
                g = x.grad
                x.grad = None
                return y, g
            vg = fa.compile(value_and_grad) if compiled else value_and_grad

            def step():
                y, g = vg(x)
                v = float(y)
                if device == "cuda":
                    _cuda_sync()
                return v, g

            return Runner(step, lambda out: check((out[0], out[1].numpy())))

        cases.append(Case(kind, n, "fastad", fastad_make, role="fastad", warmup=3))
        cases.append(Case(kind, n, "fastad fa.compile", functools.partial(fastad_make, compiled=True), warmup=3))

        if device == "cpu":
            def numpy_make(n=n, check=check):
                x = chain_input(n)
                return Runner(lambda: tuple(xp_vg(np, x)), check)

            def numba_make(n=n, check=check):
                k = _numba_kernels()[kind]
                x = chain_input(n)
                g = np.empty_like(x)
                return Runner(lambda: (k(x, g), g), check)

            cases.append(Case(kind, n, "numpy", numpy_make))
            cases.append(Case(kind, n, "numba hand-fused", numba_make, requires=("numba",)))
        else:
            def cupy_make(n=n, check=check):
                _require_fastad_cuda()
                import cupy as cp
                x = cp.asarray(chain_input(n))

                def step():
                    v, g = xp_vg(cp, x)
                    v = float(v)
                    _cuda_sync()
                    return v, g
                return Runner(step, check, close=lambda: cp.get_default_memory_pool().free_all_blocks())

            cases.append(Case(kind, n, "cupy eager", cupy_make, requires=("cupy",)))

        def torch_make(n=n, check=check):
            import torch
            dev = _torch_device(device)
            x = torch.tensor(chain_input(n), device=dev).requires_grad_(True)

            def step():
                x.grad = None
                y = expr(torch, x)
                y.backward()
                v = y.item()
                _torch_sync(device)
                return v, x.grad
            return Runner(step, check)

        def torch_compile_make(n=n, check=check):
            import torch
            dev = _torch_device(device)
            x = torch.tensor(chain_input(n), device=dev)
            f = _torch_grad_and_value(functools.partial(expr, torch))

            def step():
                g, v = f(x)
                v = v.item()
                _torch_sync(device)
                return v, g
            return Runner(step, check)

        def jax_make(n=n, check=check):
            jdev = _jax_device(device)
            import jax
            import jax.numpy as jnp
            x = jax.device_put(jnp.asarray(chain_input(n)), jdev)
            vg = jax.jit(jax.value_and_grad(functools.partial(expr, jnp)))

            def step():
                v, g = vg(x)
                g.block_until_ready()
                return float(v), g
            return Runner(step, check)

        def drjit_make(n=n, check=check):
            dr, Float = _drjit_types(device)
            xs = Float(chain_input(n))
            m = _DrjitMath(dr)

            def step():
                x = Float(xs)
                dr.enable_grad(x)
                y = expr(m, x)
                dr.backward(y)
                g = dr.grad(x)
                dr.eval(y, g)
                dr.sync_thread()
                return y[0], g
            return Runner(step, check)

        cases.append(Case(kind, n, "torch eager", torch_make, requires=("torch",)))
        cases.append(Case(kind, n, "torch.compile", torch_compile_make, requires=("torch",), slow=True))
        cases.append(Case(kind, n, "jax jit", jax_make, requires=("jax",)))
        cases.append(Case(kind, n, "drjit " + ("llvm" if device == "cpu" else "cuda"), drjit_make,
                          requires=("drjit",)))

        # bandwidth floors: read N float32, write N float32 (what a fused value+grad pass must at least do)
        if device == "cpu":
            def copyto_make(n=n):
                x = chain_input(n)
                dst = np.empty_like(x)
                return Runner(lambda: np.copyto(dst, x))

            def numba_copy_make(n=n):
                k = _numba_kernels()["copy"]
                x = chain_input(n)
                dst = np.empty_like(x)
                return Runner(lambda: k(x, dst))

            cases.append(Case(kind, n, "floor: np.copyto", copyto_make, role="floor"))
            cases.append(Case(kind, n, "floor: numba copy", numba_copy_make, role="floor", requires=("numba",)))
        else:
            def cupy_copy_make(n=n):
                _require_fastad_cuda()
                import cupy as cp
                x = cp.asarray(chain_input(n))
                dst = cp.empty_like(x)

                def step():
                    cp.copyto(dst, x)
                    _cuda_sync()
                return Runner(step)

            cases.append(Case(kind, n, "floor: cupy copy", cupy_copy_make, role="floor", requires=("cupy",)))
    return cases


class _DrjitMath:
    """Gives Dr.Jit the `m.sin(x)` spelling the shared expressions use."""

    def __init__(self, dr):
        self.sin, self.exp, self.tanh, self.sum = dr.sin, dr.exp, dr.tanh, dr.sum


def chain_cases(device: str, sizes, quick: bool) -> list:
    return _elementwise_cases("chain", device, sizes)


def memory_cases(device: str, sizes, quick: bool) -> list:
    return _elementwise_cases("memory", device, sizes)


# ---------------------------------------------------------------------------
# seed: the per-iteration overhead of a tiny scalar graph
# ---------------------------------------------------------------------------

def seed_cases(device: str, sizes, quick: bool) -> list:
    inner_default = 50 if quick else 300

    def check(out):
        ok = abs(float(out) - 10.0) <= 1e-5
        return ok, f"d(x**2)/dx at 5 = {float(out)!r}" + ("" if ok else " (expected 10.0)")

    def fastad_make(compiled=False):
        import fastad as fa
        if compiled and not hasattr(fa, "compile"):
            raise Skip("this fastad has no fastad.compile")
        if device == "cuda":
            _require_fastad_cuda()

        def grad_of_square(x):
            y = x ** 2
            y.backward()
            return x.grad
        grad = fa.compile(grad_of_square) if compiled else grad_of_square

        def step():
            for _ in range(inner_default):
                x = fa.tensor(5.0, requires_grad=True, device=device)
                g = float(grad(x))
            return g
        return Runner(step, check, inner=inner_default)

    def torch_make():
        import torch
        dev = _torch_device(device)

        def step():
            for _ in range(inner_default):
                x = torch.tensor(5.0, requires_grad=True, device=dev)
                y = x ** 2
                y.backward()
                g = float(x.grad)
            return g
        return Runner(step, check, inner=inner_default)

    def jax_make():
        jdev = _jax_device(device)
        import jax
        import jax.numpy as jnp
        grad = jax.jit(jax.grad(lambda x: x ** 2))

        def step():
            for _ in range(inner_default):
                x = jax.device_put(jnp.float32(5.0), jdev)
                g = float(grad(x))
            return g
        return Runner(step, check, inner=inner_default)

    def drjit_make():
        dr, Float = _drjit_types(device)

        def step():
            for _ in range(inner_default):
                x = Float(5.0)
                dr.enable_grad(x)
                y = x ** 2
                dr.backward(y)
                g = dr.grad(x)[0]
            return g
        return Runner(step, check, inner=inner_default)

    return [
        Case("seed", None, "fastad", fastad_make, role="fastad", warmup=3),
        Case("seed", None, "fastad fa.compile", functools.partial(fastad_make, compiled=True), warmup=3),
        Case("seed", None, "torch eager", torch_make, requires=("torch",)),
        Case("seed", None, "jax jit", jax_make, requires=("jax",)),
        Case("seed", None, "drjit " + ("llvm" if device == "cpu" else "cuda"), drjit_make, requires=("drjit",)),
    ]


# ---------------------------------------------------------------------------
# mlp: one SGD step of a 784-256-10 relu MLP at batch 256
# ---------------------------------------------------------------------------

MLP_BATCH, MLP_IN, MLP_HIDDEN, MLP_OUT, MLP_LR = 256, 784, 256, 10, 0.1


@functools.lru_cache(maxsize=1)
def mlp_init():
    """(X, Y one-hot, [W1, b1, W2, b2]) in float32; every implementation starts from these."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((MLP_BATCH, MLP_IN), dtype=np.float32)
    labels = rng.integers(0, MLP_OUT, MLP_BATCH)
    Y = np.eye(MLP_OUT, dtype=np.float32)[labels]
    W1 = (rng.standard_normal((MLP_IN, MLP_HIDDEN), dtype=np.float32) * np.float32(math.sqrt(2 / MLP_IN)))
    W2 = (rng.standard_normal((MLP_HIDDEN, MLP_OUT), dtype=np.float32) * np.float32(math.sqrt(1 / MLP_HIDDEN)))
    b1 = np.zeros(MLP_HIDDEN, np.float32)
    b2 = np.zeros(MLP_OUT, np.float32)
    for a in (X, Y, W1, b1, W2, b2):
        a.setflags(write=False)
    return X, Y, [W1, b1, W2, b2]


def mlp_step_xp(xp, X, Y, params, lr=MLP_LR):
    """Forward, hand-written backward and in-place SGD update; returns the loss before the update."""
    W1, b1, W2, b2 = params
    z1 = X @ W1 + b1
    h = xp.maximum(z1, 0)
    logits = h @ W2 + b2
    m = logits.max(axis=1, keepdims=True)
    e = xp.exp(logits - m)
    s = e.sum(axis=1, keepdims=True)
    loss = xp.mean(xp.log(s) + m - (Y * logits).sum(axis=1, keepdims=True))
    dlogits = (e / s - Y) / X.shape[0]
    dW2 = h.T @ dlogits
    db2 = dlogits.sum(axis=0)
    dz1 = (dlogits @ W2.T) * (z1 > 0)
    dW1 = X.T @ dz1
    db1 = dz1.sum(axis=0)
    for p, g in zip(params, (dW1, db1, dW2, db2)):
        p -= lr * g
    return loss


def _mlp_loss_expr(m, X, Y, W1, b1, W2, b2, relu, amax):
    h = relu(X @ W1 + b1)
    logits = h @ W2 + b2
    mx = amax(logits)
    lse = m.log(m.sum(m.exp(logits - mx), axis=1, keepdims=True)) + mx
    return m.mean(lse - m.sum(Y * logits, axis=1, keepdims=True))


def mlp_guard_steps(quick: bool) -> int:
    return 4 if quick else 6


@functools.lru_cache(maxsize=2)
def mlp_reference_losses(steps: int) -> tuple:
    """The loss before each of `steps` SGD steps, float64 numpy from the shared init."""
    X, Y, params = mlp_init()
    X, Y = X.astype(np.float64), Y.astype(np.float64)
    params = [p.astype(np.float64) for p in params]
    return tuple(float(mlp_step_xp(np, X, Y, params)) for _ in range(steps))


def _mlp_runner(step, steps: int, name: str) -> Runner:
    """Run the correctness guard (the first `steps` losses against float64 numpy), then hand back the runner."""
    ref = mlp_reference_losses(steps)
    t0 = time.perf_counter()
    losses = [float(step())]
    first_s = time.perf_counter() - t0
    losses += [float(step()) for _ in range(steps - 1)]
    bad = [i for i, (a, b) in enumerate(zip(losses, ref)) if not abs(a - b) <= LOSS_RTOL * abs(b)]
    guard = (not bad, f"losses over {steps} steps {losses[0]:.5f} -> {losses[-1]:.5f}, reference "
                      f"{ref[0]:.5f} -> {ref[-1]:.5f}" + (f"; first mismatch at step {bad[0]}: "
                                                         f"{losses[bad[0]]!r} vs {ref[bad[0]]!r}" if bad else ""))

    def check(out):
        if not math.isfinite(float(out)):
            return False, f"loss became {out!r} while timing"
        return guard
    return Runner(step, check, first_s=first_s)


def mlp_cases(device: str, sizes, quick: bool) -> list:
    steps = mlp_guard_steps(quick)

    def fastad_make():
        import fastad as fa
        if device == "cuda":
            _require_fastad_cuda()
        X0, Y0, p0 = mlp_init()
        X, Y = fa.tensor(X0, device=device), fa.tensor(Y0, device=device)
        params = [fa.tensor(p, requires_grad=True, device=device) for p in p0]
        relu, amax = fa.relu, (lambda t: fa.max(t, axis=1, keepdims=True))

        def step():
            loss = _mlp_loss_expr(fa, X, Y, *params, relu=relu, amax=amax)
            loss.backward()
            with fa.no_grad():
                for p in params:
                    p -= MLP_LR * p.grad
            for p in params:
                p.grad = None
            v = float(loss)
            if device == "cuda":
                _cuda_sync()
            return v
        return _mlp_runner(step, steps, "fastad")

    def numpy_make():
        X, Y, p0 = mlp_init()
        params = [p.copy() for p in p0]
        return _mlp_runner(lambda: float(mlp_step_xp(np, X, Y, params)), steps, "numpy")

    def cupy_make():
        _require_fastad_cuda()
        import cupy as cp
        X0, Y0, p0 = mlp_init()
        X, Y = cp.asarray(X0), cp.asarray(Y0)
        params = [cp.asarray(p) for p in p0]
        return _mlp_runner(lambda: float(mlp_step_xp(cp, X, Y, params)), steps, "cupy")

    def torch_make():
        import torch
        dev = _torch_device(device)
        X0, Y0, p0 = mlp_init()
        X, Y = torch.tensor(X0, device=dev), torch.tensor(Y0, device=dev)
        params = [torch.tensor(p, device=dev).requires_grad_(True) for p in p0]
        relu, amax = torch.relu, (lambda t: torch.amax(t, dim=1, keepdim=True))

        class M:  # the keyword spellings _mlp_loss_expr uses
            log, exp, mean = torch.log, torch.exp, torch.mean

            @staticmethod
            def sum(t, axis, keepdims):
                return torch.sum(t, dim=axis, keepdim=keepdims)

        def step():
            loss = _mlp_loss_expr(M, X, Y, *params, relu=relu, amax=amax)
            loss.backward()
            with torch.no_grad():
                for p in params:
                    p -= MLP_LR * p.grad
                    p.grad = None
            v = loss.item()
            _torch_sync(device)
            return v
        return _mlp_runner(step, steps, "torch")

    def jax_make():
        jdev = _jax_device(device)
        import jax
        import jax.numpy as jnp
        X0, Y0, p0 = mlp_init()
        X, Y = jax.device_put(X0, jdev), jax.device_put(Y0, jdev)
        params = [jax.device_put(p, jdev) for p in p0]
        amax = lambda t: jnp.max(t, axis=1, keepdims=True)

        def loss_fn(params, X, Y):
            return _mlp_loss_expr(jnp, X, Y, *params, relu=jax.nn.relu, amax=amax)

        @jax.jit
        def train_step(params, X, Y):
            loss, grads = jax.value_and_grad(loss_fn)(params, X, Y)
            return [p - MLP_LR * g for p, g in zip(params, grads)], loss

        state = [params]

        def step():
            state[0], loss = train_step(state[0], X, Y)
            return float(loss)
        return _mlp_runner(step, steps, "jax")

    cases = [Case("mlp", MLP_BATCH, "fastad", fastad_make, role="fastad", warmup=1)]
    if device == "cpu":
        cases.append(Case("mlp", MLP_BATCH, "numpy hand-written", numpy_make, warmup=1))
    else:
        cases.append(Case("mlp", MLP_BATCH, "cupy hand-written", cupy_make, requires=("cupy",), warmup=1))
    cases += [Case("mlp", MLP_BATCH, "torch eager", torch_make, requires=("torch",), warmup=1),
              Case("mlp", MLP_BATCH, "jax jit", jax_make, requires=("jax",), warmup=1)]
    return cases


# ---------------------------------------------------------------------------
# firstcall: the chain in a fresh process (cold and warm caches, start-up floors)
# ---------------------------------------------------------------------------

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
    n = 100_000 if quick else 1_000_000
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
                    return _run_process(script(system), cache_env(d))
                finally:
                    shutil.rmtree(d, ignore_errors=True)
            return Runner(step, value_check, extra=extra)
        return make

    def warm(system: str, cache_env: Callable[[str], dict]):
        def make():
            if system == "fastad" and device == "cuda":
                _require_fastad_cuda()
            d = tempfile.mkdtemp(prefix="fastad-bench-warm-")
            _run_process(script(system), cache_env(d))  # fills the cache
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


WORKLOADS = {
    "chain": chain_cases,
    "memory": memory_cases,
    "seed": seed_cases,
    "mlp": mlp_cases,
    "firstcall": firstcall_cases,
}


def _training_cases(name: str):
    """The training workloads (fastad.nn + fastad.optim) live in `fastad._bench_training`, imported on use."""
    def cases(device: str, sizes, quick: bool) -> list:
        from ._bench_training import TRAINING_WORKLOADS
        return TRAINING_WORKLOADS[name](device, sizes, quick)
    return cases


WORKLOADS.update(train=_training_cases("train"), adam=_training_cases("adam"))
