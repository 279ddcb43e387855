"""benchmarks/workloads.py: the benchmark workloads of `python -m fastad bench`.

The implementations live in the package, in `fastad/_bench_workloads.py`, so
that `python -m fastad bench` also works from an installed wheel, without this
repository. This file re-exports them for scripts and notebooks in the
repository, and running it is the same as `python -m fastad bench`:

    python benchmarks/workloads.py --quick
    python -c "from benchmarks.workloads import WORKLOADS; print(list(WORKLOADS))"

Start reading at `fastad/_bench_workloads.py` (`WORKLOADS`, `Case`, `Runner`),
then `fastad/bench.py` (timing, checks, table, JSON, plot). benchmarks/README.md
says what each workload measures.
"""
from __future__ import annotations

import os
import sys

try:
    import fastad  # noqa: F401
except ImportError:  # run from a checkout without installing: use the fastad next to this folder
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastad._bench_workloads import *  # noqa: E402,F401,F403
from fastad._bench_workloads import __all__  # noqa: E402,F401

if __name__ == "__main__":
    from fastad.bench import main
    sys.exit(main())
