"""runtime.cpu: run kernels on the CPU, tiered: numpy first, native code once it pays, never a wait.

Start at `CpuBackend.run_kernel`. A kernel structure (`Kernel.key`) runs
through `interpret` (whole-array numpy, no compile) until compiling pays: when
it repeats (`settings.jit_after_calls`), when it is large
(`settings.jit_min_elements`), or always under FASTAD_CPU_MODE=jit. Then:

1. its native object code is looked up in the cache (`fastad.runtime.native`,
   a few milliseconds, no Numba import); on a hit it runs compiled at once;
2. otherwise Numba compiles it in a separate process, watched by a
   background thread (`cpu_compile.build_in_background`), while this call,
   and every call until the compile is done, runs on the numpy tier.
   The first call after that runs compiled. A process that is done exits
   without waiting for a running compile: the compile process finishes on
   its own and stores the kernel for the next process. A compile that fails in the
   background leaves the kernel on the numpy tier with a `KernelCompileWarning`.
   FASTAD_CPU_MODE=jit and FASTAD_BACKGROUND_COMPILE=0 compile on the calling
   thread instead; `wait_for_compiles()` waits for pending background work.

`fastad.profile()` records the tier of every launch ("numba" compiled,
"numpy" interpreted) and whether a compile of that kernel was pending.

A compiled kernel is the native function of `body(lo, hi, ...)` (see
`fastad.codegen.numba`), called through ctypes (which releases the GIL). If it
reports that it raised, the kernel runs again on the numpy tier, which defines
the semantics (numpy's error, or numpy's result).
Launches with at least `settings.parallel_min_elements` of work (elements weighed
by the kernel's cost, `work`) are split into up to `CHUNKS`
slices of the first dimension (`slice_count`), run on a thread pool (a repeated
launch through the native slice driver, `_drive`); reduction
partials are written per slice and combined in slice order, so results never
depend on the thread count. A column-form reduction too narrow to slice (a
(1M, 10) matrix summed over axis 0) is split along its reduced dim instead
(`reduced_split`), with per-chunk partial columns merged in chunk order.
`FASTAD_NUM_THREADS` (default: NUMBA_NUM_THREADS, i.e. the core count) sets the
pool size.
"""
from __future__ import annotations

import ctypes
import dataclasses
import math
import os
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import profiling as profile
from ..codegen.numba import merge_partials
from .._util import contiguous
from ..config import settings
from ..device import CPU
from ..dtypes import accumulator
from .buffers import MIN_BYTES as POOL_MIN_BYTES, pool as buffer_pool
from .cpu_compile import CompileThread, Native, build, load_native
from . import trampoline
from .interpret import interpret

__all__ = ["CpuBackend", "CHUNKS", "KernelCompileWarning", "wait_for_compiles"]

CHUNKS = 64  # slices of a large kernel, at most: fixed by size, so reductions do not depend on the thread count
COLUMN_SLICE = 64   # kept indices per slice of a column-form reduction, at least
TRAMPOLINE_AFTER = 8   # ctypes launches of one layout before `run_kernel` binds it through a trampoline


class KernelCompileWarning(RuntimeWarning):
    """A kernel failed to compile in the background; it keeps running on the numpy tier."""


def _thread_count() -> int:
    env = os.environ.get("FASTAD_NUM_THREADS") or os.environ.get("NUMBA_NUM_THREADS")
    return max(1, int(env)) if env else (os.cpu_count() or 1)


