"""buffers: reuse large host output buffers that nobody holds any more.

Start at `BufferPool.empty`. A training loop's kernels produce outputs of the
same sizes every step, and a fresh large numpy array costs a page fault for
every 4 KiB page on first touch (glibc hands freed blocks above its mmap
threshold back to the OS), which costs as much as the kernel that fills it.

The pool allocates large outputs as views of raw byte arrays that it keeps,
each an anonymous private mapping of its own (`fresh_bytes`: without numpy's
huge-page advice, whose memory compaction stalled first touches here).
A raw array whose only reference is the pool's own is free: no node, tensor,
numpy() result, view or DLPack export holds it (each of those references it,
directly or as its view's base). A free array is handed out again instead of
a new one. Buffers stay immutable to everyone else: a handed-out view is
frozen when it is stored on a node, and it is reused only after every holder
has let it go.
"""
from __future__ import annotations

import ctypes
import mmap
import sys
import threading
import tracemalloc
import weakref

import numpy as np

__all__ = ["BufferPool", "pool", "unobserved"]

MIN_BYTES = 1 << 20       # smaller arrays come from malloc's heap, where reuse is already cheap
MAX_PER_SIZE = 16         # arrays tracked per byte size (in use or free)
MAX_FREE_PER_SIZE = 4     # free arrays kept per byte size; more are released


class BufferPool:
    def __init__(self):
        self._raw: dict[int, list] = {}
        self._lock = threading.Lock()
        self.reused = 0
        self.allocated = 0

    def empty(self, n: int, dtype) -> np.ndarray:
        """An uninitialised 1-d array of `n` elements: a free pooled buffer, or a new one."""
        dtype = np.dtype(dtype)
        nbytes = n * dtype.itemsize
        if nbytes < MIN_BYTES:
            return np.empty(n, dtype)
        with self._lock:
            raws = self._raw.setdefault(nbytes, [])
            found, free = None, 0
            for i in range(len(raws) - 1, -1, -1):
                # 2 references: the list's and getrefcount's argument; any holder adds one
                if sys.getrefcount(raws[i]) == 2:
                    if found is None:
                        found = raws[i]
                    else:
                        free += 1
                        if free >= MAX_FREE_PER_SIZE:
                            del raws[i]          # let the allocator have it back
            if found is not None:
                self.reused += 1
                return found.view(dtype)
            raw = fresh_bytes(nbytes)
            self.allocated += 1
            if len(raws) < MAX_PER_SIZE:
                raws.append(raw)
            return raw.view(dtype)

    def tracks(self, raw) -> bool:
        """Whether `raw` is one of the pool's arrays (which the pool's list holds a reference to)."""
        with self._lock:
            return any(r is raw for r in self._raw.get(raw.nbytes, ()))

    def clear(self) -> None:
        """Forget every pooled array (those in use stay alive through their holders)."""
        with self._lock:
            self._raw.clear()


def unobserved(nodes) -> bool:
    """Whether nothing but `nodes` can read the memory behind their host buffers, so that a
    kernel may overwrite it (buffer donation, `fastad.realize.realize`).

    The buffers must all view one block of memory. Each buffer that is a view must be held by
    its node alone; the block's owner (the array that owns the memory, or a pooled array) may be
    held only by those views (their `.base`), by a node of `nodes` directly, and by the pool.
    Whatever else could read the memory (another node, a tensor's `numpy()` result, a numpy
    view, a DLPack export, a memoryview) holds a reference to one of those arrays, so in CPython
    the reference counts below are exact. The caller checks that nothing else holds the nodes."""
    owner, expected = None, 2   # `owner` and getrefcount's argument
    for node in nodes:
        buf = node.buffer
        if type(buf) is not np.ndarray:
            return False
        base = buf.base
        if type(base) is np.ndarray:   # a view (numpy collapses chains of views to the owner)
            if sys.getrefcount(buf) != 3:   # the node's slot, `buf` and the argument
                return False
            found = base
        else:
            found = buf
        expected += 1   # a view's base reference, or the node's slot
        if owner is None:
            owner = found
        elif found is not owner:
            return False
    if owner is None:
        return False
    del buf, base, found
    if pool.tracks(owner):
        expected += 1
    elif not owner.flags.owndata:   # a wrapper of foreign memory, which others may wrap too
        return False
    return sys.getrefcount(owner) == expected


def fresh_bytes(nbytes: int) -> np.ndarray:
    """A new uint8 array of `nbytes` in anonymous private memory of its own. numpy advises the
    kernel to back large arrays with huge pages (MADV_HUGEPAGE); where free huge pages are scarce
    that makes each first touch wait for memory compaction: measured here, the first write to a
    new 40 MB array took 20-210 ms with the advice and 22-36 ms without."""
    if _MAP_FLAGS is not None:
        try:
            mapping = mmap.mmap(-1, nbytes, flags=_MAP_FLAGS)
        except (OSError, ValueError, OverflowError):
            pass
        else:
            raw = np.frombuffer(mapping, np.uint8)
            if tracemalloc.is_tracing():   # visible to memory profilers, as numpy's own data is
                _trace(mapping, raw.ctypes.data, nbytes)
            return raw
    return np.empty(nbytes, np.uint8)


def _trace(mapping, address: int, nbytes: int) -> None:
    api = ctypes.pythonapi
    if api.PyTraceMalloc_Track(_NUMPY_TRACE_DOMAIN, ctypes.c_size_t(address), ctypes.c_size_t(nbytes)) == 0:
        weakref.finalize(mapping, api.PyTraceMalloc_Untrack, _NUMPY_TRACE_DOMAIN, ctypes.c_size_t(address))


_MAP_FLAGS = (mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS) if hasattr(mmap, "MAP_ANONYMOUS") else None
_NUMPY_TRACE_DOMAIN = 389047   # the tracemalloc domain numpy reports its data buffers in

pool = BufferPool()
