"""config: process-wide switches (deterministic reductions, JIT tiering thresholds).

Start at `set_deterministic`. Values come from the environment at import and
can be changed at run time; kernels read them when they launch.
"""
from __future__ import annotations

import os

__all__ = ["set_deterministic", "is_deterministic", "settings"]


class _Settings:
    def __init__(self):
        # bit-identical reductions run to run (fixed chunking, no atomics)
        self.deterministic = os.environ.get("FASTAD_DETERMINISTIC", "0") == "1"
        # "jit": compile every kernel; "reference": numpy node-by-node; "auto": tiered
        self.cpu_mode = os.environ.get("FASTAD_CPU_MODE", "auto")
        # tiered mode: a graph structure runs through numpy until seen this many times ...
        self.jit_after_calls = int(os.environ.get("FASTAD_JIT_AFTER", "2"))
        # ... unless it touches at least this many elements (then compiling pays off at once)
        self.jit_min_elements = int(os.environ.get("FASTAD_JIT_MIN_ELEMENTS", "65536"))
        # compile on a background thread while the numpy tier runs the kernel (0: compile on the caller)
        self.background_compile = os.environ.get("FASTAD_BACKGROUND_COMPILE", "1") != "0"
        # graphs whose every node has at most this many elements run op by op in numpy (no kernels)
        self.small_graph_elements = int(os.environ.get("FASTAD_SMALL_GRAPH", "256"))
        # below this much work a CPU kernel runs on the calling thread: waking the pool costs more,
        # and BLAS threads that still spin after a matmul would compete with it. Work is counted in
        # elements of a float32 copy (`runtime.cpu.work`): 2M is a 1.2M-element polynomial map or
        # an 85K-element chain of sin, exp and tanh (crossovers measured on 2 cores: 1-4M and 65-130K)
        self.parallel_min_elements = int(os.environ.get("FASTAD_PARALLEL_MIN", "2097152"))
        # large float matrix products in this many row blocks on fastad's threads (numpy_refs.matmul)
        self.matmul_row_blocks = _matmul_row_blocks(os.environ.get("FASTAD_MATMUL_BLOCKS", "auto"))


def _matmul_row_blocks(value: str) -> int:
    """"auto": 2 where the environment limits BLAS to one thread and there are several cores
    (BLAS otherwise splits a product over its own threads), else 1; or a number."""
    if value != "auto":
        return max(1, int(value))
    single = any(os.environ.get(v, "").strip() == "1"
                 for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"))
    return 2 if single and (os.cpu_count() or 1) > 1 else 1


settings = _Settings()


def set_deterministic(flag: bool = True) -> None:
    """Make reductions bit-identical from run to run on every device."""
    settings.deterministic = bool(flag)


def is_deterministic() -> bool:
    return settings.deterministic