def slice_count(kernel, rows: int, elements: int) -> int:
    """How many slices of dim 0 a launch runs in. It depends only on the kernel and the size,
    never on the pool, so results are the same for any thread count. Sizes are weighed by the
    kernel's cost per element (`work`): a launch is split once its work reaches
    `settings.parallel_min_elements` float32-copy elements (a thread hand-off costs about as
    much as 100 us of work here, so a cheap 1M-element map runs faster on one thread and the
    chain's costly one from 100K elements on), and each slice holds at least an eighth of that
    (`_least_slice`). A column-form reduction (`codegen.numba.column_form`: dim 0 is the kept,
    contiguous one) keeps slices at least COLUMN_SLICE wide: every slice reads all the rows of
    its columns, and narrower slices would read each cache line many times over."""
    amount = work(kernel, elements)
    if amount < settings.parallel_min_elements or rows < 2:
        return 1
    from ..codegen.numba import column_form
    width = COLUMN_SLICE if column_form(kernel) else 1
    return max(1, min(rows // width, CHUNKS, max(2, int(amount // _least_slice()))))


def work(kernel, elements: int) -> float:
    """A launch's single-thread work in float32-copy elements (`codegen.numba.element_cost`)."""
    cost = _COSTS.get(kernel.key)
    if cost is None:
        from ..codegen.numba import element_cost
        cost = _COSTS[kernel.key] = element_cost(kernel)
    return elements * cost


_COSTS: dict = {}   # kernel key -> cost per element
_UNFINISHED = np.iinfo(np.int64).min   # a slice status the slice driver has not written yet


def _least_slice() -> int:
    """Work a slice holds at least: an eighth of `settings.parallel_min_elements`."""
    return max(1, settings.parallel_min_elements // 8)


def reduced_split(kernel, shape: tuple, elements: int) -> int:
    """How many chunks of the reduced dim a column-form reduction runs in where its kept dim is
    too narrow to slice (`slice_count` gives 1: fewer than 2 x COLUMN_SLICE columns, e.g. the
    sum over axis 0 of a (1M, 10) matrix). Each chunk reduces its rows into partial outputs of
    its own, merged in chunk order. By size alone, as `slice_count`, so results are the same for
    any thread count. 1: no split (too small, or the kernel also stores per element)."""
    from ..codegen.numba import column_form
    amount = work(kernel, elements)
    if (amount < settings.parallel_min_elements or not column_form(kernel)
            or any(not o.reduce for o in kernel.outputs) or slice_count(kernel, shape[0], elements) > 1):
        return 1
    return max(1, min(CHUNKS, shape[1], int(amount // _least_slice())))


def widened(kernel):
    """`kernel` with each reduced output in its accumulator's dtype (`dtypes.accumulator`): the
    kernel whose partial results a split launch merges before rounding once (`_launch_split`);
    `kernel` itself where no output widens."""
    found = _WIDENED.get(kernel.key)
    if found is None:
        outputs = tuple(dataclasses.replace(o, dtype=accumulator(o.reduce, o.dtype)) if o.reduce else o
                        for o in kernel.outputs)
        found = _WIDENED[kernel.key] = kernel if outputs == kernel.outputs else \
            dataclasses.replace(kernel, outputs=outputs)
    return found


_WIDENED: dict = {}   # kernel key -> `widened` kernel


def _c_scalars(kernel, scalars) -> list:
    """A kernel's constants as its C arguments: complex as (real, imag), bool as uint8, ints as int."""
    out = []
    for v, d in zip(scalars, kernel.scalars):
        if d.kind == "c":
            v = complex(v)
            out += [v.real, v.imag]
        else:
            out.append(int(v) if d.kind in "biu" else float(v))
    return out


def _with_scalars(args: list, at: int, kernel, scalars) -> list:
    """`args` (a launch's C arguments) with the constants from slot `at` on replaced."""
    new = _c_scalars(kernel, scalars)
    return args[:at] + new + args[at + len(new):]


def _same(a: tuple, b: tuple) -> bool:
    """Whether two launches' constants are the same values of the same types (0.0 and -0.0, or
    1 and True, differ; a NaN equals a NaN)."""
    if a is b:
        return True
    if len(a) != len(b):
        return False
    try:
        for x, y in zip(a, b):
            if x is y:
                continue
            if type(x) is not type(y):
                return False
            if x == y:
                if x == 0 and repr(x) != repr(y):   # signed zeros
                    return False
            elif x == x or y == y:   # unequal, and not both NaN
                return False
    except (TypeError, ValueError):
        return False
    return True


class CpuBackend:
    xp = np
    donates = True   # compiled kernels may write an output over a donated input (`Output.into`)

    def __init__(self):
        self._compiled: dict[str, Native] = {}
        self._pending: dict = {}          # kernel key -> Future of build_in_background
        self._failed: set = set()         # kernel keys whose background compile failed: numpy tier
        self._seen: dict[str, int] = {}
        self._launchers: dict = {}        # (kernel, layout) -> bound launch (`_bind_launch`)
        self._launchers_lock = threading.Lock()
        self._threads = _thread_count()
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="fastad") if self._threads > 1 else None
        if self._pool is not None:   # large matrix products' row blocks run on the pool too
            from .. import numpy_refs
            numpy_refs.run_blocks = self._run_blocks
        self._compiler = None             # the background compile thread, started on first use

    # ---- buffers ----------------------------------------------------------
    def from_numpy(self, array, device=None):
        return array

    def to_numpy(self, buffer):
        return buffer

    # ---- kernels ----------------------------------------------------------
    def run_kernel(self, kernel, shape, inputs, scalars, device=None) -> list:
        elements = math.prod(shape)
        entry = self._compiled.get(kernel.key)
        if entry is None:
            entry = self._prepare(kernel, elements)
        if entry is None:
            profile.record_launch(kernel.name, CPU, elements, tier="numpy",
                                  compiling=kernel.key in self._pending)
            return interpret(kernel, shape, inputs, scalars, run_blocks=self._run_blocks)
        # the entry point reads flat[offset + ...]: a strided buffer is copied first
        buffers = [flat if flat.ndim == 1 and (flat.strides[0] == flat.itemsize or flat.size <= 1)
                   else np.ascontiguousarray(flat).reshape(-1) for flat, _, _ in inputs]
        # a launch with the same layout as an earlier one reuses its bound arguments, and packs
        # only its constants again where they changed (a learning rate, a step-dependent value)
        key = (kernel.key, tuple(shape), tuple([(off, tuple(st)) for _, off, st in inputs]))
        scalars = tuple(scalars)
        bound = self._launchers.get(key)
        if bound is None:
            bound = self._bind_launch(kernel, shape, inputs, scalars, key, trampolines=False)
        elif bound[1]:
            bound[1] -= 1
            if not bound[1]:   # a launch that repeats (a training loop): bind it through a trampoline
                bound = self._bind_launch(kernel, shape, inputs, scalars, key, trampolines=True)
        if not _same(bound[2], scalars):
            bound = [bound[0].rebind(scalars), bound[1], scalars]
            with self._launchers_lock:   # (the eviction in `_bind_launch` iterates the dict)
                self._launchers[key] = bound
        return bound[0](buffers)

    def _bind_launch(self, kernel, shape, inputs, scalars, key, trampolines: bool) -> list:
        """[launch, calls left before trampolines, its constants] for `run_kernel` (flat outputs),
        remembered for the most recent layouts. The first calls of a layout go through
        ctypes: a trampoline is generated with llvmlite, which a warm process otherwise never
        imports (about 50 ms) and which pays off only for a launch that repeats."""
        n_kept = math.prod(shape[: kernel.ndim - kernel.reduce_ndim])
        sizes = [(n_kept if o.reduce else math.prod(shape),) for o in kernel.outputs]
        bound = [self.replay_launcher(kernel, shape, [(off, st) for _, off, st in inputs], scalars, sizes,
                                      trampolines=trampolines), 0 if trampolines else TRAMPOLINE_AFTER, scalars]
        with self._launchers_lock:
            self._launchers[key] = bound
            while len(self._launchers) > 512:
                self._launchers.pop(next(iter(self._launchers)))   # the oldest binding
        return bound

    def replay_launcher(self, kernel, shape, inputs, scalars, out_shapes, trampolines: bool = True,
                        unread: frozenset = frozenset()):
        """A launch of one kernel layout with everything but the buffers bound once (`fastad.compile`
        replays, and every compiled `run_kernel` launch): `launch(buffers)` returns the outputs
        shaped as `out_shapes`, or None if a buffer is not C-contiguous (`run_kernel` copies
        such buffers first). A kernel that raised runs again on the numpy tier.
        `launch.rebind(scalars)` is the same launch with other constants (a learning rate, a
        bias correction that changes every step): only the constants' slots are packed again.
        None while the kernel is not compiled yet. `inputs` are (offset, strides) per input (node
        buffers are C-contiguous; a broadcast constant read from state is not). A kernel that
        runs in one slice is called through a trampoline (`fastad.runtime.trampoline`): one
        packed argument array (`trampolines=False`: through ctypes, as `run_kernel`). There,
        the outputs numbered in `unread` (values a replay never reads) are written to scratch
        arrays made once, and come back as None."""
        from ..codegen.numba import c_arguments
        entry = self._compiled.get(kernel.key)
        if entry is None:
            return None
        elements = math.prod(shape)
        rows = shape[0]
        n_kept = math.prod(shape[: kernel.ndim - kernel.reduce_ndim])
        outs = []
        for o, oshape in zip(kernel.outputs, out_shapes):
            count = n_kept if o.reduce else elements
            if math.prod(oshape) != count:
                return None
            outs.append((tuple(oshape), o.dtype.np, count * o.dtype.np.itemsize >= POOL_MIN_BYTES, count))
        # donated outputs (`Output.into`): the kernel writes them over an input, which is the result
        donated = [(k, o.into, tuple(oshape)) for k, (o, oshape) in enumerate(zip(kernel.outputs, out_shapes))
                   if o.into is not None]
        args = [int(s) for s in shape]
        in_at = []
        for (offset, strides), inp in zip(inputs, kernel.inputs):
            in_at.append(len(args))
            args += [0, int(offset)] + [int(s) for s, c in zip(strides, inp.pattern) if c == "n"]
        out_at = list(range(len(args), len(args) + len(outs)))
        args += [0] * len(outs)
        scalar_at = len(args)
        args += _c_scalars(kernel, scalars)
        part_at = list(range(len(args), len(args) + len(entry.full)))
        kinds = ["ptr", "ptr", "int64", "int64"] + c_arguments(kernel)
        scalar_kinds = kinds[4 + scalar_at: 4 + len(args)]
        for i in in_at + out_at + part_at:
            kinds[4 + i] = "obj"
        slices = slice_count(kernel, rows, elements)
        split = reduced_split(kernel, shape, elements) if slices == 1 else 1
        if split > 1:   # chunks write partial columns in the accumulator's dtype: its own kernel
            wide = widened(kernel)
            wide_entry = entry if wide is kernel else self._compiled.get(wide.key) or self._prepare(wide, elements)
            if wide_entry is None:
                split = 1   # (compiling: one chunk until a later binding, `TRAMPOLINE_AFTER` calls on)
        single = slices == 1 and split == 1
        call = trampoline.caller(tuple(kinds)) if trampolines and single and not donated else None
        # a launch that repeats runs its slices through a native driver: one ctypes call per
        # thread, claiming slices without the GIL (`trampoline.slice_driver`)
        drive = None
        if trampolines and slices > 1:
            plain = ["ptr", "ptr", "int64", "int64"] + c_arguments(kernel)   # addresses, not ids
            drive = trampoline.slice_driver(tuple(plain), len(part_at))
        fn, slots = entry.fn, entry.slots
        full, acc, name, address, pooled = entry.full, entry.acc, kernel.name, entry.address, buffer_pool.empty

        if donated:
            fresh = [k for k in range(len(outs)) if k not in {d[0] for d in donated}]

            def outputs_over(buffers):
                results = [None] * len(outs)
                for k in fresh:
                    oshape, dt, pool, count = outs[k]
                    results[k] = pooled(count, dt).reshape(oshape) if pool else np.empty(oshape, dt)
                for k, j, oshape in donated:
                    results[k] = buffers[j].reshape(oshape)
                return results
        elif any(pool for _, _, pool, _ in outs):
            def outputs():
                return [pooled(count, dt).reshape(oshape) if pool else np.empty(oshape, dt)
                        for oshape, dt, pool, count in outs]
        else:   # small outputs only: malloc's heap reuses them already
            shapes, empty = [(oshape, dt) for oshape, dt, _, _ in outs], np.empty

            def outputs():
                return [empty(oshape, dt) for oshape, dt in shapes]

        call_address = address
        if call is not None and elements <= trampoline.GIL_HELD_MAX_ELEMENTS:
            bound = trampoline.bound_caller(tuple(kinds), address)   # a builtin call where the kernel is short
            if bound is not None:
                call, call_address = bound, None

        def bind(scalars, args, packed_from=None):
            """The launch for constants `scalars` (C arguments `args`); `packed_from`: a trampoline
            launch of the same layout whose argument array is copied with these constants."""
            def rerun(buffers):
                # the kernel raised (e.g. an integer to a negative power): the numpy tier defines the
                # semantics, so it runs the kernel again and raises numpy's error or returns its result
                flat = [(b.reshape(-1), off, st) for b, (off, st) in zip(buffers, inputs)]
                return [r.reshape(oshape) for r, (oshape, _, _, _)
                        in zip(interpret(kernel, shape, flat, scalars), outs)]

            if call is not None:
                if packed_from is not None:   # only the constants' slots change
                    launch = packed_from.repack(list(range(4 + scalar_at, 4 + len(args))),
                                                [trampoline.pack_scalar(v, k)
                                                 for v, k in zip(args[scalar_at:], scalar_kinds)], rerun)
                else:
                    template = np.array([slots, slots + 16, 0, rows]
                                        + [trampoline.pack_scalar(v, k) for v, k in zip(args, kinds[4:])]
                                        + [0] * len(part_at), np.int64)
                    launch = trampoline.packed_launch(
                        call, call_address, template, [4 + i for i in in_at],
                        [(4 + out_at[k], oshape, dt, pool, count, k in unread)
                         for k, (oshape, dt, pool, count) in enumerate(outs)],
                        list(zip([4 + i for i in part_at], acc, full)), rerun, (name, CPU, elements),
                        buffer_pool.empty, check_layout=elements > 1)
                launch.rebind = lambda new: bind(new, _with_scalars(args, scalar_at, kernel, new), launch)
                return launch
            driver = None
            if drive is not None:
                driven = np.array([0, 0, 0, 0] + [0 if i in in_at or i in out_at else
                                                  trampoline.pack_scalar(v, k)
                                                  for i, (v, k) in enumerate(zip(args, plain[4:]))]
                                  + [0] * len(part_at), np.int64)
                driver = (drive, driven, [4 + i for i in in_at + out_at])

            def launch(buffers):
                a = list(args)
                for i, b in zip(in_at, buffers):
                    if not b.flags.c_contiguous:
                        return None
                    a[i] = data_address(b)
                results = outputs_over(buffers) if donated else outputs()
                for i, r in zip(out_at, results):
                    a[i] = data_address(r)
                if profile._active:
                    profile.record_launch(name, CPU, elements, tier="numba")
                if split > 1:
                    return self._launch_split(wide, wide_entry, shape, split, a, in_at, out_at, inputs,
                                              results) or rerun(buffers)
                if single:   # one slice on this thread, as `_launch` would run it, without its set-up
                    parts = [np.empty(1, d) for d in acc]
                    if fn(slots, slots + 16, 0, rows, *a, *[data_address(p) for p in parts]) not in (0, -2):
                        return rerun(buffers)
                    for p, k in zip(parts, full):
                        results[k][()] = p[0]
                    return results
                parts = self._launch(entry, rows, slices, a) if driver is None else \
                    self._drive(entry, rows, slices, a, driver)
                if parts is None:
                    return rerun(buffers)
                for j, k in enumerate(full):
                    results[k].reshape(-1)[0] = merge_partials(kernel, k, list(parts[j]))
                return results
            launch.rebind = lambda new: bind(new, _with_scalars(args, scalar_at, kernel, new))
            return launch

        return bind(tuple(scalars), args)

    def _launch(self, entry: Native, rows: int, n: int, args) -> list:
        """Run the entry point over the rows in `n` slices (`slice_count`); returns one array of
        slice partials per full reduction, or None if a slice raised."""
        parts = [np.empty(n, d) for d in entry.acc]
        base = [(p.ctypes.data, p.itemsize) for p in parts]
        if n == 1:
            status = entry.fn(entry.slots, entry.slots + 16, 0, rows, *args, *[b for b, _ in base])
            return parts if status in (0, -2) else None
        # each slice writes its own partials, so the claim order never changes a result
        calls = [(c * rows // n, (c + 1) * rows // n, [*args, *[b + c * size for b, size in base]])
                 for c in range(n)]
        return parts if self._call_all(entry, calls) else None

    def _drive(self, entry: Native, rows: int, n: int, args, driver) -> list:
        """`_launch` through a slice driver (`trampoline.slice_driver`): this thread and the pool's
        each make one call, which claims slices until none is left; the same slices, partials
        and result as `_launch`."""
        drive, template, pointer_slots = driver
        packed = template.copy()
        packed[pointer_slots] = [args[i - 4] for i in pointer_slots]
        parts = [np.empty(n, d) for d in entry.acc]
        n_parts = len(parts)
        control = np.zeros(4 + 2 * n_parts + n, np.int64)
        control[1:4] = n, rows, entry.slots
        for k, p in enumerate(parts):
            control[4 + 2 * k: 6 + 2 * k] = p.ctypes.data, p.itemsize
        status = control[4 + 2 * n_parts:]
        status[:] = _UNFINISHED
        address, packed_id, control_at = entry.address, id(packed), control.ctypes.data

        def work(keep=(packed, control, parts)):   # (a late worker's call still finds them alive)
            drive(address, packed_id, control_at)

        self._run_workers(work, n, lambda: not bool(np.any(status == _UNFINISHED)))
        return parts if bool(np.all((status == 0) | (status == -2))) else None

    def _launch_split(self, kernel, entry: Native, shape, n: int, args, in_at, out_at, inputs, results):
        """A column-form reduction in `n` chunks of its reduced dim (`reduced_split`): each chunk is
        one call over every kept index with its own row range (dim 1's extent and the inputs'
        offsets moved) and its own partial outputs, which merge in chunk order into `results`.
        `kernel` is the `widened` one: partials in the accumulator's dtype (float64 for float32
        sums), so the result is rounded once, as unsplit. None if a chunk raised."""
        kept, red = shape
        calls, partials = [], []
        for c in range(n):
            lo, hi = c * red // n, (c + 1) * red // n
            a = list(args)
            a[1] = hi - lo
            for at, (_, strides), inp in zip(in_at, inputs, kernel.inputs):
                if inp.pattern[1] == "n":
                    a[at + 1] += lo * int(strides[1])
            outs = [np.empty(kept, o.dtype.np) for o in kernel.outputs]
            for at, o in zip(out_at, outs):
                a[at] = data_address(o)
            calls.append((0, kept, a))
            partials.append(outs)
        if not self._call_all(entry, calls):
            return None
        with np.errstate(all="ignore"):   # (a float32 result may overflow where its float64 sum did not)
            for k, r in enumerate(results):
                r.reshape(-1)[:] = merge_partials(kernel, k, [p[k] for p in partials])
        return results

    def _call_all(self, entry: Native, calls: list) -> bool:
        """Call the entry point once per (lo, hi, args) of `calls` on the pool and this thread, each
        call with Numba's return and exception slots of its own (written, never read); False if one
        raised (0: returned, -2: returned None)."""
        fn, ret, status = entry.fn, entry.slots, [0] * len(calls)

        def one(c):
            lo, hi, args = calls[c]
            status[c] = fn(ret + 32 * c, ret + 32 * c + 16, lo, hi, *args)

        self._run_blocks(one, len(calls))
        return all(s in (0, -2) for s in status)

    def _run_workers(self, work, n: int, finished) -> None:
        """work() on this thread and on min(threads, n) - 1 pool threads, each claiming parts of
        n until none is left. Once this thread's call returns every part is claimed; if
        `finished()` says every part is also done (the pool's threads woke too late to claim
        any: a hand-off takes ~40 us here), it returns without waiting for them to wake."""
        futures = [self._pool.submit(work) for _ in range(1, min(self._threads, n))] if self._pool else ()
        work()
        if futures and finished():
            return
        for fut in futures:
            fut.result()

    def _run_blocks(self, f, n: int) -> None:
        """f(0) .. f(n-1) on the pool and this thread, each index claimed once (any order)."""
        claim, done = iter(range(n)), []

        def work():
            for b in claim:
                f(b)
                done.append(b)

        self._run_workers(work, n, lambda: len(done) == n)

    # ---- tiers ------------------------------------------------------------
    def _prepare(self, kernel, elements: int):
        """The compiled entry of `kernel` if it can run compiled now, else None (numpy tier)."""
        key = kernel.key
        future = self._pending.get(key)
        if future is not None:
            if settings.cpu_mode == "jit":
                future.exception()   # jit mode promises compiled code: wait for it
            return self._adopt(kernel, future) if future.done() else None
        if key in self._failed or not self._should_compile(kernel, elements):
            return None
        if settings.cpu_mode == "jit" or not settings.background_compile:
            return self._install(kernel, *build(kernel))
        from ..codegen.numba import render
        source = render(kernel)
        entry = load_native(kernel, source)   # a warm start: milliseconds, no Numba
        if entry is not None:
            return self._install(kernel, entry, 0.0, "native")
        self._pending[key] = self._compile_thread().submit(kernel, source)
        return None

    def _adopt(self, kernel, future):
        """Take over a finished background compile (on the caller's thread, so profiles see it)."""
        if self._pending.pop(kernel.key, None) is None:
            return self._compiled.get(kernel.key)
        try:
            result = future.result()
        except Exception as exc:
            self._failed.add(kernel.key)
            warnings.warn(f"fastad: kernel {kernel.name} failed to compile ({type(exc).__name__}: {exc}); "
                          f"it keeps running on the numpy tier", KernelCompileWarning, stacklevel=6)
            return None
        return self._install(kernel, *result)

    def _install(self, kernel, entry: Native, seconds: float, how: str) -> Native:
        if how == "compiled":
            profile.record_compile(seconds)
        else:
            profile.record_cache_hit()
        self._compiled[kernel.key] = entry
        return entry

    def _compile_thread(self) -> CompileThread:
        if self._compiler is None:
            self._compiler = CompileThread()
        return self._compiler

    def wait_for_compiles(self, timeout: float | None = None) -> bool:
        """Wait until every background compile has finished; True if none is left running."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for future in list(self._pending.values()):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                future.exception(timeout=left)
            except Exception:   # timeout or cancelled: reported through the return value
                pass
        return all(f.done() for f in list(self._pending.values()))

    def tier_of(self, kernel) -> str:
        """Where `kernel` would run now: "compiled", "compiling" (numpy tier meanwhile), "failed", "numpy"."""
        key = kernel.key
        if key in self._compiled:
            return "compiled"
        if key in self._pending:
            return "compiling"
        return "failed" if key in self._failed else "numpy"

    def _should_compile(self, kernel, elements) -> bool:
        mode = settings.cpu_mode
        if mode == "jit":
            return True
        if mode == "reference":
            return False
        seen = self._seen[kernel.key] = self._seen.get(kernel.key, 0) + 1
        return elements >= settings.jit_min_elements or seen >= settings.jit_after_calls

    # ---- library calls ----------------------------------------------------
    def run_library(self, op: str, arg, inputs, device=None):
        from ..ops import OPS
        return contiguous(np.asarray(OPS[op].ref(*inputs, arg)))


def data_address(array) -> int:
    """A numpy array's data address, read from the array struct (see `fastad.runtime.trampoline`):
    a fraction of `.ctypes.data`'s cost."""
    return _from_address(id(array) + trampoline.DATA_OFFSET).value if trampoline.usable() else array.ctypes.data


_from_address = ctypes.c_void_p.from_address


def wait_for_compiles(timeout: float | None = None) -> bool:
    """Wait for the CPU backend's background compiles (tests, benchmarks); True if all finished.
    The compiled versions take over at each kernel's next call."""
    from . import _backends
    backend = _backends.get("cpu")
    return True if backend is None else backend.wait_for_compiles(timeout)
