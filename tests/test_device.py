"""Device model on a machine without a GPU: parsing, clear errors, and placement rules.

Placement is exercised with a stand-in "cuda" backend that keeps its buffers in host
memory, so transfers, mixed-device errors and gradient placement run here; the real
CUDA backend is covered by tests/test_cuda.py on a GPU.
"""
import numpy as np
import pytest

import fastad as fa
from fastad.runtime import _backends, cuda_probe
from fastad.runtime.cpu import CpuBackend


@pytest.mark.parametrize("spec, text", [("cpu", "cpu"), ("cuda", "cuda:0"), ("cuda:1", "cuda:1"),
                                        (" CUDA:2 ", "cuda:2")])
def test_device_parsing(spec, text):
    d = fa.Device(spec)
    assert str(d) == text
    assert d == text and d is fa.Device(text)
    assert fa.Device(d) is d


@pytest.mark.parametrize("spec", ["gpu", "cuda:", "cuda:x", "cpu:1", "tpu:0", ""])
def test_bad_device_strings_raise_value_error(spec):
    with pytest.raises(ValueError, match="device"):
        fa.Device(spec)


def test_device_must_be_a_string_or_device():
    with pytest.raises(TypeError):
        fa.Device(3)


def test_default_device_is_cpu_and_tensors_report_it():
    assert fa.get_default_device() == "cpu"
    t = fa.ones(3)
    assert t.device == fa.Device("cpu") and repr(t.device) == "device(type='cpu')"
    # `.to`/`.cpu` return self when nothing changes (PyTorch); the array API's to_device a new tensor
    assert t.to("cpu") is t and t.cpu() is t
    moved = t.to_device("cpu")
    assert moved is not t and moved.device == t.device and np.array_equal(moved.numpy(), t.numpy())


@pytest.mark.skipif(cuda_probe.is_available(), reason="a GPU is present")
def test_cuda_requests_fail_clearly_without_a_gpu():
    assert fa.cuda.is_available() is False and fa.cuda.device_count() == 0
    with pytest.raises((RuntimeError, ImportError), match="(?i)cuda|gpu|cupy"):
        fa.set_default_device("cuda")
    assert fa.get_default_device() == "cpu"
    with pytest.raises((RuntimeError, ImportError), match="(?i)cuda|gpu|cupy"):
        fa.tensor([1.0], device="cuda")


class _HostCuda(CpuBackend):
    """A "cuda" backend whose buffers are host copies: placement logic without a GPU."""

    def from_numpy(self, array, device=None):
        return np.array(array, copy=True)

    def to_numpy(self, buffer):
        return np.array(buffer, copy=True)


@pytest.fixture
def fake_cuda(monkeypatch):
    monkeypatch.setitem(_backends, "cuda", _HostCuda())
    yield


def test_mixed_devices_raise_naming_both(fake_cuda):
    a = fa.tensor([1.0, 2.0], device="cuda")
    b = fa.tensor([1.0, 2.0])
    for op in (lambda: a + b, lambda: b * a, lambda: fa.maximum(a, b), lambda: fa.where(b > 0, a, b),
               lambda: fa.concat([a, b]), lambda: fa.matmul(fa.reshape(a, (1, 2)), fa.reshape(b, (2, 1)))):
        with pytest.raises(ValueError) as e:
            op()
        assert "cuda:0" in str(e.value) and "cpu" in str(e.value)


def test_transfers_and_gradients_live_on_the_leaf_device(fake_cuda):
    x = fa.tensor([0.5, -1.0, 2.0], device="cuda", requires_grad=True)
    assert x.device == "cuda:0"
    y = fa.sum(fa.exp(x) * x)               # computed on "cuda"
    z = y.cpu() * 3                          # moved to the host, differentiable
    assert y.device == "cuda:0" and z.device == "cpu"
    z.backward()
    assert x.grad.device == "cuda:0"
    xs = np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(x.grad.numpy(), 3 * (np.exp(xs) * xs + np.exp(xs)), rtol=1e-6)
    assert float(z) == pytest.approx(3 * np.sum(np.exp(xs) * xs), rel=1e-6)
    back = x.detach().to("cpu").cuda()
    assert back.device == "cuda:0"
    np.testing.assert_array_equal(back.numpy(), x.detach().numpy())
