"""runtime.trampoline: call a compiled kernel with one packed argument array instead of many ctypes arguments.

Role: ctypes converts each argument of a call separately (about 0.25 us each
here), and reading a numpy array's data address through `.ctypes.data` costs
microseconds more. For small kernels replayed by `fastad.compile` that is most
of a launch. A trampoline is a tiny native function, generated once per
argument-type signature with llvmlite, that takes the kernel's address and a
numpy int64 array (its `id()`) holding every argument:

* "obj": the `id()` of a numpy array; the trampoline loads the array's data
  address from the array struct (the field after the object header, which
  numpy's C API reads the same way; checked once per process, see `usable`);
* "ptr", "int64", "int8".."int32", "float32", "float64": the value itself,
  floats as their bit pattern.

The trampoline is reached from Python in one of two ways. `caller` gives a ctypes
function `call(kernel_address, id(packed))`, which releases the GIL around the kernel.
`bound_caller` gives a builtin function `call(packed)` for one kernel: the module also holds
an entry point with CPython's METH_O signature, which reads the kernel's address from its
`self` (an int64 array) and returns the status as an int. A builtin call costs a fraction of
a ctypes call (no argument conversion, no foreign-call set-up), and it keeps the GIL while the
kernel runs, so launches use it only for small kernels (`GIL_HELD_MAX_ELEMENTS`).

The same module builds slice drivers (`slice_driver`): for a launch split into slices, each
thread makes one call that claims slices with an atomic counter and runs them, so slices cost no
GIL hand-off between threads.

Start at `caller`. `fastad.runtime.cpu.CpuBackend.replay_launcher` is the user.
"""
from __future__ import annotations

import ctypes
import functools
import logging
import threading

import numpy as np

__all__ = ["bound_caller", "caller", "pack_scalar", "packed_launch", "slice_driver", "usable", "DATA_OFFSET",
           "GIL_HELD_MAX_ELEMENTS"]

DATA_OFFSET = object.__basicsize__   # the data pointer follows the object header in numpy's array struct
GIL_HELD_MAX_ELEMENTS = 1 << 16      # kernels this small run in tens of microseconds: worth keeping the GIL
_METH_O = 0x0008
_LOCK = threading.Lock()
_log = logging.getLogger(__name__)
_LLVM = {"ptr": "ptr", "obj": "ptr", "int64": "i64", "uint64": "i64", "int32": "i32", "uint32": "i32",
         "int16": "i16", "uint16": "i16", "int8": "i8", "uint8": "i8", "bool": "i8",
         "float32": "float", "float64": "double"}


@functools.lru_cache(maxsize=None)
def usable() -> bool:
    """Whether array data addresses sit where the trampolines read them (checked on live arrays)."""
    from_address = ctypes.c_void_p.from_address
    probes = [np.arange(4.0), np.arange(6, dtype=np.int8)[2:], np.empty((3, 2), np.float32)]
    return all(from_address(id(p) + DATA_OFFSET).value == p.ctypes.data for p in probes)


def _source(kinds: tuple, from_long: int = 0) -> str:
    lines = ["define i32 @trampoline(i64 %fn, ptr %array) {", "entry:",
             f"  %head = getelementptr i8, ptr %array, i64 {DATA_OFFSET}", "  %packed = load ptr, ptr %head"]
    args = []
    for i, kind in enumerate(kinds):
        lines += _load_argument(i, kind)
        args.append(f"{_LLVM[kind]} %a{i}")
    lines += ["  %f = inttoptr i64 %fn to ptr", f"  %r = call i32 %f({', '.join(args)})", "  ret i32 %r", "}"]
    if from_long:   # the METH_O entry: PyObject *entry(PyObject *self, PyObject *packed)
        lines += ["define ptr @entry(ptr %self, ptr %array) {", "entry:",
                  f"  %head = getelementptr i8, ptr %self, i64 {DATA_OFFSET}", "  %data = load ptr, ptr %head",
                  "  %fn = load i64, ptr %data", "  %r = call i32 @trampoline(i64 %fn, ptr %array)",
                  "  %s = sext i32 %r to i64", f"  %make = inttoptr i64 {from_long} to ptr",
                  "  %o = call ptr %make(i64 %s)", "  ret ptr %o", "}"]
    return "\n".join(lines) + "\n"


