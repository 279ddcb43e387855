"""On-disk and in-memory cache for generated Numba kernel modules.

Role: fastad's code generator produces Python source for
``numba.njit(parallel=True, cache=True)`` kernels. Numba can cache a function
only when it is defined in a real file that was imported as a module and put in
``sys.modules`` before its body ran (source passed to ``exec`` cannot be cached,
and a module missing from ``sys.modules`` fails the cache load with
ModuleNotFoundError). This module turns a source string into such a module.
The file is named by a hash of its content. The module also keeps Numba's own
cache next to it working when files get corrupted, when several processes load
the same kernel at once, and when the cache directory is read-only.

Where to start reading: ``load_kernel_module`` (the only entry point), then
``_instrument`` (what is done to every Numba dispatcher defined by a kernel
module). The public API is listed in ``__all__``.

Layout (one entry per distinct source)::

    cache_dir()/numba-<numba version>/
        fastad_<hint>_<key[:24]>.py     header line + source, written atomically
        fastad_<hint>_<key[:24]>.lock   per-entry lock (fcntl.flock)
        __pycache__/fastad_<hint>_<key[:24]>.<func>-<line>.py311.nbi / .N.nbc

    key = sha256(FORMAT_VERSION, numba, llvmlite, Python, LLVM triple,
                 CPU name + features as Numba sees them, source)

Putting the host CPU in the key gives each machine that shares a cache
directory (NFS home) its own entries. Otherwise they would keep replacing each
other's entries in Numba's per-function index.

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

Kernel ``.py`` files carry a header with the sha256 of the body. The loader
accepts a file only if it is byte-identical to what it would write, which
implies that the header matches the body. Anything else (truncated, garbage,
tampered) is rewritten, and only the verified bytes already in memory are
compiled, so the file is never read a second time.

How to tell a compile from a cache hit: ``numba_cache_hit(dispatcher)`` reads
``dispatcher.stats``. ``Dispatcher.compile`` adds one to ``cache_hits[sig]``
when Numba loads a signature from its disk cache, and one to
``cache_misses[sig]`` before it compiles one (also when caching is off, and
after a failed load that was repaired).
"""
from __future__ import annotations

import dataclasses
import functools
import glob
import hashlib
import importlib.util
import io
import json
import logging
import os
import pickle
import re
import shutil
import stat
import sys
import tempfile
import threading
import time
import uuid
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

from .._util import atomic_write

try:
    import fcntl
except ImportError:  # not POSIX: no advisory locks, run unlocked (see _EntryLock)
    fcntl = None

__all__ = [
    "FORMAT_VERSION",
    "CacheWarning",
    "LoadedModule",
    "cache_dir",
    "clear_cache",
    "load_kernel_module",
    "numba_cache_hit",
]

# Bump when the file layout, header or framing changes: old entries are then
# simply never looked up again.
FORMAT_VERSION = 1

# How long a process waits for another one that compiles the same entry before
# it gives up on the lock and compiles too (correct either way, just slower).
_LOCK_TIMEOUT_S = 120.0

_log = logging.getLogger(__name__)


class CacheWarning(RuntimeWarning):
    """The configured cache directory is unusable; a temporary one is used instead."""


@dataclasses.dataclass(frozen=True)
class LoadedModule:
    """A kernel module returned by `load_kernel_module`, plus how this call got it."""

    module: ModuleType
    path: Path          # the .py file the module was imported from
    key: str            # full sha256 hex digest of the entry
    memory_hit: bool    # this call returned a module already imported in this process
    disk_hit: bool      # this call imported an existing, verified file
    repaired: bool      # this call found a corrupt file and rewrote it
    dispatchers: tuple = ()  # the Numba dispatchers the module defines

    @property
    def name(self) -> str:
        return self.module.__name__

    def numba_cache_hit(self) -> bool | None:
        """`numba_cache_hit` over all dispatchers: False if any compiled, True if
        at least one was loaded from disk and none compiled, else None."""
        results = [numba_cache_hit(d) for d in self.dispatchers]
        if False in results:
            return False
        return True if True in results else None


def cache_dir() -> Path:
    """Root of fastad's on-disk cache. The directory is created if possible.

    ``$FASTAD_CACHE_DIR`` if set, else the platform's user cache directory:
    ``$XDG_CACHE_HOME/fastad`` or ``~/.cache/fastad`` (Linux),
    ``~/Library/Caches/fastad`` (macOS), ``%LOCALAPPDATA%/fastad/Cache`` (Windows).
    Failure to create it is not raised here: `load_kernel_module` falls back to
    a temporary directory.
    """
    path = _configured_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    return path


