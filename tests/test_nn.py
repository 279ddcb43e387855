"""fastad.nn: Module bookkeeping, Linear/Sequential, seeded initialisers, and the functional
activations and losses against numpy references, closed forms and finite differences."""
import math
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given, settings as hsettings, strategies as st

import fastad as fa
from fastad import nn, optim
from fastad.config import settings
from fastad.nn import functional as F
from fastad.nn import init

from helpers import check_op

_erf = np.vectorize(math.erf, otypes=[np.float64])


def np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_log_softmax(x, axis=-1):
    z = x - x.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


# ---- Module ----------------------------------------------------------------------------

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
        self.scale = nn.Parameter(fa.ones(3))
        self.register_buffer("offset", fa.zeros(3))
        self.note = "not state"

    def forward(self, x):
        return self.body(x) * self.scale + self.offset


def test_module_registration_and_state_dict():
    fa.random.seed(0)
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["scale", "body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias"]
    assert [n for n, _ in net.named_buffers()] == ["offset"]
    assert [n for n, _ in net.named_modules()] == ["", "body", "body.0", "body.1", "body.2"]
    assert len(list(net.children())) == 1 and len(net.body) == 3 and isinstance(net.body[-1], nn.Linear)
    sd = net.state_dict()
    assert list(sd) == ["scale", "offset", "body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias"]
    assert not sd["body.0.weight"].requires_grad
    assert net.note == "not state" and "note" not in sd
    assert net.eval().training is False and all(not m.training for m in net.modules())
    assert net.train().body[0].training is True
    assert "Linear(in_features=4, out_features=8, bias=True)" in repr(net)
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        net.missing


def test_load_state_dict_copies_and_checks():
    fa.random.seed(1)
    a, b = Net(), Net()
    x = fa.randn(5, 4)
    assert not np.allclose(a(x).numpy(), b(x).numpy())
    keys = b.load_state_dict(a.state_dict())
    assert keys.missing_keys == [] and keys.unexpected_keys == []
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    sd = a.state_dict()
    sd["extra"] = fa.zeros(1)
    del sd["scale"]
    with pytest.raises(RuntimeError, match=r"missing keys \['scale'\], unexpected keys \['extra'\]"):
        b.load_state_dict(sd)
    assert b.load_state_dict(sd, strict=False) == (["scale"], ["extra"])
    bad = a.state_dict()
    bad["body.0.weight"] = fa.zeros((4, 8))
    with pytest.raises(RuntimeError, match="size mismatch for body.0.weight"):
        b.load_state_dict(bad)


def test_module_checkpoint_round_trip(tmp_path):
    from fastad.serialization import load, save
    fa.random.seed(2)
    a, b = Net(), Net()
    save(a.state_dict(), tmp_path / "net.npz")
    b.load_state_dict(load(tmp_path / "net.npz"))
    x = fa.randn(3, 4)
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())


def test_linear_matches_numpy_and_initialisation_is_seeded():
    fa.random.seed(3)
    lin = nn.Linear(50, 7, dtype="float64")
    fa.random.seed(3)
    again = nn.Linear(50, 7, dtype="float64")
    np.testing.assert_array_equal(lin.weight.numpy(), again.weight.numpy())
    w, b = lin.weight.numpy(), lin.bias.numpy()
    bound = 1 / math.sqrt(50)  # kaiming_uniform_(a=sqrt(5)) on fan_in 50
    assert w.shape == (7, 50) and np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert np.abs(b).max() <= bound
    x = np.random.default_rng(0).standard_normal((4, 50))
    np.testing.assert_allclose(lin(fa.asarray(x)).numpy(), x @ w.T + b, rtol=1e-12)
    assert nn.Linear(3, 2, bias=False).bias is None
    assert lin.weight.is_leaf and lin.weight.requires_grad


