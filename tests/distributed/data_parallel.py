"""Run under `mpiexec -n 2`: DataParallel training equals one process on the global batch, bit-identically
synchronized across ranks, with and without a fastad.optim optimizer; bucket all-reduces start while
backward still runs. Prints "data parallel ok" on each rank at the end.
"""
import numpy as np

import fastad as fa
import fastad.distributed as dist
import fastad.optim

dist.init("cpu", timeout=60)
R, W = dist.rank(), dist.world_size()


class MLP:
    """8 -> 32 -> 3, tanh, float64; rank-dependent initial values (DataParallel must replace them)."""

    def __init__(self, seed):
        rng = np.random.default_rng(seed)
        shapes = [(8, 32), (32,), (32, 3), (3,)]
        self.params = [fa.tensor(rng.standard_normal(s) * 0.5, requires_grad=True) for s in shapes]

    def parameters(self):
        return self.params

    def __call__(self, x):
        w1, b1, w2, b2 = self.params
        return fa.tanh(x @ w1 + b1) @ w2 + b2


def loss_fn(model, x, y):
    d = model(x) - y
    return (d * d).mean()


def sgd(params, lr):
    with fa.no_grad():
        for p in params:
            p -= lr * p.grad
            p.grad = None


rng = np.random.default_rng(0)
X, Y = rng.standard_normal((6, 32, 8)), rng.standard_normal((6, 32, 3))   # 6 steps of 32 rows
half = X.shape[1] // W
model = dist.DataParallel(MLP(seed=100 + R), bucket_mb=200 / 2 ** 20)  # ~200-byte buckets: several
assert len(model.buckets) >= 3, len(model.buckets)
model.check_synchronized()
reference = MLP(seed=100)  # rank 0's start, trained in this process alone on the whole batches
for step in range(X.shape[0]):
    xs, ys = fa.asarray(X[step, R * half:(R + 1) * half]), fa.asarray(Y[step, R * half:(R + 1) * half])
    loss = loss_fn(model, xs, ys)
    if step % 2 == 0:
        model.backward(loss)
    else:
        loss.backward()
        model.sync_gradients()
    sgd(model.parameters(), 0.1)
    ref_loss = loss_fn(reference, fa.asarray(X[step]), fa.asarray(Y[step]))
    ref_loss.backward()
    sgd(reference.parameters(), 0.1)
    model.check_synchronized()
for p, q, p0 in zip(model.parameters(), reference.parameters(), MLP(seed=100).params):
    np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-12, atol=1e-13)
    assert np.abs(p.numpy() - p0.numpy()).max() > 1e-3  # training moved every parameter

# the averaged flat gradient is what the parameters' grads view; the first bucket's all-reduce
# (the last layer's gradients) starts before backward reaches the first layer's weight gradient
loss = loss_fn(model, fa.asarray(X[0, R * half:(R + 1) * half]), fa.asarray(Y[0, R * half:(R + 1) * half]))
with fa.profile() as prof:
    model.backward(loss)
(flat,) = model.flat_grads
assert np.array_equal(flat.numpy(), np.concatenate([p.grad.numpy().ravel() for p in model.parameters()]))
names = [launch.name for launch in prof.launches]
assert names.count("dist_all_reduce") == len(model.buckets), names
dw1 = max(i for i, launch in enumerate(prof.launches) if launch.name == "matmul" and launch.elements == 8 * 32)
assert names.index("dist_all_reduce") < dw1, names

# with a fastad.optim optimizer: the buckets follow its flat layout and its step reads the reduced buffer
for momentum in (0.0, 0.9):
    net, ref = MLP(seed=200 + R), MLP(seed=200)
    opt = fa.optim.SGD(net.parameters(), lr=0.05, momentum=momentum)
    ref_opt = fa.optim.SGD(ref.parameters(), lr=0.05, momentum=momentum)
    dp = dist.DataParallel(net, opt, bucket_mb=300 / 2 ** 20)
    for step in range(3):
        dp.backward(loss_fn(dp, fa.asarray(X[step, R * half:(R + 1) * half]),
                            fa.asarray(Y[step, R * half:(R + 1) * half])))
        dp.step()
        opt.zero_grad()
        loss_fn(ref, fa.asarray(X[step]), fa.asarray(Y[step])).backward()
        ref_opt.step()
        ref_opt.zero_grad()
        dp.check_synchronized()
    for p, q in zip(net.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-12, atol=1e-13)

# a rank whose parameters drifted is caught
with fa.no_grad():
    if R == 1:
        model.parameters()[1].add_(1e-12)
try:
    model.check_synchronized()
except dist.DistributedError as e:
    assert "#1 float64[32]" in str(e), str(e)
else:
    raise AssertionError("drift not detected")
print(f"rank {R}: data parallel ok", flush=True)

# ranks whose models differ are told so before any gradient is reduced
try:
    dist.DataParallel(MLP(seed=1).params[: 4 if R == 0 else 3])
except dist.CollectiveMismatchError as e:
    assert "rank 0: 4 parameters" in str(e) and "rank 1: 3 parameters" in str(e), str(e)
else:
    raise AssertionError("mismatched models not detected")
print(f"rank {R}: data parallel mismatch ok", flush=True)
