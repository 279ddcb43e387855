"""_bench_training: benchmark workloads for training with `fastad.nn` and `fastad.optim`.

Start at `TRAINING_WORKLOADS` (`fastad._bench_workloads.WORKLOADS` imports this module on use).
Same contract as `_bench_workloads`: a `Case` makes a `Runner` whose `step()`
does one complete, materialised iteration and whose `check` compares with a
float64 numpy reference, so a broken implementation cannot post a fast number.

  train  one SGD step of a 784-256-10 MLP (relu and tanh, batch 256) built with
         fastad.nn + fastad.optim + cross_entropy, against numpy's hand-written
         backprop from the same initial weights (and PyTorch's nn + optim where installed)
  adam   one Adam step over N float32 parameters (default 10M) against its
         bandwidth floor: reads p, g, m, v and writes p, m, v (28 bytes per parameter)
"""
from __future__ import annotations

import math

import numpy as np

from ._bench_workloads import (DESCRIPTIONS, LOSS_RTOL, MLP_BATCH, MLP_LR, Case, Runner, Skip, _cuda_sync,
                               _require_fastad_cuda, _torch_device, _torch_sync, mlp_guard_steps, mlp_init)

__all__ = ["TRAINING_WORKLOADS", "TRAINING_DESCRIPTIONS", "ADAM_BYTES_PER_PARAM"]

ADAM_BYTES_PER_PARAM = 28  # float32: read p, g, m, v; write p, m, v
ADAM_LR, ADAM_BETAS, ADAM_EPS = 1e-3, (0.9, 0.999), 1e-8
ADAM_SIZES = {"cpu": (10_000_000,), "cuda": (10_000_000, 100_000_000)}
ADAM_QUICK_SIZES = {"cpu": (1_000_000,), "cuda": (1_000_000,)}

TRAINING_DESCRIPTIONS = {
    "train": "SGD step of a 784-256-10 MLP (fastad.nn Linear + activation, F.cross_entropy, optim.SGD), "
             "batch 256, relu and tanh",
    "adam": "one Adam step over N float32 parameters (optim.Adam), against the floor read p,g,m,v + write p,m,v",
}


# ---------------------------------------------------------------------------
# train: the MLP step through fastad.nn and fastad.optim
# ---------------------------------------------------------------------------

def _np_train_step(X, labels, params, act: str, lr=MLP_LR) -> float:
    """Forward, hand-written backward and in-place SGD; the loss before the update (any float dtype)."""
    W1, b1, W2, b2 = params
    z1 = X @ W1 + b1
    h = np.maximum(z1, 0) if act == "relu" else np.tanh(z1)
    logits = h @ W2 + b2
    m = logits.max(axis=1, keepdims=True)
    e = np.exp(logits - m)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(len(labels))
    loss = np.mean(np.log(s[:, 0]) + m[:, 0] - logits[rows, labels])
    d = e / s
    d[rows, labels] -= 1
    d /= X.shape[0]
    dW2, db2 = h.T @ d, d.sum(axis=0)
    dh = d @ W2.T
    dz1 = dh * (z1 > 0) if act == "relu" else dh * (1 - h * h)
    dW1, db1 = X.T @ dz1, dz1.sum(axis=0)
    for p, g in zip(params, (dW1, db1, dW2, db2)):
        p -= lr * g
    return float(loss)


def _train_reference(act: str, steps: int) -> list:
    X, Y, p0 = mlp_init()
    params = [p.astype(np.float64) for p in p0]
    labels = Y.argmax(1)
    return [_np_train_step(X.astype(np.float64), labels, params, act) for _ in range(steps)]


def _guarded(step, act: str, steps: int) -> Runner:
    """Run the first `steps` steps against the float64 reference losses, then hand back the runner."""
    import time
    ref = _train_reference(act, steps)
    t0 = time.perf_counter()
    losses = [float(step())]
    first_s = time.perf_counter() - t0
    losses += [float(step()) for _ in range(steps - 1)]
    bad = [i for i, (a, b) in enumerate(zip(losses, ref)) if not abs(a - b) <= LOSS_RTOL * abs(b)]
    detail = f"losses over {steps} steps {losses[0]:.5f} -> {losses[-1]:.5f}, reference {ref[0]:.5f} -> {ref[-1]:.5f}"
    if bad:
        detail += f"; first mismatch at step {bad[0]}: {losses[bad[0]]!r} vs {ref[bad[0]]!r}"

    def check(out):
        if not math.isfinite(float(out)):
            return False, f"loss became {out!r} while timing"
        return not bad, detail
    return Runner(step, check, first_s=first_s)


