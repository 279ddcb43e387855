"""optim.optimizer: the `Optimizer` base class (param groups, flat buckets, fused step, state dicts).

Start at `Optimizer.step`. Each param group is split into `FlatBucket`s, one
per dtype and device (`fastad.optim.flat`). A step gathers each bucket's
gradients into one flat tensor, asks the subclass's `_rule` for the updated
parameters and state as graph over flat nodes, and realizes every output of
every bucket in one schedule: per bucket, one concat (the gradient gather)
and one fused multi-output kernel.

Two details keep that one kernel and one compile:

* The new parameters read the new state (p reads m): the scheduler fuses a
  root with the roots it reads at the same point into one kernel, which
  computes m once, stores it and uses it for p (`fastad.schedule._joins`).
* Hyperparameters and step-dependent values (lr, bias corrections) are
  constants, hence kernel arguments: a new learning rate reuses the kernel.
  The rules avoid forms that constant folding would simplify for particular
  values (`x * 1`, `x + 0`), so a value of 0 compiles nothing new either.

Subclasses give `defaults`, `_state_names(group)` and `_rule(group, q, p, g, state)`.
"""
from __future__ import annotations

import copy

from ..autodiff import enable_grad, no_grad
from ..capture import eager
from ..ops import apply, const
from ..realize import realize
from ..tensor import Tensor
from .flat import FlatBucket, flat_view

__all__ = ["Optimizer"]


class _Values:
    """What a rule reads its scalars from: `q(name, value)` a constant, `q.per_param(name, fn)` a per-parameter value.

    Nodes are memoised by name, so a rule that asks for one value twice gets one node."""

    def __init__(self, bucket: FlatBucket, active: list, steps: list):
        self.bucket, self.active, self.steps = bucket, active, steps
        self._memo: dict = {}

    def __call__(self, name: str, value, dtype=None):
        node = self._memo.get(name)
        if node is None:
            b = self.bucket
            node = self._memo[name] = const(value, (b.numel,), dtype or b.dtype, b.device)
        return node

    def per_param(self, name: str, fn, dtype=None):
        """fn(step) for each updated parameter, where step counts its updates including this one."""
        node = self._memo.get(name)
        if node is None:
            vals = [fn(s) for s, a in zip(self.steps, self.active) if a]
            fill = vals[0]
            it = iter(vals)
            values = [next(it) if a else fill for a in self.active]
            node = self._memo[name] = self.bucket.per_param(values, dtype or self.bucket.dtype)
        return node


def _check_params(params) -> list:
    if isinstance(params, Tensor):
        raise TypeError("params should be an iterable of Tensors or dicts, but got a Tensor")
    params = list(params)
    for p in params:
        if not isinstance(p, Tensor):
            raise TypeError(f"optimizer can only optimize fastad Tensors, got {type(p).__name__}")
        if not p.is_leaf:
            raise ValueError("can't optimize a non-leaf Tensor")
        if p.dtype.kind != "f":
            raise TypeError(f"optimizer can only optimize real floating point tensors, not {p.dtype.name}")
    return params


