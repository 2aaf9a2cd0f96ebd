"""Torch NMF solvers and initialisation (private; used by :class:`concepts.NMF`).

Notation (fixed for the whole file): ``A`` is the data, ``(n, C)``, non-negative;
``U`` the codes, ``(n, k)``; ``W`` the concept bank, ``(k, C)``; ``A ~ U @ W``.

Every solver has the same signature,
``solver(A, U, W, *, update_W, max_iter, tol) -> (U, W, n_iter)``, and is looked
up by name in :data:`SOLVERS`. With ``update_W=False`` the bank is held fixed and
only the codes are solved for (non-negative least squares), which is how
``NMF.transform`` works.

Stopping rule: the squared error ``||A - UW||^2`` is tracked through cheap
``k x k`` / ``k x C`` products; the loop stops when its decrease over one
iteration falls below ``tol`` times its current value.
"""
from __future__ import annotations

from typing import Callable

import torch

__all__ = ["SOLVERS", "init_factors", "nnls", "squared_error"]

_TINY = 1e-12


def _sq_err(norm_a2: torch.Tensor, AWt_or_UtA: torch.Tensor, other: torch.Tensor,
            UtU: torch.Tensor, WWt: torch.Tensor) -> float:
    """``||A - UW||^2 = ||A||^2 - 2 <UtA, W> + <UtU, WWt>`` (no n x C product)."""
    cross = (AWt_or_UtA.double() * other.double()).sum()
    return float(norm_a2 - 2 * cross + (UtU.double() * WWt.double()).sum())


def squared_error(A: torch.Tensor, U: torch.Tensor, W: torch.Tensor, *, chunk: int = 65536) -> float:
    """Exact ``||A - U @ W||_F^2``, computed in row chunks (float64 accumulation).

    Parameters
    ----------
    A : Tensor, shape (n, C)
    U : Tensor, shape (n, k)
    W : Tensor, shape (k, C)
    chunk : int
        Rows per chunk.
    """
    total = 0.0
    for start in range(0, A.shape[0], chunk):
        diff = A[start:start + chunk] - U[start:start + chunk] @ W
        total += float(diff.pow(2).sum(dtype=torch.float64))
    return total


def _converged(previous: float, current: float, initial: float, tol: float) -> bool:
    """Relative decrease of the squared error over one iteration below ``tol``."""
    return (previous - current) <= tol * max(current, _TINY * max(initial, _TINY))


def _hals_codes(U: torch.Tensor, AWt: torch.Tensor, WWt: torch.Tensor) -> None:
    """One HALS sweep over the columns of ``U`` (in place)."""
    for j in range(U.shape[1]):
        step = (AWt[:, j] - U @ WWt[:, j]) / WWt[j, j].clamp_min(_TINY)
        U[:, j] = (U[:, j] + step).clamp_min_(0)


def _hals_bank(W: torch.Tensor, UtA: torch.Tensor, UtU: torch.Tensor) -> None:
    """One HALS sweep over the rows of ``W`` (in place)."""
    for j in range(W.shape[0]):
        step = (UtA[j] - UtU[j] @ W) / UtU[j, j].clamp_min(_TINY)
        W[j] = (W[j] + step).clamp_min_(0)


