"""profiling: counters for kernels launched and compiled, read through `with fastad.profile() as p:`.

Start at `profile`. Runtimes call `record_launch`, `record_compile` and
`record_cache_hit`; every active profile (they nest) sees each event.
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["profile", "Launch", "record_launch", "record_compile", "record_cache_hit", "record_trace",
           "record_replay"]

_active: list["profile"] = []


@dataclass(frozen=True)
class Launch:
    name: str
    device: str
    elements: int
    kind: str = "kernel"   # "kernel" (a fused kernel) or "library" (BLAS, copies)
    tier: str = ""         # how a kernel ran: "numba" (compiled), "numpy" (first-tier interpreter), "cuda"
    compiling: bool = False  # ran on the numpy tier while its compiled version was being built in the background

    def __str__(self) -> str:
        note = "  (compiling in the background)" if self.compiling else ""
        return (f"{self.kind:<8} {self.tier:<6} {self.name:<48} {self.device:<7} {self.elements:>12,d} elements"
                + note)


@dataclass
class profile:
    """Context manager recording what ran: `launches` (each with the tier that ran it), `launched`,
    `compiled`, `cache_hits`, `compile_seconds`, and `traces`/`replays` of `fastad.compile`d
    functions. A compile finished in the background is counted when its kernel first runs
    compiled, on the caller's thread."""

    launches: list = field(default_factory=list)
    compiled: int = 0
    cache_hits: int = 0
    compile_seconds: float = 0.0
    traces: int = 0
    replays: int = 0

    @property
    def launched(self) -> int:
        """Fused kernels launched, whichever tier ran them (library calls are listed, not counted)."""
        return sum(1 for l in self.launches if l.kind == "kernel")

    @property
    def kernels(self) -> list:
        return [l for l in self.launches if l.kind == "kernel"]

    def __enter__(self):
        _active.append(self)
        return self

    def __exit__(self, *exc):
        _active.remove(self)
        return False

    def __str__(self) -> str:
        head = (f"{self.launched} kernels launched, {self.compiled} compiled "
                f"({self.compile_seconds:.2f} s), {self.cache_hits} cache hits")
        return "\n".join([head] + [f"  {l}" for l in self.launches])


def record_launch(name: str, device, elements: int, kind: str = "kernel", tier: str = "",
                  compiling: bool = False) -> None:
    if _active:
        ev = Launch(name, str(device), int(elements), kind, tier, compiling)
        for p in _active:
            p.launches.append(ev)


def record_compile(seconds: float) -> None:
    for p in _active:
        p.compiled += 1
        p.compile_seconds += seconds


def record_cache_hit() -> None:
    for p in _active:
        p.cache_hits += 1


def record_trace() -> None:
    for p in _active:
        p.traces += 1


def record_replay() -> None:
    for p in _active:
        p.replays += 1
