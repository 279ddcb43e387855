"""fastad.linalg: values against numpy's LAPACK, gradients against float64 finite differences
(batched inputs included), the spec's named tuples, and errors."""
import numpy as np
import pytest

import fastad as fa
from fastad import linalg as la
from helpers import check_op

rng = np.random.default_rng(0)


def _flat(*parts):
    """Several outputs as one 1-d tensor (or array), so one check covers them all."""
    if isinstance(parts[0], fa.Tensor):
        return fa.concat([fa.reshape(p, (-1,)) for p in parts])
    return np.concatenate([np.reshape(p, -1) for p in parts])


def _spd(*shape):
    m = rng.standard_normal(shape)
    return m @ np.swapaxes(m, -1, -2) + shape[-1] * np.eye(shape[-1])


def _sym_fa(a):
    return (a + la.matrix_transpose(a)) * 0.5


def _sym_np(a):
    return (a + np.swapaxes(a, -1, -2)) * 0.5


WELL = rng.standard_normal((3, 3)) + 3 * np.eye(3)
BATCH = rng.standard_normal((2, 3, 3)) + 3 * np.eye(3)


@pytest.mark.parametrize("a", [WELL, BATCH], ids=["single", "batched"])
def test_inv_det_slogdet(a):
    check_op(la.inv, np.linalg.inv, a)
    check_op(la.det, np.linalg.det, a)
    check_op(lambda t: la.slogdet(t).logabsdet, lambda x: np.linalg.slogdet(x)[1], a)
    s = la.slogdet(fa.tensor(-a))
    np.testing.assert_array_equal(s.sign.numpy(), np.linalg.slogdet(-a)[0])
    assert isinstance(s, la.SlogdetResult) and s._fields == ("sign", "logabsdet")


