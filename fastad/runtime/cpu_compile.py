"""runtime.cpu_compile: turn a CPU kernel into callable native code, without the caller waiting.

Start at `build` (what the CPU backend calls on its own thread) and
`build_in_background` (what its background compile thread, `CompileThread`, runs).

* `build`: the native object cache first (`fastad.runtime.native`: no Numba
  import), else Numba in this process (`compile_source`), which stores the
  object code for later processes.
* `build_in_background`: the same in a separate Python process (`child_main`),
  then the object code it stored is loaded here. A compile in another process
  holds no lock this process needs (above all Python's GIL, which a Numba
  compile holds most of the time and the numpy tier needs between its array
  operations), and a compiler crash cannot take this process down: a failed
  compile process is an error the CPU backend turns into a warning. Where the
  object code cannot be stored or loaded (not ELF, unwritable cache) it falls
  back to `build`. FASTAD_COMPILE_PROCESS=0 compiles in a thread instead.
* A compile process gets its whole job on stdin at start (`spawn`), so it
  finishes and stores its kernels even when the process that started it has
  exited meanwhile (the CPU backend does not make an exiting process wait).

`Native` wraps the address as a ctypes function in Numba's calling convention
(status, return slot, exception slot, then `body`'s arguments; see
`fastad.codegen.numba`).
"""
from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import numpy as np

__all__ = ["Native", "CompileThread", "build", "build_in_background", "compile_hint", "compile_source", "child_main",
           "spawn"]


class Native:
    """A compiled kernel: its ctypes entry point, full reductions and their partial dtypes."""

    __slots__ = ("fn", "address", "full", "acc", "keep", "slots", "_scratch")

    def __init__(self, kernel, address: int, keep):
        import ctypes as c
        from ..codegen.numba import accumulator_dtype, c_arguments, full_reductions
        ctype = {"ptr": c.c_void_p, "bool": c.c_bool, "float32": c.c_float, "float64": c.c_double}
        args = [ctype.get(a) or getattr(c, f"c_{a}") for a in c_arguments(kernel)]
        self.address = address
        self.fn = c.CFUNCTYPE(c.c_int32, c.c_void_p, c.c_void_p, c.c_int64, c.c_int64, *args)(address)
        self.full = full_reductions(kernel)
        self.acc = [accumulator_dtype(kernel, k) for k in self.full]
        self.keep = keep   # whatever owns the machine code (llvmlite engine, Numba dispatcher)
        from .cpu import CHUNKS
        # 32 bytes per slice for Numba's return and exception slots; the kernel never raises on the
        # success path and nothing reads them, so concurrent calls may share them
        self._scratch = np.empty(4 * CHUNKS, np.int64)
        self.slots = self._scratch.ctypes.data


def compile_hint(kernel) -> str:
    return kernel.name[3:30]


def load_native(kernel, source: str):
    """The kernel from the native object cache, or None."""
    from . import native
    hit = native.load(source, compile_hint(kernel))
    return None if hit is None else Native(kernel, hit.address, hit)


def build(kernel, source: str | None = None):
    """Load or compile `kernel` in this process: (Native, seconds, how), how in "native",
    "numba-cache" (Numba's own disk cache), "compiled"."""
    from ..codegen.numba import render
    t0 = time.perf_counter()
    source = source or render(kernel)
    entry = load_native(kernel, source)
    if entry is not None:
        return entry, time.perf_counter() - t0, "native"
    address, keep, how = compile_source(source, compile_hint(kernel))
    return Native(kernel, address, keep), time.perf_counter() - t0, how


def compile_source(source: str, hint: str):
    """Compile a rendered kernel module with Numba and store its object code: (address, keep, how)."""
    from . import native
    from .cache import load_kernel_module, numba_cache_hit
    loaded = load_kernel_module(source, name_hint=hint)
    body, sig = loaded.module.body, tuple(loaded.module.SIGNATURE)
    body.compile(sig)
    cres = body.overloads[sig]
    symbol = cres.fndesc.mangled_name
    how = "numba-cache" if numba_cache_hit(body) else "compiled"
    native.store(source, hint, cres.library, symbol)
    return cres.library.get_pointer_to_function(symbol), (body, cres), how


