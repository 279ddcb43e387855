"""optim.adam: Adam and AdamW (with AMSGrad), PyTorch's update formulas over flat buffers.

Start at `Adam._rule`. Per parameter, with t its step count (this step included):

    g = -g (maximize);  Adam: g = g + weight_decay * p;  AdamW: p = p - lr * weight_decay * p
    m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g * g
    vmax = max(vmax, v) (amsgrad)
    p = p - (lr / (1 - beta1**t)) * m / (sqrt(v or vmax) / sqrt(1 - beta2**t) + eps)

The bias corrections depend on t, so they are per-parameter values: one
kernel argument when every parameter of a bucket is at the same step (the
usual case), a flat buffer otherwise.
"""
from __future__ import annotations

import math

from ..ops import f
from .optimizer import Optimizer, check_nonnegative, param_view, to_int

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """`Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, maximize=False)`."""

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=None, amsgrad=False,
                 maximize=False):
        if weight_decay is None:
            weight_decay = 1e-2 if self._decoupled else 0.0
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize)
        super().__init__(params, defaults)

    def _validate(self, group):
        check_nonnegative(group, "lr", "eps", "weight_decay")
        betas = group["betas"]
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair, got {betas!r}")
        for i, b in enumerate(betas):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {b}")

    def _state_names(self, group):
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())

    def _rule(self, group, q, p, g, state):
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if group["maximize"]:
            g = f.neg(g)
        if wd != 0:
            if self._decoupled:
                # p * (1 - lr*wd) written as p + (-lr*wd) * p, so lr = 0 is not folded into another kernel
                p = f.add(p, f.mul(q("-lr*wd", -lr * wd), p))
            else:
                g = f.add(g, f.mul(q("wd", wd), p))
        m, v = state["exp_avg"], state["exp_avg_sq"]
        w = 1 - beta1
        if w < 0.5:  # torch.lerp's two forms
            m = f.add(m, f.mul(q("1-beta1", w), f.sub(g, m)))
        else:
            m = f.sub(g, f.mul(f.sub(g, m), q("beta1", 1 - w)))
        v = f.add(f.mul(v, q("beta2", beta2)), f.mul(f.mul(q("1-beta2", 1 - beta2), g), g))
        new = {"exp_avg": m, "exp_avg_sq": v}
        if group["amsgrad"]:
            v = new["max_exp_avg_sq"] = f.maximum(state["max_exp_avg_sq"], v)
        neg_step_size = q.per_param("-step_size", lambda t: -lr / (1 - beta1 ** t))
        bc2_sqrt = q.per_param("bc2_sqrt", lambda t: math.sqrt(1 - beta2 ** t))
        denom = f.add(f.div(f.sqrt(v), bc2_sqrt), q("eps", eps))
        return f.add(p, f.div(f.mul(neg_step_size, m), denom)), new

    def _param_state(self, bucket, i):
        if bucket.steps[i] == 0 or "exp_avg" not in bucket.state:
            return {}
        out = {"step": bucket.steps[i]}
        for name in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            if name in bucket.state:
                out[name] = param_view(bucket, name, i)
        return out

    def _load_bucket(self, group, bucket, per_param):
        bucket.steps = [to_int(s["step"]) if "step" in s else 0 for s in per_param]
        for name in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            bucket.state.pop(name, None)
            vals = [s.get(name) for s in per_param]
            if any(v is not None for v in vals):
                bucket.load_state(name, vals)


class AdamW(Adam):
    """`AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, maximize=False)`:
    Adam with decoupled weight decay (p shrinks by lr * weight_decay before the Adam step)."""

    _decoupled = True