def _alternate(A: torch.Tensor, U: torch.Tensor, W: torch.Tensor, *, update_W: bool, max_iter: int, tol: float,
               codes_step: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], object],
               bank_step: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], object]
               ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The loop both solvers share: update the codes, then (when fitting) the bank, until converged.

    ``codes_step(U, AWt, WWt)`` and ``bank_step(W, UtA, UtU)`` update in place;
    the error is tracked through the Gram matrices, never by forming ``UW``.
    """
    U, W = U.clone(), W.clone() if update_W else W
    norm_a2 = A.pow(2).sum(dtype=torch.float64)
    AWt, WWt = A @ W.T, W @ W.T
    UtU = U.T @ U
    initial = previous = _sq_err(norm_a2, AWt, U, UtU, WWt)
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        codes_step(U, AWt, WWt)
        UtU = U.T @ U
        if update_W:
            UtA = U.T @ A
            bank_step(W, UtA, UtU)
            AWt, WWt = A @ W.T, W @ W.T
            current = _sq_err(norm_a2, UtA, W, UtU, WWt)
        else:
            current = _sq_err(norm_a2, AWt, U, UtU, WWt)
        if _converged(previous, current, initial, tol):
            break
        previous = current
    return U, W, n_iter


def _repeated(step: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], object], X: torch.Tensor,
              cross: torch.Tensor, gram: torch.Tensor, max_inner: int, delta: float = 0.1) -> None:
    """Repeat a HALS sweep on ``X`` while it still moves (Gillis & Glineur 2012, accelerated HALS).

    A sweep costs ``k`` times less than the product that feeds it (``A @ W.T`` or ``U.T @ A``), so sweeping
    again with the same products is nearly free; it stops when a sweep changes ``X`` by less than ``delta``
    times the first sweep's change, or after ``max_inner`` sweeps.
    """
    first = None
    for _ in range(max_inner):
        before = X.clone()
        step(X, cross, gram)
        change = float((X - before).pow(2).sum())
        if first is None:
            first = change
        elif change <= delta * delta * first:
            break


def _hals(A: torch.Tensor, U: torch.Tensor, W: torch.Tensor, *, update_W: bool, max_iter: int,
          tol: float) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Accelerated HALS (Cichocki & Phan 2009; Gillis & Glineur 2012): exact coordinate minimisation,
    column by column, each block swept again while that is cheaper than new products.

    Parameters
    ----------
    A : Tensor, shape (n, C)
    U : Tensor, shape (n, k)
        Initial codes (copied, not modified).
    W : Tensor, shape (k, C)
        Initial bank (copied when ``update_W``; returned unchanged otherwise).
    update_W : bool
        Also update the bank (``fit``) or only the codes (``transform``).
    max_iter : int
    tol : float

    Returns
    -------
    U : Tensor, shape (n, k)
    W : Tensor, shape (k, C)
    n_iter : int
    """
    n, c = A.shape
    k = U.shape[1]
    # Gillis & Glineur's budget: 1 + alpha * rho sweeps, rho = the product's cost over a sweep's, alpha = 1/2
    codes_inner = 1 + int(0.5 * (1 + c / (k + 1)))
    bank_inner = 1 + int(0.5 * (1 + n / (k + 1)))
    return _alternate(A, U, W, update_W=update_W, max_iter=max_iter, tol=tol,
                      codes_step=lambda U, AWt, WWt: _repeated(_hals_codes, U, AWt, WWt, codes_inner),
                      bank_step=lambda W, UtA, UtU: _repeated(_hals_bank, W, UtA, UtU, bank_inner))


