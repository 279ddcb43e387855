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
``_instrument`` in `fastad.runtime.cache_files` (what is done to every Numba
dispatcher defined by a kernel module). The public API is listed in ``__all__``.

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

What Numba does with damaged cache files, and what fastad does about it
(sha256-framed index and data files, self-healing loads, per-entry locks), is
in `fastad.runtime.cache_files`.

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
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import stat
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

from .cache_files import (  # noqa: F401 - _frame, _unframe, _CorruptCacheFile: also used by runtime.native
    _atomic_write,
    _CorruptCacheFile,
    _EntryLock,
    _frame,
    _instrument,
    _numba_cache_dirs,
    _purge_numba_files,
    _unframe,
)

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
