"""Shared pytest setup: a per-session kernel cache directory and the `cuda` marker's skip rule."""
import os
import pathlib
import tempfile

import pytest

# Tests share one on-disk kernel cache per checkout so reruns start warm, unless CI or the user chose one.
os.environ.setdefault("FASTAD_CACHE_DIR", str(pathlib.Path(tempfile.gettempdir()) / "fastad-test-cache"))
# Most tests run kernels through the numpy tier (the same kernel IR, no compile time); the JIT
# itself is covered by tests that switch `settings.cpu_mode` to "jit" (tests/test_jit.py).
os.environ.setdefault("FASTAD_JIT_AFTER", "1000000")


def pytest_collection_modifyitems(config, items):
    from fastad.runtime import cuda_probe
    if cuda_probe.is_available():
        return
    skip = pytest.mark.skip(reason=f"no CUDA GPU: {cuda_probe.why_unavailable()}")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
