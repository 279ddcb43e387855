"""Buffer donation: an optimizer step writes its update over the old flat buffers in place, but
only where nothing outside the optimizer can see them (`fastad.runtime.buffers.unobserved`).
Whatever could read an old buffer (a detached tensor, a numpy() result, a state dict, a pending
graph, a plain numpy view) keeps its values, and donated and fresh updates give the same bits."""
import sys

import numpy as np
import pytest

import fastad as fa
from fastad import optim
from fastad.codegen.numba import render
from fastad.config import settings
from fastad.creation import buffer_node
from fastad.device import to_device
from fastad.kernel_ir import Input, Kernel, Output, Stmt
from fastad import dtypes as dt
from fastad.runtime.buffers import pool, unobserved
from fastad.donation import with_donations as _with_donations
from fastad.schedule import KernelStep, LibraryStep, View

N = 1 << 18   # 1 MiB of float32: buckets from this size on donate (smaller ones stay in cache anyway)


@pytest.fixture
def jit(monkeypatch):
    """Compiled kernels from the first call (donation is the compiled tier's)."""
    monkeypatch.setattr(settings, "cpu_mode", "jit")


def _address(t) -> int:
    return t._node.buffer.__array_interface__["data"][0]


def _adam(seed=0, dtype=np.float32, **kw):
    rng = np.random.default_rng(seed)
    p = fa.asarray(rng.standard_normal(N).astype(dtype), requires_grad=True)
    grads = [rng.standard_normal(N).astype(dtype) for _ in range(4)]
    return p, optim.Adam([p], lr=1e-2, **kw), grads


def _state_addresses(opt):
    (bucket,) = opt.buckets(0)
    return {name: node.buffer.__array_interface__["data"][0] for name, node in bucket.state.items()}


@pytest.mark.parametrize("amsgrad", [False, True])
def test_an_unobserved_update_is_written_in_place_with_the_same_bits(jit, amsgrad):
    p, opt, grads = _adam(amsgrad=amsgrad)
    q, ref, _ = _adam(amsgrad=amsgrad)
    gs = [fa.asarray(g) for g in grads]
    addresses, allocated = set(), pool.allocated
    for g in gs:
        p.grad = g
        opt.step()
        addresses.add((_address(p), tuple(_state_addresses(opt).items())))
    assert len(addresses) == 1   # every step overwrote the same buffers
    assert pool.allocated == allocated   # and took no new memory
    for g in gs:
        q.grad = g
        held = q.numpy()   # an observer of q's buffer: its update goes to fresh memory
        ref.step()
        assert _address(q) != held.__array_interface__["data"][0]
        del held
    np.testing.assert_array_equal(p.numpy(), q.numpy())
    for name in _state_addresses(opt):
        np.testing.assert_array_equal(opt.buckets(0)[0].state[name].buffer, ref.buckets(0)[0].state[name].buffer)


def _observers(p, opt):
    """Ways a user can still see a parameter's or the state's old values after a step."""
    return {
        "detached tensor": lambda: p.detach(),
        "numpy() result": lambda: p.numpy(),
        "numpy view of numpy()": lambda: p.numpy()[10:20],
        "state dict": lambda: opt.state_dict()["state"][0]["exp_avg"],
        "pending graph": lambda: p * 2.0,
        "dlpack capsule": lambda: p.__dlpack__(),
    }


@pytest.mark.parametrize("kind", list(_observers(None, None)))
def test_an_observed_buffer_keeps_its_values(jit, kind):
    p, opt, grads = _adam()
    for g in grads[:2]:   # the steady state: both steps so far donated
        p.grad = fa.asarray(g)
        opt.step()
    before_p = np.array(p.numpy())
    before_m = np.array(opt.buckets(0)[0].state["exp_avg"].buffer)
    seen = _observers(p, opt)[kind]()
    p.grad = fa.asarray(grads[2])
    opt.step()
    assert not np.array_equal(p.numpy(), before_p)   # the parameter moved
    if kind == "state dict":
        np.testing.assert_array_equal(seen.numpy(), before_m)
    elif kind == "pending graph":
        np.testing.assert_array_equal(seen.numpy(), before_p * np.float32(2.0))
    elif kind == "dlpack capsule":
        del seen   # (a capsule is not readable from Python; it holds the buffer while alive)
    elif kind == "numpy view of numpy()":
        np.testing.assert_array_equal(seen, before_p[10:20])
    else:
        np.testing.assert_array_equal(np.asarray(seen), before_p)


