"""fastad.optim: PyTorch's update formulas (numpy transcriptions and hand-computed cases), flat buffers,
one fused kernel per group, state dicts and learning-rate schedules."""
import math

import numpy as np
import pytest
from hypothesis import given, settings as hsettings, strategies as st

import fastad as fa
from fastad import optim
from fastad.config import settings
from fastad.optim import lr_scheduler

SHAPES = [(7, 5), (300,), (2, 3, 4)]


# ---- numpy transcriptions of PyTorch's single-tensor loops ---------------------------------

def ref_sgd(params, grads_seq, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
            maximize=False):
    params = [p.copy() for p in params]
    bufs = [None] * len(params)
    for grads in grads_seq:
        for i, (p, g) in enumerate(zip(params, grads)):
            if g is None:
                continue
            g = -g if maximize else g
            if weight_decay:
                g = g + weight_decay * p
            if momentum:
                if bufs[i] is None:
                    bufs[i] = g.copy()
                else:
                    bufs[i] = bufs[i] * momentum + (1 - dampening) * g
                g = g + momentum * bufs[i] if nesterov else bufs[i]
            params[i] = p + (-lr) * g
    return params


def ref_adam(params, grads_seq, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
             maximize=False, decoupled=False):
    params = [p.copy() for p in params]
    n = len(params)
    m, v, vmax, steps = [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params], \
        [np.zeros_like(p) for p in params], [0] * n
    b1, b2 = betas
    for grads in grads_seq:
        for i, g in enumerate(grads):
            if g is None:
                continue
            p = params[i]
            steps[i] += 1
            g = -g if maximize else g
            if weight_decay:
                if decoupled:
                    p = p * (1 - lr * weight_decay)
                else:
                    g = g + weight_decay * p
            m[i] = m[i] + (1 - b1) * (g - m[i])
            v[i] = v[i] * b2 + (1 - b2) * g * g
            bc1, bc2 = 1 - b1 ** steps[i], 1 - b2 ** steps[i]
            vv = v[i]
            if amsgrad:
                vmax[i] = np.maximum(vmax[i], v[i])
                vv = vmax[i]
            denom = np.sqrt(vv) / math.sqrt(bc2) + eps
            params[i] = p + (-lr / bc1) * m[i] / denom
    return params


def _problem(seed=0, n_steps=4, dtype=np.float64, shapes=SHAPES, missing=()):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[None if (k, i) in missing else rng.standard_normal(s).astype(dtype) for i, s in enumerate(shapes)]
             for k in range(n_steps)]
    return params, grads


def _run(make_opt, params, grads_seq):
    ts = [fa.asarray(p, requires_grad=True) for p in params]
    opt = make_opt(ts)
    for grads in grads_seq:
        opt.zero_grad()
        for t, g in zip(ts, grads):
            t.grad = None if g is None else fa.asarray(g)
        opt.step()
    return [t.numpy() for t in ts], opt, ts


SGD_CASES = [dict(), dict(momentum=0.9), dict(momentum=0.9, dampening=0.3), dict(momentum=0.8, nesterov=True),
             dict(momentum=0.9, weight_decay=0.1), dict(weight_decay=0.05, maximize=True),
             dict(momentum=0.5, nesterov=True, weight_decay=0.01, maximize=True)]


@pytest.mark.parametrize("kw", SGD_CASES, ids=lambda kw: ",".join(kw) or "plain")
def test_sgd_matches_pytorch_formulas(kw):
    params, grads = _problem()
    got, _, _ = _run(lambda ts: optim.SGD(ts, lr=0.1, **kw), params, grads)
    for a, b in zip(got, ref_sgd(params, grads, 0.1, **kw)):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-15)


ADAM_CASES = [dict(), dict(amsgrad=True), dict(weight_decay=0.1), dict(betas=(0.3, 0.9), eps=1e-3),
              dict(maximize=True, amsgrad=True, weight_decay=0.02)]