def test_initialisers():
    assert init.calculate_gain("relu") == math.sqrt(2) and init.calculate_gain("tanh") == 5 / 3
    assert init.calculate_gain("leaky_relu", 0.2) == math.sqrt(2 / 1.04)
    fa.random.seed(4)
    t = fa.zeros((200, 300), requires_grad=True)
    init.kaiming_uniform_(t, nonlinearity="relu")
    v = t.numpy()
    bound = math.sqrt(2) * math.sqrt(3 / 300)
    assert v.dtype == np.float32 and np.abs(v).max() <= bound and abs(v.std() - bound / math.sqrt(3)) < 0.01 * bound
    init.kaiming_uniform_(t, mode="fan_out", nonlinearity="relu")
    assert np.abs(t.numpy()).max() <= math.sqrt(2) * math.sqrt(3 / 200)
    init.xavier_uniform_(t, gain=2.0)
    a = 2.0 * math.sqrt(6 / 500)
    assert np.abs(t.numpy()).max() <= a and np.abs(t.numpy()).max() > 0.99 * a
    assert t.requires_grad and t.is_leaf
    fa.random.seed(4)
    u = fa.zeros((200, 300))
    init.kaiming_uniform_(u, nonlinearity="relu")
    np.testing.assert_array_equal(u.numpy(), v)
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(fa.zeros(3))
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        init.calculate_gain("swish")


# ---- functional --------------------------------------------------------------------------

X = np.linspace(-4, 4, 23).reshape(1, 23) + np.array([[0.0], [0.013]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_erf(dtype):
    check_op(F.erf, _erf, X.astype(dtype), out_dtype=fa.asarray(X.astype(dtype)).dtype, closed_form=lambda w, x: (w * 2 / math.sqrt(math.pi) * np.exp(-x * x),))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gelu_exact(dtype):
    phi = lambda x: 0.5 * (1 + _erf(x / math.sqrt(2)))
    check_op(F.gelu, lambda x: x * phi(x), X.astype(dtype), out_dtype=fa.asarray(X.astype(dtype)).dtype,
             closed_form=lambda w, x: (w * (phi(x) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)),))


def test_gelu_tanh():
    k = math.sqrt(2 / math.pi)
    ref = lambda x: 0.5 * x * (1 + np.tanh(k * (x + 0.044715 * x ** 3)))
    check_op(lambda x: F.gelu(x, approximate="tanh"), ref, X)
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(fa.ones(2), approximate="erf")


@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid"])
def test_simple_activations(name):
    ref = {"relu": lambda x: np.maximum(x, 0), "tanh": np.tanh, "sigmoid": lambda x: 1 / (1 + np.exp(-x))}[name]
    check_op(getattr(F, name), ref, X + 0.01)


@pytest.mark.parametrize("dim", [-1, 0])
def test_softmax_and_log_softmax(dim):
    x = np.random.default_rng(0).standard_normal((4, 6))
    check_op(lambda t: F.softmax(t, dim=dim), lambda a: np_softmax(a, dim), x)
    check_op(lambda t: F.log_softmax(t, dim=dim), lambda a: np_log_softmax(a, dim), x)


def test_stability_at_huge_logits():
    x = fa.asarray(np.array([[1000.0, -1000.0, 999.0], [-5e4, -5e4, -5e4]], np.float32), requires_grad=True)
    ls = F.log_softmax(x)
    np.testing.assert_allclose(ls.numpy(), np_log_softmax(x.numpy().astype(np.float64)), rtol=1e-6, atol=1e-6)
    loss = F.cross_entropy(x, [1, 2])
    assert np.isfinite(loss.item())
    np.testing.assert_allclose(loss.item(), (2000 + math.log(1 + math.exp(-1)) + math.log(3)) / 2, rtol=1e-6)
    loss.backward()
    assert np.all(np.isfinite(x.grad.numpy()))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_reference_and_closed_form(reduction):
    rng = np.random.default_rng(1)
    logits, labels = rng.standard_normal((6, 5)) * 3, np.array([0, 4, 2, 2, 1, 3])
    onehot = np.eye(5)[labels]

    def ref(x):
        per = -(np_log_softmax(x) * onehot).sum(axis=1)
        return {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]

    def closed(w, x):
        w = np.asarray(w)
        scale = w[:, None] if reduction == "none" else np.full((6, 1), w / 6 if reduction == "mean" else w)
        return (scale * (np_softmax(x) - onehot),)

    check_op(lambda t: F.cross_entropy(t, fa.asarray(labels), reduction=reduction), ref, logits, closed_form=closed)


@hsettings(max_examples=25, deadline=None)
@given(n=st.integers(1, 9), c=st.integers(1, 12), scale=st.sampled_from([1.0, 30.0, 1e3]),
       seed=st.integers(0, 2 ** 16), dim=st.sampled_from([0, 1]))
def test_softmax_family_properties(n, c, scale, seed, dim):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c)) * scale
    labels = rng.integers(0, c, n)
    t = fa.asarray(x, requires_grad=True)
    ls = F.log_softmax(t, dim=dim).numpy()
    np.testing.assert_allclose(ls, np_log_softmax(x, dim), rtol=1e-12, atol=1e-12 * scale)
    np.testing.assert_allclose(np.exp(ls).sum(axis=dim), 1.0, rtol=1e-12)
    np.testing.assert_allclose(F.softmax(t, dim=dim).numpy(), np_softmax(x, dim), rtol=1e-12, atol=1e-300)
    loss = F.cross_entropy(t, labels)
    want = -np_log_softmax(x)[np.arange(n), labels].mean()
    np.testing.assert_allclose(loss.item(), want, rtol=1e-12, atol=1e-12 * scale)
    loss.backward()
    np.testing.assert_allclose(t.grad.numpy(), (np_softmax(x) - np.eye(c)[labels]) / n, rtol=1e-10, atol=1e-15)