def build_in_background(kernel, source: str, spawned=None):
    """`build`, with the compile in a separate process (see the module docstring). `spawned()` is
    called once that process has its whole job: from then on it finishes even if this one exits."""
    if os.environ.get("FASTAD_COMPILE_PROCESS", "1") == "0" or not sys.platform.startswith("linux"):
        return build(kernel, source)   # elsewhere object code is not cached (ELF only): compile here
    t0 = time.perf_counter()
    entry = load_native(kernel, source)
    if entry is not None:
        return entry, time.perf_counter() - t0, "native"
    proc = spawn([(source, compile_hint(kernel))], wait=True)
    if spawned is not None:
        spawned()
    how = _child_result(proc)
    entry = load_native(kernel, source)
    if entry is None:   # nothing usable was stored (not ELF, unwritable cache, ...): compile here
        return build(kernel, source)
    return entry, time.perf_counter() - t0, how


_CHILD = "from fastad.runtime.cpu_compile import child_main; child_main()"


def spawn(jobs: list, wait: bool):
    """Start a compile process for `jobs` [(source, name hint)], compiled in order, its input
    written and closed. `wait=False`: nobody reads its output (it is left to finish after this
    process exits, storing what it compiles in the cache)."""
    import subprocess   # here: a warm process that never compiles does not import it
    root = str(Path(__file__).resolve().parents[2])   # the directory that holds this fastad package
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    out = subprocess.PIPE if wait else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=out, stderr=out,
                            text=True, env=env)
    proc.stdin.write(json.dumps([{"source": source, "hint": hint} for source, hint in jobs]))
    proc.stdin.close()
    proc.stdin = None   # closed: communicate() must not flush it
    return proc


def _child_result(proc) -> str:
    import subprocess
    try:
        stdout, stderr = proc.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise RuntimeError("compile process ran for more than 900 s") from None
    lines = stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (stderr or stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"compile process exited with status {proc.returncode}: {' | '.join(tail)}")
    return json.loads(lines[-1])["how"]


class CompileThread:
    """One daemon thread running background compiles in order. A daemon, so a process that is done
    exits at once instead of waiting for a compile: at exit the compile already started is left to
    finish on its own (`_at_exit` waits only until it has its input), and the queued ones go to one
    more compile process, so the next process finds every kernel in the cache."""

    def __init__(self):
        self._jobs = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closing = False
        self._spawned = threading.Event()
        self._spawned.set()
        self._thread = threading.Thread(target=self._work, name="fastad-compile", daemon=True)
        self._thread.start()
        register = getattr(threading, "_register_atexit", None)   # runs while daemon threads still run
        if register is not None:
            register(self._at_exit)

    def _thread_is_daemon(self) -> bool:
        return self._thread.daemon

    def submit(self, kernel, source: str) -> Future:
        future = Future()
        self._jobs.put((future, kernel, source))
        return future

    def _work(self) -> None:
        while True:
            future, kernel, source = self._jobs.get()
            with self._lock:
                if self._closing or not future.set_running_or_notify_cancel():
                    continue   # exiting: `_at_exit` hands the queue on
                self._spawned.clear()
            try:
                future.set_result(build_in_background(kernel, source, spawned=self._spawned.set))
            except BaseException as exc:   # reported where the result is taken (`_adopt`)
                future.set_exception(exc)
            finally:
                self._spawned.set()

    def _at_exit(self) -> None:
        with self._lock:
            self._closing = True
        self._spawned.wait(timeout=10)
        jobs = []
        while True:
            try:
                future, kernel, source = self._jobs.get_nowait()
            except queue.Empty:
                break
            if future.cancel():
                jobs.append((source, compile_hint(kernel)))
        if jobs:
            try:
                spawn(jobs, wait=False)
            except OSError:
                pass   # the next process compiles them


def child_main() -> None:
    """Entry of the compile process: jobs [{"source", "hint"}] on stdin, {"how"} per job on stdout.

    The process lowers its own scheduling priority (FASTAD_COMPILE_NICE, default 10): it runs
    while its caller computes on the numpy tier, and where the two compete for cores the caller's
    result comes first. A core the caller leaves idle still goes to the compile at full speed."""
    try:
        os.nice(int(os.environ.get("FASTAD_COMPILE_NICE", "10")))
    except (OSError, ValueError):
        pass
    for job in json.loads(sys.stdin.read()):
        _, _, how = compile_source(job["source"], job["hint"])
        try:
            print(json.dumps({"how": how}), flush=True)
        except OSError:   # the process that started this one has exited: keep compiling for the cache
            pass