def load_kernel_module(source: str, name_hint: str = "kernel") -> LoadedModule:
    """Import `source` as a module whose Numba ``cache=True`` functions can use the disk cache.

    The same source (and environment) gives the same module: once per process
    from memory, and across processes from the file under `cache_dir()`.
    `name_hint` only names the file and module (``fastad_<hint>_<hash>``).
    Numba compiles lazily, so whether a kernel was compiled or loaded is known
    only after its first call: see `LoadedModule.numba_cache_hit`.
    """
    key = _entry_key(source)
    with _STATE_LOCK:
        known = _MEMORY.get(key)
        if known is not None:
            return dataclasses.replace(known, memory_hit=True, disk_hit=False, repaired=False)
        loaded = _load_entry(source, key, _stem(name_hint, key))
        _MEMORY[key] = loaded
        return loaded


def numba_cache_hit(dispatcher: Any) -> bool | None:
    """After a dispatcher's first call: True if it was loaded from Numba's disk cache.

    False if at least one signature was compiled (cache miss, caching disabled,
    or a damaged entry that was rebuilt). None if nothing was compiled or loaded
    yet, or if `dispatcher` is not a Numba dispatcher (e.g. NUMBA_DISABLE_JIT=1).
    """
    try:
        stats = dispatcher.stats
        hits = sum(stats.cache_hits.values())
        misses = sum(stats.cache_misses.values())
    except (AttributeError, TypeError):
        return None
    if misses:
        return False
    return True if hits else None


def clear_cache(*, disk: bool = True, memory: bool = True) -> None:
    """Forget cached kernel modules (for tests and the CLI).

    `disk`: delete the ``numba-*`` and ``native-*`` folders (see
    `fastad.runtime.native`) under `cache_dir()` and under any
    temporary fallback used by this process. The root folder itself and
    anything else in it are left alone, because it may be a directory the user
    chose. Numba files under ``$NUMBA_CACHE_DIR``, if that is set, are left too.
    `memory`: forget the modules imported by this process, so the next
    `load_kernel_module` imports them again. Modules already handed out keep
    working.
    """
    with _STATE_LOCK:
        if memory:
            _MEMORY.clear()
        if disk:
            for root in {_configured_dir(), *_ROOTS.values()}:
                for child in [*root.glob("numba-*"), *root.glob("native-*")]:
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child, ignore_errors=True)


# ---------------------------------------------------------------------------
# Keys, paths and the writable root

_STATE_LOCK = threading.RLock()      # guards _MEMORY, _ROOTS, _ENTRY_LOCKS
_MEMORY: dict[str, LoadedModule] = {}
_ROOTS: dict[Path, Path] = {}        # configured root -> root actually used (itself or a fallback)
_ENTRY_LOCKS: dict[Path, "_EntryLock"] = {}


def _configured_dir() -> Path:
    env = os.environ.get("FASTAD_CACHE_DIR")
    if env:
        path = Path(env).expanduser()
    elif sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        path = Path(base) / "fastad" / "Cache"
    elif sys.platform == "darwin":
        path = Path.home() / "Library" / "Caches" / "fastad"
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        # The XDG spec says to ignore relative values.
        base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
        path = base / "fastad"
    # Numba's cache locator needs an absolute path.
    return path.absolute()


@functools.lru_cache(maxsize=None)
def _environment_fingerprint() -> bytes:
    import llvmlite
    import llvmlite.binding as ll
    import numba
    from numba.core import config
    from numba.core.codegen import get_host_cpu_features

    # CPU name and features the way Numba's codegen picks them (honours
    # NUMBA_CPU_NAME / NUMBA_CPU_FEATURES for portable caches).
    env = {
        "format": FORMAT_VERSION,
        "numba": numba.__version__,
        "llvmlite": llvmlite.__version__,
        "python": sys.version,
        "cache_tag": sys.implementation.cache_tag,
        "triple": ll.get_process_triple(),
        "cpu": config.CPU_NAME or ll.get_host_cpu_name(),
        "cpu_features": config.CPU_FEATURES or get_host_cpu_features(),
    }
    return json.dumps(env, sort_keys=True).encode()


def _entry_key(source: str) -> str:
    h = hashlib.sha256(_environment_fingerprint())
    h.update(b"\0")  # JSON never contains NUL, so the split is unambiguous
    h.update(source.encode("utf-8"))
    return h.hexdigest()


def _stem(name_hint: str, key: str) -> str:
    hint = re.sub(r"[^A-Za-z0-9_]", "_", name_hint)[:40] or "kernel"
    return f"fastad_{hint}_{key[:24]}"