@pytest.mark.parametrize("decoupled", [False, True], ids=["Adam", "AdamW"])
@pytest.mark.parametrize("kw", ADAM_CASES, ids=lambda kw: ",".join(kw) or "plain")
def test_adam_matches_pytorch_formulas(kw, decoupled):
    params, grads = _problem(seed=1, n_steps=5)
    cls = optim.AdamW if decoupled else optim.Adam
    got, _, _ = _run(lambda ts: cls(ts, lr=0.01, **kw), params, grads)
    kw = dict(kw)
    if decoupled:
        kw.setdefault("weight_decay", 1e-2)  # AdamW's default
    for a, b in zip(got, ref_adam(params, grads, 0.01, decoupled=decoupled, **kw)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_hand_computed_first_steps():
    p0, g = np.array([1.0, -2.0, 3.0]), np.array([0.5, -4.0, 0.0])
    # Adam's first step: m_hat = g and v_hat = g*g, so p moves by lr * g / (|g| + eps)
    got, _, _ = _run(lambda ts: optim.Adam(ts, lr=0.1, eps=1e-8), [p0], [[g]])
    np.testing.assert_allclose(got[0], p0 - 0.1 * g / (np.abs(g) + 1e-8), rtol=1e-14)
    # SGD, momentum 0.9, the same gradient twice: buf = g, then 1.9 g; p moves by lr * 2.9 g
    got, _, _ = _run(lambda ts: optim.SGD(ts, lr=0.1, momentum=0.9), [p0], [[g], [g]])
    np.testing.assert_allclose(got[0], p0 - 0.1 * 2.9 * g, rtol=1e-14)
    # Nesterov: d1 = g + 0.9 g, d2 = g + 0.9 * 1.9 g
    got, _, _ = _run(lambda ts: optim.SGD(ts, lr=0.1, momentum=0.9, nesterov=True), [p0], [[g], [g]])
    np.testing.assert_allclose(got[0], p0 - 0.1 * (1.9 + 2.71) * g, rtol=1e-14)
    # AdamW shrinks p by lr * weight_decay before the Adam step (zero gradient: only the shrink and 0/eps)
    got, _, _ = _run(lambda ts: optim.AdamW(ts, lr=0.1, weight_decay=0.5), [p0], [[np.zeros(3)]])
    np.testing.assert_allclose(got[0], p0 * (1 - 0.05), rtol=1e-14)


def test_parameters_without_gradients_are_skipped():
    # parameter 1 has no gradient at step 0 and parameter 2 none at step 2: its Adam step count lags,
    # so the bias corrections differ within one bucket
    missing = {(0, 1), (2, 2), (3, 0)}
    params, grads = _problem(seed=2, n_steps=5, missing=missing)
    got, opt, _ = _run(lambda ts: optim.Adam(ts, lr=0.05), params, grads)
    for a, b in zip(got, ref_adam(params, grads, 0.05)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    assert [s["step"] for s in opt.state_dict()["state"].values()] == [4, 4, 4]
    got, _, _ = _run(lambda ts: optim.SGD(ts, lr=0.1, momentum=0.9), params, grads)
    for a, b in zip(got, ref_sgd(params, grads, 0.1, momentum=0.9)):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-15)


def test_float32_matches_reference():
    params, grads = _problem(seed=3, dtype=np.float32)
    got, _, _ = _run(lambda ts: optim.Adam(ts, lr=0.01, amsgrad=True), params, grads)
    want = ref_adam([p.astype(np.float64) for p in params], [[g.astype(np.float64) for g in gs] for gs in grads],
                    0.01, amsgrad=True)
    for a, b in zip(got, want):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@hsettings(max_examples=15, deadline=None)
@given(sizes=st.lists(st.integers(1, 40), min_size=1, max_size=4), seed=st.integers(0, 2 ** 16),
       lr=st.floats(0.0, 1.0), momentum=st.sampled_from([0.0, 0.5, 0.9]), nesterov=st.booleans(),
       wd=st.sampled_from([0.0, 0.1]), adam=st.booleans())
def test_random_configurations(sizes, seed, lr, momentum, nesterov, wd, adam):
    params, grads = _problem(seed=seed, n_steps=3, shapes=[(s,) for s in sizes])
    if adam:
        got, _, _ = _run(lambda ts: optim.Adam(ts, lr=lr, weight_decay=wd), params, grads)
        want = ref_adam(params, grads, lr, weight_decay=wd)
    else:
        nesterov = nesterov and momentum > 0
        got, _, _ = _run(lambda ts: optim.SGD(ts, lr=lr, momentum=momentum, nesterov=nesterov,
                                              weight_decay=wd), params, grads)
        want = ref_sgd(params, grads, lr, momentum=momentum, nesterov=nesterov, weight_decay=wd)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


# ---- flat buffers and kernels ---------------------------------------------------------

def test_parameters_are_views_of_the_flat_buffer():
    ts = [fa.asarray(np.ones(s), requires_grad=True) for s in SHAPES]
    opt = optim.SGD(ts, lr=0.1)
    (bucket,) = opt.buckets(0)
    assert bucket.numel == sum(t.size for t in ts) and bucket.offsets == [0, 35, 335]
    for t in ts:
        assert np.shares_memory(t.numpy(), bucket.flat.buffer)
    for t in ts:
        t.grad = fa.ones(t.shape, dtype=t.dtype)
    snapshot = ts[1].numpy()   # a view of the old flat buffer: the step must not write over it
    opt.step()
    np.testing.assert_array_equal(snapshot, 1.0)  # earlier snapshots stay valid (tests/test_donation.py)
    for t in ts:
        assert np.shares_memory(t.numpy(), bucket.flat.buffer)
        np.testing.assert_allclose(t.numpy(), 0.9)


@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1),
                                  lambda ps: optim.Adam(ps, lr=0.1, amsgrad=True),
                                  lambda ps: optim.AdamW(ps, lr=0.1)], ids=["SGD", "Adam", "AdamW"])
