"""_bench_mlp: the mlp workload, one SGD step of a 784-256-10 relu MLP at batch 256.

Start at `mlp_cases`. Every implementation starts from `mlp_init()`'s float32
weights; `_mlp_runner` first runs a few steps and compares their losses with
the float64 numpy trajectory (`mlp_reference_losses`), so a wrong training step
cannot post a fast number. `_bench_training` reuses `mlp_init` and the constants.
"""
from __future__ import annotations

import functools
import math
import time

import numpy as np

from ._bench_common import (LOSS_RTOL, Case, Runner, _cuda_sync, _jax_device, _require_fastad_cuda, _torch_device,
                            _torch_sync)


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
