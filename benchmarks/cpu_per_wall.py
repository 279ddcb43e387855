"""CPU time per wall time of the chain's value and gradient at N=10M: are all cores busy?

    python benchmarks/cpu_per_wall.py [--n 10000000] [--threads 2] [--iters 20] [--compile]

Runs the fused chain kernel (compiled, after the background compile finished)
`iters` times, three rounds, and prints the wall time per iteration and the
process's CPU time divided by wall time. On 2 cores, 2.0 means both threads
computed the whole time. Run it on an otherwise idle machine: other processes
take cores from the pool and lower the figure. The eager call also builds its
graph on one thread (about 0.5 ms), which at small N lowers the figure for
reasons other than the kernel; `--compile` replays the call through
`fastad.compile`, so that nearly all of the time is the kernel's.
"""
import argparse
import os
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--threads", type=int, default=None, help="FASTAD_NUM_THREADS (default: core count)")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--compile", action="store_true", help="replay the call with fastad.compile")
    args = parser.parse_args()
    if args.threads:
        os.environ["FASTAD_NUM_THREADS"] = str(args.threads)
    import fastad as fa
    from fastad.runtime.cpu import wait_for_compiles

    x = fa.tensor(np.random.default_rng(0).uniform(-3, 3, args.n).astype(np.float32), requires_grad=True)

    def value_and_grad_graph():
        y = fa.sum(fa.sin(x) * fa.exp(-x * x) + fa.tanh(3 * x) * x + 1 / (1 + fa.exp(-x)))
        y.backward()
        g, x.grad = x.grad, None
        return y, g

    run = fa.compile(value_and_grad_graph) if args.compile else value_and_grad_graph

    def value_and_grad():
        y, g = run()
        fa.realize(y, g)
        return float(y), g

    for _ in range(3):
        value_and_grad()
    wait_for_compiles()
    for _ in range(3):
        value_and_grad()
    for _ in range(3):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(args.iters):
            value_and_grad()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"N={args.n}{' compiled' if args.compile else ''}: {wall / args.iters * 1e3:.1f} ms per value+gradient, CPU time / wall time {cpu / wall:.2f}")


if __name__ == "__main__":
    main()
