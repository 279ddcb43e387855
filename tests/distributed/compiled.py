"""Run under `mpiexec -n 2`: a fastad.compile'd step replays its collectives (forward and in
backward) like the eager loop, and gradients of gradients go through a collective's rule.
Prints "compiled ok" on each rank at the end."""
import numpy as np

import fastad as fa
import fastad.distributed as dist

dist.init("cpu", timeout=60)
R = dist.rank()
X = [fa.asarray(np.linspace(-1, 1, 8).astype(np.float32) * (R + 1) + i) for i in range(4)]


def run(compiled):
    w = fa.asarray(np.linspace(0.5, 1.5, 8).astype(np.float32), requires_grad=True)

    def step(x, lr):
        loss = dist.all_reduce(fa.sum((x * w - 1.0) ** 2), op="mean")   # collective in forward and backward
        loss.backward()
        with fa.no_grad():
            w.sub_(lr * dist.all_reduce(w.grad, op="mean"))
        w.grad = None
        return loss
    f = fa.compile(step) if compiled else step
    with fa.profile() as p:
        losses = [f(X[i % 4], 0.01).item() for i in range(8)]
    return losses, w.numpy().copy(), p


l0, w0, _ = run(False)
l1, w1, p = run(True)
assert p.traces == 1 and p.replays == 7, (p.traces, p.replays)
assert np.allclose(l0, l1, rtol=1e-6) and np.allclose(w0, w1, rtol=1e-6), (l0, l1)
other = dist.all_gather(fa.asarray(w1[None]))
assert np.array_equal(other.numpy()[0], other.numpy()[1])           # ranks agree bit for bit

# second order through all_reduce's derivative rule: d2/dx2 of all_reduce(sum(x**3))
x = fa.asarray(np.array([1.0, 2.0]) * (R + 1), requires_grad=True)
dist.all_reduce(fa.sum(x ** 3)).backward(create_graph=True)
g = x.grad
x.grad = None
fa.sum(g).backward()
assert np.allclose(x.grad.numpy(), 6 * 2 * np.array([1.0, 2.0]) * (R + 1)), x.grad.numpy()
print(f"rank {R}: compiled ok", flush=True)
