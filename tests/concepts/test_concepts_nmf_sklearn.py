"""NMF passes scikit-learn's own estimator checks, for every solver, with no check marked as an expected failure."""
from __future__ import annotations

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from concepts import NMF

ESTIMATORS = [
    NMF(2, solver="hals"),
    # multiplicative updates converge slowly: at the default max_iter/tol the codes of fit_transform and of transform
    # differ by more than the 1e-2 that check_transformer_general allows, so this instance runs them to convergence
    NMF(2, solver="mu", max_iter=10_000, tol=1e-9),
    NMF(2, solver="sklearn"),
]


# the checks' small random matrices need more than 500 iterations at times: the warning is expected, not a failure
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(ESTIMATORS)
def test_nmf_passes_sklearn_estimator_checks(estimator, check):
    check(estimator)
