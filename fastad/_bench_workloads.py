"""_bench_workloads: the benchmark workloads, each written for fastad and for the systems it is compared with.

Start at `WORKLOADS` (name -> function returning `Case`s); `Case` and `Runner`
are in `_bench_common`, and each workload has its own module (below). This
module only assembles the list. `fastad.bench` (the `python -m fastad bench`
CLI) times what is listed; nothing here times anything itself. The workloads
live inside the package so the CLI works from an installed wheel;
`benchmarks/workloads.py` in the repository re-exports this module.

Workloads (see benchmarks/README.md for what each measures):
  chain      value+grad of sum(sin(x)*exp(-x*x) + tanh(3*x)*x + 1/(1+exp(-x))), float32  (_bench_elementwise)
  memory     value+grad of sum(x**2 + 2*x + 2), against copy-kernel bandwidth floors       (_bench_elementwise)
  seed       x = tensor(5.0, requires_grad=True); y = x**2; y.backward(); float(x.grad)     (_bench_seed)
  mlp        one SGD training step of a 784-256-10 relu MLP, batch 256, softmax xent        (_bench_mlp)
  firstcall  chain at N=1M in a fresh process: cold kernel cache, warm disk cache, floors   (_bench_firstcall)
  train, adam  training with fastad.nn + fastad.optim, imported on use                     (_bench_training)

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

# The shared pieces and every workload's public names stay importable from here
# (`_bench_training` and scripts built on `benchmarks/workloads.py` import them).
from ._bench_common import (CHAIN_SRC, DEFAULT_SIZES, DESCRIPTIONS, GRAD_ATOL, GRAD_RTOL, LOSS_RTOL,  # noqa: F401
                            MEMORY_SRC, QUICK_SIZES, VALUE_RTOL, Case, Runner, Skip, _cuda_sync, _drjit_types,
                            _jax_device, _reference, _require_fastad_cuda, _to_host, _torch_device,
                            _torch_grad_and_value, _torch_sync, _vg_checker, chain_input, chain_vg_xp,
                            memory_vg_xp)
from ._bench_elementwise import chain_cases, memory_cases
from ._bench_firstcall import firstcall_cases
from ._bench_mlp import (MLP_BATCH, MLP_HIDDEN, MLP_IN, MLP_LR, MLP_OUT, mlp_cases, mlp_guard_steps,  # noqa: F401
                         mlp_init, mlp_reference_losses, mlp_step_xp)
from ._bench_seed import seed_cases

__all__ = ["Case", "Runner", "Skip", "WORKLOADS", "DESCRIPTIONS", "DEFAULT_SIZES", "QUICK_SIZES",
           "CHAIN_SRC", "MEMORY_SRC"]

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
