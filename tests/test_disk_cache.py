"""Tests for fastad.runtime.cache: the memory and disk cache of generated Numba kernel modules.

Each test gets its own FASTAD_CACHE_DIR. Cross-process behaviour is checked
with `python -c` subprocesses, which cost roughly 0.3-0.5 s for the Numba
import and first use, plus about 0.7 s for each cold parallel compile.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

import numba
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CACHE_PY = ROOT / "fastad" / "runtime" / "cache.py"

# The cache module is self-contained. Load it from its path if the package
# import fails (fastad/__init__.py is written separately and may be broken).
_IMPORT = f"""
import importlib.util, sys
sys.path.insert(0, {str(ROOT)!r})
try:
    from fastad.runtime import cache
except Exception:
    spec = importlib.util.spec_from_file_location("fastad_cache_under_test", {str(CACHE_PY)!r})
    cache = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = cache
    spec.loader.exec_module(cache)
"""
_ns: dict = {}
exec(_IMPORT, _ns)
cache = _ns["cache"]

KERNEL = """\
import numba
from numba import prange
@numba.njit(parallel=True, cache=True)
def kernel(x, out, n):
    for i in prange(n):
        out[i] = x[i] * 2.0 + 1.0
"""

# A subprocess that loads a kernel source (in argv[1]), runs it and prints
# JSON describing what happened.
_CHILD = _IMPORT + """
import json, numpy as np
loaded = cache.load_kernel_module(sys.argv[1], "t")
x = np.arange(1000, dtype=np.float64)
out = np.empty_like(x)
loaded.module.kernel(x, out, x.size)
print(json.dumps({"disk_hit": loaded.disk_hit, "numba_hit": loaded.numba_cache_hit(),
                  "ok": bool(np.array_equal(out, x * 2.0 + 1.0)), "path": str(loaded.path)}))
