"""Run under `mpiexec -n 2`: every collective on every dtype, their gradients, and debug-mode mismatches.

Each rank can build every rank's input (they depend only on the rank number),
so the expected values are computed locally with numpy and compared exactly.
Prints "collectives ok" on each rank at the end.
"""
import numpy as np

import fastad as fa
import fastad.distributed as dist

dist.init("cpu", timeout=60, debug=True)
R, W = dist.rank(), dist.world_size()
assert W == 2, "run with mpiexec -n 2"
DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float32", "float64", "complex64", "complex128"]
SUPPORTS = {"sum": "iufc", "mean": "fc", "max": "iuf", "min": "iuf"}


def data(r, dtype, shape=(4, 3)):
    a = np.arange(np.prod(shape)).reshape(shape)
    if dtype == "bool":
        return (a + r) % 3 == 0
    v = (a * (r + 2)) % 7 + r  # small values: no integer wraps; ties between ranks at some places
    if np.dtype(dtype).kind == "c":
        return (v + 1j * (v - r)).astype(dtype)
    return v.astype(dtype)


def check(got, want, what):
    got = got.numpy()
    assert got.dtype == want.dtype, (what, got.dtype, want.dtype)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    assert np.array_equal(got, want), (what, got, want)


def expect_error(exc, fn, *words):
    try:
        fn()
    except exc as e:
        for w in words:
            assert w in str(e), (w, str(e))
        return
    raise AssertionError(f"{fn} did not raise {exc.__name__}")


def test_values():
    for name in DTYPES:
        xs = [data(r, name) for r in range(W)]
        x = fa.asarray(xs[R])
        kind = np.dtype(name).kind
        for op, ok in SUPPORTS.items():
            if kind in ok:
                if op == "sum":
                    want = (xs[0] + xs[1]).astype(name)
                elif op == "mean":
                    want = ((xs[0] + xs[1]) / np.array(2, name)).astype(name)
                else:
                    want = getattr(np, "maximum" if op == "max" else "minimum")(xs[0], xs[1])
                check(dist.all_reduce(x, op), want, f"all_reduce {op} {name}")
            else:
                expect_error(TypeError, lambda: dist.all_reduce(x, op), op, name)
        check(dist.broadcast(x, root=1), xs[1], f"broadcast {name}")
        check(dist.all_gather(x), np.concatenate(xs), f"all_gather {name}")
        if kind in "iufc":
            total = (xs[0] + xs[1]).astype(name)
            check(dist.reduce_scatter(x), total[2 * R:2 * R + 2], f"reduce_scatter {name}")
            check(dist.reduce(x, root=0), total if R == 0 else np.zeros_like(total), f"reduce {name}")
        else:
            expect_error(TypeError, lambda: dist.reduce_scatter(x), name)
    # a 0-d tensor gathers to shape (W,); a non-contiguous view is read as its logical value
    check(dist.all_gather(fa.asarray(np.float32(R + 0.5))), np.array([0.5, 1.5], np.float32), "0-d")
    m = fa.asarray(data(R, "float64"))
    check(dist.all_reduce(m.T), (data(0, "float64") + data(1, "float64")).T.copy(), "transposed view")
    check(dist.all_reduce(fa.full((3,), 2.0)), np.full(3, 4.0, np.float32), "constant input")
    expect_error(ValueError, lambda: dist.reduce_scatter(fa.ones((3, 2))), "multiple of the world size")
    expect_error(ValueError, lambda: dist.all_reduce(m, "prod"), "op must be")
    expect_error(ValueError, lambda: dist.broadcast(m, root=2), "root")
    expect_error(TypeError, lambda: dist.all_reduce(data(R, "float32")), "Tensor")


def grad_of(fn, x_np, weights):
    """d(sum over ranks of sum(w_r * fn(x)_r))/dx on this rank, through fastad's backward."""
    x = fa.tensor(x_np, requires_grad=True)
    y = fn(x)
    (y * fa.asarray(weights[R])).sum().backward()
    return x.grad.numpy()


