"""Torch Semi-NMF solvers and initialisation (private; used by :class:`concepts.SemiNMF`).

Notation as in :mod:`concepts._solvers`: ``A`` the data, ``(n, C)``, signed; ``U`` the codes, ``(n, k)``,
non-negative; ``W`` the bank, ``(k, C)``, signed; ``A ~ U @ W`` (Ding, Li & Jordan 2010).

Both solvers have the NMF solvers' signature, ``solver(A, U, W, *, update_W, max_iter, tol) -> (U, W, n_iter)``,
run in the NMF solvers' loop (the same Gram-matrix error tracking and stopping rule) and are looked up by name in
:data:`SEMI_SOLVERS`. ``W`` is free, so its update is the exact least-squares solution; only the codes' update
differs between them.
"""
from __future__ import annotations

from typing import Callable

import torch

from ._solvers import _TINY, _alternate, _hals_codes, _repeated, init_factors

__all__ = ["SEMI_SOLVERS", "init_semi"]


def _least_squares_bank(W: torch.Tensor, UtA: torch.Tensor, UtU: torch.Tensor) -> None:
    """``W = (UtU)^-1 UtA`` in place: the exact minimiser over a free ``W`` (Ding et al.'s W step).

    A ridge of ``eps * trace(UtU)`` keeps the ``k x k`` solve defined when a code column is zero (that row of
    ``W`` becomes 0) and changes the solution by a relative ``eps`` otherwise.
    """
    ridge = torch.finfo(UtU.dtype).eps * UtU.diagonal().sum().clamp_min(_TINY)
    eye = torch.eye(UtU.shape[0], device=UtU.device, dtype=UtU.dtype)
    W.copy_(torch.linalg.solve(UtU + ridge * eye, UtA))


def _semi_hals(A: torch.Tensor, U: torch.Tensor, W: torch.Tensor, *, update_W: bool, max_iter: int,
               tol: float) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Exact block coordinate descent: HALS sweeps over the codes (exact per column, also for a signed ``W``),
    then ``W`` by least squares.

    The HALS column update ``u_j <- max(0, u_j + (A w_j - U W w_j) / ||w_j||^2)`` is the exact minimiser in
    ``u_j`` whatever the signs of ``A`` and ``W``, so NMF's accelerated codes sweep (repeated while it moves,
    Gillis & Glineur 2012) serves unchanged. Same parameters and returns as :func:`concepts._solvers._hals`.
    """
    codes_inner = 1 + int(0.5 * (1 + A.shape[1] / (U.shape[1] + 1)))
    return _alternate(A, U, W, update_W=update_W, max_iter=max_iter, tol=tol,
                      codes_step=lambda U, AWt, WWt: _repeated(_hals_codes, U, AWt, WWt, codes_inner),
                      bank_step=_least_squares_bank)


def _semi_mu(A: torch.Tensor, U: torch.Tensor, W: torch.Tensor, *, update_W: bool, max_iter: int,
             tol: float) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Ding, Li & Jordan's multiplicative codes update, then ``W`` by least squares.

    ``U <- U * sqrt(((AW^T)+ + U (WW^T)-) / ((AW^T)- + U (WW^T)+))`` with ``X+ = max(X, 0)``,
    ``X- = max(-X, 0)``. Zeros stay zeros, so the codes must start positive (``nndsvda`` or ``random``).
    Same parameters and returns as :func:`_semi_hals`.
    """
    eps = torch.finfo(A.dtype).eps

    def codes_step(U: torch.Tensor, AWt: torch.Tensor, WWt: torch.Tensor) -> None:
        grow = AWt.clamp_min(0) + U @ (-WWt).clamp_min(0)
        shrink = (-AWt).clamp_min(0) + U @ WWt.clamp_min(0)
        U.mul_((grow / shrink.clamp_min_(eps)).sqrt_())

    return _alternate(A, U, W, update_W=update_W, max_iter=max_iter, tol=tol, codes_step=codes_step,
                      bank_step=_least_squares_bank)


SEMI_SOLVERS: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor, int]]] = {"hals": _semi_hals,
                                                                                  "mu": _semi_mu}


def init_semi(A: torch.Tensor, k: int, init: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial codes ``U (n, k) >= 0`` and bank ``W (k, C)`` for signed ``A (n, C)``.

    ``U`` is the NMF initialisation ``init`` (:func:`concepts._solvers.init_factors`) of ``|A|``: rows that are
    large in the same channels, whatever their signs, start with similar codes; ``W`` is then their
    least-squares bank, so the first iteration starts from the best ``W`` for those codes.
    """
    U, _ = init_factors(A.abs(), k, init, generator)
    W = A.new_empty(k, A.shape[1])
    _least_squares_bank(W, U.T @ A, U.T @ U)
    return U, W
