"""cuda: `fastad.cuda.is_available()`, `device_count()` and `why_unavailable()`, answered without importing
CuPy eagerly. Available means a device is present and one fastad kernel compiled and ran there."""
from .runtime.cuda_probe import device_count, is_available, why_unavailable

__all__ = ["is_available", "device_count", "why_unavailable"]