def test_inv_float32_and_higher_order():
    check_op(la.inv, np.linalg.inv, WELL.astype(np.float32))
    x = fa.tensor(WELL, requires_grad=True)
    # second order: d/dx sum(grad det) against finite differences of the first-order closed form
    gfun = fa.grad(lambda t: fa.sum(la.det(t)))
    hv = fa.grad(lambda t: fa.sum(gfun(t) * fa.tensor(WELL)))(x).numpy()

    def first(a):
        return np.linalg.det(a) * np.linalg.inv(a).T
    eps, fd = 1e-6, np.zeros_like(WELL)
    for j in np.ndindex(WELL.shape):
        up, dn = WELL.copy(), WELL.copy()
        up[j] += eps
        dn[j] -= eps
        fd[j] = (np.sum(first(up) * WELL) - np.sum(first(dn) * WELL)) / (2 * eps)
    np.testing.assert_allclose(hv, fd, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shapes", [((3, 3), (3, 2)), ((3, 3), (3,)), ((2, 3, 3), (1, 3, 2))])
def test_solve(shapes):
    a = rng.standard_normal(shapes[0]) + 3 * np.eye(3)
    b = rng.standard_normal(shapes[1])
    ref = (lambda x, y: np.linalg.solve(x, y)) if len(shapes[1]) > 1 else \
        (lambda x, y: np.linalg.solve(x, y[:, None])[:, 0])
    check_op(la.solve, ref, a, b)


@pytest.mark.parametrize("shape", [(4, 4), (2, 3, 3)])
def test_cholesky(shape):
    a = _spd(*shape)
    check_op(lambda t: la.cholesky(_sym_fa(t)), lambda x: np.linalg.cholesky(_sym_np(x)), a)
    up = la.cholesky(fa.tensor(a), upper=True).numpy()
    np.testing.assert_allclose(np.swapaxes(up, -1, -2) @ up, a, rtol=1e-10)


@pytest.mark.parametrize("shape", [(4, 4), (2, 3, 3)])
def test_eigh_eigvalsh(shape):
    a = rng.standard_normal(shape)
    # eigenvector signs are arbitrary: check the sign-free squares
    check_op(lambda t: _flat(*(lambda r: (r.eigenvalues, r.eigenvectors ** 2))(la.eigh(_sym_fa(t)))),
             lambda x: _flat(*(lambda r: (r[0], r[1] ** 2))(np.linalg.eigh(_sym_np(x)))), a)
    check_op(lambda t: la.eigvalsh(_sym_fa(t)), lambda x: np.linalg.eigvalsh(_sym_np(x)), a)
    r = la.eigh(fa.tensor(_sym_np(a)))
    assert r._fields == ("eigenvalues", "eigenvectors")


@pytest.mark.parametrize("shape", [(4, 3), (3, 4), (2, 3, 3), (2, 4, 2)])
def test_svd_reduced(shape):
    a = rng.standard_normal(shape)
    check_op(lambda t: _flat(*(lambda r: (r.S, r.U ** 2, r.Vh ** 2))(la.svd(t, full_matrices=False))),
             lambda x: _flat(*(lambda r: (r[1], r[0] ** 2, r[2] ** 2))(np.linalg.svd(x, full_matrices=False))), a)
    check_op(la.svdvals, lambda x: np.linalg.svd(x, compute_uv=False), a)


def test_svd_full_and_its_gradient_limit():
    a = rng.standard_normal((4, 2))
    u, s, vh = la.svd(fa.tensor(a))
    assert u.shape == (4, 4) and s.shape == (2,) and vh.shape == (2, 2)
    np.testing.assert_allclose(np.abs(u.numpy()), np.abs(np.linalg.svd(a)[0]), atol=1e-12)
    x = fa.tensor(a, requires_grad=True)
    with pytest.raises(NotImplementedError, match="full_matrices"):
        fa.sum(la.svd(x).U).backward()
    check_op(lambda t: la.svd(t).S, lambda y: np.linalg.svd(y)[1], rng.standard_normal((3, 3)))


@pytest.mark.parametrize("shape", [(4, 3), (3, 3), (2, 5, 2)])
def test_qr(shape):
    a = rng.standard_normal(shape)
    check_op(lambda t: _flat(*la.qr(t)), lambda x: _flat(*np.linalg.qr(x)), a)


def test_qr_complete_values():
    a = rng.standard_normal((4, 2))
    q, r = la.qr(fa.tensor(a), mode="complete")
    nq, nr = np.linalg.qr(a, mode="complete")
    np.testing.assert_allclose(q.numpy(), nq, atol=1e-12)
    np.testing.assert_allclose(r.numpy(), nr, atol=1e-12)
    with pytest.raises(ValueError, match="mode"):
        la.qr(fa.tensor(a), mode="r")


@pytest.mark.parametrize("shape", [(4, 3), (3, 4), (2, 3, 3)])
def test_pinv(shape):
    check_op(la.pinv, np.linalg.pinv, rng.standard_normal(shape))
    # rank-deficient: singular values below the cutoff count as zero, as in numpy
    low = np.outer([1.0, 2, 3], [1.0, 1, 0])
    np.testing.assert_allclose(la.pinv(fa.tensor(low)).numpy(), np.linalg.pinv(low), atol=1e-12)


def test_diagonal_trace():
    a = rng.standard_normal((2, 3, 4))
    for off in (-2, -1, 0, 1, 3, 5):
        check_op(lambda t: la.diagonal(t, offset=off), lambda x: np.diagonal(x, off, -2, -1), a)
        check_op(lambda t: la.trace(t, offset=off), lambda x: np.trace(x, off, -2, -1), a)
    t = la.trace(fa.tensor(np.arange(9, dtype=np.int32).reshape(3, 3)))
    assert t.dtype == fa.int64 and t.item() == 12


@pytest.mark.parametrize("ord", [2, 1, np.inf, -np.inf, 0, 3, 0.5, -1])
@pytest.mark.parametrize("axis", [None, -1, (0, 2)])
def test_vector_norm(ord, axis):
    a = rng.standard_normal((2, 3, 4))
    grad = ord != 0
    for keep in (False, True):
        check_op(lambda t: la.vector_norm(t, axis=axis, keepdims=keep, ord=ord),
                 lambda x: _np_vector_norm(x, axis, keep, ord), a, grad=grad)


def _np_vector_norm(x, axis, keep, ord):
    if axis is None:
        return np.linalg.norm(x.reshape(-1), ord=ord).reshape((1,) * x.ndim if keep else ())
    return np.linalg.norm(x, ord=ord, axis=axis, keepdims=keep) if isinstance(axis, int) else \
        np.power(np.sum(np.abs(x) ** ord, axis=axis, keepdims=keep), 1 / ord) if ord not in (0, np.inf, -np.inf) \
        else {0: lambda: np.sum(x != 0, axis=axis, keepdims=keep).astype(x.dtype),
              np.inf: lambda: np.max(np.abs(x), axis=axis, keepdims=keep),
              -np.inf: lambda: np.min(np.abs(x), axis=axis, keepdims=keep)}[ord]()


def test_vector_norm_over_no_axes_is_abs():
    x = np.array([[-3.0, 0, 4], [1, -2, 0.5]])
    for ord in (2, 1, np.inf, 0.5):
        np.testing.assert_allclose(la.vector_norm(fa.tensor(x), axis=(), ord=ord).numpy(), np.abs(x))
    np.testing.assert_array_equal(la.vector_norm(fa.tensor(x), axis=(), ord=0).numpy(), x != 0)


def test_vector_norm_gradient_at_zero_is_zero():
    x = fa.zeros((3,), dtype=fa.float64, requires_grad=True)
    la.vector_norm(x).backward()
    np.testing.assert_array_equal(x.grad.numpy(), 0)
    assert la.vector_norm(fa.zeros((0,))).item() == 0


@pytest.mark.parametrize("ord", ["fro", "nuc", 1, -1, 2, -2, np.inf, -np.inf])
def test_matrix_norm(ord):
    a = rng.standard_normal((2, 3, 4))
    check_op(lambda t: la.matrix_norm(t, ord=ord), lambda x: np.linalg.norm(x, ord=ord, axis=(-2, -1)), a)
    kd = la.matrix_norm(fa.tensor(a), ord=ord, keepdims=True)
    assert kd.shape == (2, 1, 1)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, -1, -3])
