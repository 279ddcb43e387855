"""codegen.cuda_compile: compile rendered CUDA C with NVRTC (the runtime's compiler) or nvcc (offline checks).

Start at `nvrtc_options`, the one list of flags every kernel is compiled with,
in the CUDA runtime (`fastad.runtime.cuda`) and in the tests alike, and
`compile_with_nvrtc`, the one call that compiles with them. `compile_with_nvcc`
checks many rendered sources in one `nvcc --ptx` call without a GPU. Nothing
here imports CuPy at module level; `fastad.codegen.cuda` re-exports all of it.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import tempfile
from typing import Sequence

__all__ = ["defines", "arithmetic_options", "nvrtc_options", "nvrtc_arch", "compile_with_nvrtc", "nvrtc_version",
           "nvrtc_supported_archs", "nvcc_path", "compile_with_nvcc"]


def defines(index_bits: int = 32, fast_math: bool = False) -> tuple[str, ...]:
    """The -D options of one build of a rendered source (NVRTC and nvcc alike)."""
    opts = [f"-DFA_INDEX_BITS={index_bits}"]
    if fast_math:
        opts.append("-DFA_FAST_MATH=1")
    return tuple(opts)


def arithmetic_options() -> tuple[str, ...]:
    """How kernels round (NVRTC and nvcc alike): every operation as numpy's, one by one.

    Subnormals are kept (-ftz=false); division and square root are IEEE; a multiply and an
    add stay two roundings (-fmad=false: no contraction into an FMA), so plain arithmetic gives
    the numpy reference's bits, as the CPU kernels do. The math functions (expf, ...) keep their
    own FMAs, written into their code; they differ from the CPU's in the last bit or two."""
    return ("-ftz=false", "-prec-div=true", "-prec-sqrt=true", "-fmad=false")


def nvcc_path() -> str | None:
    """The nvcc binary ($NVCC, then PATH, then /usr/local/cuda/bin), or None."""
    for cand in (os.environ.get("NVCC"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def compile_with_nvcc(sources: Sequence[str], *, files: Sequence[str | os.PathLike] = (),
                      options: Sequence[str] = (), arch: str = "sm_90", timeout: float = 300) -> str:
    """Compile rendered `sources` as ONE translation unit (duplicates dropped), plus each of
    `files` as its own unit, in a single `nvcc --ptx` call; returns the PTX of every unit.
    Raises RuntimeError with nvcc's output on failure, FileNotFoundError when nvcc is missing.

    Other tests use this to check kernels the scheduler builds:
    `compile_with_nvcc([render(k).source for k in kernels])`.
    """
    nvcc = nvcc_path()
    if nvcc is None:
        raise FileNotFoundError("nvcc not found (set $NVCC or put it on PATH)")
    with tempfile.TemporaryDirectory(prefix="fastad-nvcc-") as tmp:
        units = []
        if sources:
            tu = pathlib.Path(tmp) / "fastad_rendered.cu"
            tu.write_text("\n".join(dict.fromkeys(sources)))
            units.append(str(tu))
        for f in files:
            units.append(str(pathlib.Path(f).resolve()))
        if not units:
            return ""
        out = pathlib.Path(tmp) / "ptx"
        out.mkdir()
        cmd = [nvcc, "--ptx", f"-arch={arch}", "-odir", str(out), *options, *units]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if res.returncode != 0:
            raise RuntimeError(f"nvcc failed ({' '.join(cmd)}):\n{res.stderr}{res.stdout}")
        return "\n".join(f.read_text() for f in sorted(out.glob("*.ptx")))


def nvrtc_options(index_bits: int = 32, fast_math: bool = False, arch: str = "sm_90") -> tuple[str, ...]:
    """Every option NVRTC gets for one build, in the runtime and in the offline tests alike.

    Subnormals are kept (-ftz=false) and division and square root are IEEE: numpy's results for
    exp(x) at x in (-103.97, -87.34), log(sigmoid(x)) there, or 1/1e-40f. CuPy's RawModule cannot
    give this (CuPy 14.2 appends -ftz=true after the caller's options and the last one wins), so
    the runtime compiles with these options itself and loads the cubin with cupy.cuda.function.Module.
    `arch`: sm_XX (cubin) or compute_XX (PTX, for a GPU newer than this NVRTC knows).
    """
    return (f"-arch={arch}", "--device-as-default-execution-space") + arithmetic_options() \
        + defines(index_bits, fast_math)


def nvrtc_arch(compute_capability: str | int, supported: Sequence[int]) -> str:
    """The -arch value for a device of `compute_capability` ("90") given NVRTC's supported archs:
    sm_XX (a cubin) when NVRTC knows the device, else compute_<newest known> (PTX the driver JITs)."""
    cc = int(compute_capability)
    known = sorted(int(a) for a in supported)
    if not known:
        raise RuntimeError("NVRTC reports no supported GPU architecture")
    if cc in known:
        return f"sm_{cc}"
    if cc > known[-1]:
        return f"compute_{known[-1]}"
    raise RuntimeError(f"this NVRTC (architectures {known[0]}..{known[-1]}) cannot compile for a device "
                       f"of compute capability {cc // 10}.{cc % 10}")


def compile_with_nvrtc(source: str, *, options: Sequence[str] | None = None, ptx: bool = False) -> bytes:
    """Compile one rendered source with NVRTC (no GPU needed); `options` default to `nvrtc_options()`.

    Returns a cubin for an `-arch=sm_XX` build, PTX for `-arch=compute_XX` or when `ptx` is set.
    The CUDA runtime compiles every kernel through this function. Needs CuPy and the NVRTC library
    (pip: cupy-cuda13x[ctk]); ImportError / OSError when they are missing, RuntimeError with NVRTC's
    log when the source is rejected.
    """
    from cupy_backends.cuda.libs import nvrtc   # lazy: only the CUDA runtime and tests call this
    options = nvrtc_options() if options is None else tuple(options)
    prog = nvrtc.createProgram(source, "fastad_kernel.cu", [], [])
    try:
        try:
            nvrtc.compileProgram(prog, list(options))
        except nvrtc.NVRTCError as e:
            raise RuntimeError(f"NVRTC rejected the source ({e}):\n{nvrtc.getProgramLog(prog)}") from None
        if ptx or not any(o.startswith("-arch=sm_") for o in options):
            return nvrtc.getPTX(prog)
        return nvrtc.getCUBIN(prog)
    finally:
        nvrtc.destroyProgram(prog)


def nvrtc_version() -> tuple[int, int]:
    from cupy_backends.cuda.libs import nvrtc
    return tuple(nvrtc.getVersion())


def nvrtc_supported_archs() -> tuple[int, ...]:
    from cupy_backends.cuda.libs import nvrtc
    return tuple(nvrtc.getSupportedArchs())
