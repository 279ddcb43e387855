"""_bench_elementwise: the chain and memory workloads: value + gradient of a sum over N elements.

Start at `_elementwise_cases` (both workloads share it; `chain_cases` and
`memory_cases` are its entries in `_bench_workloads.WORKLOADS`). Per size it
makes fastad (eager and fa.compile), numpy with the hand-written derivative
(CuPy on CUDA), a naive hand-fused Numba kernel, PyTorch eager and
torch.compile, JAX, Dr.Jit, and the copy kernels (read N, write N) that are the
bandwidth floor. Inputs, references and checks are in `_bench_common`.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from ._bench_common import (Case, Runner, Skip, _cuda_sync, _drjit_types, _jax_device, _require_fastad_cuda,
                            _torch_device, _torch_grad_and_value, _torch_sync, _vg_checker, chain_input,
                            chain_vg_xp, memory_vg_xp)


def _fastad_expr(kind):
    if kind == "chain":
        return lambda m, x: m.sum(m.sin(x) * m.exp(-x * x) + m.tanh(3 * x) * x + 1 / (1 + m.exp(-x)))
    return lambda m, x: m.sum(x ** 2 + 2 * x + 2)


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