class Optimizer:
    """Base class: param groups, flat buckets, `step`, `zero_grad`, `state_dict`/`load_state_dict`."""

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.param_groups: list[dict] = []
        self._buckets: list[list[FlatBucket]] = []
        self._group_params: list[tuple] = []
        if isinstance(params, Tensor):
            _check_params(params)
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    def __repr__(self) -> str:
        lines = [type(self).__name__ + " ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(g.items()) if k != "params"]
        return "\n".join(lines + [")"])

    # ---- groups ---------------------------------------------------------------
    def add_param_group(self, param_group: dict) -> None:
        """Add a group (a dict with "params" and optional hyperparameters) and lay out its flat buffers."""
        if not isinstance(param_group, dict):
            raise TypeError(f"a param group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        if "params" not in group:
            raise ValueError("a param group needs a 'params' entry")
        ps = group["params"]
        params = _check_params([ps] if isinstance(ps, Tensor) else ps)
        if len({id(p) for p in params}) != len(params):
            raise ValueError("a param group contains a parameter more than once")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        unknown = set(group) - set(self.defaults) - {"params", "initial_lr"}
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown hyperparameter(s) {sorted(unknown)}")
        self._validate(group)
        group["params"] = params
        self.param_groups.append(group)
        self._group_params.append(tuple(id(p) for p in params))
        by_key: dict = {}
        for p in params:
            if p.size:
                by_key.setdefault((p.dtype.name, str(p.device)), []).append(p)
        self._buckets.append([FlatBucket(ps) for ps in by_key.values()])

    def _validate(self, group: dict) -> None:
        """Check hyperparameters (subclasses raise ValueError for bad values)."""

    # ---- the step -------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every parameter's gradient (set_to_none) or set it to zeros."""
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad = Tensor(p.grad._node).zero_()

    def flat_grads(self, group: int = 0) -> list:
        """The gradients of param group `group`, one flat tensor per bucket (dtype, device), unrealized.

        Bucket i holds its parameters end to end in `buckets(group)[i].params` order
        (offsets in `.offsets`); a parameter without a gradient contributes zeros.
        `step(flat_grads={group: [...]})` takes such tensors back (e.g. all-reduced)."""
        return [Tensor(b.gather_grads()) for b in self._buckets[group]]

    def buckets(self, group: int = 0) -> list:
        """The `FlatBucket`s of param group `group` (layout: params, offsets, sizes, dtype, device)."""
        return list(self._buckets[group])

    @eager   # inside a fastad.compile'd step it runs again at each replay (its Python state moves on)
    def step(self, closure=None, *, flat_grads: dict | None = None):
        """Update every parameter that has a gradient; one fused kernel per bucket.

        `closure` re-evaluates the model and returns the loss (run with gradients on).
        `flat_grads` maps a group index to flat gradient tensors (as from `flat_grads`)
        used instead of gathering the parameters' `.grad`."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            outputs, commits = [], []
            for gi, group in enumerate(self.param_groups):
                if tuple(id(p) for p in group["params"]) != self._group_params[gi]:
                    raise RuntimeError(f"param_groups[{gi}]['params'] changed after the optimizer was built; "
                                       "add parameters with add_param_group")
                given = None if flat_grads is None else flat_grads.get(gi)
                if given is not None and len(given) != len(self._buckets[gi]):
                    raise ValueError(f"flat_grads[{gi}] has {len(given)} tensors, the group {len(self._buckets[gi])} "
                                     "buckets")
                for bi, bucket in enumerate(self._buckets[gi]):
                    plan = self._plan_bucket(group, bucket, None if given is None else given[bi])
                    if plan is not None:
                        outputs += plan[1]
                        commits.append(plan)
            donate = {}
            for bucket, outs, names, _ in commits:
                donate.update(bucket.donors(outs[0], dict(zip(names, outs[1:]))))
            realize(outputs, donate)
            del donate   # the old buffers now hold the new values: nothing may read them as old
            for bucket, outs, names, active in commits:
                bucket.bind(outs[0])
                for name, node in zip(names, outs[1:]):
                    bucket.state[name] = node
                bucket.steps = [s + a for s, a in zip(bucket.steps, active)]
        return loss

    def _plan_bucket(self, group: dict, bucket: FlatBucket, flat_grad):
        """(bucket, output nodes, state names, active) for one bucket's update, or None when nothing to do."""
        if flat_grad is not None:
            if flat_grad.shape != (bucket.numel,) or flat_grad.device != bucket.device:
                raise ValueError(f"a flat gradient must be {bucket.dtype.name}[{bucket.numel}] on {bucket.device}, "
                                 f"got {flat_grad.dtype.name}{list(flat_grad.shape)} on {flat_grad.device}")
            active = [True] * len(bucket.params)
            g = flat_grad._node if flat_grad.dtype is bucket.dtype else apply("cast", flat_grad._node,
                                                                              arg=bucket.dtype)
        else:
            active = bucket.active()
            if not any(active):
                return None
            g = bucket.gather_grads()
        names = self._state_names(group)
        for name in names:
            if name not in bucket.state:
                bucket.state[name] = bucket.zeros()
        p = bucket.flat_params()
        state = {n: bucket.state[n] for n in names}
        q = _Values(bucket, active, [s + 1 for s in bucket.steps])
        mask = None if all(active) else bucket.mask(active)
        new_p, new_state = self._rule(group, q, p, g, state)
        outs = [new_p] + [new_state[name] for name in names]
        if mask is not None:
            outs = [apply("where", mask, node, old) for node, old in zip(outs, [p] + [state[n] for n in names])]
        return bucket, outs, names, active

    def _state_names(self, group: dict) -> tuple:
        raise NotImplementedError

    def _rule(self, group: dict, q: _Values, p, g, state: dict):
        """(new flat parameters, {state name: new flat state}) as graph over flat nodes."""
        raise NotImplementedError

    # ---- state ----------------------------------------------------------------
    def _param_state(self, bucket: FlatBucket, i: int) -> dict:
        """PyTorch's per-parameter state dict entry for parameter i of `bucket` ({} before its first update)."""
        raise NotImplementedError

    @property
    def state(self) -> dict:
        """{parameter: its state dict}, for parameters updated at least once (views of the flat state)."""
        out = {}
        for buckets in self._buckets:
            for b in buckets:
                for i, p in enumerate(b.params):
                    s = self._param_state(b, i)
                    if s:
                        out[p] = s
        return out

    def state_dict(self) -> dict:
        """{'state': {index: {...}}, 'param_groups': [{hyperparameters, 'params': [indices]}]} (PyTorch's layout).

        Parameters are numbered in group order. State tensors are views of buffers that later
        steps never overwrite, so the dict is a snapshot."""
        index, groups = {}, []
        for g in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in g.items() if k != "params"}
            packed["params"] = []
            for p in g["params"]:
                index[id(p)] = len(index)
                packed["params"].append(index[id(p)])
            groups.append(packed)
        state = {}
        for buckets in self._buckets:
            for b in buckets:
                for i, p in enumerate(b.params):
                    s = self._param_state(b, i)
                    if s:
                        state[index[id(p)]] = s
        return {"state": dict(sorted(state.items())), "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyperparameters and state saved by `state_dict` (the parameters stay this optimizer's)."""
        if not isinstance(state_dict, dict) or "param_groups" not in state_dict or "state" not in state_dict:
            raise ValueError("not an optimizer state dict: needs 'state' and 'param_groups'")
        saved = state_dict["param_groups"]
        if len(saved) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(saved)} parameter groups, the optimizer "
                             f"{len(self.param_groups)}")
        for g, s in zip(self.param_groups, saved):
            if len(s["params"]) != len(g["params"]):
                raise ValueError("loaded state dict contains a parameter group that doesn't match the size "
                                 "of optimizer's group")
        index = {}
        for g, s in zip(self.param_groups, saved):
            for p, k in zip(g["params"], s["params"]):
                index[id(p)] = k
        states = {(int(k) if isinstance(k, str) and k.isdigit() else k): v
                  for k, v in state_dict["state"].items()}
        for g, s in zip(self.param_groups, saved):
            for k, v in s.items():
                if k != "params":
                    g[k] = copy.deepcopy(v)
        for gi, buckets in enumerate(self._buckets):
            for b in buckets:
                per_param = [states.get(index[id(p)], {}) for p in b.params]
                self._load_bucket(self.param_groups[gi], b, per_param)

    def _load_bucket(self, group: dict, bucket: FlatBucket, per_param: list) -> None:
        raise NotImplementedError


_NAMES = {"lr": "learning rate", "eps": "epsilon value", "momentum": "momentum value",
          "weight_decay": "weight_decay value", "dampening": "dampening value"}


def check_nonnegative(group: dict, *keys) -> None:
    """ValueError unless each of group[keys] is a real number >= 0 (PyTorch's messages)."""
    for key in keys:
        v = group[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0.0:
            raise ValueError(f"Invalid {_NAMES.get(key, key)}: {v!r}")


def param_view(bucket: FlatBucket, name: str, i: int) -> Tensor:
    """Parameter i's slice of flat state `name`, as a tensor (a view)."""
    return Tensor(flat_view(bucket.state[name], bucket.offsets[i], bucket.shapes[i]))


def to_int(x) -> int:
    """A saved step count (int, float, 0-d tensor or array) as an int."""
    if isinstance(x, Tensor):
        x = x.item()
    return int(float(x))