def train_cases(device: str, sizes, quick: bool) -> list:
    steps = mlp_guard_steps(quick)
    cases = []
    for act in ("relu", "tanh"):
        def fastad_make(act=act, compiled=False):
            import fastad as fa
            from fastad import nn, optim
            from fastad.nn import functional as F
            if device == "cuda":
                _require_fastad_cuda()
            if compiled and not hasattr(fa, "compile"):
                raise Skip("this fastad has no fastad.compile")
            X0, Y0, (W1, b1, W2, b2) = mlp_init()
            model = nn.Sequential(nn.Linear(784, 256, device=device), nn.ReLU() if act == "relu" else nn.Tanh(),
                                  nn.Linear(256, 10, device=device))
            model.load_state_dict({"0.weight": W1.T.copy(), "0.bias": b1, "2.weight": W2.T.copy(), "2.bias": b2})
            opt = optim.SGD(model.parameters(), lr=MLP_LR)
            X, labels = fa.asarray(X0, device=device), fa.asarray(Y0.argmax(1), device=device)

            def train_step(x, y):
                opt.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                return loss

            run = fa.compile(train_step) if compiled else train_step

            def step():
                v = float(run(X, labels))
                if device == "cuda":
                    _cuda_sync()
                return v
            return _guarded(step, act, steps)

        def numpy_make(act=act):
            X, Y, p0 = mlp_init()
            params = [p.copy() for p in p0]
            labels = Y.argmax(1)
            return _guarded(lambda: _np_train_step(X, labels, params, act), act, steps)

        def torch_make(act=act):
            import torch
            dev = _torch_device(device)
            X0, Y0, (W1, b1, W2, b2) = mlp_init()
            model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU() if act == "relu" else
                                        torch.nn.Tanh(), torch.nn.Linear(256, 10)).to(dev)
            with torch.no_grad():
                for p, v in zip(model.parameters(), (W1.T, b1, W2.T, b2)):
                    p.copy_(torch.tensor(np.ascontiguousarray(v)))
            opt = torch.optim.SGD(model.parameters(), lr=MLP_LR)
            X, labels = torch.tensor(X0, device=dev), torch.tensor(Y0.argmax(1), device=dev)

            def step():
                opt.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(X), labels)
                loss.backward()
                opt.step()
                v = loss.item()
                _torch_sync(device)
                return v
            return _guarded(step, act, steps)

        cases += [Case("train", MLP_BATCH, f"fastad nn+optim ({act})", fastad_make, role="fastad", group=act,
                       warmup=1),
                  Case("train", MLP_BATCH, f"fastad nn+optim fa.compile ({act})",
                       lambda act=act: fastad_make(act, compiled=True), group=act, warmup=1)]
        if device == "cpu":
            cases.append(Case("train", MLP_BATCH, f"numpy hand-written ({act})", numpy_make, group=act, warmup=1))
        cases.append(Case("train", MLP_BATCH, f"torch nn+optim eager ({act})", torch_make, requires=("torch",),
                          group=act, warmup=1))
    return cases


# ---------------------------------------------------------------------------
# adam: one optimizer step over N parameters against its bandwidth floor
# ---------------------------------------------------------------------------

_ADAM_CHECK = 4096  # elements checked against the float64 reference (the update is elementwise)


def _adam_inputs(n: int):
    rng = np.random.default_rng(7)
    p = rng.standard_normal(n, dtype=np.float32)
    g = rng.standard_normal(n, dtype=np.float32)
    return p, g


def _adam_reference(p, g, steps: int):
    """float64 Adam (PyTorch's formulas) on the first elements, `steps` steps with the same gradient."""
    p, g = p[:_ADAM_CHECK].astype(np.float64), g[:_ADAM_CHECK].astype(np.float64)
    m, v = np.zeros_like(p), np.zeros_like(p)
    b1, b2 = ADAM_BETAS
    for t in range(1, steps + 1):
        m = m + (1 - b1) * (g - m)
        v = v * b2 + (1 - b2) * g * g
        p = p - (ADAM_LR / (1 - b1 ** t)) * m / (np.sqrt(v) / math.sqrt(1 - b2 ** t) + ADAM_EPS)
    return p


def _adam_checker(p0, g0, to_host, get_p, count):
    def check(out):
        got = to_host(get_p())[:_ADAM_CHECK].astype(np.float64)
        want = _adam_reference(p0, g0, count[0])
        # float32 rounding: ~1e-7 of |p| per step; the 0.1 keeps parameters near zero from dividing by ~0
        err = float(np.max(np.abs(got - want) / (np.abs(want) + 0.1)))
        return err <= 1e-4, f"after {count[0]} steps: max error {err:.2e} (relative to |p| + 0.1) on " \
                            f"{_ADAM_CHECK} parameters"
    return check


def _adam_numba():
    import numba

    @numba.njit(parallel=True, fastmath=False)
    def adam(p, g, m, v, b1, b2, neg_step, bc2_sqrt, eps):
        for i in numba.prange(p.shape[0]):
            gi = g[i]
            mi = m[i] + (1 - b1) * (gi - m[i])
            vi = v[i] * b2 + (1 - b2) * gi * gi
            m[i], v[i] = mi, vi
            p[i] = p[i] + neg_step * mi / (math.sqrt(vi) / bc2_sqrt + eps)

    @numba.njit(parallel=True)
    def stream(p, g, m, v):
        # in place, as the floor's traffic is counted: a store to fresh memory would first read
        # each cache line it writes (write-allocate), a third more traffic on this CPU
        for i in numba.prange(p.shape[0]):
            gi = g[i]
            p[i] = gi - p[i]
            m[i] = gi - m[i]
            v[i] = gi - v[i]
    return adam, stream


