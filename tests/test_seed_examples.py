"""The seed snippets from the issue, verbatim, in-process and as a script whose stdout is compared exactly."""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

import fastad as fa


def test_tensor_repr():
    x = fa.tensor(5.0)
    assert repr(x) == "tensor(5.)"


def test_requires_grad_returns_the_tensor():
    x = fa.tensor(5.0)
    r = x.requires_grad_()
    assert r is x
    assert repr(r) == "tensor(5., requires_grad=True)"


def test_square_backward():
    x = fa.tensor(5.0)
    x.requires_grad_()
    y = x**2
    y.backward()
    assert repr(x.grad) == "tensor(10.)"


def test_polynomial_backward():
    x = fa.tensor([2.]).requires_grad_()
    y = x**2 + 2*x + 2
    y.backward()
    assert repr(x.grad) == "tensor([6.])"


def test_gradient_tape():
    x = fa.Variable(5.0)
    with fa.GradientTape() as t:
        t.watch(x)
        y = x**2
    g = t.gradient(y, x)
    assert isinstance(g, fa.Tensor)
    assert g.item() == 10.0
    assert g.shape == () and g.dtype == fa.float32


SCRIPT = textwrap.dedent("""\
    import fastad as fa

    x = fa.tensor(5.0)
    print(repr(x))
    print(repr(x.requires_grad_()))
    y = x**2; y.backward(); print(repr(x.grad))

    x = fa.tensor([2.]).requires_grad_(); y = x**2 + 2*x + 2; y.backward(); print(repr(x.grad))

    x = fa.Variable(5.0)
    with fa.GradientTape() as t:
        t.watch(x)
        y = x**2
    g = t.gradient(y, x)
    print(type(g).__module__.split(".")[0], isinstance(g, fa.Tensor), g.item())
    print(g)
""")

EXPECTED = """\
tensor(5.)
tensor(5., requires_grad=True)
tensor(10.)
tensor([6.])
fastad True 10.0
tensor(10.)
"""


@pytest.mark.slow  # spawns a Python process
def test_seed_script_stdout(tmp_path):
    script = tmp_path / "seed.py"
    script.write_text(SCRIPT)
    root = str(pathlib.Path(fa.__file__).resolve().parent.parent)  # the fastad under test
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == EXPECTED
