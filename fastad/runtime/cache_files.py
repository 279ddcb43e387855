"""Numba's cache files for fastad's kernel modules: sha256 framing, verification, self-healing, locking.

Role: the file-level half of the kernel module cache. `fastad.runtime.cache`
writes and imports the kernel ``.py`` entries; this module protects the cache
files Numba writes next to them (and gives `fastad.runtime.native` the same
framing and atomic writes for its own files).

Where to start reading: ``_instrument`` (what is done to every Numba
dispatcher defined by a kernel module; `cache._load_entry` calls it), then
``_frame``/``_unframe`` (the sha256 framing every cached file carries).

What Numba 0.68.1 does with damaged cache files (measured):

* A truncated, empty or garbage ``.nbi`` or ``.nbc`` makes the kernel's first
  call raise ``pickle.UnpicklingError`` / ``EOFError`` out of
  ``Dispatcher.compile``. Numba does not warn, does not recompile and does not
  delete the file, so every later process fails the same way.
* A ``.nbc`` that still unpickles but whose object code was damaged (bytes
  overwritten in the middle) is worse. Depending on where the damage is, Numba
  raises ``RuntimeError: LLVM bitcode parsing error`` or ``UnicodeDecodeError``,
  aborts the process (``LLVM ERROR: Unable to allocate memory for common
  symbols!``, exit 134), segfaults (exit 139), or loads the damaged code
  without any error.
* Concurrency: Numba writes each file to a uuid-named temporary file and then
  uses ``os.replace``, so a reader never sees a half-written file. A reader
  whose index points at a data file not written yet recompiles. But N
  processes that start together all miss the cache and compile N times, and
  index updates that happen at the same time can drop each other's entries.

What this module does about it, for each dispatcher defined in a kernel module:

* ``_VerifiedCacheFile``: each index and data file gets a sha256 header that
  is checked before anything is unpickled, so damage is caught before it
  reaches LLVM.
* ``_SelfHealingCache``: if a load fails for any reason, that function's Numba
  files are deleted and ``None`` is returned. Numba then counts a cache miss,
  recompiles and writes a fresh entry. If a save fails, the error is logged
  and the call still succeeds.
* ``_EntryLock``: the first compile or load of each signature holds a lock per
  entry (after Numba's global compiler lock, always in that order). Concurrent
  processes therefore compile once and the others load the result. Where
  ``fcntl`` is missing or locking fails, it runs unlocked, which is still
  correct because every write is atomic.
"""
from __future__ import annotations

import functools
import glob
import hashlib
import io
import logging
import os
import pickle
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from .._util import atomic_write

try:
    import fcntl
except ImportError:  # not POSIX: no advisory locks, run unlocked (see _EntryLock)
    fcntl = None

# How long a process waits for another one that compiles the same entry before
# it gives up on the lock and compiles too (correct either way, just slower).
_LOCK_TIMEOUT_S = 120.0

# The kernel module cache's logger, as before these pieces moved out of fastad.runtime.cache.
_log = logging.getLogger("fastad.runtime.cache")


