"""Speed and accuracy of fastad.codegen.mathlib (see docs/MATHLIB.md).

Speed (default): each function is called from its own ``@njit(parallel=True)``
kernel ``for i in prange(n): out[i] = f(x[i])`` (the shape of fastad's
generated kernels).  The reference is the same loop calling ``math.*``
(scalar libm calls, not vectorized), and ``x + 1`` / ``x + y`` loops give the
memory-bandwidth floor.  All kernels are compiled first, then timed in
--repeat rounds over all kernels, keeping each kernel's best time (ms), so a
burst of load from another process does not land on one kernel only.  "vec"
is the widest float vector type in the mathlib kernel's LLVM IR (0 = scalar).

Accuracy (--accuracy): max error in ulps against numpy's float64 result
rounded to the dtype (float32) or numpy's float64 result itself (float64),
as the integer distance between the two bit patterns.  --exhaustive checks
every one of the 2**32 float32 bit patterns (minutes).

    python benchmarks/bench_mathlib.py                     # speed, N=10M float32, 2 threads
    python benchmarks/bench_mathlib.py --dtype float64
    python benchmarks/bench_mathlib.py --accuracy --exhaustive          # float32, all inputs
    python benchmarks/bench_mathlib.py --accuracy --dtype float64 -n 20000000
"""
import argparse
import importlib
import importlib.util
import math
import os
import re
import sys
import time

import numpy as np

FUNCS = ["exp", "expm1", "log", "log1p", "sin", "cos", "tan", "tanh", "sigmoid", "pow"]


