"""demo: the `python -m fastad demo` classifier, trained data-parallel. `mpiexec -n 2 python -m fastad.distributed.demo`.

Start at `run`. The same data, model (Linear-ReLU-Linear), AdamW and cosine
schedule as `fastad.demo`; every rank draws the same global batches and
trains on its contiguous share of each, through `DataParallel`, so the run
follows the single-process run over the same global batches. Only rank 0
prints (the progress bar shows the loss and accuracy over the global batch,
gathered with `all_reduce`). `--verify` then trains the single-process run
on rank 0 and prints the largest parameter difference.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

__all__ = ["run", "main"]


def _build(args, device):
    from fastad import nn, optim
    from fastad.optim.lr_scheduler import CosineAnnealingLR
    import fastad as fa
    fa.random.seed(args.seed)
    model = nn.Sequential(nn.Linear(64, args.hidden, device=device), nn.ReLU(),
                          nn.Linear(args.hidden, 10, device=device))
    opt = optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    return model, opt, CosineAnnealingLR


def _train(args, device, data, distributed: bool, bar=None):
    """Train; return the model. With `distributed`, each rank takes its share of every global batch."""
    import fastad as fa
    from fastad.nn import functional as F
    from . import comm
    from .collectives import all_reduce
    from .data_parallel import DataParallel
    x_train, y_train = data[0], data[1]
    model, opt, Cosine = _build(args, device)
    steps_per_epoch = max(1, len(x_train) // args.batch_size)
    sched = Cosine(opt, T_max=args.epochs * steps_per_epoch)
    rank, size = (comm.rank(), comm.world_size()) if distributed else (0, 1)
    share = args.batch_size // size
    dp = DataParallel(model, opt) if distributed else None
    rng = np.random.default_rng(args.seed + 1)  # the demo's batch order, the same on every rank
    for epoch in range(args.epochs):
        order = rng.permutation(len(x_train))
        loss_sum, correct, seen = 0.0, 0, 0
        for k in range(steps_per_epoch):
            idx = order[k * args.batch_size:(k + 1) * args.batch_size][rank * share:(rank + 1) * share]
            xb, yb = fa.asarray(x_train[idx], device=device), fa.asarray(y_train[idx], device=device)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            if dp is not None:
                dp.backward(loss)
                dp.step()
            else:
                loss.backward()
                opt.step()
            opt.zero_grad()
            sched.step()
            hits = fa.asarray(np.array([(logits.numpy().argmax(1) == y_train[idx]).sum()], np.int64))
            if dp is not None:  # collectives run on every rank, in the same order
                loss, hits = all_reduce(loss.detach(), "mean"), all_reduce(hits, "sum")
            loss_sum += loss.item()
            correct += int(hits.item())
            seen += share * size
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / (k + 1):.4f}", acc=f"{correct / seen:.3f}",
                                refresh=False)
    if dp is not None:
        dp.check_synchronized()
    return model


def run(args) -> dict:
    """Train data-parallel over the ranks of this job; rank 0 prints and returns the figures."""
    import fastad as fa
    from fastad.demo import _progress, load_data
    from . import comm
    device = comm.init(args.device)
    rank, size = comm.rank(), comm.world_size()
    if args.batch_size % size:
        raise SystemExit(f"demo: --batch-size {args.batch_size} must be a multiple of the {size} ranks")
    data = load_data(args.seed)
    steps = args.epochs * max(1, len(data[0]) // args.batch_size)
    if rank == 0:
        print(f"data: {data[4]}; {size} ranks, {args.batch_size // size} examples each per step of "
              f"{args.batch_size}; device {device}")
        if getattr(args, "compile", False) and hasattr(fa, "compile"):
            print("note: the data-parallel demo runs its step eagerly")
    bar = _progress(steps, rank == 0 and not args.no_progress)
    t0 = time.perf_counter()
    model = _train(args, device, data, True, bar)
    seconds = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    result = {}
    if rank == 0:
        model.eval()
        with fa.no_grad():
            pred = model(fa.asarray(data[2], device=device)).numpy().argmax(1)
        acc = float((pred == data[3]).mean())
        print(f"trained {steps} steps on {size} ranks in {seconds:.2f} s ({steps / seconds:.0f} steps/s)")
        print(f"test accuracy: {acc * 100:.2f}% ({int((pred == data[3]).sum())}/{len(data[3])})")
        result = {"test_accuracy": acc, "steps": steps, "seconds": seconds, "ranks": size}
        if getattr(args, "verify", False):
            ref = _train(args, device, data, False)
            diff = max(float(np.abs(p.numpy() - q.numpy()).max())
                       for p, q in zip(model.parameters(), ref.parameters()))
            print(f"largest parameter difference from one process on the same global batches: {diff:.3g}")
            result["max_param_diff"] = diff
    comm.barrier(timeout=max(comm._state.timeout, 600.0))
    return result


def main(argv=None) -> int:
    from fastad.demo import add_arguments
    p = argparse.ArgumentParser(prog="mpiexec -n N python -m fastad.distributed.demo",
                                description="Train the demo classifier data-parallel over the MPI ranks.")
    add_arguments(p)
    p.add_argument("--verify", action="store_true",
                   help="also train in one process on rank 0 and print the largest parameter difference")
    run(p.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