def _numba_folder() -> str:
    import numba

    return f"numba-{numba.__version__}"


def _probe_writable(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tempfile.TemporaryFile(dir=folder).close()


def _usable_root(configured: Path, folder: str | None = None) -> Path:
    """`configured`, or the temporary fallback if `configured/folder` cannot be written.
    `folder`: the entry folder to probe (default: Numba's, see `_numba_folder`)."""
    root = _ROOTS.get(configured)
    if root is None:
        folder = folder or _numba_folder()
        try:
            _probe_writable(configured / folder)
            root = configured
        except OSError as exc:
            root = _use_fallback(configured, exc, stacklevel=5, folder=folder)
        _ROOTS[configured] = root
    return root


def _use_fallback(configured: Path, exc: OSError, stacklevel: int, folder: str | None = None) -> Path:
    # stacklevel: frames up to the caller of load_kernel_module.
    root = _fallback_root(folder or _numba_folder())
    _ROOTS[configured] = root
    # Warned once per configured directory: later calls find _ROOTS set.
    warnings.warn(
        f"fastad: kernel cache directory {configured} is not writable ({exc}); "
        f"using {root} for this process (set FASTAD_CACHE_DIR to change it)",
        CacheWarning,
        stacklevel=stacklevel,
    )
    return root


def _fallback_root(folder: str) -> Path:
    base = Path(tempfile.gettempdir())
    getuid = getattr(os, "getuid", None)
    if getuid is not None:
        uid = getuid()
        path = base / f"fastad-cache-{uid}"
        try:
            path.mkdir(mode=0o700, exist_ok=True)
            st = os.lstat(path)
            # In a shared temp dir another user could create this path first.
            # Its .py files are executed and its .nbc files unpickled, so use it
            # only if it is a private directory of ours.
            if stat.S_ISDIR(st.st_mode) and st.st_uid == uid and not st.st_mode & 0o022:
                _probe_writable(path / folder)
                return path
        except OSError:
            pass
    return Path(tempfile.mkdtemp(prefix="fastad-cache-"))


# ---------------------------------------------------------------------------
# The .py entry

_HEADER = "# fastad kernel module, format {fmt}, key {key}, body sha256 {digest}\n"


def _entry_bytes(source: str, key: str) -> bytes:
    body = source.encode("utf-8")
    digest = hashlib.sha256(body).hexdigest()
    return _HEADER.format(fmt=FORMAT_VERSION, key=key, digest=digest).encode() + body


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:  # unreadable: treat like a corrupt entry and rewrite it
        _log.warning("fastad: cannot read cached kernel %s (%s); rewriting it", path, exc)
        return b""


def _atomic_write(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def _load_entry(source: str, key: str, stem: str) -> LoadedModule:
    expected = _entry_bytes(source, key)
    configured = _configured_dir()
    while True:
        root = _usable_root(configured)
        path = root / _numba_folder() / f"{stem}.py"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            existing = _read_or_none(path)
            disk_hit = existing == expected
            repaired = existing is not None and not disk_hit
            if repaired:
                _log.warning("fastad: cached kernel %s is corrupt; rewriting it", path)
            if not disk_hit:
                _atomic_write(path, expected)
            break
        except OSError as exc:
            if root != configured:
                raise
            _use_fallback(configured, exc, stacklevel=4)  # e.g. disk full or became read-only
    lock = _ENTRY_LOCKS.setdefault(path, _EntryLock(path.with_suffix(".lock")))
    module = _exec_module(stem, path, expected, lock)
    dispatchers = _instrument(module, lock)
    return LoadedModule(module, path, key, False, disk_hit, repaired, dispatchers)


def _exec_module(name: str, path: Path, data: bytes, lock: "_EntryLock") -> ModuleType:
    from numba.core.compiler_lock import global_compiler_lock

    # Compile the bytes that were just verified, not the file, which could
    # change between the check and the import. This also skips Python's .pyc
    # (a corrupt .pyc would make importlib raise).
    code = compile(data, str(path), "exec", dont_inherit=True)
    for attempt in (1, 2):
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        # Numba's cache resolves the module by name, so register it before the
        # body runs.
        sys.modules[name] = module
        try:
            # Same lock order as _guard_compile. Eager compiles (njit with
            # signatures) run in the module body and read Numba's cache here,
            # before _instrument can protect them.
            with global_compiler_lock, lock:
                exec(code, module.__dict__)
            return module
        except Exception as exc:
            sys.modules.pop(name, None)
            if attempt == 2 or not _purge_numba_files(_numba_cache_dirs(path), f"{name}.*", exc):
                raise
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------
# Numba's cache files: verification, self-healing, locking


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