def load_mathlib():
    """Import fastad.codegen.mathlib; fall back to its file if the package is
    not importable (the module imports nothing else from fastad)."""
    try:
        return importlib.import_module("fastad.codegen.mathlib")
    except Exception:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fastad", "codegen", "mathlib.py")
        spec = importlib.util.spec_from_file_location("fastad.codegen.mathlib", path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules["fastad.codegen.mathlib"] = mod
        spec.loader.exec_module(mod)
        return mod


def make_kernels():
    from numba import njit, prange

    def k1(f):
        @njit(parallel=True)
        def k(x, out):
            for i in prange(x.shape[0]):
                out[i] = f(x[i])
        return k

    def k2(f):
        @njit(parallel=True)
        def k(x, y, out):
            for i in prange(x.shape[0]):
                out[i] = f(x[i], y[i])
        return k
    return k1, k2


# ----------------------------------------------------------------------------
# speed
# ----------------------------------------------------------------------------

def run_speed(args, ml, dt):
    import numba
    from numba import njit
    k1, k2 = make_kernels()
    sfx = "f32" if dt == np.float32 else "f64"
    one = dt.type(1.0)

    @njit(inline="always")
    def m_sigmoid(x):
        return one / (one + math.exp(-x))

    @njit(inline="always")
    def add1(x):
        return x + one

    @njit(inline="always")
    def add2(x, y):
        return x + y

    rng = np.random.default_rng(0)
    n = args.n
    u = lambda lo, hi: rng.uniform(lo, hi, n).astype(dt)   # noqa: E731
    cases = [  # name, math.* equivalent, inputs
        ("exp", math.exp, (u(-80, 80),)),
        ("expm1", math.expm1, (u(-5, 5),)),
        ("log", math.log, (u(1e-3, 1e3),)),
        ("log1p", math.log1p, (u(-0.9, 10),)),
        ("sin", math.sin, (u(-100, 100),)),
        ("cos", math.cos, (u(-100, 100),)),
        ("tan", math.tan, (u(-100, 100),)),
        ("tanh", math.tanh, (u(-10, 10),)),
        ("sigmoid", m_sigmoid, (u(-20, 20),)),
        ("pow", math.pow, (u(0.1, 10), u(-5, 5))),
    ]
    cases = [c for c in cases if c[0] in args.only]

    x1 = u(-1, 1)
    runs = {"x+1": (k1(add1), (x1,)), "x+y": (k2(add2), (x1, u(-1, 1)))}
    for name, mfun, arrays in cases:
        mk = k2 if len(arrays) == 2 else k1
        runs["math." + name] = (mk(mfun), arrays)
        runs[name] = (mk(getattr(ml, f"{name}_{sfx}")), arrays)
    outs, compile_s = {}, {}
    for key, (kern, arrays) in runs.items():
        outs[key] = np.empty_like(arrays[0])
        t0 = time.perf_counter()
        kern(*arrays, outs[key])               # compile + warm-up
        compile_s[key] = time.perf_counter() - t0
    best = dict.fromkeys(runs, math.inf)
    for _ in range(args.repeat):
        for key, (kern, arrays) in runs.items():
            t0 = time.perf_counter()
            kern(*arrays, outs[key])
            best[key] = min(best[key], (time.perf_counter() - t0) * 1e3)

    def vec_width(kern):
        ir = kern.inspect_llvm(kern.signatures[0])
        ty = "float" if dt == np.float32 else "double"
        w = [int(m) for m in re.findall(r"<(\d+) x %s>" % ty, ir)]
        return max(w) if w else 0

    print(f"speed: N={n} {dt.name} threads={numba.get_num_threads()} numba {numba.__version__}, "
          f"best of {args.repeat}")
    print(f"bandwidth floor: x+1 {best['x+1']:.2f} ms, x+y {best['x+y']:.2f} ms")
    hdr = f"{'function':10s} {'math.* ms':>10s} {'mathlib ms':>11s} {'speedup':>8s} {'vec':>4s} {'compile s':>10s}"
    print(hdr)
    print("-" * len(hdr))
    for name, _, _ in cases:
        t_math, t_mine = best["math." + name], best[name]
        print(f"{name:10s} {t_math:10.2f} {t_mine:11.2f} {t_math / t_mine:7.1f}x "
              f"{vec_width(runs[name][0]):4d} {compile_s[name]:10.2f}")


# ----------------------------------------------------------------------------
# accuracy
# ----------------------------------------------------------------------------

def _sigmoid64(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


REF = {"exp": np.exp, "expm1": np.expm1, "log": np.log, "log1p": np.log1p, "sin": np.sin,
       "cos": np.cos, "tan": np.tan, "tanh": np.tanh, "sigmoid": _sigmoid64, "pow": np.power}


_ULP_KERNEL = None


def ulp_error(got, ref):
    """|got - ref| in ulps of their dtype: distance of the bit patterns on the
    monotone integer line (+0 and -0 are 0 apart).  nan vs nan is 0, nan vs
    number is inf.  A parallel numba loop: the exhaustive run needs 2**8 calls."""
    global _ULP_KERNEL
    if _ULP_KERNEL is None:
        from numba import njit, prange

        @njit(parallel=True)
        def k(a, b, lo, out):
            for i in prange(a.shape[0]):
                x, y = np.int64(a[i]), np.int64(b[i])
                x = lo - x if x < 0 else x
                y = lo - y if y < 0 else y
                out[i] = abs(x - y)
        _ULP_KERNEL = k
    it = np.int32 if got.dtype == np.float32 else np.int64
    d = np.empty(got.shape, np.float64)
    _ULP_KERNEL(got.view(it), ref.view(it), np.int64(np.iinfo(it).min), d)
    na, nb = np.isnan(got), np.isnan(ref)
    d[na & nb] = 0
    d[na ^ nb] = np.inf
    return d


def reference(name, dt, *xs):
    with np.errstate(all="ignore"):
        r = REF[name](*[x.astype(np.float64) for x in xs])
        return r.astype(dt)


def samples(name, dt, n, rng):
    """Random inputs for one function: a third uniform over the interesting
    interval, a third log-uniform magnitudes of both signs, a third random
    bit patterns (all exponents)."""
    f32 = dt == np.float32
    lim = {"exp": (-110, 100) if f32 else (-750, 720), "expm1": (-20, 90) if f32 else (-40, 710),
           "log": (0, 4), "log1p": (-1, 4), "sin": (-1e5, 1e5), "cos": (-1e5, 1e5), "tan": (-1e5, 1e5),
           "tanh": (-10, 10), "sigmoid": (-110, 110) if f32 else (-750, 750)}
    k = n // 3
    lo, hi = lim[name]
    a = rng.uniform(lo, hi, k)
    b = np.exp2(rng.uniform(-60, 12, k)) * rng.choice([-1.0, 1.0], k)
    it, ut = (np.int32, np.uint32) if f32 else (np.int64, np.uint64)
    c = rng.integers(0, np.iinfo(ut).max, n - 2 * k, dtype=ut, endpoint=True).view(it).view(dt)
    return np.concatenate([a.astype(dt), b.astype(dt), c])


def pow_samples(dt, n, rng):
    f32 = dt == np.float32
    k = n // 6
    big = 88.0 if f32 else 709.0
    xs, ys = [], []
    xs.append(np.exp(rng.uniform(-80 if f32 else -700, 80 if f32 else 700, k)))
    ys.append(rng.uniform(-3, 3, k))
    x = rng.uniform(0.7, 1.42, k)                       # |log x| small: worst case for log's tail
    xs.append(x)
    ys.append(rng.uniform(-1.15 * big, big, k) / np.log(x))
    x = np.exp(rng.uniform(-5, 5, k))                   # results near overflow / underflow
    xs.append(x)
    ys.append(rng.uniform(-1.17 * big, big, k) / np.log(x))
    xs.append(-np.exp(rng.uniform(-8, 8, k)))           # negative bases, integer exponents
    ys.append(np.round(rng.uniform(-40, 40, k)))
    xs.append(np.round(rng.uniform(-30, 30, k)))        # small integers
    ys.append(np.round(rng.uniform(-12, 12, k)))
    x = rng.uniform(0, 1, n - 5 * k) * np.finfo(dt).tiny  # subnormal bases
    xs.append(x)
    ys.append(rng.uniform(-0.3, 1.2, n - 5 * k))
    return np.concatenate(xs).astype(dt), np.concatenate(ys).astype(dt)


def run_accuracy(args, ml, dt):
    k1, k2 = make_kernels()
    sfx = "f32" if dt == np.float32 else "f64"
    rng = np.random.default_rng(12345)
    limit = ml.TRIG_LIMIT32 if dt == np.float32 else ml.TRIG_LIMIT64
    exhaustive = args.exhaustive and dt == np.float32
    print(f"accuracy: {dt.name}, {'all 2**32 inputs' if exhaustive else f'{args.n} random inputs'} "
          f"(pow: {args.n} random pairs); ulps vs numpy float64" + (" rounded to float32" if sfx == "f32" else ""))
    print(f"{'function':10s} {'max ulp':>8s} {'exact %':>8s} {'inputs':>12s}  worst case")
    for name in args.only:
        if name == "pow":
            x, y = pow_samples(dt, args.n, rng)
            kern = k2(getattr(ml, "pow_" + sfx))
            out = np.empty_like(x)
            kern(x, y, out)
            d = ulp_error(out, reference(name, dt, x, y))
            i = int(np.argmax(d))
            print(f"{name:10s} {d.max():8.0f} {100 * np.mean(d == 0):8.2f} {x.size:12d}  "
                  f"pow({x[i]!r}, {y[i]!r}) = {out[i]!r}")
            continue
        kern = k1(getattr(ml, f"{name}_{sfx}"))
        worst, wx, wout, exact, count, beyond_bad = -1.0, None, None, 0, 0, 0
        chunks = (range(256) if exhaustive else [None])
        for c in chunks:
            if c is None:
                x = samples(name, dt, args.n, rng)
            else:
                x = (np.arange(1 << 24, dtype=np.uint32) + np.uint32(c << 24)).view(np.float32)
            out = np.empty_like(x)
            kern(x, out)
            if name in ("sin", "cos", "tan"):
                far = np.abs(x) > limit               # documented: finite, |sin|,|cos| <= 1
                fin = far & np.isfinite(x)
                ok = np.isfinite(out[fin]) & ((np.abs(out[fin]) <= 1) | (name == "tan"))
                beyond_bad += int(np.sum(~ok))
                ref = out.copy()
                ref[far & ~fin] = np.nan                  # sin(+-inf) must be nan
                ref[~far] = reference(name, dt, x[~far])
                d = ulp_error(out, ref)
            else:
                d = ulp_error(out, reference(name, dt, x))
            count += x.size
            exact += int(np.sum(d == 0))
            i = int(np.argmax(d))
            if d[i] > worst:
                worst, wx, wout = d[i], x[i], out[i]
        note = f"  (finite |x| > {limit:g}: {beyond_bad} non-finite or |v| > 1)" if name in ("sin", "cos", "tan") else ""
        print(f"{name:10s} {worst:8.0f} {100 * exact / count:8.2f} {count:12d}  "
              f"{name}({wx!r}) = {wout!r}{note}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=10_000_000, help="array length / number of random samples")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--only", default=",".join(FUNCS), help="comma-separated function names")
    ap.add_argument("--accuracy", action="store_true", help="measure ulp errors instead of speed")
    ap.add_argument("--exhaustive", action="store_true", help="with --accuracy: all float32 inputs")
    args = ap.parse_args()
    args.only = [f for f in args.only.split(",") if f]

    import numba
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    ml = load_mathlib()
    dt = np.dtype(args.dtype)
    if args.accuracy:
        run_accuracy(args, ml, dt)
    else:
        run_speed(args, ml, dt)


if __name__ == "__main__":
    main()
