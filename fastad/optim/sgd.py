"""optim.sgd: stochastic gradient descent with momentum, dampening, Nesterov and weight decay.

Start at `SGD._rule`, PyTorch's update written over flat buffers:

    g = -g (maximize);  g = g + weight_decay * p
    buf = g on a parameter's first step, else momentum * buf + (1 - dampening) * g
    d = g + momentum * buf (nesterov) or buf
    p = p - lr * d
"""
from __future__ import annotations

from .. import dtypes as dt
from ..ops import f
from .optimizer import Optimizer, check_nonnegative, param_view

__all__ = ["SGD"]


class SGD(Optimizer):
    """`SGD(params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, maximize=False)`."""

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                 maximize=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    def _validate(self, group):
        check_nonnegative(group, "lr", "momentum", "weight_decay")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _state_names(self, group):
        return ("momentum_buffer",) if group["momentum"] != 0 else ()

    def _rule(self, group, q, p, g, state):
        if group["maximize"]:
            g = f.neg(g)
        if group["weight_decay"] != 0:
            g = f.add(g, f.mul(q("wd", group["weight_decay"]), p))
        d, new = g, {}
        momentum = group["momentum"]
        if momentum != 0:
            # `first` is a kernel argument, so the first step runs the same kernel as the others
            first = q.per_param("first", lambda step: step == 1, dtype=dt.bool)
            later = f.add(f.mul(state["momentum_buffer"], q("momentum", momentum)),
                          f.mul(q("1-dampening", 1 - group["dampening"]), g))
            buf = new["momentum_buffer"] = f.where(first, g, later)
            d = f.add(g, f.mul(q("momentum", momentum), buf)) if group["nesterov"] else buf
        # p + (-lr) * d: -lr is never the 1 that constant folding would drop, so any lr reuses the kernel
        return f.add(p, f.mul(q("-lr", -group["lr"]), d)), new

    def _param_state(self, bucket, i):
        if bucket.steps[i] == 0 or "momentum_buffer" not in bucket.state:
            return {}
        return {"momentum_buffer": param_view(bucket, "momentum_buffer", i)}

    def _load_bucket(self, group, bucket, per_param):
        bufs = [s.get("momentum_buffer") for s in per_param]
        bucket.steps = [int(b is not None) for b in bufs]
        bucket.state.pop("momentum_buffer", None)
        if any(b is not None for b in bufs):
            bucket.load_state("momentum_buffer", bufs)
