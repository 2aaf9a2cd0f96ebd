"""SemiNMF: scikit-learn's checks, planted data, parity with a plain reference of Ding et al., transform, errors."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_limits

from concepts import NMF, SemiNMF
from concepts._semi_solvers import init_semi

from .seminmf_reference import reference_semi_nmf, signed_planted


def _fit_quietly(estimator: SemiNMF, A) -> SemiNMF:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(A)


# the checks' small random matrices need more than 500 iterations at times: the warning is expected, not a failure
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks([SemiNMF(2, solver="hals"), SemiNMF(2, solver="mu")])
def test_seminmf_passes_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("solver", ["hals", "mu"])
@pytest.mark.parametrize("seed", [0, 1])
def test_seminmf_recovers_the_planted_subspace_at_the_noise_level(solver, seed):
    """The planted factors themselves are not identifiable: ``(U M, M^-1 W)`` fits as well for every invertible
    ``M >= 0`` (``U M`` stays non-negative), and the solvers do return such mixtures (matched row cosines 0.3-0.6
    here). What is identifiable is tested: the bank spans the planted rows, and the error is the noise's."""
    A, U, W = signed_planted(seed=seed)
    semi = _fit_quietly(SemiNMF(5, solver=solver, max_iter=2000, tol=1e-6, random_state=0), A)
    # cosines of the principal angles between the row spaces of the planted and the fitted bank
    q_true, _ = np.linalg.qr(W.T)
    q_est, _ = np.linalg.qr(semi.components_.T)
    assert np.linalg.svd(q_true.T @ q_est, compute_uv=False).min() >= 0.999
    noise = np.linalg.norm(A - U @ W) / np.linalg.norm(A)
    assert semi.relative_reconstruction_err_ <= noise
    assert (semi.components_ < 0).any() and (semi.transform(A) >= 0).all()


def test_seminmf_error_within_one_percent_of_the_reference():
    A, _, _ = signed_planted(n=300, c=40, k=4, noise=0.3, seed=2)
    U0, _ = init_semi(torch.from_numpy(A), 4, "nndsvda", torch.Generator().manual_seed(0))
    with threadpool_limits(1):  # small products: one BLAS thread is fastest, and immune to a busy shared CPU
        U_ref, W_ref, _ = reference_semi_nmf(A, U0.numpy(), max_iter=3000)
    ref = np.linalg.norm(A - U_ref @ W_ref) / np.linalg.norm(A)
    ours = _fit_quietly(SemiNMF(4, max_iter=3000, tol=1e-6, random_state=0), A)
    assert ours.relative_reconstruction_err_ <= ref * 1.01


@pytest.mark.parametrize("solver", ["hals", "mu"])
def test_seminmf_reports_the_error_of_its_codes_and_transforms_its_training_data_to_them(solver):
    A, _, _ = signed_planted(noise=0.1, seed=3)
    semi = SemiNMF(5, solver=solver, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        U = semi.fit_transform(A)
    assert abs(np.linalg.norm(A - U @ semi.components_) - semi.reconstruction_err_) <= 1e-9 * np.linalg.norm(A)
    np.testing.assert_allclose(semi.transform(A), U, atol=1e-6 * U.max())
    np.testing.assert_allclose(semi.inverse_transform(U), U @ semi.components_)


def test_seminmf_transform_finds_the_codes_of_new_data():
    A, _, _ = signed_planted(seed=4)
    semi = _fit_quietly(SemiNMF(5, random_state=0), A)
    U_new = np.random.default_rng(5).random((50, 5))
    U = semi.transform(U_new @ semi.components_)
    np.testing.assert_allclose(U, U_new, atol=1e-4)


def test_seminmf_is_deterministic_for_a_seed():
    A, _, _ = signed_planted(n=200, c=30, k=3, noise=0.2)
    fits = [_fit_quietly(SemiNMF(3, init="random", random_state=seed, max_iter=100), A).components_
            for seed in (1, 1, 2)]
    np.testing.assert_array_equal(fits[0], fits[1])
    assert not np.allclose(fits[0], fits[2])


def test_seminmf_on_non_negative_data_is_no_worse_than_nmf(make_planted):
    """NMF's factorisations are Semi-NMF ones (a non-negative W is allowed): the error may only be lower."""
    A, _, _ = make_planted(noise=0.05, seed=3)
    nmf = _fit_quietly(NMF(5, random_state=0), A)
    semi = _fit_quietly(SemiNMF(5, random_state=0), A)
    assert semi.relative_reconstruction_err_ <= nmf.relative_reconstruction_err_ * 1.01


def test_seminmf_tensor_in_tensor_out_in_the_data_dtype():
    A = torch.from_numpy(signed_planted(n=60, c=12, k=3)[0]).float()
    semi = _fit_quietly(SemiNMF(3, max_iter=50), A)
    U = semi.transform(A)
    assert isinstance(U, torch.Tensor) and U.dtype == torch.float32 and (U >= 0).all()
    assert isinstance(semi.components_, torch.Tensor) and semi.components_.dtype == torch.float32
    assert semi.inverse_transform(U).shape == A.shape
    assert list(semi.get_feature_names_out()) == ["seminmf0", "seminmf1", "seminmf2"]


def test_seminmf_convergence_warning_names_it():
    with pytest.warns(ConvergenceWarning, match=r"SemiNMF \(hals\) reached max_iter=2"):
        SemiNMF(3, max_iter=2, tol=0).fit(signed_planted(n=60, c=12, k=3)[0])


@pytest.mark.parametrize("params, match", [
    (dict(n_components=0), "`n_components` of `SemiNMF` must be an int >= 1"),
    (dict(solver="sklearn"), r"`solver` of `SemiNMF` must be one of \['hals', 'mu'\]"),
    (dict(init="pca"), "`init` of `SemiNMF` must be one of"),
    (dict(tol=-1.0), "`tol` of `SemiNMF`"),
    (dict(max_iter=1.5), "`max_iter` of `SemiNMF`"),
])
def test_seminmf_rejects_bad_params(params, match):
    with pytest.raises(ValueError, match=match):
        SemiNMF(**params).fit(-np.ones((10, 4)))


def test_seminmf_rejects_bad_data_and_accepts_negative_data():
    with pytest.raises(ValueError, match="`A` of `SemiNMF.fit` must be finite"):
        SemiNMF(2).fit(torch.tensor([[1.0, float("inf")], [0.0, -1.0]]))
    with pytest.raises(ValueError, match="NaN"):
        SemiNMF(2).fit(np.array([[1.0, np.nan], [0.0, -1.0]]))
    with pytest.raises(ValueError, match="`A` of `SemiNMF.fit` must be 2-D"):
        SemiNMF(2).fit(-torch.ones(10))
    with pytest.raises(ValueError, match="at least n_components=5 rows; got 3"):
        SemiNMF(5).fit(-np.ones((3, 8)))
    with pytest.raises(ValueError, match="at least n_components=5 columns; got 4 feature"):
        SemiNMF(5).fit(-np.ones((10, 4)))
    semi = _fit_quietly(SemiNMF(2, max_iter=20), -np.random.default_rng(0).random((10, 4)))
    assert (semi.components_ < 0).any()
    _fit_quietly(semi, -torch.rand(10, 4, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match=r"`U` of `SemiNMF.inverse_transform` must have shape \(n, 2\)"):
        semi.inverse_transform(torch.ones(3, 3))
