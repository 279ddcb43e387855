"""Run under `mpiexec -n 2`: DataParallel training equals one process on the global batch, bit-identically
synchronized across ranks. Prints "data parallel ok" on each rank at the end.
"""
import numpy as np

import fastad as fa
import fastad.distributed as dist

dist.init("cpu", timeout=60)
R, W = dist.rank(), dist.world_size()


class MLP:
    """8 -> 16 -> 3, tanh, float64; rank-dependent initial values (DataParallel must replace them)."""

    def __init__(self, seed):
        rng = np.random.default_rng(seed)
        shapes = [(8, 16), (16,), (16, 3), (3,)]
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

# the averaged flat gradients are what the parameters' grads view
loss = loss_fn(model, fa.asarray(X[0, R * half:(R + 1) * half]), fa.asarray(Y[0, R * half:(R + 1) * half]))
model.backward(loss)
flat = np.concatenate([b.flat_grad.numpy() for b in model.buckets])
views = np.concatenate([p.grad.numpy().ravel() for b in model.buckets for p in b.params])
assert np.array_equal(flat, views)

# a rank whose parameters drifted is caught
with fa.no_grad():
    if R == 1:
        model.parameters()[1].add_(1e-12)
try:
    model.check_synchronized()
except dist.DistributedError as e:
    assert "#1 float64[16]" in str(e), str(e)
else:
    raise AssertionError("drift not detected")
print(f"rank {R}: data parallel ok", flush=True)
