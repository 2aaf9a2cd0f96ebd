"""NMF: planted factors, parity with scikit-learn, transform, estimator contract."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.base import clone
from sklearn.decomposition import NMF as SklearnNMF
from sklearn.exceptions import ConvergenceWarning, NotFittedError

from concepts import NMF, nnls_codes

SOLVERS = ["hals", "mu", "sklearn"]


def _matched_cosines(W_true: np.ndarray, W_est: np.ndarray) -> np.ndarray:
    a = W_true / np.linalg.norm(W_true, axis=1, keepdims=True)
    b = W_est / np.maximum(np.linalg.norm(W_est, axis=1, keepdims=True), 1e-12)
    cos = a @ b.T
    rows, cols = linear_sum_assignment(-cos)
    return cos[rows, cols]


@pytest.mark.parametrize("solver", SOLVERS)
def test_nmf_recovers_planted_factors(solver, make_planted):
    A, _, W = make_planted(noise=0.001)
    nmf = NMF(5, solver=solver, max_iter=2000, tol=1e-6, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        nmf.fit(A)
    assert _matched_cosines(W, nmf.components_).min() >= 0.95


@pytest.mark.parametrize("solver", ["hals", "mu"])
def test_nmf_error_no_worse_than_sklearn(solver, make_planted):
    A, _, _ = make_planted(noise=0.05, seed=3)
    ref = SklearnNMF(5, init="nndsvda", max_iter=500, tol=1e-4, random_state=0).fit(A)
    ref_rel = ref.reconstruction_err_ / np.linalg.norm(A)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = NMF(5, solver=solver, max_iter=500, random_state=0).fit(A)
    assert ours.relative_reconstruction_err_ <= ref_rel + 0.01
    U = ours.transform(A)
    # reconstruction_err_ means what it means in scikit-learn: ||A - UW||_F
    W = ours.components_
    assert abs(np.linalg.norm(A - ours.fit_transform(A) @ W) - ours.reconstruction_err_) < 1e-6 * np.linalg.norm(A)
    assert U.shape == (len(A), 5)


@pytest.mark.parametrize("solver", SOLVERS)
def test_nmf_transform_recovers_codes_for_fixed_bank(solver, make_planted):
    A, _, _ = make_planted(noise=0.0, seed=4)
    nmf = NMF(5, solver=solver, max_iter=1000, tol=1e-6, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        nmf.fit(A)
    rng = np.random.default_rng(5)
    U_true = rng.random((50, 5))
    B = U_true @ nmf.components_
    U = nmf.transform(B)
    assert np.abs(U @ nmf.components_ - B).max() <= 1e-2 * np.abs(B).max()
    if solver != "mu":
        assert np.allclose(U, U_true, atol=1e-2 * U_true.max())


def test_nnls_codes_exact_and_batched():
    gen = torch.Generator().manual_seed(0)
    W = torch.rand(4, 30, generator=gen)
    U = torch.rand(100, 4, generator=gen)
    U[U < 0.3] = 0
    codes = nnls_codes(U @ W, W, batch_size=17)
    torch.testing.assert_close(codes, U, atol=1e-4, rtol=0)
    assert codes.dtype == torch.float32


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_nmf_numpy_in_numpy_out_torch_in_torch_out(make_planted):
    A, _, _ = make_planted(n=60, c=12, k=3)
    U = NMF(3, max_iter=50, tol=1e-3).fit_transform(A.astype(np.float32))
    assert isinstance(U, np.ndarray) and U.dtype == np.float32
    nmf = NMF(3, max_iter=50, tol=1e-3)
    Ut = nmf.fit_transform(torch.as_tensor(A, dtype=torch.float32))
    assert isinstance(Ut, torch.Tensor) and Ut.dtype == torch.float32
    assert isinstance(nmf.components_, torch.Tensor) and nmf.components_.shape == (3, 12)
    assert isinstance(nmf.inverse_transform(Ut), torch.Tensor)
    assert nmf.inverse_transform(Ut).shape == A.shape


def test_nmf_contract_fit_returns_self_and_params_unchanged(make_planted):
    A, _, _ = make_planted(n=60, c=12, k=3)
    nmf = NMF(3, solver="mu", init="random", max_iter=30, tol=1e-3, random_state=7)
    before = nmf.get_params()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert nmf.fit(A) is nmf
    assert nmf.get_params() == before
    assert clone(nmf).get_params() == before
    for attr in ("components_", "n_components_", "reconstruction_err_", "relative_reconstruction_err_",
                 "n_iter_", "n_features_in_"):
        assert hasattr(nmf, attr)
    assert nmf.n_features_in_ == 12 and nmf.n_components_ == 3


def test_nmf_is_deterministic_for_a_seed(make_planted):
    A, _, _ = make_planted(n=80, c=20, k=3)
    a = NMF(3, random_state=1, max_iter=100).fit(A).components_
    b = NMF(3, random_state=1, max_iter=100).fit(A).components_
    np.testing.assert_array_equal(a, b)


def test_nmf_not_fitted():
    with pytest.raises(NotFittedError):
        NMF(2).transform(np.ones((3, 4)))


def test_nmf_convergence_warning(make_planted):
    A, _, _ = make_planted(n=60, c=12, k=3)
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        NMF(3, max_iter=2, tol=0).fit(A)


@pytest.mark.parametrize("params, match", [
    (dict(n_components=0), "`n_components` of `NMF` must be an int >= 1"),
    (dict(solver="cd"), "`solver` of `NMF` must be one of"),
    (dict(init="pca"), "`init` of `NMF` must be one of"),
    (dict(tol=-1.0), "`tol` of `NMF`"),
    (dict(max_iter=1.5), "`max_iter` of `NMF`"),
])
def test_nmf_rejects_bad_params(params, match):
    with pytest.raises(ValueError, match=match):
        NMF(**params).fit(np.ones((10, 4)))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_nmf_rejects_bad_data():
    with pytest.raises(ValueError, match="non-negative"):
        NMF(2).fit(-np.ones((10, 4)))
    with pytest.raises(ValueError, match="at least n_components=5 rows; got 3"):
        NMF(5).fit(np.ones((3, 4)))
    with pytest.raises(ValueError, match="at least n_components=5 columns; got 4 feature"):
        NMF(5).fit(np.ones((10, 4)))
    with pytest.raises(ValueError, match="could not convert"):
        NMF(2).fit([["a", "b"], ["c", "d"]])
    nmf = NMF(2, max_iter=10).fit(np.random.default_rng(0).random((10, 4)))
    with pytest.raises(ValueError, match="X has 5 features, but NMF is expecting 4 features"):
        nmf.transform(np.ones((3, 5)))
    with pytest.raises(ValueError, match="must have 2 columns"):
        nmf.inverse_transform(np.ones((3, 3)))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_nmf_rejects_bad_tensors():
    with pytest.raises(ValueError, match="Negative values .* non-negative"):
        NMF(2).fit(-torch.ones(10, 4))
    with pytest.raises(ValueError, match="must be 2-D"):
        NMF(2).fit(torch.ones(10))
    with pytest.raises(ValueError, match="finite"):
        NMF(2).fit(torch.full((10, 4), float("nan")))
    with pytest.raises(TypeError, match="real numbers"):
        NMF(2).fit(torch.ones(10, 4, dtype=torch.complex64))
    with pytest.raises(ValueError, match="at least n_components=2 rows; got 0"):
        NMF(2).fit(torch.ones(0, 4))
    nmf = NMF(2, max_iter=10).fit(torch.rand(10, 4, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="X has 5 features, but NMF is expecting 4 features"):
        nmf.transform(torch.ones(3, 5))
    with pytest.raises(ValueError, match=r"must have shape \(n, 2\)"):
        nmf.inverse_transform(torch.ones(3, 3))
    assert nmf.transform(torch.ones(0, 4)).shape == (0, 2)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_nmf_params_checked_at_fit_not_init():
    nmf = NMF(n_components=-1, solver="nope", random_state="seed", device="nowhere")  # stored as given
    assert nmf.get_params()["solver"] == "nope"
    with pytest.raises(ValueError, match="`n_components` of `NMF` must be an int >= 1"):
        nmf.fit(np.ones((10, 4)))
    with pytest.raises(ValueError, match="`random_state` of `NMF` must be an int in"):
        NMF(2, random_state="seed").fit(np.ones((10, 4)))
    with pytest.raises(ValueError, match="`device` of `NMF` must be a device name"):
        NMF(2, device="nowhere").fit(np.ones((10, 4)))
    A = np.random.default_rng(0).random((20, 6))
    rs = np.random.RandomState(0)
    first = NMF(2, init="random", random_state=rs, max_iter=20).fit(A).components_
    second = NMF(2, init="random", random_state=rs, max_iter=20).fit(A).components_
    assert not np.allclose(first, second)  # a RandomState advances between fits, as in scikit-learn


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_nmf_accepts_lists_and_names_its_outputs(make_planted):
    A, _, _ = make_planted(n=40, c=8, k=3)
    nmf = NMF(3, max_iter=50)
    U = nmf.fit_transform(A.tolist())
    assert isinstance(U, np.ndarray) and U.dtype == np.float64
    np.testing.assert_allclose(U, NMF(3, max_iter=50).fit_transform(A))
    assert isinstance(nmf.transform(A[:5].tolist()), np.ndarray)
    assert nmf.inverse_transform(U.tolist()).shape == A.shape
    assert list(nmf.get_feature_names_out()) == ["nmf0", "nmf1", "nmf2"]


@pytest.mark.parametrize("fitted_with", SOLVERS)
@pytest.mark.parametrize("solver", SOLVERS)
def test_nmf_set_params_solver_after_fit(fitted_with, solver, make_planted):
    A, _, _ = make_planted(noise=0.0, seed=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        nmf = NMF(5, solver=fitted_with, max_iter=1000, tol=1e-6).fit(A)
        U_ref = nmf.transform(A[:30])
        U = nmf.set_params(solver=solver, max_iter=2000).transform(A[:30])
    W = nmf.components_
    assert np.abs(U @ W - U_ref @ W).max() <= 1e-2 * np.abs(A).max()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_nmf_tensor_input_never_goes_through_numpy(monkeypatch):
    """A CUDA tensor cannot become a numpy array without a copy to the host: the torch path must not try."""
    A = torch.rand(30, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float32)

    def refuse(*args, **kwargs):
        raise AssertionError("tensor converted to numpy")

    monkeypatch.setattr(torch.Tensor, "numpy", refuse)
    monkeypatch.setattr(torch.Tensor, "__array__", refuse)
    for solver in ("hals", "mu"):
        nmf = NMF(2, solver=solver, max_iter=20)
        U = nmf.fit_transform(A)
        assert isinstance(U, torch.Tensor) and U.dtype == torch.float32
        assert isinstance(nmf.transform(A), torch.Tensor)
        assert nmf.inverse_transform(U).shape == A.shape


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_cpu_solvers_compute_in_the_data_dtype_like_scikit_learn(monkeypatch, make_planted, dtype):
    import concepts.nmf as nmf_module

    seen = []
    solve = nmf_module.SOLVERS["hals"]

    def spy(A, U, W, **kwargs):
        seen.append((A.dtype, U.dtype, W.dtype))
        return solve(A, U, W, **kwargs)

    monkeypatch.setitem(nmf_module.SOLVERS, "hals", spy)
    A, _, _ = make_planted(n=120, c=20, k=3)
    nmf = NMF(3, random_state=0).fit(A.astype(dtype))
    want = torch.float32 if dtype == np.float32 else torch.float64
    assert seen and all(d == (want, want, want) for d in seen)
    assert nmf.components_.dtype == dtype