def adam_cases(device: str, sizes, quick: bool) -> list:
    cases = []
    for n in (ADAM_QUICK_SIZES if quick else ADAM_SIZES)[device]:
        def fastad_make(n=n):
            import fastad as fa
            from fastad import optim
            if device == "cuda":
                _require_fastad_cuda()
            p0, g0 = _adam_inputs(n)
            p = fa.asarray(p0, device=device, requires_grad=True)
            g = fa.asarray(g0, device=device)
            opt = optim.Adam([p], lr=ADAM_LR, betas=ADAM_BETAS, eps=ADAM_EPS)
            count = [0]

            def step():
                p.grad = g
                opt.step()
                if device == "cuda":
                    _cuda_sync()
                count[0] += 1
            return Runner(step, _adam_checker(p0, g0, np.asarray, lambda: p.numpy(), count))

        cases.append(Case("adam", n, "fastad optim.Adam", fastad_make, role="fastad", warmup=3))
        if device == "cpu":
            def numpy_make(n=n):
                p0, g = _adam_inputs(n)
                p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
                b1, b2 = ADAM_BETAS
                count = [0]

                def step():  # PyTorch's single-tensor loop, one numpy call per tensor op
                    count[0] += 1
                    t = count[0]
                    m[...] += np.float32(1 - b1) * (g - m)
                    v[...] = v * np.float32(b2) + np.float32(1 - b2) * g * g
                    denom = np.sqrt(v) / np.float32(math.sqrt(1 - b2 ** t)) + np.float32(ADAM_EPS)
                    p[...] += np.float32(-ADAM_LR / (1 - b1 ** t)) * m / denom
                return Runner(step, _adam_checker(p0, g, np.asarray, lambda: p, count))

            def numba_make(n=n):
                adam, _ = _adam_numba()
                p0, g = _adam_inputs(n)
                p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
                b1, b2 = ADAM_BETAS
                count = [0]

                def step():
                    count[0] += 1
                    t = count[0]
                    adam(p, g, m, v, np.float32(b1), np.float32(b2), np.float32(-ADAM_LR / (1 - b1 ** t)),
                         np.float32(math.sqrt(1 - b2 ** t)), np.float32(ADAM_EPS))
                return Runner(step, _adam_checker(p0, g, np.asarray, lambda: p, count))

            def floor_make(n=n):
                _, stream = _adam_numba()
                p, g = _adam_inputs(n)
                m, v = np.zeros_like(p), np.zeros_like(p)
                return Runner(lambda: stream(p, g, m, v))

            cases += [Case("adam", n, "numpy (in place, one call per op)", numpy_make),
                      Case("adam", n, "numba hand-fused (in place)", numba_make, requires=("numba",)),
                      Case("adam", n, "floor: numba read 4 + write 3 in place", floor_make, role="floor",
                           requires=("numba",))]
        else:
            def cupy_floor_make(n=n):
                _require_fastad_cuda()
                import cupy as cp
                p, g = (cp.asarray(a) for a in _adam_inputs(n))
                m, v = cp.zeros_like(p), cp.zeros_like(p)
                outs = [cp.empty_like(p) for _ in range(3)]
                k = cp.ElementwiseKernel("float32 p, float32 g, float32 m, float32 v",
                                         "float32 p2, float32 m2, float32 v2",
                                         "p2 = p + g; m2 = m + g; v2 = v + g", "fastad_adam_floor")

                def step():
                    k(p, g, m, v, *outs)
                    _cuda_sync()
                return Runner(step)
            cases.append(Case("adam", n, "floor: cupy read 4 + write 3", cupy_floor_make, role="floor",
                              requires=("cupy",)))

        def torch_make(n=n):
            import torch
            dev = _torch_device(device)
            p0, g0 = _adam_inputs(n)
            p = torch.tensor(p0, device=dev, requires_grad=True)
            g = torch.tensor(g0, device=dev)
            opt = torch.optim.Adam([p], lr=ADAM_LR, betas=ADAM_BETAS, eps=ADAM_EPS)
            count = [0]

            def step():
                p.grad = g
                opt.step()
                _torch_sync(device)
                count[0] += 1
            return Runner(step, _adam_checker(p0, g0, np.asarray, lambda: p.detach().cpu().numpy(), count))

        cases.append(Case("adam", n, "torch.optim.Adam", torch_make, requires=("torch",)))
    return cases


TRAINING_WORKLOADS = {"train": train_cases, "adam": adam_cases}
DESCRIPTIONS.update(TRAINING_DESCRIPTIONS)