def _atomic_write(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def _instrument(module: ModuleType, lock: "_EntryLock") -> tuple:
    """Make each Numba dispatcher defined by `module` self-healing and locked."""
    from numba.core.caching import FunctionCache, IndexDataCacheFile
    from numba.core.dispatcher import Dispatcher

    found: list = []
    for value in list(vars(module).values()):
        if not isinstance(value, Dispatcher) or any(value is d for d in found):
            continue
        # Jitted helpers imported from elsewhere belong to other modules.
        if getattr(getattr(value, "py_func", None), "__globals__", None) is not vars(module):
            continue
        cache = value._cache
        if isinstance(cache, FunctionCache):
            cache_file = getattr(cache, "_cache_file", None)
            # The subclass adds no state, so swapping the class is safe. Only
            # the exact class it was written against gets swapped.
            if type(cache_file) is IndexDataCacheFile:
                cache_file.__class__ = _verified_cache_file_class()
            value._cache = _SelfHealingCache(cache, module.__name__)
        _guard_compile(value, lock)
        found.append(value)
    return tuple(found)


def _guard_compile(dispatcher: Any, lock: "_EntryLock") -> None:
    from numba.core.compiler_lock import global_compiler_lock

    compile_unlocked = dispatcher.compile

    @functools.wraps(compile_unlocked)
    def compile(sig):
        # Every path into Numba's cache goes through Dispatcher.compile (calls,
        # typing from other jitted code, explicit compile). Numba's lock is
        # taken first because compile takes it anyway. Taking the two locks in
        # the other order could deadlock against a thread that is compiling a
        # caller of this kernel.
        with global_compiler_lock, lock:
            return compile_unlocked(sig)

    # An instance attribute wins over Dispatcher.compile for every self.compile.
    dispatcher.compile = compile


class _SelfHealingCache:
    """Wraps a dispatcher's FunctionCache: a damaged entry means recompile, not a failed call."""

    def __init__(self, inner: Any, module_name: str):
        self._inner = inner
        impl = getattr(inner, "_impl", None)
        base = getattr(impl, "filename_base", None)
        # Files of this function only; if Numba's internals change, fall back
        # to every function of the module.
        self._pattern = base if isinstance(base, str) else f"{module_name}.*"

    def __getattr__(self, name):  # cache_path, flush, enable, disable, ...
        return getattr(self._inner, name)

    def load_overload(self, sig, target_context):
        try:
            return self._inner.load_overload(sig, target_context)
        except Exception as exc:
            _purge_numba_files([Path(self._inner.cache_path)], self._pattern, exc)
            # Dispatcher.compile now counts a miss, compiles and saves a fresh entry.
            return None

    def save_overload(self, sig, data):
        try:
            self._inner.save_overload(sig, data)
        except Exception as exc:
            # The kernel is compiled and usable. Remove whatever was half-written
            # so the next process does not trip over it.
            _purge_numba_files([Path(self._inner.cache_path)], self._pattern, exc)


def _numba_cache_dirs(py_path: Path) -> list[Path]:
    """Where Numba keeps the cache files of functions defined in `py_path`."""
    dirs = [py_path.parent / "__pycache__"]
    try:
        from numba.core import config
        from numba.core.caching import _CacheLocator

        if config.CACHE_DIR:
            subpath = _CacheLocator.get_suitable_cache_subpath(str(py_path))
            dirs.insert(0, Path(config.CACHE_DIR) / subpath)
    except Exception:
        pass
    return dirs


def _purge_numba_files(dirs: list[Path], prefix_pattern: str, reason: BaseException) -> int:
    """Delete `<prefix_pattern>.nbi` and `<prefix_pattern>.*.nbc` in `dirs`; return the count."""
    prefix = glob.escape(prefix_pattern).replace(glob.escape("*"), "*")
    removed = 0
    for folder in dirs:
        for pattern in (f"{prefix}.nbi", f"{prefix}.*.nbc"):
            for name in glob.glob(os.path.join(glob.escape(str(folder)), pattern)):
                try:
                    os.unlink(name)
                    removed += 1
                except OSError:
                    pass
    if removed:
        _log.warning(
            "fastad: Numba cache entry %s unusable (%s: %s); removed %d file(s), recompiling",
            prefix_pattern, type(reason).__name__, reason, removed,
        )
    return removed


class _CorruptCacheFile(ValueError):
    # Deliberately not an OSError: IndexDataCacheFile.load swallows OSError
    # ("file removed meanwhile"). This error should reach _SelfHealingCache,
    # which removes the files.
    pass


_FRAME_MAGIC = b"fastad-sha256\0"


def _frame(payload: bytes) -> bytes:
    return _FRAME_MAGIC + hashlib.sha256(payload).digest() + payload


def _unframe(raw: bytes, path: str) -> bytes:
    n = len(_FRAME_MAGIC)
    payload = raw[n + 32:]
    if raw[:n] != _FRAME_MAGIC or hashlib.sha256(payload).digest() != raw[n:n + 32]:
        raise _CorruptCacheFile(f"checksum mismatch in {path}")
    return payload


@functools.lru_cache(maxsize=None)
def _verified_cache_file_class() -> type:
    # Defined lazily so that importing this module does not import Numba.
    from numba.core.caching import IndexDataCacheFile

    class _VerifiedCacheFile(IndexDataCacheFile):
        """Numba's index/data files, each framed with a sha256 of its contents.

        The framing replaces Numba's format for fastad's kernel modules only;
        FORMAT_VERSION (part of the key) separates it from older layouts.
        """

        def _save_index(self, overloads):
            payload = pickle.dumps(self._version, protocol=-1) + self._dump(
                (self._source_stamp, overloads))
            with self._open_for_write(self._index_path) as f:
                f.write(_frame(payload))

        def _load_index(self):
            try:
                with open(self._index_path, "rb") as f:
                    raw = f.read()
            except FileNotFoundError:
                return {}
            stream = io.BytesIO(_unframe(raw, self._index_path))
            if pickle.load(stream) != self._version:
                return {}
            stamp, overloads = pickle.loads(stream.read())
            # A different stamp means the source changed; Numba then
            # overwrites the stale data files.
            return overloads if stamp == self._source_stamp else {}

        def _save_data(self, name, data):
            with self._open_for_write(self._data_path(name)) as f:
                f.write(_frame(self._dump(data)))

        def _load_data(self, name):
            path = self._data_path(name)
            with open(path, "rb") as f:
                raw = f.read()
            return pickle.loads(_unframe(raw, path))

    return _VerifiedCacheFile


class _EntryLock:
    """Cross-process lock for one cache entry; re-entrant within the process.

    flock locks belong to an open file description, so a second open() in
    the same process would deadlock. Nested use (kernel A's compile types
    kernel B from the same module) therefore only counts the depth.
    """

    def __init__(self, path: Path):
        self._path = path
        self._local = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    def __enter__(self):
        self._local.acquire()
        if self._depth == 0:
            self._fd = _acquire_file_lock(self._path)
        self._depth += 1
        return self

    def __exit__(self, *exc_info):
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor releases the flock
        self._local.release()


def _acquire_file_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on `path`, or None to run unlocked."""
    if fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        return None
    deadline = time.monotonic() + _LOCK_TIMEOUT_S
    delay = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                _log.warning("fastad: %s still locked after %.0f s; continuing unlocked",
                             path, _LOCK_TIMEOUT_S)
                break
            # Poll rather than block, so a hung holder cannot stall us past the timeout.
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        except OSError:  # e.g. ENOLCK on some network filesystems
            break
    os.close(fd)
    return None
