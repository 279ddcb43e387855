"""The native object cache (fastad.runtime.native): warm starts without Numba, damaged entries, sharing.

Each test uses its own FASTAD_CACHE_DIR. Cross-process checks run `python -c`
children; a cold child pays Numba's import and one kernel compile (~2-3 s).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

import fastad as fa
from fastad.config import settings
from fastad.runtime import native
from fastad.runtime.cache import CacheWarning, clear_cache
from fastad.runtime.cpu_compile import build as _build

ROOT = Path(__file__).resolve().parents[1]

# One child run: the chain's value and gradient, compiled; prints what happened as JSON.
_CHILD = textwrap.dedent("""
    import json, sys, numpy as np, fastad as fa
    from fastad.config import settings
    settings.cpu_mode = "jit"
    x = fa.asarray(np.linspace(-2, 2, 1001, dtype=np.float32) * float(sys.argv[1]), requires_grad=True)
    with fa.profile() as p:
        y = fa.sum(fa.sin(x) * fa.exp(-x * x) + fa.tanh(3 * x) * x)
        y.backward()
        v, g = float(y), x.grad.numpy()
    print(json.dumps({"compiled": p.compiled, "hits": p.cache_hits, "tiers": [l.tier for l in p.kernels],
                      "numba_imported": "numba" in sys.modules, "llvmlite_imported": "llvmlite" in sys.modules,
                      "value": v, "grad": g[::50].tolist()}))