def _driver_source(kinds: tuple, n_parts: int) -> str:
    """A slice driver for kernels taking `kinds`: `drive(fn, array, control)` claims slices with
    an atomic counter and runs each, all without the GIL (see `slice_driver`)."""
    lines = ["define i32 @drive(i64 %fn, ptr %array, ptr %control) {", "entry:",
             f"  %head = getelementptr i8, ptr %array, i64 {DATA_OFFSET}", "  %packed = load ptr, ptr %head"]
    fixed = []
    for i in range(4, len(kinds) - n_parts):   # the arguments every slice shares, read once
        lines += _load_argument(i, kinds[i])
        fixed.append(f"{_LLVM[kinds[i]]} %a{i}")
    for name, at in (("n", 1), ("rows", 2), ("ret", 3)):
        lines += [f"  %{name}.p = getelementptr i64, ptr %control, i64 {at}", f"  %{name} = load i64, ptr %{name}.p"]
    for k in range(n_parts):
        lines += [f"  %pb{k}.p = getelementptr i64, ptr %control, i64 {4 + 2 * k}", f"  %pb{k} = load i64, ptr %pb{k}.p",
                  f"  %ps{k}.p = getelementptr i64, ptr %control, i64 {5 + 2 * k}", f"  %ps{k} = load i64, ptr %ps{k}.p"]
    lines += ["  %f = inttoptr i64 %fn to ptr", "  br label %claim", "claim:",
              "  %c = atomicrmw add ptr %control, i64 1 seq_cst", "  %done = icmp sge i64 %c, %n",
              "  br i1 %done, label %exit, label %run", "run:",
              "  %cr = mul i64 %c, %rows", "  %lo = sdiv i64 %cr, %n", "  %c1 = add i64 %c, 1",
              "  %c1r = mul i64 %c1, %rows", "  %hi = sdiv i64 %c1r, %n",
              "  %off = mul i64 %c, 32", "  %r0i = add i64 %ret, %off", "  %r1i = add i64 %r0i, 16",
              "  %r0 = inttoptr i64 %r0i to ptr", "  %r1 = inttoptr i64 %r1i to ptr"]
    parts = []
    for k in range(n_parts):
        lines += [f"  %po{k} = mul i64 %c, %ps{k}", f"  %pi{k} = add i64 %pb{k}, %po{k}",
                  f"  %p{k} = inttoptr i64 %pi{k} to ptr"]
        parts.append(f"ptr %p{k}")
    call = ", ".join(["ptr %r0", "ptr %r1", "i64 %lo", "i64 %hi"] + fixed + parts)
    lines += [f"  %r = call i32 %f({call})", "  %r64 = sext i32 %r to i64",
              f"  %si = add i64 %c, {4 + 2 * n_parts}", "  %sp = getelementptr i64, ptr %control, i64 %si",
              "  store i64 %r64, ptr %sp", "  br label %claim", "exit:", "  ret i32 0", "}"]
    return "\n".join(lines) + "\n"


def _load_argument(i: int, kind: str) -> list:
    """IR that reads packed slot `i` as an argument of `kind` into %a{i} (see the module docstring)."""
    ty = _LLVM[kind]
    lines = [f"  %s{i} = getelementptr i64, ptr %packed, i64 {i}", f"  %v{i} = load i64, ptr %s{i}"]
    if kind == "obj":
        lines += [f"  %o{i} = inttoptr i64 %v{i} to ptr",
                  f"  %d{i} = getelementptr i8, ptr %o{i}, i64 {DATA_OFFSET}",
                  f"  %a{i} = load ptr, ptr %d{i}"]
    elif kind == "ptr":
        lines.append(f"  %a{i} = inttoptr i64 %v{i} to ptr")
    elif ty == "i64":
        lines.append(f"  %a{i} = add i64 %v{i}, 0")
    elif ty == "double":
        lines.append(f"  %a{i} = bitcast i64 %v{i} to double")
    elif ty == "float":
        lines += [f"  %t{i} = trunc i64 %v{i} to i32", f"  %a{i} = bitcast i32 %t{i} to float"]
    else:
        lines.append(f"  %a{i} = trunc i64 %v{i} to {ty}")
    return lines


_DRIVERS: dict = {}