def test_matrix_power(n):
    # n == 0 gives constant identities (no gradient path)
    check_op(lambda t: la.matrix_power(t, n), lambda x: np.linalg.matrix_power(x, n), BATCH, grad=n != 0)


def test_matrix_power_ints():
    a = np.array([[1, 1], [1, 0]], np.int64)
    np.testing.assert_array_equal(la.matrix_power(fa.tensor(a), 10).numpy(), np.linalg.matrix_power(a, 10))


def test_matrix_rank():
    a = np.stack([np.outer([1.0, 2, 3], [1.0, 1, 0]), np.eye(3), np.zeros((3, 3))])
    r = la.matrix_rank(fa.tensor(a))
    assert r.dtype == fa.int64
    np.testing.assert_array_equal(r.numpy(), np.linalg.matrix_rank(a))
    assert la.matrix_rank(fa.tensor(np.diag([1.0, 1e-3])), rtol=1e-2).item() == 1


def test_outer_cross_vecdot_tensordot():
    check_op(la.outer, np.outer, rng.standard_normal(3), rng.standard_normal(4))
    check_op(la.cross, np.cross, rng.standard_normal((2, 3)), rng.standard_normal(3))
    check_op(lambda x, y: la.cross(x, y, axis=-2), lambda x, y: np.cross(x, y, axis=-2),
             rng.standard_normal((3, 2)), rng.standard_normal((3, 2)))
    check_op(la.vecdot, lambda x, y: np.sum(x * y, axis=-1), rng.standard_normal((2, 3)), rng.standard_normal(3))
    check_op(lambda x, y: la.vecdot(x, y, axis=-2), lambda x, y: np.sum(x * y, axis=-2),
             rng.standard_normal((4, 2)), rng.standard_normal((4, 1)))
    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((3, 4, 5))
    check_op(la.tensordot, np.tensordot, a, b)
    check_op(lambda x, y: la.tensordot(x, y, axes=([1, 0], [0, 1])),
             lambda x, y: np.tensordot(x, y, axes=([1, 0], [0, 1])), a, rng.standard_normal((3, 2, 5)))
    check_op(lambda x, y: la.tensordot(x, y, axes=0), lambda x, y: np.tensordot(x, y, axes=0),
             rng.standard_normal(2), rng.standard_normal(3))
    m = la.matmul(fa.tensor(a), fa.tensor(b[0]))
    np.testing.assert_allclose(m.numpy(), a @ b[0])
    assert la.matrix_transpose(fa.tensor(a)).shape == (2, 4, 3)