def test_one_fused_kernel_per_group_and_dtype(make):
    rng = np.random.default_rng(0)
    g1 = [fa.asarray(rng.standard_normal(s), requires_grad=True) for s in SHAPES]
    g2 = [fa.asarray(rng.standard_normal((20, 30)).astype(np.float32), requires_grad=True),
          fa.asarray(rng.standard_normal(400), requires_grad=True)]
    opt = make([{"params": g1}, {"params": g2, "lr": 0.01}])
    assert [len(opt.buckets(i)) for i in (0, 1)] == [1, 2]  # group 2 holds float32 and float64
    for step in range(3):
        for t in g1 + g2:
            t.grad = fa.asarray(rng.standard_normal(t.shape).astype(t.dtype.np))
        with fa.profile() as prof:
            opt.step()
        # one fused update kernel per bucket (3 in all); a gradient gather (concat) where a bucket
        # holds more than one parameter (group 2's buckets hold one each)
        assert prof.launched == 3, str(prof)
        assert [l.name for l in prof.launches if l.kind != "kernel"] == ["concat"]
        names = [l.name for l in prof.kernels]
        if step:
            assert names == previous  # the same kernels every step
        previous = names


def test_changed_learning_rate_compiles_nothing():
    old = (settings.cpu_mode, settings.small_graph_elements)
    settings.cpu_mode = "jit"
    try:
        w = fa.asarray(np.linspace(-1, 1, 300), requires_grad=True)
        opt = optim.AdamW([w], lr=0.1, weight_decay=0.1)
        sched = lr_scheduler.LambdaLR(opt, lambda e: [0.0, 1.0, 0.5, 0.25][e % 4])  # starts at lr = 0
        w.grad = fa.ones(300, dtype=w.dtype)
        opt.step()  # compiles (or loads) the update kernel
        for _ in range(4):
            sched.step()
            w.grad = fa.ones(300, dtype=w.dtype)
            with fa.profile() as prof:
                opt.step()
            assert prof.launched == 1 and prof.compiled == 0 and prof.cache_hits == 0, str(prof)
    finally:
        settings.cpu_mode, settings.small_graph_elements = old


def test_rebound_parameter_is_gathered_again():
    params, grads = _problem(seed=4, n_steps=3)
    ts = [fa.asarray(p, requires_grad=True) for p in params]
    opt = optim.SGD(ts, lr=0.1, momentum=0.9)
    for k, gs in enumerate(grads):
        if k == 1:
            with fa.no_grad():
                ts[1].copy_(fa.zeros(ts[1].shape, dtype=ts[1].dtype))  # e.g. a model's load_state_dict
        for t, g in zip(ts, gs):
            t.grad = fa.asarray(g)
        opt.step()
    want = [p - 0.1 * g for p, g in zip(params, grads[0])]  # step 0: buf = g
    want[1] = np.zeros_like(want[1])
    bufs = [g.copy() for g in grads[0]]
    for gs in grads[1:]:
        for i, g in enumerate(gs):
            bufs[i] = bufs[i] * 0.9 + g
            want[i] = want[i] - 0.1 * bufs[i]
    for t, w in zip(ts, want):
        np.testing.assert_allclose(t.numpy(), w, rtol=1e-14)
    (bucket,) = opt.buckets(0)
    assert all(np.shares_memory(t.numpy(), bucket.flat.buffer) for t in ts)


