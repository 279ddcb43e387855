"""cuda_probe: is there a usable CUDA GPU? Answers without importing CuPy unless asked.

Start at `is_available`. CuPy imports fine on a machine without a GPU, but
then `getDeviceCount()` raises (cudaErrorInsufficientDriver); that counts as
"no GPU". The answer is computed once per process.
"""
from __future__ import annotations

import functools
import importlib.util

__all__ = ["is_available", "device_count", "why_unavailable"]


@functools.lru_cache(maxsize=1)
def _probe() -> tuple[int, str]:
    if importlib.util.find_spec("cupy") is None:
        return 0, "cupy is not installed (pip install 'fastad[cuda]')"
    try:
        import cupy
        n = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as e:  # CUDARuntimeError, ImportError of a broken CUDA install, ...
        return 0, f"cupy cannot reach a GPU ({type(e).__name__}: {e})"
    return n, "" if n else "no CUDA device found"


def is_available() -> bool:
    return _probe()[0] > 0


def device_count() -> int:
    return _probe()[0]


def why_unavailable() -> str:
    return _probe()[1]