""")


def _spawn(cache: Path, scale: str = "1.0") -> subprocess.Popen:
    env = dict(os.environ, FASTAD_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", _CHILD, scale], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


N = 300_000   # large enough to run in slices on the thread pool
X = np.linspace(-1, 1, N)


def _kernel():
    """A kernel planned by the scheduler: sum(tanh(x) * x + 0.5) over float64."""
    from fastad.schedule import plan
    x = fa.asarray(X)
    y = fa.sum(fa.tanh(x) * x + 0.5)
    (step,) = plan([y._node]).kernels()
    assert len(step.kernel.inputs) == 1 and len(step.kernel.scalars) == 1
    return step.kernel


def _run(entry):
    """Run a built entry through the CPU backend; returns (result, float64 reference)."""
    from fastad.runtime.cpu import CpuBackend
    kernel = _kernel()
    backend = CpuBackend()
    backend._compiled[kernel.key] = entry
    (out,) = backend.run_kernel(kernel, (N,), [(X, 0, (1,))], [0.5])
    return float(out[0]), np.sum(np.tanh(X) * X + 0.5)


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("FASTAD_CACHE_DIR", str(root))
    clear_cache(disk=False)
    yield root
    clear_cache(disk=False)


def test_warm_start_in_a_fresh_process_needs_no_numba(cache_root):
    cold = _result(_spawn(cache_root))
    warm = _result(_spawn(cache_root))
    assert cold["compiled"] == 1 and cold["numba_imported"], cold
    assert warm["compiled"] == 0 and warm["hits"] == 1 and warm["tiers"] == ["numba"], warm
    assert not warm["numba_imported"]           # loaded through llvmlite, or dlopen where `ld` exists
    assert warm["llvmlite_imported"] == (shutil.which("ld") is None)
    assert warm["value"] == cold["value"] and warm["grad"] == cold["grad"]
    assert list((cache_root / f"native-{native.FORMAT_VERSION}").glob("*.o"))


def test_four_processes_share_one_entry(cache_root):
    results = [_result(p) for p in [_spawn(cache_root) for _ in range(4)]]
    assert len({json.dumps([r["value"], r["grad"]]) for r in results}) == 1
    (entry,) = (cache_root / f"native-{native.FORMAT_VERSION}").glob("*.o")
    again = _result(_spawn(cache_root))
    assert again["hits"] == 1 and again["compiled"] == 0 and not again["numba_imported"]
    assert again["value"] == results[0]["value"]
    assert entry.exists()


def test_entry_round_trip_in_process(cache_root):
    kernel = _kernel()
    entry, _, how = _build(kernel)
    assert how in ("compiled", "numba-cache")
    got, want = _run(entry)
    assert got == pytest.approx(want, rel=1e-13)
    again, _, how = _build(kernel)
    assert how == "native" and _run(again)[0] == got
    (path,) = (cache_root / f"native-{native.FORMAT_VERSION}").glob("*.o")
    head = native.cache._unframe(path.read_bytes(), str(path)).split(b"\n", 1)[0]
    meta = json.loads(head)
    assert not [s for s in meta["undefined"] if s.startswith(("numba", "NRT", "Py"))]   # no runtime needed


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        data = data[: len(data) // 3]
    elif how == "garbage":
        data = os.urandom(len(data))
    elif how == "middle":   # the checksum stops this before LLVM or the dynamic loader sees it
        mid = len(data) // 2
        data = data[:mid] + os.urandom(64) + data[mid + 64:]
    else:
        data = b""
    path.write_bytes(data)


@pytest.mark.parametrize("how", ["truncate", "garbage", "middle", "empty"])
def test_damaged_entry_is_removed_and_rebuilt(cache_root, how):
    kernel = _kernel()
    _build(kernel)
    folder = cache_root / f"native-{native.FORMAT_VERSION}"
    for path in list(folder.glob("*.o")) + list(folder.glob("*.shared")):
        _damage(path, how)
    entry, _, built = _build(kernel)
    assert built != "native"                    # the damaged entry was not used ...
    got, want = _run(entry)
    assert got == pytest.approx(want, rel=1e-13)
    assert _build(kernel)[2] == "native"        # ... and a fresh one was written


@pytest.mark.skipif(shutil.which("ld") is None, reason="no system linker: no shared-library entries")
@pytest.mark.parametrize("how", ["truncate", "middle", "empty"])
def test_a_damaged_shared_library_entry_is_removed_and_the_object_entry_serves(cache_root, how):
    kernel = _kernel()
    _build(kernel)
    (shared,) = (cache_root / f"native-{native.FORMAT_VERSION}").glob("*.shared")
    _damage(shared, how)
    entry, _, built = _build(kernel)
    assert built == "native" and not shared.exists()
    got, want = _run(entry)
    assert got == pytest.approx(want, rel=1e-13)


def test_the_remembered_cpu_fingerprint_equals_llvms_answer(cache_root):
    native._fingerprint.cache_clear()
    try:
        first = native._fingerprint()                 # computed with llvmlite, then remembered
        (memo,) = (cache_root / f"native-{native.FORMAT_VERSION}").glob("fingerprint-*.json")
        native._fingerprint.cache_clear()
        assert native._fingerprint() == first == native._full_fingerprint()
        _damage(memo, "middle")                       # a damaged memo is recomputed, never trusted
        native._fingerprint.cache_clear()
        assert native._fingerprint() == first
    finally:
        native._fingerprint.cache_clear()


def test_a_cold_cache_misses_without_asking_llvm_and_a_stored_entry_then_hits(cache_root, monkeypatch):
    """Storing an entry remembers the fingerprint first, so where none is remembered a load is a
    miss: a cold start finds that out without importing llvmlite."""
    from fastad.codegen.numba import render
    from fastad.runtime.cpu_compile import compile_hint
    kernel = _kernel()
    source, hint = render(kernel), compile_hint(kernel)
    native._fingerprint.cache_clear()
    try:
        with monkeypatch.context() as m:
            m.setattr(native, "_full_fingerprint", lambda: pytest.fail("the fingerprint was computed"))
            assert native.load(source, hint) is None
        _build(kernel)                                # compiles and stores, remembering the fingerprint
        native._fingerprint.cache_clear()             # as a fresh process would start
        with monkeypatch.context() as m:
            m.setattr(native, "_full_fingerprint", lambda: pytest.fail("the fingerprint was computed"))
            assert native.load(source, hint) is not None
    finally:
        native._fingerprint.cache_clear()


def test_unresolvable_symbol_is_a_miss_not_a_crash(cache_root):
    kernel = _kernel()
    _build(kernel)
    for shared in (cache_root / f"native-{native.FORMAT_VERSION}").glob("*.shared"):
        shared.unlink()   # written only for self-contained objects; this test edits the object entry
    (path,) = (cache_root / f"native-{native.FORMAT_VERSION}").glob("*.o")
    payload = native.cache._unframe(path.read_bytes(), str(path))
    head, obj = payload.split(b"\n", 1)
    meta = json.loads(head)
    meta["undefined"].append("fastad_no_such_symbol_anywhere")
    path.write_bytes(native.cache._frame(json.dumps(meta).encode() + b"\n" + obj))
    from fastad.codegen.numba import render
    assert native.load(render(kernel), kernel.name[3:30]) is None
    assert path.exists()                        # not damaged: another process may resolve it


def test_symbol_table_reader(cache_root):
    assert native.symbols(b"not an object") is None
    kernel = _kernel()
    _build(kernel)
    (path,) = (cache_root / f"native-{native.FORMAT_VERSION}").glob("*.o")
    head, obj = native.cache._unframe(path.read_bytes(), "").split(b"\n", 1)
    defined, undefined = native.symbols(obj)
    assert json.loads(head)["entry"] in defined and json.loads(head)["undefined"] == undefined


def test_unwritable_cache_dir_falls_back_to_temp(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("FASTAD_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    clear_cache(disk=False)
    from fastad.runtime import cache
    monkeypatch.setattr(cache, "_ROOTS", {})
    kernel = _kernel()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        entry, _, _ = _build(kernel)
    assert [w for w in caught if issubclass(w.category, CacheWarning)]
    got, want = _run(entry)
    assert got == pytest.approx(want, rel=1e-13)
    assert list((tmp_path / "tmp").rglob(f"native-{native.FORMAT_VERSION}/*.o"))
    clear_cache(disk=False)


def test_renderer_mathlib_hash_matches_mathlib():
    from fastad.codegen import mathlib
    from fastad.codegen.numba import mathlib_hash
    assert mathlib_hash() == mathlib.SOURCE_HASH


_EXIT_CHILD = textwrap.dedent("""
    import json, numpy as np, fastad as fa
    x = fa.asarray(np.linspace(-2, 2, 5000, dtype=np.float64), requires_grad=True)
    with fa.profile() as p:
        y = fa.sum(fa.cosh(x) * x)
        y.backward()
        float(y)
    print(json.dumps([[l.tier, l.compiling] for l in p.kernels]))
