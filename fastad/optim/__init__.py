"""fastad.optim: optimizers whose update runs as one fused kernel per param group, dtype and device.

Start at `optimizer.Optimizer` (param groups, flat buckets, the step), then
`sgd`, `adam` (Adam, AdamW) and `lr_scheduler`. docs/TRAINING.md explains
the flat buffers and how to read the gradients for data parallelism.
"""
from .optimizer import Optimizer
from .sgd import SGD
from .adam import Adam, AdamW
from . import lr_scheduler

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler"]