def test_flat_grads_and_given_flat_grads():
    params, grads = _problem(seed=5, n_steps=1)
    ts = [fa.asarray(p, requires_grad=True) for p in params]
    opt = optim.SGD(ts, lr=0.5)
    for t, g in zip(ts, grads[0]):
        t.grad = fa.asarray(g)
    (flat,) = opt.flat_grads(0)
    np.testing.assert_array_equal(flat.numpy(), np.concatenate([g.reshape(-1) for g in grads[0]]))
    opt.step(flat_grads={0: [flat * 2]})  # e.g. an all-reduced sum over two workers
    for t, p, g in zip(ts, params, grads[0]):
        np.testing.assert_allclose(t.numpy(), p - 0.5 * 2 * g, rtol=1e-15)
    with pytest.raises(ValueError, match="flat gradient"):
        opt.step(flat_grads={0: [flat[:3]]})


def test_scalar_and_empty_parameters():
    s = fa.asarray(np.array(2.0), requires_grad=True)
    e = fa.zeros((0, 3), dtype="float64", requires_grad=True)
    w = fa.asarray(np.ones(3), requires_grad=True)
    opt = optim.Adam([s, e, w], lr=0.1)
    (s * s * fa.sum(w)).backward()
    e.grad = fa.zeros((0, 3), dtype="float64")
    opt.step()
    assert s.shape == () and e.shape == (0, 3)
    np.testing.assert_allclose([s.item(), *w.numpy()], [1.9, 0.9, 0.9, 0.9], rtol=1e-9)
    assert list(opt.state_dict()["state"]) == [0, 2]  # the empty parameter has no state


def test_zero_grad():
    w = fa.asarray(np.ones(4), requires_grad=True)
    opt = optim.SGD([w], lr=1.0)
    fa.sum(w * w).backward()
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(w.grad.numpy(), 0)
    opt.step()  # a zero gradient still counts as a gradient
    np.testing.assert_array_equal(w.numpy(), 1)
    opt.zero_grad()
    assert w.grad is None
    opt.step()  # nothing to do
    fa.sum(w * w).backward()
    opt.step()
    np.testing.assert_allclose(w.numpy(), -1.0)


def test_closure_and_backward_through_updated_parameters():
    x = fa.asarray(np.array([3.0, -1.0]), requires_grad=True)
    opt = optim.SGD([x], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = fa.sum(x * x)
        loss.backward()
        return loss

    for _ in range(3):
        loss = opt.step(closure)
    assert float(loss) == pytest.approx(10 * 0.25 ** 2)
    np.testing.assert_allclose(x.numpy(), np.array([3.0, -1.0]) * 0.5 ** 3)


# ---- state dicts ---------------------------------------------------------------------------

@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: optim.Adam(ps, lr=0.1, amsgrad=True)], ids=["SGD", "Adam"])
def test_state_dict_round_trip(make):
    params, grads = _problem(seed=6, n_steps=4, missing={(0, 2)})
    full, _, _ = _run(make, params, grads)
    half, opt, ts = _run(make, params, grads[:2])
    sd = opt.state_dict()
    assert sd["param_groups"][0]["params"] == [0, 1, 2]
    snapshot = {k: {n: (v.numpy().copy() if hasattr(v, "numpy") else v) for n, v in s.items()}
                for k, s in sd["state"].items()}
    ts2 = [fa.asarray(t.numpy().copy(), requires_grad=True) for t in ts]
    opt2 = make(ts2)
    opt2.load_state_dict(sd)
    for grads_k in grads[2:]:
        for o, tt in ((opt, ts), (opt2, ts2)):
            for t, g in zip(tt, grads_k):
                t.grad = None if g is None else fa.asarray(g)
            o.step()
    for a, b, c in zip(full, [t.numpy() for t in ts], [t.numpy() for t in ts2]):
        np.testing.assert_allclose(b, a, rtol=1e-14)
        np.testing.assert_array_equal(c, b)
    for k, s in sd["state"].items():  # a state dict is a snapshot: later steps leave it alone
        for n, v in s.items():
            np.testing.assert_array_equal(v.numpy() if hasattr(v, "numpy") else v, snapshot[k][n])