def test_errors():
    with pytest.raises(ValueError, match="square"):
        la.inv(fa.tensor(rng.standard_normal((2, 3))))
    with pytest.raises(ValueError, match="matri"):
        la.det(fa.tensor(rng.standard_normal(3)))
    with pytest.raises(TypeError, match="floating"):
        la.inv(fa.tensor(np.eye(2, dtype=np.int64)))
    with pytest.raises(TypeError, match="Tensor"):
        la.inv(np.eye(2))
    with pytest.raises(la.LinAlgError, match="inv"):
        la.inv(fa.tensor(np.ones((2, 2)))).numpy()
    with pytest.raises(np.linalg.LinAlgError, match="cholesky"):
        la.cholesky(fa.tensor(-np.eye(2))).numpy()
    with pytest.raises(ValueError, match="size 3"):
        la.cross(fa.tensor(np.ones(2)), fa.tensor(np.ones(2)))
    with pytest.raises(fa.AxisError):
        la.vector_norm(fa.tensor(np.ones(2)), axis=2)
    with pytest.raises(ValueError, match="ord"):
        la.matrix_norm(fa.tensor(np.ones((2, 2))), ord=3)
    assert la.det(fa.tensor(np.ones((2, 2)))).item() == 0   # singular: a value, not an error


def test_namespace():
    assert fa.linalg is la
    assert fa.linalg.inv is la.inv
    for name in ("cholesky", "cross", "det", "diagonal", "eigh", "eigvalsh", "inv", "matmul", "matrix_norm",
                 "matrix_power", "matrix_rank", "matrix_transpose", "outer", "pinv", "qr", "slogdet", "solve",
                 "svd", "svdvals", "tensordot", "trace", "vecdot", "vector_norm"):
        assert callable(getattr(fa.linalg, name)), name


def test_planned_path_matches_reference_path(monkeypatch):
    """Large graphs run the ops as library steps of a plan, tiny ones op by op: both agree with numpy,
    gradients included."""
    from fastad.config import settings
    a = rng.standard_normal((3, 12, 12)) + 6 * np.eye(12)
    w = rng.standard_normal(a.shape)
    grads = []
    for small in (0, 10 ** 9):
        monkeypatch.setattr(settings, "small_graph_elements", small)
        x = fa.tensor(a, requires_grad=True)
        s = _sym_fa(x)
        out = (la.inv(x) + la.solve(x, s) + la.eigh(s).eigenvalues[..., None]
               + la.svd(x, full_matrices=False).S[..., None])
        fa.sum(out * fa.tensor(w)).backward()
        want = np.linalg.inv(a) + np.linalg.solve(a, _sym_np(a)) + np.linalg.eigvalsh(_sym_np(a))[..., None] \
            + np.linalg.svd(a, compute_uv=False)[..., None]
        np.testing.assert_allclose(out.numpy(), want, rtol=1e-10, atol=1e-10)
        grads.append(x.grad.numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-10, atol=1e-12)


