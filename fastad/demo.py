"""demo: `python -m fastad demo`, train an MLP classifier with fastad.nn + fastad.optim and report test accuracy.

Start at `run`. The data is scikit-learn's bundled 8x8 digits when the
`demo` extra is installed (no download), otherwise a generated 10-class
problem of the same size. Training shows a tqdm progress bar with the loss,
the training accuracy and steps per second, and ends with the accuracy on a
held-out test split. `--compile` captures the training step with
`fastad.compile` where this fastad has it.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

__all__ = ["add_arguments", "run", "load_data"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="cpu or cuda[:i] (default: CUDA when a GPU is present)")
    p.add_argument("--epochs", type=int, default=20, help="passes over the training set (default 20)")
    p.add_argument("--batch-size", type=int, default=64, help="examples per step (default 64)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                   help="capture the training step with fastad.compile (default on, where available)")
    p.add_argument("--seed", type=int, default=0, help="seeds the data split, the weights and the batches")
    p.add_argument("--lr", type=float, default=1e-2, help="AdamW learning rate (cosine-annealed, default 1e-2)")
    p.add_argument("--hidden", type=int, default=128, help="hidden units (default 128)")
    p.add_argument("--no-progress", action="store_true", help="print one line per epoch instead of a progress bar")
    p.add_argument("--distributed", action="store_true",
                   help="train data-parallel over the ranks of `mpiexec -n N` (fastad.distributed; rank 0 prints)")


def load_data(seed: int):
    """(x_train, y_train, x_test, y_test, name): features scaled to [0, 1] (float32), int64 labels."""
    rng = np.random.default_rng(seed)
    try:
        from sklearn.datasets import load_digits
        digits = load_digits()
        x, y, name = digits.data.astype(np.float32) / 16.0, digits.target.astype(np.int64), "digits (scikit-learn)"
    except ImportError:
        x, y = _generated(rng)
        name = "generated (install fastad[demo] for scikit-learn's digits)"
    order = rng.permutation(len(x))
    n_test = len(x) // 5
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test], name


def _generated(rng, n: int = 1800, classes: int = 10, features: int = 64):
    """Ten overlapping classes: noisy copies of random 8x8 'glyphs' (the digits' size and value range)."""
    glyphs = (rng.random((classes, features)) < 0.35).astype(np.float32)
    y = rng.integers(0, classes, n)
    x = glyphs[y] + rng.normal(0.0, 0.85, (n, features)).astype(np.float32)
    return np.clip(x, -1.0, 2.0).astype(np.float32) / 2.0, y.astype(np.int64)


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        print("note: tqdm is not installed (pip install 'fastad[demo]'); printing one line per epoch")
        return None
    return tqdm(total=total, unit="step", dynamic_ncols=True)


def run(args) -> dict:
    """Train, print progress and the test accuracy; return the figures (for tests)."""
    import fastad as fa
    from fastad import nn, optim
    from fastad.nn import functional as F
    from fastad.optim.lr_scheduler import CosineAnnealingLR

    device = args.device or ("cuda" if fa.cuda.is_available() else "cpu")
    if args.epochs < 1 or args.batch_size < 1:
        raise SystemExit("demo: --epochs and --batch-size must be positive")
    x_train, y_train, x_test, y_test, name = load_data(args.seed)
    print(f"data: {name}: {len(x_train)} training and {len(x_test)} test examples, "
          f"{x_train.shape[1]} features, {int(y_train.max()) + 1} classes")
    fa.random.seed(args.seed)
    model = nn.Sequential(nn.Linear(x_train.shape[1], args.hidden, device=device), nn.ReLU(),
                          nn.Linear(args.hidden, 10, device=device))
    opt = optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = max(1, len(x_train) // args.batch_size)  # whole batches only: one shape, one plan
    sched = CosineAnnealingLR(opt, T_max=args.epochs * steps_per_epoch)
    print(f"model: {model!r}".replace("\n", "\n       "))
    print(f"device: {device}; optimizer: AdamW, lr {args.lr} cosine-annealed over "
          f"{args.epochs * steps_per_epoch} steps; batch {args.batch_size}")

    def train_step(xb, yb):
        opt.zero_grad()
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        loss.backward()
        opt.step()
        return loss, logits

    step = train_step
    if args.compile:
        if hasattr(fa, "compile"):
            step = fa.compile(train_step)
            print("step: captured with fastad.compile")
        else:
            print("note: this fastad has no fastad.compile yet; --compile runs the step eagerly")

    rng = np.random.default_rng(args.seed + 1)
    bar = _progress(args.epochs * steps_per_epoch, not args.no_progress)
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        order = rng.permutation(len(x_train))
        loss_sum, correct, seen = 0.0, 0, 0
        for k in range(steps_per_epoch):
            idx = order[k * args.batch_size:(k + 1) * args.batch_size]
            xb, yb = fa.asarray(x_train[idx], device=device), fa.asarray(y_train[idx], device=device)
            try:
                loss, logits = step(xb, yb)
            except Exception as e:  # noqa: BLE001 - the demo still trains, and says why
                if step is train_step:
                    raise
                print(f"note: fastad.compile could not capture the step ({type(e).__name__}: {e}); "
                      "running it eagerly")
                step = train_step
                loss, logits = step(xb, yb)
            sched.step()
            loss_sum += loss.item()
            correct += int((logits.numpy().argmax(1) == y_train[idx]).sum())
            seen += len(idx)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / (k + 1):.4f}", acc=f"{correct / seen:.3f}",
                                refresh=False)
        if bar is None:
            rate = (epoch + 1) * steps_per_epoch / (time.perf_counter() - t0)
            print(f"epoch {epoch + 1:3d}/{args.epochs}: loss {loss_sum / steps_per_epoch:.4f}, "
                  f"train accuracy {correct / seen:.3f}, {rate:.0f} steps/s")
    seconds = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    model.eval()
    with fa.no_grad():
        pred = model(fa.asarray(x_test, device=device)).numpy().argmax(1)
    acc = float((pred == y_test).mean())
    total_steps = args.epochs * steps_per_epoch
    print(f"trained {total_steps} steps in {seconds:.2f} s ({total_steps / seconds:.0f} steps/s, "
          f"first-call compiles included)")
    print(f"test accuracy: {acc * 100:.2f}% ({int((pred == y_test).sum())}/{len(y_test)})")
    return {"test_accuracy": acc, "steps": total_steps, "seconds": seconds, "data": name, "device": device}
