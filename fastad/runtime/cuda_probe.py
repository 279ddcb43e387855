"""cuda_probe: is there a usable CUDA GPU? Answers without importing CuPy unless asked.

Start at `is_available`. A GPU counts as usable only when fastad can compile,
load and run a kernel on it (`preflight`): a machine with only the driver has
devices, but without NVRTC (pip: cupy-cuda13x[ctk], which `fastad[cuda]`
installs) every kernel would fail to compile. CuPy imports fine on a machine
without a GPU, but then `getDeviceCount()` raises (cudaErrorInsufficientDriver);
that counts as "no GPU". The answer is computed once per process.
"""
from __future__ import annotations

import functools
import importlib.util

__all__ = ["is_available", "device_count", "why_unavailable", "preflight"]

INSTALL_HINT = ("fastad compiles its kernels with NVRTC: pip install 'fastad[cuda]' "
                "(cupy-cuda13x[ctk] brings NVRTC and the CUDA headers)")


@functools.lru_cache(maxsize=1)
def _probe() -> tuple[int, bool, str]:
    """(devices seen, usable, why not)."""
    if importlib.util.find_spec("cupy") is None:
        return 0, False, "cupy is not installed (pip install 'fastad[cuda]')"
    try:
        import cupy
        n = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as e:  # CUDARuntimeError, ImportError of a broken CUDA install, ...
        return 0, False, f"cupy cannot reach a GPU ({type(e).__name__}: {e})"
    if n == 0:
        return 0, False, "no CUDA device found"
    try:
        preflight(0)
    except Exception as e:  # noqa: BLE001 - any failure means kernels cannot run
        return n, False, (f"{n} CUDA device{'s' if n != 1 else ''} found, but a one-kernel preflight "
                          f"failed ({type(e).__name__}: {str(e).strip()[:500]}); {INSTALL_HINT}")
    return n, True, ""


def preflight(index: int = 0) -> float:
    """Compile (NVRTC, fastad's flags), load and run one small fastad reduction kernel on cuda:`index`
    and check its result; returns the seconds it took. Raises on any failure."""
    import time

    import cupy
    import numpy as np

    from .. import dtypes as dt
    from ..codegen import cuda as cg
    from ..kernel_ir import Input, Kernel, Output, Stmt
    from ..device import Device
    from . import backend_for

    t0 = time.perf_counter()
    f32 = dt.float32
    kernel = Kernel(1, 1, (Input(f32, "1"),), (), (Stmt("load", (), f32, 0), Stmt("mul", (0, 0), f32)),
                    (Output(1, f32, "sum"),))
    with cupy.cuda.Device(index):
        x = cupy.arange(1, 5, dtype=np.float32)
    (out,) = backend_for(Device("cuda", index)).launch(cg.render(kernel), (4,), [(x, 0, (1,))], [], index)
    got = float(cupy.asnumpy(out)[0])
    if got != 30.0:
        raise RuntimeError(f"the preflight kernel computed {got}, expected 30.0")
    return time.perf_counter() - t0


def is_available() -> bool:
    return _probe()[1]


def device_count() -> int:
    """CUDA devices fastad can use (0 when the preflight fails)."""
    n, ok, _ = _probe()
    return n if ok else 0


def why_unavailable() -> str:
    return _probe()[2]