def test_state_dict_errors_and_hyperparameters():
    a, b = fa.ones(3, requires_grad=True), fa.ones(4, requires_grad=True)
    opt = optim.Adam([a, b], lr=0.1)
    sd = optim.Adam([fa.ones(3, requires_grad=True)], lr=0.5).state_dict()
    with pytest.raises(ValueError, match="doesn't match the size"):
        opt.load_state_dict(sd)
    with pytest.raises(ValueError, match="not an optimizer state dict"):
        opt.load_state_dict({"state": {}})
    sd = optim.Adam([fa.ones(3, requires_grad=True), fa.ones(4, requires_grad=True)], lr=0.5,
                    betas=(0.5, 0.6)).state_dict()
    opt.load_state_dict(sd)
    assert opt.param_groups[0]["lr"] == 0.5 and opt.param_groups[0]["betas"] == (0.5, 0.6)
    assert opt.param_groups[0]["params"][0] is a


def test_bad_arguments():
    w = fa.ones(3, requires_grad=True)
    with pytest.raises(TypeError, match="iterable of Tensors"):
        optim.SGD(w, lr=0.1)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="learning rate"):
        optim.SGD([w], lr=-1.0)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([w], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="beta parameter"):
        optim.Adam([w], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([w * 2], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [w]}, {"params": [w]}], lr=0.1)
    with pytest.raises(ValueError, match="'params' entry"):
        optim.SGD([{"lr": 0.1}], lr=0.1)
    with pytest.raises(TypeError, match="unknown hyperparameter"):
        optim.SGD([{"params": [w], "betas": (0.9, 0.9)}], lr=0.1)
    with pytest.raises(TypeError, match="floating point"):
        optim.SGD([fa.arange(3)], lr=0.1)
    with pytest.raises(TypeError, match="real floating point"):
        optim.Adam([fa.asarray(np.ones(2, np.complex64), requires_grad=True)])
    opt = optim.SGD([w], lr=0.1)
    opt.param_groups[0]["params"].append(fa.ones(2, requires_grad=True))
    w.grad = fa.ones(3)
    with pytest.raises(RuntimeError, match="add_param_group"):
        opt.step()


# ---- learning-rate schedules ------------------------------------------------------------

def _lrs(sched, n):
    out = []
    for _ in range(n):
        out.append(sched.get_last_lr()[0])
        sched.optimizer.step()
        sched.step()
    return out


def test_step_lr():
    opt = optim.SGD([fa.ones(2, requires_grad=True)], lr=1.0)
    got = _lrs(lr_scheduler.StepLR(opt, step_size=3, gamma=0.5), 8)
    assert got == [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25]


def test_cosine_annealing_matches_closed_form():
    opt = optim.SGD([fa.ones(2, requires_grad=True)], lr=0.2)
    got = _lrs(lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=0.01), 11)
    want = [0.01 + (0.2 - 0.01) * (1 + math.cos(math.pi * e / 10)) / 2 for e in range(11)]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_lambda_lr_groups_and_state_dict():
    a, b = fa.ones(2, requires_grad=True), fa.ones(2, requires_grad=True)
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=1.0)
    sched = lr_scheduler.LambdaLR(opt, [lambda e: 0.9 ** e, lambda e: 1 / (e + 1)])
    for _ in range(3):
        opt.step()
        sched.step()
    assert sched.get_last_lr() == pytest.approx([0.9 ** 3, 0.5 / 4])
    assert [g["lr"] for g in opt.param_groups] == sched.get_last_lr()
    state = sched.state_dict()
    assert state["last_epoch"] == 3 and "lr_lambdas" not in state
    s2 = lr_scheduler.LambdaLR(opt, [lambda e: 0.9 ** e, lambda e: 1 / (e + 1)])
    s2.load_state_dict(state)
    s2.step()
    assert s2.get_last_lr() == pytest.approx([0.9 ** 4, 0.5 / 5])