""")


def test_a_finished_process_does_not_wait_for_its_background_compile(cache_root):
    from fastad.runtime import backend_for
    assert backend_for(fa.asarray(1.0).device)._compile_thread()._thread_is_daemon()
    env = dict(os.environ, FASTAD_CACHE_DIR=str(cache_root), PYTHONPATH=str(ROOT), FASTAD_JIT_MIN_ELEMENTS="1000")
    proc = subprocess.run([sys.executable, "-c", _EXIT_CHILD], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [["numpy", True]]
    # the compile process outlives it and stores the kernel for the next process
    import time
    folder = cache_root / f"native-{native.FORMAT_VERSION}"
    deadline = time.monotonic() + 240
    while not list(folder.glob("*.o")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert list(folder.glob("*.o"))


def test_at_exit_the_running_compile_gets_its_input_and_the_queued_ones_go_to_one_process(monkeypatch):
    import threading
    from fastad.runtime import cpu_compile
    release, spawned_jobs = threading.Event(), []

    def slow_build(kernel, source, spawned=None):   # stands in for a compile process that is running
        spawned()
        release.wait(30)
        return None

    monkeypatch.setattr(cpu_compile, "build_in_background", slow_build)
    monkeypatch.setattr(cpu_compile, "spawn", lambda jobs, wait: spawned_jobs.append((list(jobs), wait)))
    monkeypatch.setattr(cpu_compile, "compile_hint", lambda kernel: f"hint-{kernel}")
    worker = cpu_compile.CompileThread()
    try:
        running = worker.submit("k0", "source 0")
        queued = [worker.submit(f"k{i}", f"source {i}") for i in (1, 2, 3)]
        while not running.running():
            threading.Event().wait(0.01)
        worker._at_exit()
        assert spawned_jobs == [([(f"source {i}", f"hint-k{i}") for i in (1, 2, 3)], False)]
        assert all(f.cancelled() for f in queued) and not running.done()
    finally:
        release.set()
    assert running.result(timeout=30) is None


@pytest.mark.skipif(not hasattr(os, "nice"), reason="no os.nice here")
@pytest.mark.parametrize("nice", ["7", "0"])
def test_a_compile_process_lowers_its_own_priority(nice):
    """A background compile process yields cores to its caller (FASTAD_COMPILE_NICE)."""
    code = ("import io, os, sys\n"
            "sys.stdin = io.StringIO('[]')\n"
            "from fastad.runtime.cpu_compile import child_main\n"
            "before = os.nice(0)\n"
            "child_main()\n"
            "print(os.nice(0) - before)\n")
    env = dict(os.environ, FASTAD_COMPILE_NICE=nice)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    before = os.nice(0)
    assert int(out.stdout.split()[-1]) == min(int(nice), 19 - before)
