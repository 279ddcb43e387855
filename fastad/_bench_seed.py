"""_bench_seed: the seed workload, the per-iteration overhead of a tiny scalar graph.

Start at `seed_cases`: each step runs `x = tensor(5.0, requires_grad=True);
y = x**2; y.backward(); float(x.grad)` `inner` times, in fastad (eager and
fa.compile), PyTorch eager, JAX and Dr.Jit, and checks the gradient is 10.
"""
from __future__ import annotations

import functools

from ._bench_common import Case, Runner, Skip, _drjit_types, _jax_device, _require_fastad_cuda, _torch_device


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