def slice_driver(kinds: tuple, n_parts: int):
    """`drive(kernel_address, id(packed), control_address) -> 0` for kernels taking arguments of
    `kinds` whose last `n_parts` are per-slice reduction partials, or None where trampolines
    cannot be used. Each thread of a launch makes one such call (ctypes: without the GIL),
    which claims slices from `control` until none is left, so slices cost no GIL hand-off.

    `packed` holds the shared arguments at their positions (its first four slots and the
    partials' are unused); `control` is an int64 array: [0] the claim counter (0), [1] the
    slice count n, [2] the rows, [3] the address of n 32-byte return/exception slots, then a
    (base address, byte stride) pair per partial, then n statuses, which the driver writes.
    Slice c covers rows c*rows//n .. (c+1)*rows//n, as `CpuBackend._launch` cuts them."""
    if not usable():
        return None
    key = (kinds, n_parts)
    with _LOCK:
        found = _DRIVERS.get(key)
        if found is None:
            try:
                engine, (address,) = _jit(_driver_source(kinds, n_parts), "drive")
                found = (ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p)(address),
                         engine)
            except Exception as exc:   # launches claim slices from Python instead
                _log.info("fastad: no slice driver (%s: %s)", type(exc).__name__, exc)
                found = (None, None)
            _DRIVERS[key] = found
        return found[0]


_CALLERS: dict = {}


def caller(kinds: tuple):
    """`call(kernel_address, id(packed)) -> int32` for kernels taking arguments of `kinds` (`packed`:
    a C-contiguous int64 numpy array of the arguments, which must stay alive during the call), or
    None where trampolines cannot be used. Generated and JIT-compiled once per `kinds`."""
    if not usable():
        return None
    with _LOCK:
        found = _CALLERS.get(kinds)
        if found is None:
            try:
                found = _build(kinds)
            except Exception as exc:   # e.g. an LLVM older than opaque pointers: launches use ctypes
                _log.info("fastad: no launch trampoline (%s: %s)", type(exc).__name__, exc)
                found = (None, None, None)
            _CALLERS[kinds] = found
        return found[0]


def _build(kinds: tuple) -> tuple:
    """(ctypes caller, the engine that owns the code, the METH_O method def or None)."""
    from_long = ctypes.cast(ctypes.pythonapi.PyLong_FromLong, ctypes.c_void_p).value or 0
    engine, (address, entry) = _jit(_source(kinds, from_long), "trampoline", "entry" if from_long else None)
    method = _MethodDef(b"fastad_launch", entry, _METH_O, None) if entry else None
    return ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int64, ctypes.c_void_p)(address), engine, method


def _jit(source: str, *symbols) -> tuple:
    """(the engine that owns the code, the address of each symbol) of LLVM IR `source`,
    JIT-compiled for this CPU; a symbol given as None has address 0."""
    from .native import _llvm, _target
    ll = _llvm()
    module = ll.parse_assembly(source)
    module.verify()
    engine = ll.create_mcjit_compiler(module, _target().create_target_machine(jit=True))
    engine.finalize_object()
    addresses = tuple(engine.get_function_address(name) if name else 0 for name in symbols)
    if not addresses[0]:
        raise LookupError(f"{symbols[0]} symbol not found")
    return engine, addresses


class _MethodDef(ctypes.Structure):   # CPython's PyMethodDef
    _fields_ = [("ml_name", ctypes.c_char_p), ("ml_meth", ctypes.c_void_p), ("ml_flags", ctypes.c_int),
                ("ml_doc", ctypes.c_char_p)]


def bound_caller(kinds: tuple, address: int):
    """`call(packed) -> int` for the kernel at `address` taking arguments of `kinds`: a builtin
    function (see the module docstring) that keeps the GIL during the kernel, or None where
    trampolines or the builtin entry are unavailable."""
    if caller(kinds) is None:
        return None
    method = _CALLERS[kinds][2]
    if method is None:
        return None
    self = np.array([address], np.int64)   # read by the entry point; owned by the function object
    return _new_function()(ctypes.addressof(method), self, None)


@functools.lru_cache(maxsize=None)
def _new_function():
    """CPython's PyCFunction_NewEx, typed once (ctypes' pythonapi functions are shared)."""
    new = ctypes.pythonapi.PyCFunction_NewEx
    new.restype, new.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.py_object, ctypes.c_void_p]
    return new


def pack_scalar(value, kind: str) -> int:
    """`value` as the int64 slot a trampoline reads for an argument of `kind`."""
    if kind in ("obj", "ptr", "int64"):
        return int(value)
    if kind in ("float32", "float64"):
        bits = np.array(value, kind).view(np.int32 if kind == "float32" else np.int64)
        return int(bits)
    return int(np.array(value).astype(np.uint8 if kind == "bool" else kind).astype(np.int64))


