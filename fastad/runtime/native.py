"""runtime.native: cache compiled kernels as native object code and load them without Numba.

Role: a fresh process that finds a kernel in Numba's own cache still pays for
importing Numba and for its dispatcher (about 0.3 s before the first result).
Kernels rendered by `fastad.codegen.numba` take only C scalars and data
pointers and are compiled without Python wrappers, so their native function
can be called through ctypes and their object code refers to no Numba
runtime symbol. `store` writes the object code of that compiled module next
to the other cache entries; `load` maps it into the process with llvmlite's
MCJIT (no Numba import, no type inference) and returns the function's
address, which the CPU runtime calls. Where the system linker (`ld`) exists,
`store` also links a self-contained object into a shared library, which
`load` opens with dlopen: then a warm process imports neither Numba nor
llvmlite (about 50 ms), and the key's host-CPU part comes from a remembered
fingerprint (`_fingerprint`).

Where to start reading: `load`, then `store`.

Layout (per rendered source)::

    cache_dir()/native-<FORMAT_VERSION>/fastad_<hint>_<key[:24]>.o
        sha256 frame (as in fastad.runtime.cache) around:
        one JSON line {"entry": symbol, "undefined": [symbols]} + the ELF object
    cache_dir()/native-<FORMAT_VERSION>/fastad_<hint>_<key[:24]>.shared
        the same frame around the same JSON line + the linked shared library
    cache_dir()/native-<FORMAT_VERSION>/fingerprint-<hash of versions and cpuinfo>.json

    key = sha256(FORMAT_VERSION, llvmlite and Numba versions, Python cache tag,
                 LLVM triple, host CPU name and features, NUMBA_CPU_NAME,
                 NUMBA_CPU_FEATURES, NUMBA_OPT, source)

Guarantees, the same as the module cache's (`fastad.runtime.cache`):
* writes are atomic (temporary file + os.replace), so concurrent processes
  see an old entry or a new one, never half of one; they write identical bytes;
* the checksum is verified before any byte reaches LLVM or the dynamic
  loader (which opens a private verified copy); a damaged entry is
  deleted and reported as a miss, after which the runtime compiles through
  Numba and stores a fresh one;
* every symbol the object leaves undefined must resolve in this process before
  the object is linked (MCJIT aborts the process on an unresolved symbol);
  if one does not, the entry counts as a miss;
* an unwritable cache directory falls back to the same temporary directory.
Only ELF objects (Linux) are stored; elsewhere every lookup misses and the
Numba cache alone serves warm starts.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import itertools
import os
import struct
import sys
import threading
from pathlib import Path

from . import cache

__all__ = ["FORMAT_VERSION", "NativeFunction", "load", "store", "entry_path", "symbols"]

FORMAT_VERSION = 1

_log = logging.getLogger(__name__)
_LOCK = threading.Lock()   # llvmlite engines are created and linked one at a time


class NativeFunction:
    """A loaded entry point: `address` stays valid while this object (its engine) lives."""

    __slots__ = ("address", "symbol", "path", "_engine")

    def __init__(self, address: int, symbol: str, path: Path, engine):
        self.address, self.symbol, self.path, self._engine = address, symbol, path, engine


def entry_path(source: str, name_hint: str) -> Path:
    """Where the native entry of `source` lives (under the writable cache root)."""
    key = hashlib.sha256(_fingerprint() + b"\0" + source.encode("utf-8")).hexdigest()
    return _root() / _folder() / f"{cache._stem(name_hint, key)}.o"


def _root() -> Path:
    with cache._STATE_LOCK:
        return cache._usable_root(cache._configured_dir(), _folder())


def load(source: str, name_hint: str) -> NativeFunction | None:
    """The cached entry point of `source`, or None (miss, damaged entry, unresolvable symbol).
    The shared-library entry first (no llvmlite import), then the object code through MCJIT."""
    try:
        if not _fingerprint_known():
            return None   # nothing was stored under this machine's fingerprint: a miss, no llvmlite import
        path = entry_path(source, name_hint)
    except OSError:
        return None
    hit = _load_shared(path)
    if hit is not None:
        return hit
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    try:
        payload = cache._unframe(raw, str(path))
        head, obj = payload.split(b"\n", 1)
        meta = json.loads(head)
        symbol, undefined = meta["entry"], meta["undefined"]
    except Exception as exc:   # damaged: remove it, the runtime recompiles and stores a fresh one
        _discard(path, exc)
        return None
    ll = _llvm()
    missing = [s for s in undefined if not _resolvable(ll, s)]
    if missing:
        _log.info("fastad: native kernel %s needs %s, not loaded in this process", path, missing[:3])
        return None
    try:
        with _LOCK:
            # the engine takes ownership of its target machine: one each
            engine = ll.create_mcjit_compiler(ll.parse_assembly(""), _target().create_target_machine(jit=True))
            engine.add_object_file(ll.ObjectFileRef.from_data(obj))
            engine.finalize_object()
            address = engine.get_function_address(symbol)
    except Exception as exc:
        _discard(path, exc)
        return None
    if not address:
        _discard(path, LookupError(f"no symbol {symbol}"))
        return None
    return NativeFunction(address, symbol, path, engine)


def store(source: str, name_hint: str, library, symbol: str) -> Path | None:
    """Write the object code of Numba `library` (which defines `symbol`) as the entry of `source`.
    Returns the path, or None where nothing could be stored (not ELF, unwritable); never raises."""
    try:
        obj = _object_code(library, symbol)
        if obj is None:
            return None
        undefined = symbols(obj)[1]
        head = json.dumps({"entry": symbol, "undefined": undefined}).encode()
        path = entry_path(source, name_hint)
        path.parent.mkdir(parents=True, exist_ok=True)
        cache._atomic_write(path, cache._frame(head + b"\n" + obj))
        if not undefined:   # self-contained: also as a shared library, which loads without llvmlite
            shared = _link_shared(obj)
            if shared is not None:
                cache._atomic_write(_shared_path(path), cache._frame(head + b"\n" + shared))
        return path
    except Exception as exc:   # the kernel is compiled and usable; only the warm start is lost
        _log.warning("fastad: could not store native kernel (%s: %s)", type(exc).__name__, exc)
        return None


def symbols(obj: bytes) -> tuple | None:
    """(defined, undefined) symbol names of an ELF64 little-endian object, or None if `obj` is not one."""
    if obj[:4] != b"\x7fELF" or obj[4:6] != b"\x02\x01":
        return None
    shoff, = struct.unpack_from("<Q", obj, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", obj, 0x3A)
    # (name, type, flags, addr, offset, size, link, info, addralign, entsize)
    sections = [struct.unpack_from("<IIQQQQIIQQ", obj, shoff + i * shentsize) for i in range(shnum)]
    defined, undefined = set(), set()
    for sec in sections:
        if sec[1] != 2:   # SHT_SYMTAB
            continue
        strings = sections[sec[6]][4]
        for off in range(sec[4] + 24, sec[4] + sec[5], 24):   # entry 0 is the null symbol
            name, _info, _other, shndx = struct.unpack_from("<IBBH", obj, off)
            if name:
                text = obj[strings + name:obj.index(b"\0", strings + name)].decode()
                (undefined if shndx == 0 else defined).add(text)   # 0: SHN_UNDEF
    return sorted(defined), sorted(undefined)


# ---------------------------------------------------------------------------
# Shared-library entries: a warm start without llvmlite
# ---------------------------------------------------------------------------

_COPIES = itertools.count()   # names of the private copies loaded with dlopen (unlinked at once)


def _shared_path(path: Path) -> Path:
    return path.with_suffix(".shared")


def _link_shared(obj: bytes) -> bytes | None:
    """`obj` linked into a shared library by the system linker, or None (no linker, or it failed)."""
    import shutil
    import subprocess
    import tempfile
    ld = shutil.which("ld")
    if ld is None or not sys.platform.startswith("linux"):
        return None
    with tempfile.TemporaryDirectory(prefix="fastad-link-") as tmp:
        src, out = Path(tmp) / "kernel.o", Path(tmp) / "kernel.so"
        src.write_bytes(obj)
        try:
            proc = subprocess.run([ld, "-shared", "-o", str(out), str(src)], capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.read_bytes() if proc.returncode == 0 and out.is_file() else None


def _load_shared(path: Path) -> NativeFunction | None:
    """The entry point from the shared-library entry of `path`, or None. Its checksum is verified
    first; then a private copy is loaded with dlopen (no llvmlite) and unlinked at once."""
    import ctypes
    spath = _shared_path(path)
    try:
        raw = spath.read_bytes()
    except OSError:
        return None
    try:
        head, library = cache._unframe(raw, str(spath)).split(b"\n", 1)
        symbol = json.loads(head)["entry"]
        if library[:4] != b"\x7fELF":
            raise ValueError("not an ELF shared library")
    except Exception as exc:   # damaged: remove it; the object entry (or a compile) serves instead
        _discard(spath, exc)
        return None
    try:
        copy = str(spath.parent / f".fastad-kernel-{os.getpid()}-{next(_COPIES)}.so")
        fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(library)
            lib = ctypes.CDLL(copy, mode=os.RTLD_NOW | os.RTLD_LOCAL)
        finally:
            os.unlink(copy)
        address = ctypes.cast(lib[symbol], ctypes.c_void_p).value
    except (OSError, AttributeError) as exc:   # e.g. a noexec file system: not damage, use the object entry
        _log.info("fastad: shared kernel %s not loadable here (%s)", spath, exc)
        return None
    return NativeFunction(address, symbol, path, lib)


def _resolvable(ll, name: str) -> bool:
    """Whether MCJIT will find `name`: symbols added to llvmlite, or exported by the process
    (the Python C API a kernel's unused Python wrapper refers to) and the libraries it loaded."""
    if ll.address_of_symbol(name):
        return True
    try:
        getattr(_process(), name)
        return True
    except AttributeError:
        return False


@functools.lru_cache(maxsize=None)
def _process():
    import ctypes
    return ctypes.CDLL(None)


def _folder() -> str:
    return f"native-{FORMAT_VERSION}"


def _discard(path: Path, exc: BaseException) -> None:
    _log.warning("fastad: native kernel %s unusable (%s: %s); removed, recompiling",
                 path, type(exc).__name__, exc)
    try:
        os.unlink(path)
    except OSError:
        pass


def _object_code(library, symbol: str) -> bytes | None:
    """The object code of Numba `library` that defines `symbol` (None if none does, or not ELF)."""
    candidates = (lambda: library._codegen._tm.emit_object(library._final_module),   # the linked module
                  lambda: library.serialize_using_object_code()[2][0])             # what Numba caches
    for make in candidates:
        try:
            obj = make()
        except Exception:
            continue
        table = symbols(obj)
        if table is not None and symbol in table[0]:
            return obj
    return None


@functools.lru_cache(maxsize=None)
def _numba_version() -> str:
    """Numba's version file, hashed without importing Numba (0.3 s) or importlib.metadata (0.1 s);
    the same whether Numba is imported or not, so every process computes the same key."""
    import importlib.util
    spec = importlib.util.find_spec("numba")
    try:   # the generated version file: it changes with every release
        return hashlib.sha256((Path(spec.origin).parent / "_version.py").read_bytes()).hexdigest()[:16]
    except (OSError, TypeError, AttributeError):
        return "unknown"


@functools.lru_cache(maxsize=None)
def _llvm():
    import llvmlite.binding as ll
    ll.initialize_native_target()
    ll.initialize_native_asmprinter()
    return ll


@functools.lru_cache(maxsize=None)
def _target():
    return _llvm().Target.from_default_triple()


@functools.lru_cache(maxsize=None)
def _fingerprint() -> bytes:
    """What the object code depends on besides its source. Asking LLVM for the host CPU means
    importing llvmlite (about 50 ms), so the answer is remembered in the cache folder under a
    key of cheaper facts (versions, /proc/cpuinfo's model and flags, Numba's CPU settings)."""
    cheap = _cheap_fingerprint()
    memo = None
    if cheap is not None:
        memo = _root() / _folder() / f"fingerprint-{cheap}.json"
        try:
            return cache._unframe(memo.read_bytes(), str(memo))
        except (OSError, cache._CorruptCacheFile):
            pass
    full = _full_fingerprint()
    if memo is not None:
        try:
            memo.parent.mkdir(parents=True, exist_ok=True)
            cache._atomic_write(memo, cache._frame(full))
        except OSError:
            pass
    return full


def _fingerprint_known() -> bool:
    """Whether this process or the cache folder has the fingerprint already. Storing an entry
    writes it first, so where it is missing every load misses: a cold start then needs no
    llvmlite import (30-60 ms) to find that out."""
    if _fingerprint.cache_info().currsize:
        return True
    cheap = _cheap_fingerprint()
    return cheap is None or (_root() / _folder() / f"fingerprint-{cheap}.json").exists()


def _cheap_fingerprint() -> str | None:
    """A hash of facts that pin down `_full_fingerprint` and need no llvmlite; None off Linux."""
    import importlib.util
    try:
        cpuinfo = Path("/proc/cpuinfo").read_bytes()
        spec = importlib.util.find_spec("llvmlite")
        llvmlite_version = (Path(spec.origin).parent / "_version.py").read_bytes()
    except (OSError, TypeError, AttributeError, ImportError):
        return None
    fields = (b"vendor_id", b"cpu family", b"model", b"stepping", b"flags", b"microcode")
    cpu = sorted({line for line in cpuinfo.splitlines() if line.startswith(fields)})
    h = hashlib.sha256(json.dumps([FORMAT_VERSION, _numba_version(), sys.implementation.cache_tag,
                                   [os.environ.get(k, "") for k in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES",
                                                                    "NUMBA_OPT")]]).encode())
    h.update(llvmlite_version)
    for line in cpu:
        h.update(line + b"\n")
    return h.hexdigest()[:32]


def _full_fingerprint() -> bytes:
    import llvmlite
    ll = _llvm()
    env = {
        "format": FORMAT_VERSION,
        "llvmlite": llvmlite.__version__,
        "numba": _numba_version(),
        "cache_tag": sys.implementation.cache_tag,
        "triple": ll.get_process_triple(),
        "cpu": ll.get_host_cpu_name(),
        "cpu_features": ll.get_host_cpu_features().flatten(),
        "numba_env": [os.environ.get(k, "") for k in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES", "NUMBA_OPT")],
    }
    return json.dumps(env, sort_keys=True).encode()
