"""`python -m fastad`: the command line (`bench`, `demo`, `version`).

Start at `main`. Subcommands import what they need when they run, so
`python -m fastad --help` and `version` stay fast; `bench` lives in
`fastad.bench`, `demo` in `fastad.demo`.
"""
from __future__ import annotations

import argparse
import sys


def _version(args) -> int:
    import importlib.metadata
    import platform

    import fastad
    parts = [f"fastad {fastad.__version__}", f"python {platform.python_version()}"]
    for dist in ("numpy", "numba", "llvmlite"):
        try:
            parts.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{dist} not installed")
    print(parts[0] + " (" + ", ".join(parts[1:]) + ")")
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m fastad",
        description="fastad: a JIT-compiled autodiff library (lazy graph -> derivative rules -> fused kernels).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from . import bench  # light: the comparison libraries are imported only by the cases that use them
    b = sub.add_parser("bench", help="time fastad against numpy, Numba, PyTorch, JAX and Dr.Jit",
                       description="Time fastad against numpy, Numba, PyTorch, JAX and Dr.Jit on five "
                                   "workloads; print a table with ratios, save JSON and a PNG plot.",
                       epilog="Examples: python -m fastad bench --quick;  "
                              "python -m fastad bench --only chain,memory --sizes 1M,10M --json out.json;  "
                              "python -m fastad bench --device cuda")
    bench.add_arguments(b)
    from . import demo
    d = sub.add_parser("demo", help="train an MLP classifier with fastad.nn and fastad.optim",
                       description="Train an MLP on scikit-learn's digits (or a generated data set without the "
                                   "demo extra) on the best available device, with a progress bar, and "
                                   "report the test accuracy.",
                       epilog="Examples: python -m fastad demo;  python -m fastad demo --epochs 5 --no-compile;  "
                              "python -m fastad demo --device cpu --batch-size 128;  "
                              "mpiexec -n 2 python -m fastad demo --distributed")
    demo.add_arguments(d)
    sub.add_parser("version", help="print the versions of fastad and its compiler stack")
    args = parser.parse_args(argv)
    if args.command == "bench":
        return bench.run_devices(args, argv[argv.index("bench") + 1:])
    if args.command == "demo":
        if args.distributed:
            from .distributed import demo as distributed_demo
            distributed_demo.run(args)
        else:
            demo.run(args)
        return 0
    if args.command == "version":
        return _version(args)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
