"""A plain numpy reference of Semi-NMF, and signed planted data: shared by the SemiNMF tests and its benchmark.

Reference only: slow on purpose (the error is computed in full every iteration), written as the paper prints it,
so that ``concepts.SemiNMF`` has something independent to be compared with.
"""
from __future__ import annotations

import numpy as np


def signed_planted(n: int = 400, c: int = 60, k: int = 5, noise: float = 0.01,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``A = U W + noise``: sparse non-negative ``U (n, k)`` (30% non-zero), Gaussian (signed) ``W (k, c)``."""
    rng = np.random.default_rng(seed)
    U = rng.random((n, k)) * (rng.random((n, k)) < 0.3)
    W = rng.standard_normal((k, c))
    return U @ W + noise * rng.standard_normal((n, c)), U, W


def reference_semi_nmf(A: np.ndarray, U: np.ndarray, *, max_iter: int,
                       tol: float = 0.0) -> tuple[np.ndarray, np.ndarray, int]:
    """Ding, Li & Jordan (2010), Algorithm 1: ``W = (U^T U)^-1 U^T A`` (least squares), then
    ``U <- U * sqrt(((AW^T)+ + U (WW^T)-) / ((AW^T)- + U (WW^T)+))``.

    Starts from the codes ``U (n, k)`` (copied); stops after ``max_iter`` iterations, or when ``||A - UW||^2``
    decreases by less than ``tol`` times its value over one iteration. Returns ``U``, ``W (k, C)`` (the
    least-squares bank of the final codes) and the iteration count.
    """
    U = U.copy()
    previous = np.inf
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        W = np.linalg.lstsq(U, A, rcond=None)[0]
        AWt, WWt = A @ W.T, W @ W.T
        grow = np.maximum(AWt, 0) + U @ np.maximum(-WWt, 0)
        shrink = np.maximum(-AWt, 0) + U @ np.maximum(WWt, 0)
        U *= np.sqrt(grow / np.maximum(shrink, 1e-300))
        if tol > 0:
            current = float(np.square(A - U @ W).sum())
            if previous - current <= tol * current:
                break
            previous = current
    return U, np.linalg.lstsq(U, A, rcond=None)[0], n_iter