def test_cross_entropy_backward_is_one_fused_kernel():
    n, c = 64, 300
    x = fa.asarray(np.random.default_rng(2).standard_normal((n, c)).astype(np.float32), requires_grad=True)
    labels = fa.asarray(np.arange(n) % c)
    with fa.profile() as prof:
        F.cross_entropy(x, labels).backward()
    big = [l for l in prof.kernels if l.elements == n * c]
    # the row max, the row sums of exp and of the picked logit (one kernel), and the gradient
    # g * (softmax - onehot) in a single elementwise kernel
    assert len(big) == 3 and prof.launched <= 5, str(prof)


def test_cross_entropy_bad_input():
    x = fa.ones((3, 4))
    with pytest.raises(IndexError, match="out of bounds"):
        F.cross_entropy(x, [0, 4, 1])
    with pytest.raises(IndexError, match="out of bounds"):
        F.cross_entropy(x, [0, -1, 1])
    with pytest.raises(TypeError, match="integer class labels"):
        F.cross_entropy(x, fa.ones(3))
    with pytest.raises(ValueError, match="target shape"):
        F.cross_entropy(x, [0, 1])
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(x, [0, 1, 2], reduction="avg")
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        F.cross_entropy(fa.ones(4), [0])
    with pytest.raises(ValueError, match="no classes"):
        F.cross_entropy(fa.ones((0, 0)), fa.asarray(np.zeros(0, np.int64)))
    # an empty batch is fine: the mean of nothing is nan, the sum 0
    assert np.isnan(float(F.cross_entropy(fa.ones((0, 3)), fa.asarray(np.zeros(0, np.int64)))))
    assert float(F.cross_entropy(fa.ones((0, 3)), fa.asarray(np.zeros(0, np.int64)), reduction="sum")) == 0.0


