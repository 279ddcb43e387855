"""Real array API consumers on fastad tensors (optional: scikit-learn, in the test extra): estimators
under `array_api_dispatch=True` give numpy's results, and gradients flow through array-API-generic
code (scikit-learn's vendored array-api-extra)."""
from __future__ import annotations

import numpy as np
import pytest

import fastad as fa
from tests.helpers import check_op

sklearn = pytest.importorskip("sklearn", reason="scikit-learn (the test extra) is the array API consumer")


@pytest.fixture
def dispatch(monkeypatch):
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")   # scikit-learn requires it for array API dispatch
    with sklearn.config_context(array_api_dispatch=True):
        yield


def _fit_all(convert):
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 5))
    y = X @ np.arange(5.0) + 0.1
    labels = (y > y.mean()).astype(np.int64)
    X_, y_, c_ = convert(X), convert(y), convert(labels)
    return [StandardScaler().fit_transform(X_),
            PCA(n_components=2, svd_solver="full").fit_transform(X_),
            Ridge(solver="svd").fit(X_, y_).predict(X_),
            LinearDiscriminantAnalysis().fit(X_, c_).predict(X_)]


def test_estimators_on_fastad_tensors_match_numpy(dispatch):
    got = _fit_all(fa.asarray)
    with sklearn.config_context(array_api_dispatch=False):
        want = _fit_all(lambda a: a)
    for g, w in zip(got, want):
        assert isinstance(g, fa.Tensor)
        # PCA's components are defined up to sign
        np.testing.assert_allclose(np.abs(g.numpy()), np.abs(w), atol=1e-8)


def test_gradients_flow_through_array_api_extra(dispatch):
    xpx = pytest.importorskip("sklearn.externals.array_api_extra")
    x = np.random.default_rng(1).standard_normal((3, 6))
    check_op(lambda t: xpx.cov(t), np.cov, x)
    check_op(lambda t: xpx.pad(t, 2), lambda a: np.pad(a, 2), x)