def packed_launch(call, address: int, packed, in_at, outs, parts, rerun, launch_record, pooled,
                  check_layout: bool = True):
    """A kernel launch through `call`, generated as straight-line Python for one layout:
    `launch(buffers)` -> the outputs, or None if a buffer is not C-contiguous. `call` is
    `caller`'s ctypes function for the kernel at `address`, or (`address` None) a
    `bound_caller` builtin. `launch.repack(slots, values, rerun)` is the same launch with
    `packed[slots]` = values (other constants), without generating it again.

    `packed`: the argument array with everything but the arrays filled in (a call packs into a
    copy of its own, so calls from several threads never share one); `in_at`: the slots of
    the input arrays; `outs`: (slot, shape, numpy dtype, from the buffer pool, element count,
    unread) per output, where an unread output too small for the pool goes to a scratch array
    made once (its slot filled in `packed`; concurrent calls may share it, nobody reads it) and
    comes back as None (a large one is allocated and dropped: a scratch copy would hold its
    memory for as long as the launch lives);
    `parts`: (slot, accumulator dtype, output index) per full reduction, whose one element is
    copied into its output; `rerun(buffers)`: the outputs when the kernel raised;
    `launch_record`: (name, device, elements) for `fastad.profile`; `check_layout` False: the
    kernel reads one element of each input, so any buffer's layout will do (no contiguity test)."""
    from .. import profiling
    ins = [f"b{i}" for i in range(len(in_at))]
    lines = ["def make(packed, rerun):", "  spare = []",
             "  def launch(buffers):", f"    {', '.join(ins)}, = buffers" if ins else "    pass"]
    if check_layout:   # e.g. a broadcast constant read from state
        lines += [f"    if not {b}.flags.c_contiguous: return None" for b in ins]
    lines.append("    a = spare.pop() if spare else packed.copy()")
    lines += [f"    a[{i}] = id({b})" for i, b in zip(in_at, ins)]
    names = {"empty": np.empty, "pooled": pooled, "call": call,
             "address": address, "profiling": profiling, "record": launch_record}
    scratch = []    # the unread outputs' arrays: alive as long as the launch
    unread_at = {k for k, (_, _, _, pool, _, unread) in enumerate(outs) if unread and not pool}
    for k, (slot, shape, dtype, pool, count, unread) in enumerate(outs):
        if k in unread_at:
            scratch.append(np.empty(shape, dtype))
            packed[slot] = id(scratch[-1])
            lines.append(f"    r{k} = None")
            continue
        names[f"shape{k}"], names[f"dtype{k}"] = shape, dtype
        make = f"pooled({count}, dtype{k}).reshape(shape{k})" if pool else f"empty(shape{k}, dtype{k})"
        lines += [f"    r{k} = {make}", f"    a[{slot}] = id(r{k})"]
    names["scratch"] = scratch
    for j, (slot, acc, k) in enumerate(parts):
        if k in unread_at:
            scratch.append(np.empty(1, acc))
            packed[slot] = id(scratch[-1])
            continue
        names[f"acc{j}"] = np.dtype(acc)
        lines += [f"    p{j} = empty(1, acc{j})", f"    a[{slot}] = id(p{j})"]
    lines += ["    if profiling._active: profiling.record_launch(*record, tier='numba')",
              "    status = call(address, id(a))" if address is not None else "    status = call(a)",
              "    spare.append(a)",
              "    if status != 0 and status != -2: return rerun(buffers)"]
    lines += [f"    r{k}[()] = p{j}[0]" for j, (_, _, k) in enumerate(parts) if k not in unread_at]  # 1 element
    lines += [f"    return [{', '.join(f'r{k}' for k in range(len(outs)))}]", "  return launch"]
    source = "\n".join(lines) + "\n"
    exec(compile(source, "<fastad launch>", "exec"), names)
    make = names["make"]

    def build(template, rerun):
        launch = make(template, rerun)
        launch.source, launch.packed = source, template

        def repack(slots, values, rerun):
            other = template.copy()   # scratch slots included: the arrays stay alive with `scratch`
            other[slots] = values
            return build(other, rerun)
        launch.repack = repack
        return launch
    return build(packed, rerun)