@pytest.mark.cuda
def test_cuda_matches_cpu():
    """Every library op of this package on CUDA (CuPy's cuSOLVER/cuBLAS) against the CPU, with gradients."""
    a = rng.standard_normal((2, 4, 4)) + 4 * np.eye(4)

    def run(device):   # QR and eigen/singular vector signs may differ between LAPACK and cuSOLVER: squares
        x = fa.tensor(a, device=device, requires_grad=True)
        s = _sym_fa(x)
        sv = la.svd(x, full_matrices=False)
        q, r = la.qr(x)
        parts = [la.inv(x), la.solve(x, s), la.cholesky(s + 8.0 * fa.tensor(np.eye(4), device=device)),
                 la.eigh(s).eigenvectors ** 2, sv.U ** 2, q ** 2, r ** 2, la.pinv(x),
                 la.det(x)[..., None, None] + la.slogdet(x).logabsdet[..., None, None] + la.eigvalsh(s)[..., None]
                 + la.svdvals(x)[..., None] + la.diagonal(x)[..., None] + la.trace(x)[..., None, None],
                 fa.sort(x, axis=1), fa.cumulative_sum(x, axis=2), fa.cumulative_prod(x, axis=1)]
        out = fa.concat([fa.reshape(p, (-1,)) for p in parts])
        w = np.random.default_rng(5).standard_normal(out.shape)
        fa.sum(out * fa.tensor(w, device=device)).backward()
        ints = [fa.argsort(x, descending=True), fa.argmax(x, axis=1), fa.argmin(x),
                fa.searchsorted(fa.sort(x.detach().reshape(-1)), x.detach())]
        return out.cpu().numpy(), x.grad.cpu().numpy(), [t.cpu().numpy() for t in ints], \
            fa.unique_counts(fa.round(x.detach())).counts.cpu().numpy(), \
            [t.cpu().numpy() for t in fa.nonzero(x.detach() > 4.0)]

    cpu, gpu = run("cpu"), run("cuda")
    np.testing.assert_allclose(gpu[0], cpu[0], rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(gpu[1], cpu[1], rtol=1e-8, atol=1e-8)
    for g, c in zip(gpu[2] + [gpu[3]] + gpu[4], cpu[2] + [cpu[3]] + cpu[4]):
        np.testing.assert_array_equal(g, c)


def test_complex_values():
    """Complex inputs compute through LAPACK (values only: complex tensors take no gradient);
    eigenvalues, singular values, log|det| and norms come out real."""
    a = rng.standard_normal((2, 3, 3)) + 1j * rng.standard_normal((2, 3, 3)) + 3 * np.eye(3)
    h = a @ np.conj(np.swapaxes(a, -1, -2))
    t, th = fa.asarray(a), fa.asarray(h)
    close = np.testing.assert_allclose
    close(la.inv(t).numpy(), np.linalg.inv(a), rtol=1e-10)
    close(la.det(t).numpy(), np.linalg.det(a), rtol=1e-10)
    close(la.solve(t, th).numpy(), np.linalg.solve(a, h), rtol=1e-10)
    close(la.cholesky(th).numpy(), np.linalg.cholesky(h), rtol=1e-10)
    s = la.slogdet(t)
    assert s.sign.dtype == fa.complex128 and s.logabsdet.dtype == fa.float64
    close(s.logabsdet.numpy(), np.linalg.slogdet(a)[1], rtol=1e-10)
    w = la.eigh(th).eigenvalues
    assert w.dtype == fa.float64 and la.eigvalsh(th).dtype == fa.float64
    close(w.numpy(), np.linalg.eigvalsh(h), rtol=1e-10)
    sv = la.svd(t, full_matrices=False)
    assert sv.S.dtype == fa.float64 and la.svdvals(t).dtype == fa.float64
    close(sv.S.numpy(), np.linalg.svd(a, compute_uv=False), rtol=1e-10)
    close(((sv.U * sv.S[..., None, :]) @ sv.Vh).numpy(), a, rtol=1e-10)
    q, r = la.qr(t)
    close((q @ r).numpy(), a, rtol=1e-10)
    close(la.pinv(t).numpy(), np.linalg.pinv(a), rtol=1e-10)
    for ord in (2, 1, np.inf, 3):
        n = la.vector_norm(t, axis=-1, ord=ord)
        assert n.dtype == fa.float64
        close(n.numpy(), np.linalg.norm(a, ord=ord, axis=-1), rtol=1e-10)
    for ord in ("fro", "nuc", 1, 2, -np.inf):
        close(la.matrix_norm(t, ord=ord).numpy(), np.linalg.norm(a, ord=ord, axis=(-2, -1)), rtol=1e-10)
    close(la.vecdot(t, t).numpy(), np.sum(np.conj(a) * a, axis=-1), rtol=1e-10)
    assert la.matrix_rank(t).numpy().tolist() == [3, 3]


def test_empty_batches():
    x = fa.zeros((0, 2, 2))
    assert la.eigh(x).eigenvectors.shape == (0, 2, 2)
    assert [t.shape for t in la.svd(x)] == [(0, 2, 2), (0, 2), (0, 2, 2)]
    assert [t.shape for t in la.qr(fa.zeros((0, 3, 2)))] == [(0, 3, 2), (0, 2, 2)]
    assert la.slogdet(x).logabsdet.shape == (0,)
    assert la.inv(x).shape == (0, 2, 2)


def test_pinv_and_matrix_rank_array_rtol():
    a = np.stack([np.diag([1.0, 1e-2, 1e-4]), np.diag([1.0, 1e-2, 1e-4])])
    rtol = np.array([1e-3, 1e-1])
    got = la.pinv(fa.tensor(a), rtol=fa.tensor(rtol)).numpy()
    np.testing.assert_allclose(got, np.linalg.pinv(a, rtol=rtol), rtol=1e-12)
    np.testing.assert_array_equal(la.matrix_rank(fa.tensor(a), rtol=fa.tensor(rtol)).numpy(), [2, 1])
    assert la.pinv(fa.zeros((2, 0, 3))).shape == (2, 3, 0)
    with pytest.raises(ValueError, match="rtol"):
        la.pinv(fa.tensor(a), rtol=fa.tensor(np.ones(3)))