def test_scheduled_learning_rate_reaches_the_update():
    w = fa.asarray(np.zeros(300), requires_grad=True)
    opt = optim.SGD([w], lr=1.0)
    sched = lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        w.grad = fa.ones(300, dtype=w.dtype)
        opt.step()
        sched.step()
    np.testing.assert_allclose(w.numpy(), -(1 + 0.5 + 0.25))


# ---- the benchmark workloads (python -m fastad bench --only train,adam) -----------------------

def test_training_bench_workloads_run_and_check(monkeypatch):
    from fastad._bench_training import adam_cases, train_cases
    monkeypatch.setattr(settings, "jit_min_elements", 1 << 40)  # the numpy tier: no compile in this test
    cases = [c for c in train_cases("cpu", None, quick=True) + adam_cases("cpu", None, quick=True)
             if ("fastad" in c.impl and "compile" not in c.impl or c.impl.startswith("numpy")) and "tanh" not in c.impl]
    assert {c.workload for c in cases} == {"train", "adam"} and len(cases) == 4
    for case in cases:
        runner = case.make()
        out = runner.step()
        ok, detail = runner.check(out)
        assert ok, (case.impl, detail)


# ---- the same update on a CUDA device, emulated on the host (tests/fake_cupy.py) -------------

try:
    from test_cuda_host import gpu  # noqa: F401 - the fixture: fastad's CUDA runtime over a numpy stand-in
except ImportError:  # pragma: no cover
    pass


def test_fused_update_on_emulated_cuda_devices(gpu):
    params, grads = _problem(seed=8, n_steps=3, shapes=[(20, 9), (40,)])
    for device in ("cuda:0", "cuda:1"):
        ts = [fa.asarray(p, device=device, requires_grad=True) for p in params]
        opt = optim.Adam(ts, lr=0.05, amsgrad=True)
        (bucket,) = opt.buckets(0)
        assert bucket.device == fa.Device(device)
        for k, gs in enumerate(grads):
            for t, g in zip(ts, gs):
                t.grad = fa.asarray(g, device=device)
            with fa.profile() as prof:
                opt.step()
            assert prof.launched == 1, str(prof)
        for t, w in zip(ts, ref_adam(params, grads, 0.05, amsgrad=True)):
            assert t.device == fa.Device(device)
            np.testing.assert_allclose(t.numpy(), w, rtol=1e-12, atol=1e-14)
        sd = opt.state_dict()
        assert sd["state"][0]["exp_avg"].device == fa.Device(device)


def test_memory_stays_flat_over_training_steps():
    import gc
    import tracemalloc
    import weakref
    from fastad import nn
    from fastad.nn import functional as F
    fa.random.seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 4))
    opt = optim.Adam(model.parameters(), lr=1e-3, amsgrad=True)
    sched = lr_scheduler.StepLR(opt, step_size=7)
    rng = np.random.default_rng(0)
    x, y = fa.asarray(rng.random((64, 16), dtype=np.float32)), fa.asarray(rng.integers(0, 4, 64))

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        sched.step()

    for _ in range(10):
        step()
    (bucket,) = opt.buckets(0)
    held = bucket.flat.buffer[:1]   # an observer: this step writes fresh buffers on every tier
    old = [weakref.ref(bucket.flat.buffer)] + [weakref.ref(n.buffer) for n in bucket.state.values()]
    step()
    del held
    gc.collect()
    assert all(r() is None for r in old), "a step kept the previous flat buffers alive"
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(60):  # fresh flat buffers each step (numpy tier), or in place (compiled)
            step()
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert growth < 256 * 1024, f"{growth / 1024:.0f} KiB more after 60 steps"


@pytest.mark.cuda
def test_fused_update_on_a_real_gpu():
    params, grads = _problem(seed=10, n_steps=3, shapes=[(64, 33), (1000,)])
    ts = [fa.asarray(p, device="cuda", requires_grad=True) for p in params]
    opt = optim.AdamW(ts, lr=0.05, amsgrad=True)
    for gs in grads:
        for t, g in zip(ts, gs):
            t.grad = fa.asarray(g, device="cuda")
        with fa.profile() as prof:
            opt.step()
        assert prof.launched == 1, str(prof)
    for t, w in zip(ts, ref_adam(params, grads, 0.05, amsgrad=True, weight_decay=1e-2, decoupled=True)):
        np.testing.assert_allclose(t.numpy(), w, rtol=1e-12, atol=1e-14)