"""


def fresh_kernel() -> str:
    """KERNEL with a unique comment, so no earlier test or run has cached it."""
    return f"# test {uuid.uuid4().hex}\n{KERNEL}"


def check(mod) -> None:
    x = np.arange(257, dtype=np.float64)
    out = np.empty_like(x)
    mod.kernel(x, out, x.size)
    np.testing.assert_array_equal(out, x * 2.0 + 1.0)


def child_env(cache_root: Path) -> dict:
    env = dict(os.environ, FASTAD_CACHE_DIR=str(cache_root))
    env.pop("NUMBA_DISABLE_JIT", None)
    return env


def spawn(source: str, cache_root: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _CHILD, source], env=child_env(cache_root),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(autouse=True)
def cache_root(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("FASTAD_CACHE_DIR", str(root))
    cache.clear_cache(disk=False)
    yield root
    cache.clear_cache(disk=False)


def test_cache_dir_and_entry_layout(cache_root, monkeypatch):
    assert cache.cache_dir() == cache_root and cache_root.is_dir()
    loaded = cache.load_kernel_module(KERNEL, "my-hint")
    assert loaded.path.parent == cache_root / f"numba-{numba.__version__}"
    assert loaded.path.name == f"fastad_my_hint_{loaded.key[:24]}.py"
    assert loaded.name == loaded.path.stem and sys.modules[loaded.name] is loaded.module
    header, body = loaded.path.read_bytes().split(b"\n", 1)
    assert hashlib.sha256(body).hexdigest().encode() in header
    assert body.decode() == KERNEL
    assert (loaded.memory_hit, loaded.disk_hit, loaded.repaired) == (False, False, False)

    if sys.platform.startswith("linux"):
        monkeypatch.delenv("FASTAD_CACHE_DIR")
        monkeypatch.setenv("XDG_CACHE_HOME", str(cache_root / "xdg"))
        assert cache.cache_dir() == cache_root / "xdg" / "fastad"


def test_memory_hit_returns_same_module():
    first = cache.load_kernel_module(KERNEL)
    assert first.numba_cache_hit() is None          # nothing compiled before the first call
    check(first.module)
    assert first.numba_cache_hit() is False         # cold: Numba compiled it
    second = cache.load_kernel_module(KERNEL)
    assert second.memory_hit and not second.disk_hit
    assert second.module is first.module and second.key == first.key


def test_second_process_hits_disk_cache(cache_root):
    source = fresh_kernel()
    cold = result(spawn(source, cache_root))
    assert cold == {**cold, "ok": True, "disk_hit": False, "numba_hit": False}
    warm = result(spawn(source, cache_root))
    assert warm == {**warm, "ok": True, "disk_hit": True, "numba_hit": True}
    assert warm["path"] == cold["path"]


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_py_entry_is_rebuilt(damage):
    path = cache.load_kernel_module(KERNEL).path
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2] if damage == "truncate" else b"x = 1\n" + good[6:])
    cache.clear_cache(disk=False)

    loaded = cache.load_kernel_module(KERNEL)
    assert loaded.repaired and not loaded.disk_hit
    assert path.read_bytes() == good
    check(loaded.module)

    cache.clear_cache(disk=False)
    again = cache.load_kernel_module(KERNEL)
    assert again.disk_hit and not again.repaired


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 3])
    elif how == "garbage":
        path.write_bytes(os.urandom(len(data)))
    else:  # "middle": bytes replaced mid-file; without checksums Numba can abort or segfault
        mid = len(data) // 4
        path.write_bytes(data[:mid] + os.urandom(64) + data[mid + 64:])


@pytest.mark.parametrize("target,how", [
    ("nbi", "truncate"), ("nbi", "garbage"),
    ("nbc", "truncate"), ("nbc", "garbage"), ("nbc", "middle"),
    ("both", "garbage"),
])
def test_corrupt_numba_cache_files_recover(target, how):
    loaded = cache.load_kernel_module(KERNEL)
    check(loaded.module)                               # compiles and writes Numba's files
    numba_dir = Path(loaded.dispatchers[0].stats.cache_path)
    files = {ext: list(numba_dir.glob(f"{loaded.name}.*.{ext}")) for ext in ("nbi", "nbc")}
    assert len(files["nbi"]) == 1 and len(files["nbc"]) == 1
    for ext in (["nbi", "nbc"] if target == "both" else [target]):
        _damage(files[ext][0], how)

    cache.clear_cache(disk=False)                      # new module object, new dispatchers
    healed = cache.load_kernel_module(KERNEL)
    check(healed.module)
    assert healed.numba_cache_hit() is False           # damaged entry: recompiled, no error

    cache.clear_cache(disk=False)
    reloaded = cache.load_kernel_module(KERNEL)
    check(reloaded.module)
    assert reloaded.numba_cache_hit() is True          # and the entry was rebuilt


def test_concurrent_processes_compile_same_new_source(cache_root):
    source = fresh_kernel()
    procs = [spawn(source, cache_root) for _ in range(4)]
    results = [result(p) for p in procs]
    assert all(r["ok"] for r in results)
    assert len({r["path"] for r in results}) == 1
    # The per-entry lock makes one process compile and the other three load its result.
    assert sorted(r["numba_hit"] for r in results) == [False, True, True, True]


def test_unwritable_cache_dir_falls_back_to_temp(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    # A path below a regular file cannot be created, not even by root (chmod would not stop root).
    monkeypatch.setenv("FASTAD_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()

    with pytest.warns(cache.CacheWarning, match="not writable"):
        loaded = cache.load_kernel_module(KERNEL)
    assert (tmp_path / "tmp") in loaded.path.parents
    check(loaded.module)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        other = cache.load_kernel_module(KERNEL.replace("2.0", "3.0"))
    assert not [w for w in caught if issubclass(w.category, cache.CacheWarning)]  # warned once
    assert other.path.parent == loaded.path.parent


def test_clear_cache_removes_entries_but_not_the_root(cache_root):
    (cache_root / "unrelated.txt").parent.mkdir(parents=True, exist_ok=True)
    (cache_root / "unrelated.txt").write_text("keep me")
    loaded = cache.load_kernel_module(KERNEL)
    assert loaded.path.exists()
    cache.clear_cache()
    assert not loaded.path.parent.exists()
    assert (cache_root / "unrelated.txt").read_text() == "keep me"
    again = cache.load_kernel_module(KERNEL)
    assert not again.memory_hit and not again.disk_hit


def test_numba_cache_hit_on_non_dispatcher():
    assert cache.numba_cache_hit(len) is None
