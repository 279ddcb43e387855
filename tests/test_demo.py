"""`python -m fastad demo`: it trains to its target accuracy with a reduced epoch count, on the data it finds."""
import builtins
import re

import pytest

import fastad
from fastad.__main__ import main


def _accuracy(out: str) -> float:
    m = re.search(r"test accuracy: ([0-9.]+)%", out)
    assert m, out
    return float(m.group(1)) / 100


def test_demo_reaches_its_accuracy(capsys):
    pytest.importorskip("sklearn", reason="the demo extra (scikit-learn) brings the digits data")
    pytest.importorskip("tqdm", reason="the demo extra brings tqdm")
    assert main(["demo", "--epochs", "5", "--seed", "0", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "digits (scikit-learn)" in captured.out
    assert _accuracy(captured.out) >= 0.95
    assert "step/s" in captured.err and "loss=" in captured.err and "acc=" in captured.err  # tqdm's bar
    if not hasattr(fastad, "compile"):
        assert "no fastad.compile yet" in captured.out


def test_demo_without_the_extra(capsys, monkeypatch):
    real = builtins.__import__

    def no_extras(name, *args, **kwargs):
        if name.split(".")[0] in ("sklearn", "tqdm"):
            raise ImportError(f"no module named {name!r} (hidden by the test)")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_extras)
    assert main(["demo", "--epochs", "3", "--no-compile", "--batch-size", "100", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "generated" in out and "tqdm is not installed" in out and "epoch   3/3" in out
    assert _accuracy(out) >= 0.9


def test_demo_rejects_bad_flags():
    with pytest.raises(SystemExit):
        main(["demo", "--epochs", "0"])
    with pytest.raises(SystemExit):
        main(["demo", "--batch-size", "x"])