def test_the_numpy_tier_and_the_compiled_donating_kernel_agree(monkeypatch):
    p, opt, grads = _adam(seed=3)
    monkeypatch.setattr(settings, "cpu_mode", "reference")
    q, ref, _ = _adam(seed=3)
    for g in grads:
        q.grad = fa.asarray(g)
        ref.step()
    monkeypatch.setattr(settings, "cpu_mode", "jit")
    for g in grads:
        p.grad = fa.asarray(g)
        opt.step()
    np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_unobserved_counts_every_reference():
    cpu = to_device("cpu")
    node = buffer_node(np.zeros(1000, np.float32), cpu)
    assert unobserved([node])
    view = node.buffer[3:]
    assert not unobserved([node])
    del view
    assert unobserved([node])
    held = node.buffer
    assert not unobserved([node])
    del held
    memory = memoryview(node.buffer)
    assert not unobserved([node])
    memory.release()
    del memory
    assert unobserved([node])
    # pooled memory: the pool's own reference is expected, any other is not
    big = pool.empty(1 << 20, np.float32)
    pooled = buffer_node(big, cpu)
    del big
    assert unobserved([pooled])
    other = pooled.buffer.base[:8]
    assert not unobserved([pooled])
    del other
    assert unobserved([pooled])
    # a node and a view node of the same memory: both accounted for
    half = buffer_node(node.buffer[:500], cpu)
    assert unobserved([node, half]) and not unobserved([node])
    # foreign memory (others may wrap the same bytes) and device buffers are never donated
    foreign = buffer_node(np.frombuffer(bytearray(64), np.float32), cpu)
    assert not unobserved([foreign])
    assert not unobserved([buffer_node(np.zeros(4), cpu), node])   # two blocks of memory
    assert sys.getrefcount(node) == 2


def _map_kernel(pattern="1", reduce=None):
    f32 = dt.float32
    body = (Stmt("load", (), f32, 0), Stmt("load", (), f32, 1), Stmt("add", (0, 1), f32))
    return Kernel(1, 1 if reduce else 0, (Input(f32, pattern), Input(f32, pattern)), (), body,
                  (Output(2, f32, reduce),))


def _step(kernel, a, b, out, offset=0):
    return KernelStep(kernel, (a.size - offset,), [(a, View((a.size - offset,), (1,), offset)),
                                                   (b, View((b.size,), (1,), 0))], [], [out])


def test_the_scheduler_donates_only_where_the_kernel_reads_the_donor_at_the_written_index():
    cpu = to_device("cpu")
    a, b = (buffer_node(np.ones(16, np.float32), cpu) for _ in range(2))
    out = fa.ones(16)._node
    donating = _with_donations(_step(_map_kernel(), a, b, out), {out: a}, [])
    assert donating.outputs[0].into == 0 and donating.key != _map_kernel().key
    assert "in0[U(o0 + i0)] = " in render(donating) and "out0[" not in render(donating).split("def body")[1]
    # refused: a reduction, a donor read at an offset, a donor that another step reads
    assert _with_donations(_step(_map_kernel(reduce="sum"), a, b, out), {out: a}, []).outputs[0].into is None
    c = buffer_node(np.ones(17, np.float32), cpu)
    assert _with_donations(_step(_map_kernel(), c, b, out, offset=1), {out: c}, []).outputs[0].into is None
    reader = LibraryStep(fa.asarray(np.ones(16, np.float32))._node)
    reader.node.srcs = (a,)
    assert _with_donations(_step(_map_kernel(), a, b, out), {out: a}, [reader]).outputs[0].into is None


def test_a_compiled_step_with_an_optimizer_matches_the_eager_one(jit):
    def make():
        rng = np.random.default_rng(1)
        w = fa.asarray(rng.standard_normal((50, 100)).astype(np.float32), requires_grad=True)
        return w, optim.Adam([w], lr=1e-2)
    x = fa.asarray(np.random.default_rng(2).standard_normal((8, 50)).astype(np.float32))
    results = []
    for compiled in (False, True):
        w, opt = make()

        def step(x):
            opt.zero_grad()
            loss = fa.sum(fa.tanh(x @ w) ** 2)
            loss.backward()
            opt.step()
            return loss
        run = fa.compile(step) if compiled else step
        for _ in range(5):
            run(x)
        results.append(np.array(w.numpy()))
    np.testing.assert_array_equal(*results)


def test_buckets_below_a_mebibyte_are_not_donated(jit):
    small = fa.asarray(np.ones(1000, np.float32), requires_grad=True)
    opt = optim.Adam([small], lr=1e-2)
    small.grad = fa.ones(1000)
    opt.step()
    assert opt.buckets(0)[0].donors(None, {}) == {}   # malloc's heap reuses such buffers, still in cache
    p, big, _ = _adam()
    p.grad = fa.ones(N)
    big.step()
    assert len(big.buckets(0)[0].donors(None, {})) == 1   # the parameters' buffer (no state asked for)
