"""cuda: `fastad.cuda.is_available()` and `device_count()`, answered without importing CuPy eagerly."""
from .runtime.cuda_probe import device_count, is_available

__all__ = ["is_available", "device_count"]