def test_gradients():
    for name in ("float32", "float64"):
        rng = np.random.default_rng(7)
        ws = [rng.standard_normal((4, 3)).astype(name) for _ in range(W)]
        xs = [data(r, name) for r in range(W)]
        close = dict(rtol=1e-6 if name == "float32" else 1e-13)
        g = grad_of(lambda x: dist.all_reduce(x, "sum"), xs[R], ws)
        np.testing.assert_allclose(g, ws[0] + ws[1], **close)
        g = grad_of(lambda x: dist.all_reduce(x, "mean"), xs[R], ws)
        np.testing.assert_allclose(g, (ws[0] + ws[1]) / 2, **close)
        for op, pick in (("max", np.maximum), ("min", np.minimum)):
            ext = pick(xs[0], xs[1])
            hits = [(xs[r] == ext).astype(name) for r in range(W)]
            want = (ws[0] + ws[1]) * hits[R] / (hits[0] + hits[1])
            assert (hits[0] * hits[1]).any(), "the data should contain ties"
            np.testing.assert_allclose(grad_of(lambda x: dist.all_reduce(x, op), xs[R], ws), want, **close)
        g = grad_of(lambda x: dist.broadcast(x, root=1), xs[R], ws)
        np.testing.assert_allclose(g, ws[0] + ws[1] if R == 1 else np.zeros_like(g), **close)
        g = grad_of(lambda x: dist.reduce(x, root=0), xs[R], ws)
        np.testing.assert_allclose(g, ws[0], **close)
        wg = [rng.standard_normal((8, 3)).astype(name) for _ in range(W)]
        g = grad_of(dist.all_gather, xs[R], wg)
        np.testing.assert_allclose(g, (wg[0] + wg[1])[4 * R:4 * R + 4], **close)
        ws2 = [w[:2] for w in ws]
        g = grad_of(dist.reduce_scatter, xs[R], ws2)
        np.testing.assert_allclose(g, np.concatenate(ws2), **close)
        g = grad_of(lambda x: dist.reduce_scatter(x, "mean"), xs[R], ws2)
        np.testing.assert_allclose(g, np.concatenate(ws2) / 2, **close)
        # a chain: gradients flow through local ops on both sides of a collective
        g = grad_of(lambda x: fa.sin(dist.all_reduce(x * x)), xs[R], ws)
        s = xs[0] ** 2 + xs[1] ** 2
        np.testing.assert_allclose(g, (ws[0] + ws[1]) * np.cos(s) * 2 * xs[R], rtol=1e-5 if name == "float32"
                                   else 1e-12)


def test_finite_differences():
    """A chain of every collective, float64: backward matches central differences of the global loss."""
    rng = np.random.default_rng(11)
    ws = [rng.standard_normal((4, 3)) for _ in range(W)]
    cs = [rng.standard_normal((8, 3)) for _ in range(W)]
    x0 = rng.standard_normal((W, 4, 3))  # every rank's input

    def local_loss(x):
        g1 = dist.all_gather(x)
        g2 = dist.reduce_scatter(fa.sin(g1) * fa.asarray(cs[R]), "mean")
        g3 = dist.all_reduce(g2 * x, "sum")
        g4 = dist.broadcast(g3 * g3, root=1)
        return (fa.asarray(ws[R]) * g4).sum()

    x = fa.tensor(x0[R], requires_grad=True)
    local_loss(x).backward()
    grad = x.grad.numpy()
    h = 1e-6
    for s in range(W):
        for i in np.ndindex(4, 3):
            vals = []
            for sign in (1, -1):
                xp = x0[R].copy()
                if R == s:
                    xp[i] += sign * h
                vals.append(dist.all_reduce(local_loss(fa.asarray(xp)), "sum").item())
            fd = (vals[0] - vals[1]) / (2 * h)
            if R == s:
                assert abs(fd - grad[i]) <= 1e-6 * max(1.0, abs(fd)), (s, i, fd, grad[i])


def test_debug_mismatch():
    shape = (3,) if R == 0 else (4,)
    expect_error(dist.CollectiveMismatchError, lambda: dist.all_reduce(fa.ones(shape)),
                 "rank 0: all_reduce float32[3]", "rank 1: all_reduce float32[4]")
    dtype = fa.float32 if R == 0 else fa.float64
    expect_error(dist.CollectiveMismatchError, lambda: dist.all_gather(fa.ones((2,), dtype=dtype)),
                 "float32[2]", "float64[2]")
    expect_error(dist.CollectiveMismatchError, lambda: dist.broadcast(fa.ones(2), root=R), "root=0", "root=1")
    # the group is still usable after a mismatch was caught
    check(dist.all_reduce(fa.ones(2)), np.full(2, 2.0, np.float32), "after mismatch")


test_values()
test_gradients()
test_finite_differences()
test_debug_mismatch()
dist.barrier()
print(f"rank {R}: collectives ok", flush=True)
