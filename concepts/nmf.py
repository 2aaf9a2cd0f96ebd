"""Non-negative matrix factorisation with scikit-learn's estimator contract.

Notation: ``A`` is the data, ``(n, C)``, non-negative (rows are crops or
images, columns are feature channels); ``U`` the codes, ``(n, k)``;
``W = components_`` the concept bank, ``(k, C)``; ``A ~ U @ W``.

Solvers: ``"hals"`` and ``"mu"`` in torch (on ``device``; float32 on CUDA,
float64 on the CPU) and ``"sklearn"`` (``sklearn.decomposition.NMF``,
coordinate descent, the reference). ``transform`` solves the non-negative
least squares problem for ``U`` with the bank fixed, with the same solver.
"""
from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.decomposition import NMF as _SklearnNMF
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from ._solvers import SOLVERS, init_factors, squared_error

__all__ = ["NMF", "nnls_codes"]

ArrayLike = np.ndarray | torch.Tensor


class NMF(BaseEstimator):
    """Non-negative matrix factorisation ``A ~ U @ W`` (Frobenius loss).

    Parameters
    ----------
    n_components : int, default 10
        Number of concepts ``k``.
    solver : {"hals", "mu", "sklearn"}, default "hals"
        ``"hals"``: fast hierarchical alternating least squares in torch;
        ``"mu"``: multiplicative updates in torch; ``"sklearn"``:
        ``sklearn.decomposition.NMF(solver="cd")`` on the CPU.
    init : {"nndsvda", "nndsvd", "random"}, default "nndsvda"
        Initialisation (seeded by ``random_state``).
    max_iter : int, default 500
        Maximum number of iterations (a ``ConvergenceWarning`` when reached).
    tol : float, default 1e-4
        Stop when the squared error decreases by less than ``tol`` times its
        current value over one iteration (torch solvers) or scikit-learn's
        own criterion (``"sklearn"``).
    random_state : int or None, default 0
        Seed of the initialisation (``None``: a fresh random seed).
    device : str or torch.device, optional
        Where the torch solvers run; default: the input tensor's device (CPU
        for numpy input).

    Attributes
    ----------
    components_ : ndarray or Tensor, shape (k, C)
        The bank ``W``, of the same kind (numpy / torch) as the data passed to
        ``fit``; a torch bank lives on the CPU.
    n_components_ : int
    reconstruction_err_ : float
        ``||A - U W||_F`` on the training data (as in scikit-learn).
    relative_reconstruction_err_ : float
        ``reconstruction_err_ / ||A||_F``.
    n_iter_ : int
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> A = np.random.default_rng(0).random((100, 20))
    >>> nmf = NMF(3, random_state=0)
    >>> U = nmf.fit_transform(A)
    >>> U.shape, nmf.components_.shape
    ((100, 3), (3, 20))
    """

    _parameter_constraints: dict[str, dict[str, Any]] = {
        "n_components": {"type": numbers.Integral, "min": 1, "text": "an int >= 1"},
        "solver": {"options": ("hals", "mu", "sklearn")},
        "init": {"options": ("nndsvda", "nndsvd", "random")},
        "max_iter": {"type": numbers.Integral, "min": 1, "text": "an int >= 1"},
        "tol": {"type": numbers.Real, "min": 0, "text": "a float >= 0"},
        "random_state": {"type": numbers.Integral, "none": True, "text": "an int or None"},
        "device": {"type": (str, torch.device), "none": True, "text": "a str, a torch.device or None"},
    }

    def __init__(self, n_components: int = 10, *, solver: str = "hals", init: str = "nndsvda",
                 max_iter: int = 500, tol: float = 1e-4, random_state: int | None = 0,
                 device: str | torch.device | None = None) -> None:
        self.n_components = n_components
        self.solver = solver
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.device = device

    # ----------------------------------------------------------------- checks
    def _validate_params(self) -> None:
        """Check every constructor argument against ``_parameter_constraints``."""
        for name, rule in self._parameter_constraints.items():
            value = getattr(self, name)
            if value is None and rule.get("none"):
                continue
            if "options" in rule:
                if value not in rule["options"]:
                    raise ValueError(f"`{name}` of `NMF` must be one of {list(rule['options'])}; got {value!r}. "
                                     f"Pass one of the listed names.")
                continue
            ok = isinstance(value, rule["type"]) and not isinstance(value, bool)
            if ok and "min" in rule:
                ok = value >= rule["min"]
            if not ok:
                raise ValueError(f"`{name}` of `NMF` must be {rule['text']}; got {value!r}. "
                                 f"Fix the value passed to NMF({name}=...).")

    def _check_data(self, A: ArrayLike, caller: str, *, fitting: bool) -> torch.Tensor:
        if not isinstance(A, (np.ndarray, torch.Tensor)):
            raise TypeError(f"`A` of `NMF.{caller}` must be a numpy array or a torch tensor; got "
                            f"{type(A).__name__}. Convert it with np.asarray(A).")
        if A.ndim != 2:
            raise ValueError(f"`A` of `NMF.{caller}` must be 2-D (n_samples, n_features); got shape "
                             f"{tuple(A.shape)}. Reshape it, e.g. A.reshape(len(A), -1).")
        t = torch.from_numpy(np.ascontiguousarray(A)) if isinstance(A, np.ndarray) else A.detach()
        if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64, torch.uint8, torch.int16)):
            raise TypeError(f"`A` of `NMF.{caller}` must hold real numbers; got dtype {t.dtype}.")
        device = torch.device(self.device) if self.device is not None else t.device
        dtype = torch.float32 if device.type != "cpu" else torch.float64
        t = t.to(device=device, dtype=dtype)
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"`A` of `NMF.{caller}` must be finite; got NaN or inf values. Remove or impute them.")
        if t.numel() and float(t.min()) < 0:
            raise ValueError(f"`A` of `NMF.{caller}` must be non-negative; got a minimum of {float(t.min()):.4g}. "
                             "Use features after a ReLU, or clamp them at 0.")
        if fitting and t.shape[0] < self.n_components:
            raise ValueError(f"`A` of `NMF.{caller}` must have at least n_components={self.n_components} rows; "
                             f"got {t.shape[0]}. Provide more samples or lower n_components.")
        if not fitting and t.shape[1] != self.n_features_in_:
            raise ValueError(f"`A` of `NMF.{caller}` must have {self.n_features_in_} features (as in fit); got "
                             f"{t.shape[1]}. Pass features from the same layer.")
        return t

    @staticmethod
    def _like(x: torch.Tensor, A: ArrayLike) -> ArrayLike:
        """Return ``x`` in the kind and float dtype of ``A`` (numpy in, numpy out)."""
        if isinstance(A, np.ndarray):
            dtype = A.dtype if A.dtype in (np.float32, np.float64) else np.float64
            return x.detach().cpu().numpy().astype(dtype, copy=False)
        dtype = A.dtype if A.dtype in (torch.float32, torch.float64) else torch.float32
        return x.detach().to(device=A.device, dtype=dtype)

    def _generator(self, device: torch.device) -> torch.Generator:
        gen = torch.Generator(device=device)
        if self.random_state is None:
            gen.seed()
        else:
            gen.manual_seed(int(self.random_state))
        return gen

    # -------------------------------------------------------------------- api
    def fit(self, A: ArrayLike, y: None = None) -> "NMF":
        """Learn the bank from ``A`` of shape (n, C); returns ``self``."""
        self._fit_transform(A, "fit")
        return self

    def fit_transform(self, A: ArrayLike, y: None = None) -> ArrayLike:
        """Learn the bank and return the codes ``U`` of shape (n, k), the same kind as ``A``."""
        return self._fit_transform(A, "fit_transform")

    def _fit_transform(self, A: ArrayLike, caller: str) -> ArrayLike:
        self._validate_params()
        t = self._check_data(A, caller, fitting=True)
        k = int(self.n_components)
        if self.solver == "sklearn":
            est = _SklearnNMF(n_components=k, init=self.init, solver="cd", max_iter=self.max_iter, tol=self.tol,
                              random_state=self.random_state)
            with warnings.catch_warnings(record=True):
                warnings.simplefilter("always", ConvergenceWarning)
                U_np = est.fit_transform(t.cpu().numpy())
            U = torch.from_numpy(U_np).to(t)
            W = torch.from_numpy(est.components_).to(t)
            n_iter = int(est.n_iter_)
            self._sklearn = est
        else:
            U0, W0 = init_factors(t, k, self.init, self._generator(t.device))
            U, W, n_iter = SOLVERS[self.solver](t, U0, W0, update_W=True, max_iter=int(self.max_iter),
                                                tol=float(self.tol))
        if n_iter >= self.max_iter:
            warnings.warn(f"NMF ({self.solver}) reached max_iter={self.max_iter} before converging (tol={self.tol}); "
                          "increase max_iter or tol.", ConvergenceWarning, stacklevel=3)
        err = squared_error(t, U, W) ** 0.5
        norm = float(t.pow(2).sum(dtype=torch.float64)) ** 0.5
        self.components_ = self._like(W, A) if isinstance(A, np.ndarray) else self._like(W, A).cpu()
        self.n_components_ = k
        self.n_features_in_ = int(t.shape[1])
        self.n_iter_ = n_iter
        self.reconstruction_err_ = err
        self.relative_reconstruction_err_ = err / norm if norm > 0 else 0.0
        return self._like(U, A)

    def transform(self, A: ArrayLike, *, batch_size: int = 65536) -> ArrayLike:
        """Codes ``U`` (n, k) of ``A`` (n, C) with the bank fixed (non-negative least squares).

        Rows are solved in chunks of ``batch_size``; the result has the kind of ``A``.
        """
        check_is_fitted(self, "components_")
        t = self._check_data(A, "transform", fitting=False)
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"`batch_size` of `NMF.transform` must be an int >= 1; got {batch_size!r}.")
        W = torch.as_tensor(self.components_).to(t)
        if t.shape[0] == 0:
            return self._like(t.new_zeros(0, self.n_components_), A)
        out = []
        for start in range(0, t.shape[0], batch_size):
            out.append(self._transform_chunk(t[start:start + batch_size], W))
        return self._like(torch.cat(out), A)

    def _transform_chunk(self, A: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        if self.solver == "sklearn":
            return torch.from_numpy(self._sklearn.transform(A.cpu().numpy())).to(A)
        return _nnls(A, W, self.solver, int(self.max_iter), float(self.tol) * 1e-2)

    def inverse_transform(self, U: ArrayLike) -> ArrayLike:
        """Reconstruction ``U @ components_`` of shape (n, C), the same kind as ``U``."""
        check_is_fitted(self, "components_")
        if isinstance(U, np.ndarray):
            return U @ np.asarray(self.components_, dtype=np.result_type(U.dtype, np.float32))
        if isinstance(U, torch.Tensor):
            return U @ torch.as_tensor(self.components_).to(U)
        raise TypeError(f"`U` of `NMF.inverse_transform` must be a numpy array or a torch tensor; got "
                        f"{type(U).__name__}.")


def _nnls(A: torch.Tensor, W: torch.Tensor, solver: str, max_iter: int, tol: float) -> torch.Tensor:
    """Codes ``(n, k)`` of ``A (n, C)`` for the fixed bank ``W (k, C)``."""
    # start from the clamped unconstrained least-squares solution (normal equations, pseudo-inverse)
    U0 = ((A @ W.T) @ torch.linalg.pinv(W @ W.T)).clamp_min(0)
    if solver == "mu":  # multiplicative updates cannot leave 0
        U0 = U0.clamp_min(float(A.mean()) * 1e-3 + 1e-12)
    U, _, _ = SOLVERS[solver](A, U0, W, update_W=False, max_iter=max_iter, tol=tol)
    return U


def nnls_codes(A: torch.Tensor, components: torch.Tensor, *, solver: str = "hals", max_iter: int = 500,
               tol: float = 1e-6, batch_size: int = 65536) -> torch.Tensor:
    """Non-negative codes ``U`` minimising ``||A - U @ components||`` with the bank fixed.

    Parameters
    ----------
    A : Tensor, shape (n, C)
        Non-negative features (rows: images, crops or spatial positions).
    components : Tensor, shape (k, C)
        The bank ``W``.
    solver : {"hals", "mu"}, default "hals"
    max_iter : int, default 500
    tol : float, default 1e-6
    batch_size : int, default 65536
        Rows solved at once.

    Returns
    -------
    Tensor, shape (n, k)
        On ``A``'s device, in float32 (float64 work on the CPU).
    """
    if solver not in SOLVERS:
        raise ValueError(f"`solver` of `nnls_codes` must be one of {sorted(SOLVERS)}; got {solver!r}.")
    if not isinstance(A, torch.Tensor) or A.ndim != 2:
        raise ValueError(f"`A` of `nnls_codes` must be a Tensor (n, C); got {getattr(A, 'shape', type(A).__name__)}.")
    if not isinstance(components, torch.Tensor) or components.ndim != 2 or components.shape[1] != A.shape[1]:
        raise ValueError(f"`components` of `nnls_codes` must be a Tensor (k, {A.shape[1]}); got "
                         f"{getattr(components, 'shape', type(components).__name__)}.")
    dtype = torch.float64 if A.device.type == "cpu" else torch.float32
    W = components.to(A.device, dtype)
    out = [_nnls(A[s:s + batch_size].to(dtype), W, solver, max_iter, tol)
           for s in range(0, A.shape[0], batch_size)]
    if not out:
        return A.new_zeros(0, W.shape[0], dtype=torch.float32)
    return torch.cat(out).float()