def test_mse_loss():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    check_op(lambda x, y: F.mse_loss(x, y), lambda x, y: ((x - y) ** 2).mean(), a, b,
             closed_form=lambda w, x, y: (w * 2 * (x - y) / 12, -w * 2 * (x - y) / 12))
    check_op(lambda x, y: F.mse_loss(x, y, reduction="none"), lambda x, y: (x - y) ** 2, a, b)
    with pytest.raises(ValueError, match="differ"):
        F.mse_loss(fa.ones(3), fa.ones(4))
    assert nn.MSELoss(reduction="sum")(fa.ones(3), fa.zeros(3)).item() == 3


def test_erf_and_gelu_compiled_kernel(monkeypatch):
    monkeypatch.setattr(settings, "cpu_mode", "jit")
    x = np.linspace(-3, 3, 1000).astype(np.float32)
    t = fa.asarray(x, requires_grad=True)
    y = F.gelu(t)
    fa.sum(y).backward()
    phi = 0.5 * (1 + _erf(x / math.sqrt(2)))
    np.testing.assert_allclose(y.numpy(), x * phi, rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(t.grad.numpy(), phi + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi),
                               rtol=1e-5, atol=1e-6)


# ---- training --------------------------------------------------------------------------

@pytest.mark.parametrize("make_opt", [lambda ps: optim.SGD(ps, lr=0.5, momentum=0.9),
                                      lambda ps: optim.AdamW(ps, lr=0.05)], ids=["SGD", "AdamW"])
def test_mlp_learns_a_disc(make_opt):
    rng = np.random.default_rng(5)
    pts = rng.standard_normal((200, 2))
    label = (np.hypot(pts[:, 0], pts[:, 1]) < 1.1).astype(np.int64)  # not linearly separable
    fa.random.seed(5)
    model = nn.Sequential(OrderedDict(fc1=nn.Linear(2, 32), act=nn.Tanh(), fc2=nn.Linear(32, 2)))
    opt = make_opt(model.parameters())
    x, y = fa.asarray(pts.astype(np.float32)), fa.asarray(label)
    first = None
    for _ in range(150):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    acc = (model(x).numpy().argmax(1) == label).mean()
    assert loss.item() < 0.5 * first and acc > 0.9, (first, loss.item(), acc)


try:
    from test_cuda_host import gpu  # noqa: F401 - the fixture: fastad's CUDA runtime over a numpy stand-in
except ImportError:  # pragma: no cover
    pass


def test_training_step_on_an_emulated_cuda_device(gpu):
    """The same model and step on "cuda:1" (host emulation) and on the CPU give the same numbers."""
    rng = np.random.default_rng(9)
    x, y = rng.standard_normal((12, 5)), rng.integers(0, 3, 12)
    results = []
    for device in ("cpu", "cuda:1"):
        fa.random.seed(9)
        model = nn.Sequential(nn.Linear(5, 7, device=device, dtype="float64"), nn.GELU(),
                              nn.Linear(7, 3, device=device, dtype="float64"))
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        for _ in range(2):
            opt.zero_grad()
            loss = F.cross_entropy(model(fa.asarray(x, device=device)), fa.asarray(y, device=device))
            loss.backward()
            opt.step()
        assert all(p.device == fa.Device(device) for p in model.parameters())
        results.append([loss.item()] + [p.numpy() for p in model.parameters()])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.cuda
def test_training_step_on_a_real_gpu():
    rng = np.random.default_rng(11)
    x, y = rng.standard_normal((32, 6)), rng.integers(0, 4, 32)
    results = []
    for device in ("cpu", "cuda"):
        fa.random.seed(11)
        model = nn.Sequential(nn.Linear(6, 16, device=device, dtype="float64"), nn.GELU(),
                              nn.Linear(16, 4, device=device, dtype="float64"))
        opt = optim.Adam(model.parameters(), lr=0.01)
        for _ in range(3):
            opt.zero_grad()
            loss = F.cross_entropy(model(fa.asarray(x, device=device)), fa.asarray(y, device=device))
            loss.backward()
            opt.step()
        results.append([loss.item()] + [p.numpy() for p in model.parameters()])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
