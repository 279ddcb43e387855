"""runtime: where kernels run. One module per device, all behind the `Backend` interface.

Start at `backend_for`. `cpu.CpuBackend` compiles kernels with Numba,
`cuda.CudaBackend` with CuPy (imported only when a CUDA device is used), and
`reference` is the node-by-node numpy executor that serves as the test oracle.

A Backend provides:
  from_numpy(array, device) -> buffer      put host data on the device
  to_numpy(buffer) -> numpy.ndarray        copy a buffer to the host
  run_kernel(kernel, shape, inputs, scalars, device) -> list of output buffers
  run_library(op, arg, inputs, device) -> buffer   matmul, embed, concat (never fused)
  xp                                       the array module of its buffers (numpy, cupy)
  device_scope(device) (optional)          context making `device` current for xp's allocations
"""
from __future__ import annotations

import contextlib

__all__ = ["backend_for", "device_scope"]

_backends: dict = {}


def backend_for(device):
    """The backend object that runs kernels on `device` (a fastad.Device)."""
    b = _backends.get(device.type)
    if b is None:
        if device.type == "cpu":
            from .cpu import CpuBackend
            b = CpuBackend()
        else:
            from .cuda import CudaBackend
            b = CudaBackend()
        _backends[device.type] = b
    return b


def device_scope(device):
    """A context in which `xp` allocations and copies land on `device` (CuPy allocates on its
    current device, whatever device the inputs live on); nothing to do where a backend has no
    notion of a current device."""
    scope = getattr(backend_for(device), "device_scope", None)
    return contextlib.nullcontext() if scope is None else scope(device)
