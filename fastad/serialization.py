"""serialization: `fastad.save` / `fastad.load` of (nested) state dicts as `.npz` checkpoints.

Start at `save`. A checkpoint is a numpy `.npz` archive: one array per tensor
(or numpy array) and one `__fastad__` entry holding the nesting as JSON (dicts
with str/int keys, lists, tuples, Python scalars, None, and leaves naming
their array, dtype, device and requires_grad). Loading never runs code:
`numpy.load(..., allow_pickle=False)` and JSON only.

Writes are atomic: the archive goes to a temporary file in the target's
directory, is flushed and fsynced, then renamed over the target with
`os.replace`; an error or a crash midway leaves the previous checkpoint whole.
"""
from __future__ import annotations

import json
import os

import numpy as np

from ._util import atomic_write, contiguous

__all__ = ["save", "load"]

_FORMAT = "fastad-checkpoint"
_VERSION = 1
_META = "__fastad__"


def _encode(obj, arrays: dict):
    """The JSON tree for `obj`, appending its arrays to `arrays` (name -> numpy array)."""
    from .tensor import Tensor
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float):
        return {"float": repr(obj)} if obj != obj or obj in (float("inf"), float("-inf")) else obj
    if isinstance(obj, Tensor):
        name = f"t{len(arrays)}"
        arrays[name] = contiguous(obj.numpy())
        return {"tensor": name, "dtype": obj.dtype.name, "device": str(obj.device),
                "requires_grad": bool(obj.requires_grad and obj.is_leaf)}
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise TypeError("save: numpy arrays of Python objects cannot be saved (no pickle)")
        name = f"t{len(arrays)}"
        arrays[name] = contiguous(obj)
        return {"ndarray": name}
    if isinstance(obj, np.generic):
        return _encode(obj.item(), arrays)
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if isinstance(k, bool) or not isinstance(k, (str, int)):
                raise TypeError(f"save: dict keys must be str or int, got {type(k).__name__} ({k!r})")
            items.append([k, _encode(v, arrays)])
        return {"dict": items}
    if isinstance(obj, (list, tuple)):
        return {"list" if isinstance(obj, list) else "tuple": [_encode(v, arrays) for v in obj]}
    raise TypeError(f"save: cannot save {type(obj).__name__}: checkpoints hold tensors, numpy arrays, "
                    "Python scalars, str, None, and dicts, lists and tuples of those")


def save(obj, path) -> None:
    """Write `obj` (a state dict, or any nesting of tensors, arrays and scalars) to `path` atomically."""
    arrays: dict = {}
    tree = _encode(obj, arrays)
    meta = json.dumps({"format": _FORMAT, "version": _VERSION, "tree": tree})
    atomic_write(path, lambda f: np.savez(f, **{_META: np.array(meta)}, **arrays))


def _decode(node, arrays, device):
    from . import dtypes as dt
    from .creation import asarray
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, list):
        raise ValueError("load: malformed checkpoint (a bare list in the tree)")
    if "float" in node:
        return float(node["float"])
    if "tensor" in node:
        arr = arrays[node["tensor"]]
        dtype = dt.to_dtype(node["dtype"])
        if arr.dtype != dtype.np:
            raise ValueError(f"load: tensor {node['tensor']} holds {arr.dtype}, its record says {dtype.name}")
        t = asarray(arr, dtype=dtype, device=device if device is not None else node["device"])
        if node.get("requires_grad"):
            t.requires_grad_(True)
        return t
    if "ndarray" in node:
        return arrays[node["ndarray"]]
    if "dict" in node:
        return {k: _decode(v, arrays, device) for k, v in node["dict"]}
    if "list" in node:
        return [_decode(v, arrays, device) for v in node["list"]]
    if "tuple" in node:
        return tuple(_decode(v, arrays, device) for v in node["tuple"])
    raise ValueError(f"load: malformed checkpoint (unknown record {sorted(node)})")


def load(path, device=None):
    """Read a checkpoint written by `save`. Tensors go to the device they were saved from, or `device`."""
    with np.load(os.fspath(path), allow_pickle=False) as archive:
        if _META not in archive.files:
            raise ValueError(f"load: {path} is not a fastad checkpoint (no {_META} entry)")
        meta = json.loads(str(archive[_META]))
        if meta.get("format") != _FORMAT:
            raise ValueError(f"load: {path} is not a fastad checkpoint")
        if meta.get("version", 0) > _VERSION:
            raise ValueError(f"load: {path} has checkpoint format {meta['version']}; this fastad reads "
                             f"up to {_VERSION}")
        arrays = {name: archive[name] for name in archive.files if name != _META}
    return _decode(meta["tree"], arrays, device)
