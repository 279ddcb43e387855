"""fastad.save / fastad.load: round trips of nested state dicts, atomic writes, no code execution on load."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastad as fa
from fastad import optim
from fastad.serialization import load, save


def _tree():
    return {
        "model": {"w": fa.asarray(np.arange(6, dtype=np.float32).reshape(2, 3), requires_grad=True),
                  "b": fa.asarray(np.array([1.5, -2.0])), "steps": fa.asarray(np.array(7, np.int64)),
                  "mask": fa.asarray(np.array([True, False]))},
        "state": {0: {"step": 3, "lr": 0.1, "nan": float("nan"), "inf": float("-inf")}, 1: None},
        "betas": (0.9, 0.999), "names": ["a", "b"], "flag": True, "raw": np.arange(4, dtype=np.int16),
    }


def test_round_trip(tmp_path):
    path = tmp_path / "ck.npz"
    save(_tree(), path)
    got = load(path)
    want = _tree()
    assert set(got) == set(want)
    for k in want["model"]:
        a, b = got["model"][k], want["model"][k]
        assert isinstance(a, fa.Tensor) and a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert got["model"]["w"].requires_grad and not got["model"]["b"].requires_grad
    assert got["state"][0]["step"] == 3 and isinstance(got["state"][0]["step"], int)
    assert got["state"][0]["lr"] == 0.1 and np.isnan(got["state"][0]["nan"])
    assert got["state"][0]["inf"] == float("-inf") and got["state"][1] is None
    assert got["betas"] == (0.9, 0.999) and got["names"] == ["a", "b"] and got["flag"] is True
    assert list(got["state"]) == [0, 1]  # int keys stay ints
    np.testing.assert_array_equal(got["raw"], np.arange(4, dtype=np.int16))
    assert got["raw"].dtype == np.int16
    assert load(path, device="cpu")["model"]["w"].device == fa.Device("cpu")


def test_optimizer_and_model_resume(tmp_path):
    rng = np.random.default_rng(0)
    grads = [[rng.standard_normal((4, 3)), rng.standard_normal(3)] for _ in range(4)]

    def run(ts, opt, gs):
        for g in gs:
            for t, gi in zip(ts, g):
                t.grad = fa.asarray(gi)
            opt.step()

    ts = [fa.asarray(np.ones((4, 3)), requires_grad=True), fa.asarray(np.zeros(3), requires_grad=True)]
    opt = optim.Adam(ts, lr=0.1, amsgrad=True)
    run(ts, opt, grads[:2])
    save({"params": ts, "optim": opt.state_dict()}, tmp_path / "resume.npz")
    run(ts, opt, grads[2:])
    ck = load(tmp_path / "resume.npz")
    ts2 = ck["params"]
    opt2 = optim.Adam(ts2, lr=0.1, amsgrad=True)
    opt2.load_state_dict(ck["optim"])
    run(ts2, opt2, grads[2:])
    for a, b in zip(ts, ts2):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_interrupted_save_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ck.npz"
    save({"w": fa.asarray(np.ones(1000))}, path)
    before = path.read_bytes()
    real = np.lib.format.write_array
    calls = []

    def failing(fp, array, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the third array: some bytes of the new archive are already written
            fp.write(b"partial")
            raise OSError("disk full (injected)")
        return real(fp, array, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing)
    with pytest.raises(OSError, match="injected"):
        save({"w": fa.asarray(np.zeros(1000)), "v": fa.asarray(np.zeros(5)), "u": fa.asarray(np.zeros(5))}, path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["ck.npz"]  # the temporary file is gone
    np.testing.assert_array_equal(load(path)["w"].numpy(), 1)


@pytest.mark.slow
def test_killed_save_keeps_the_old_checkpoint(tmp_path):
    path = tmp_path / "ck.npz"
    save({"w": fa.asarray(np.ones(10))}, path)
    before = path.read_bytes()
    script = (
        "import os, sys, numpy as np\n"
        "from fastad.serialization import save\n"
        "import fastad as fa\n"
        "real = np.lib.format.write_array\n"
        "def dying(fp, a, *args, **kw):\n"
        "    real(fp, a, *args, **kw)\n"
        "    fp.flush(); os._exit(3)  # the process dies between two arrays\n"
        "np.lib.format.write_array = dying\n"
        "save({'w': fa.asarray(np.zeros(10)), 'v': fa.asarray(np.zeros(10))}, sys.argv[1])\n")
    rc = subprocess.run([sys.executable, "-c", script, str(path)], timeout=120).returncode
    assert rc == 3
    assert path.read_bytes() == before
    np.testing.assert_array_equal(load(path)["w"].numpy(), 1)


def test_load_executes_no_code_and_rejects_foreign_files(tmp_path):
    evil = tmp_path / "evil.npz"
    meta = '{"format": "fastad-checkpoint", "version": 1, "tree": {"ndarray": "t0"}}'
    np.savez(evil, __fastad__=np.array(meta), t0=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        load(evil)
    plain = tmp_path / "plain.npz"
    np.savez(plain, a=np.zeros(2))
    with pytest.raises(ValueError, match="not a fastad checkpoint"):
        load(plain)


def test_unsupported_objects(tmp_path):
    with pytest.raises(TypeError, match="cannot save set"):
        save({"s": {1, 2}}, tmp_path / "x.npz")
    with pytest.raises(TypeError, match="dict keys"):
        save({(1, 2): 3}, tmp_path / "x.npz")
    with pytest.raises(TypeError, match="no pickle"):
        save({"o": np.array([object()])}, tmp_path / "x.npz")
    assert not os.listdir(tmp_path)