def _mu(A: torch.Tensor, U: torch.Tensor, W: torch.Tensor, *, update_W: bool, max_iter: int,
        tol: float) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Multiplicative updates (Lee & Seung 2001) for the Frobenius loss.

    Same parameters and returns as :func:`_hals`. Zeros stay zeros, so the
    initialisation must be strictly positive where it matters (``nndsvda``).
    """
    eps = torch.finfo(A.dtype).eps

    def codes_step(U: torch.Tensor, AWt: torch.Tensor, WWt: torch.Tensor) -> None:
        U.mul_(AWt / (U @ WWt).clamp_min_(eps))

    def bank_step(W: torch.Tensor, UtA: torch.Tensor, UtU: torch.Tensor) -> None:
        W.mul_(UtA / (UtU @ W).clamp_min_(eps))

    return _alternate(A, U, W, update_W=update_W, max_iter=max_iter, tol=tol, codes_step=codes_step,
                      bank_step=bank_step)


SOLVERS: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor, int]]] = {"hals": _hals, "mu": _mu}


def nnls(A: torch.Tensor, W: torch.Tensor, solver: str, max_iter: int, tol: float, *,
         solvers: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor, int]]] | None = None) -> torch.Tensor:
    """Codes ``(n, k)`` of ``A (n, C)`` for the fixed bank ``W (k, C)`` (non-negative least squares).

    Runs ``solvers[solver]`` (default :data:`SOLVERS`) with ``update_W=False``
    from a warm start, which is how ``NMF.transform``, ``SemiNMF.transform``
    (signed ``A`` and ``W``, its own solvers) and ``nnls_codes`` solve for codes.
    """
    # start from the clamped unconstrained least-squares solution (normal equations, pseudo-inverse)
    U0 = ((A @ W.T) @ torch.linalg.pinv(W @ W.T)).clamp_min(0)
    if solver == "mu":  # multiplicative updates cannot leave 0 (|A|: Semi-NMF's data are signed)
        U0 = U0.clamp_min(float(A.abs().mean()) * 1e-3 + 1e-12)
    U, _, _ = (SOLVERS if solvers is None else solvers)[solver](A, U0, W, update_W=False, max_iter=max_iter, tol=tol)
    return U


def _randomized_svd(A: torch.Tensor, k: int, generator: torch.Generator, *, n_oversamples: int = 10,
                    n_power_iter: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-``k`` SVD of ``A`` (Halko et al.), seeded through ``generator``.

    Returns ``P (n, k)``, ``S (k,)``, ``Vh (k, C)``; exact ``torch.linalg.svd``
    when the matrix is small.
    """
    n, c = A.shape
    q = min(k + n_oversamples, n, c)
    if min(n, c) <= 2 * q:
        P, S, Vh = torch.linalg.svd(A, full_matrices=False)
        return P[:, :k], S[:k], Vh[:k]
    omega = torch.randn(c, q, generator=generator, device=A.device, dtype=A.dtype)
    Y = A @ omega
    for _ in range(n_power_iter):
        Y, _ = torch.linalg.qr(Y)
        Y, _ = torch.linalg.qr(A.T @ Y)
        Y = A @ Y
    Q, _ = torch.linalg.qr(Y)
    Pb, S, Vh = torch.linalg.svd(Q.T @ A, full_matrices=False)
    P = Q @ Pb
    # sign convention: the largest-magnitude entry of each right vector is positive
    signs = torch.sign(Vh.gather(1, Vh.abs().argmax(1, keepdim=True))).squeeze(1)
    signs[signs == 0] = 1
    return (P * signs)[:, :k], S[:k], (Vh * signs[:, None])[:k]


def init_factors(A: torch.Tensor, k: int, init: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial ``U (n, k)`` and ``W (k, C)`` for ``A (n, C)``.

    ``"nndsvd"``/``"nndsvda"`` follow Boutsidis & Gallopoulos (2008), the same
    construction as scikit-learn, with a seeded randomized SVD; ``"nndsvda"``
    fills the zeros with the mean of ``A``. ``"random"`` draws
    ``sqrt(mean(A) / k) * |N(0, 1)|``.
    """
    mean = A.mean()
    if init == "random":
        scale = (mean / k).sqrt()
        U = scale * torch.randn(A.shape[0], k, generator=generator, device=A.device, dtype=A.dtype).abs()
        W = scale * torch.randn(k, A.shape[1], generator=generator, device=A.device, dtype=A.dtype).abs()
        return U, W
    P, S, Vh = _randomized_svd(A, k, generator)
    x, y = P.T, Vh  # (k, n), (k, C)
    xp, xn, yp, yn = x.clamp_min(0), (-x).clamp_min(0), y.clamp_min(0), (-y).clamp_min(0)
    nxp, nxn = xp.norm(dim=1), xn.norm(dim=1)
    nyp, nyn = yp.norm(dim=1), yn.norm(dim=1)
    mp, mn = nxp * nyp, nxn * nyn
    use_p = (mp > mn)[:, None]
    u = torch.where(use_p, xp / nxp.clamp_min(_TINY)[:, None], xn / nxn.clamp_min(_TINY)[:, None])
    v = torch.where(use_p, yp / nyp.clamp_min(_TINY)[:, None], yn / nyn.clamp_min(_TINY)[:, None])
    sigma = torch.where(use_p.squeeze(1), mp, mn)
    lam = (S * sigma).sqrt()
    # the first singular pair is non-negative up to sign: use |x|, |y| directly
    u[0], v[0], lam[0] = x[0].abs(), y[0].abs(), S[0].sqrt()
    U, W = (lam[:, None] * u).T.contiguous(), (lam[:, None] * v).contiguous()
    U[U < 1e-6] = 0
    W[W < 1e-6] = 0
    if init == "nndsvda":
        U[U == 0] = mean
        W[W == 0] = mean
    return U, W
