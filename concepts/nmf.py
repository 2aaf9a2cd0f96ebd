"""Non-negative matrix factorisation with scikit-learn's estimator contract.

Notation: ``A`` is the data, ``(n, C)``, non-negative (rows are crops or
images, columns are feature channels); ``U`` the codes, ``(n, k)``;
``W = components_`` the concept bank, ``(k, C)``; ``A ~ U @ W``.

Solvers: ``"hals"`` and ``"mu"`` in torch (on ``device``; float32 on CUDA,
float64 on the CPU) and ``"sklearn"`` (``sklearn.decomposition``'s coordinate
descent, the reference). ``transform`` solves the non-negative least squares
problem for ``U`` with the bank fixed, with the solver set at the time of the
call.

Input: torch tensors are checked in torch, where they live, so a CUDA tensor
never makes a trip through host memory, and results come back as tensors on
its device. Anything else (numpy arrays, lists, data frames) goes through
scikit-learn's ``validate_data`` and comes back as numpy arrays.
"""
from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import numpy as np
import torch
# validate_data, Tags and __sklearn_tags__ need scikit-learn >= 1.6
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.decomposition import non_negative_factorization
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import Tags
from sklearn.utils.validation import check_array, check_is_fitted, check_non_negative, check_random_state, validate_data

from ._semi_solvers import SEMI_SOLVERS
from ._solvers import SOLVERS, init_factors, nnls, squared_error

__all__ = ["NMF", "nnls_codes"]

ArrayLike = np.ndarray | torch.Tensor
_NON_NEGATIVE_HINT = "it must be non-negative: use features after a ReLU, or clamp them at 0"
_REAL_TENSOR_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


class NMF(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Non-negative matrix factorisation ``A ~ U @ W`` (Frobenius loss).

    A scikit-learn transformer (it passes ``check_estimator``): the constructor
    only stores its arguments, which are checked when ``fit`` or ``transform``
    runs, so ``set_params`` and ``clone`` behave as everywhere in scikit-learn.

    Parameters
    ----------
    n_components : int, default 10
        Number of concepts ``k``; at most ``min(n_samples, n_features)``.
    solver : {"hals", "mu", "sklearn"}, default "hals"
        ``"hals"``: fast hierarchical alternating least squares in torch;
        ``"mu"``: multiplicative updates in torch; ``"sklearn"``:
        ``sklearn.decomposition.non_negative_factorization(solver="cd")`` on the CPU.
    init : {"nndsvda", "nndsvd", "random"}, default "nndsvda"
        Initialisation (seeded by ``random_state``).
    max_iter : int, default 500
        Maximum number of iterations (a ``ConvergenceWarning`` when reached).
    tol : float, default 1e-4
        Stop when the squared error decreases by less than ``tol`` times its
        current value over one iteration (torch solvers) or scikit-learn's
        own criterion (``"sklearn"``).
    random_state : int, numpy RandomState or None, default 0
        Seed of the initialisation. An int seeds a torch generator directly; a
        RandomState draws that seed; ``None`` takes a fresh random seed.
    device : str or torch.device, optional
        Where the torch solvers run; default: the input tensor's device (CPU
        for any other input).

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
    feature_names_in_ : ndarray of str, shape (C,)
        Only when ``fit`` got a data frame with string column names.

    Examples
    --------
    >>> import numpy as np
    >>> A = np.random.default_rng(0).random((100, 20))
    >>> nmf = NMF(3, random_state=0)
    >>> U = nmf.fit_transform(A)
    >>> U.shape, nmf.components_.shape
    ((100, 3), (3, 20))
    """

    # our own rule format, read only by `_validate_params` (not scikit-learn's `_parameter_constraints`)
    _param_rules: dict[str, dict[str, Any]] = {
        "n_components": {"type": numbers.Integral, "min": 1, "text": "an int >= 1"},
        "solver": {"options": ("hals", "mu", "sklearn")},
        "init": {"options": ("nndsvda", "nndsvd", "random")},
        "max_iter": {"type": numbers.Integral, "min": 1, "text": "an int >= 1"},
        "tol": {"type": numbers.Real, "min": 0, "text": "a float >= 0"},
        "random_state": {"check": check_random_state, "none": True,
                         "text": "an int in [0, 2**32 - 1], a numpy RandomState or None"},
        "device": {"check": torch.device, "none": True, "text": "a device name such as 'cuda', a torch.device or None"},
    }

    def __init__(self, n_components: int = 10, *, solver: str = "hals", init: str = "nndsvda",
                 max_iter: int = 500, tol: float = 1e-4, random_state: int | np.random.RandomState | None = 0,
                 device: str | torch.device | None = None) -> None:
        self.n_components = n_components
        self.solver = solver
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.device = device

    # subclasses that accept signed data (SemiNMF) turn this off; it also sets the `positive_only` tag
    _non_negative = True

    @property
    def _name(self) -> str:
        """The class name that error messages and warnings give."""
        return type(self).__name__

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = self._non_negative
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    @property
    def _n_features_out(self) -> int:
        """Number of output features, ``k`` (read by ``get_feature_names_out``)."""
        return self.components_.shape[0]

    # ----------------------------------------------------------------- checks
    def _validate_params(self) -> None:
        """Check every constructor argument against ``_param_rules`` (run by ``fit`` and ``transform``)."""
        for name, rule in self._param_rules.items():
            value = getattr(self, name)
            if value is None and rule.get("none"):
                continue
            if "options" in rule:
                if value not in rule["options"]:
                    raise ValueError(f"`{name}` of `{self._name}` must be one of {list(rule['options'])}; "
                                     f"got {value!r}. Pass one of the listed names.")
                continue
            if "check" in rule:
                try:
                    rule["check"](value)
                    ok = True
                except (TypeError, ValueError, RuntimeError):
                    ok = False
            else:
                ok = isinstance(value, rule["type"]) and not isinstance(value, bool) and value >= rule["min"]
            if not ok:
                raise ValueError(f"`{name}` of `{self._name}` must be {rule['text']}; got {value!r}. "
                                 f"Fix the value passed to {self._name}({name}=...) or set_params({name}=...).")

    def _check_data(self, A: Any, caller: str, *, reset: bool) -> tuple[torch.Tensor, ArrayLike]:
        """``A`` as a tensor in the working dtype on the working device, and the template of the results.

        ``reset`` (``fit``) records ``n_features_in_`` / ``feature_names_in_``, otherwise they are checked;
        the template is the array (numpy, float32 or float64) or tensor whose kind the results take.
        """
        whom = f"`A` of `{self._name}.{caller}`"
        device = torch.device(self.device) if self.device is not None else None
        if isinstance(A, torch.Tensor):
            # checked on the device the solver will use (a CPU tensor bound for the GPU is checked there)
            t = _check_tensor(A if device is None else A.to(device), whom, non_negative=self._non_negative)
            validate_data(self, t, skip_check_array=True, reset=reset)
            template: ArrayLike = A
        else:
            # transform accepts 0 rows (an empty batch of images); fit needs rows to factorise
            template = validate_data(self, A, reset=reset, dtype=[np.float64, np.float32],
                                     ensure_min_samples=1 if reset else 0)
            if self._non_negative:
                check_non_negative(template, f"{whom} ({_NON_NEGATIVE_HINT})")
            with warnings.catch_warnings():  # read-only input (a memmap): torch warns, but A is only ever read
                warnings.filterwarnings("ignore", "The given NumPy array is not writable", UserWarning)
                t = torch.from_numpy(np.ascontiguousarray(template))
        device = device if device is not None else t.device
        dtype = t.dtype if device.type == "cpu" and t.dtype in (torch.float32, torch.float64) else torch.float32
        t = t.to(device=device, dtype=dtype)
        n, c = t.shape
        if reset and n < self.n_components:
            raise ValueError(f"{whom} must have at least n_components={self.n_components} rows; got {n} sample(s). "
                             "Provide more samples or lower n_components.")
        if reset and c < self.n_components:
            raise ValueError(f"{whom} must have at least n_components={self.n_components} columns; got {c} "
                             "feature(s). Provide more features or lower n_components.")
        return t, template

    @staticmethod
    def _like(x: torch.Tensor, template: ArrayLike) -> ArrayLike:
        """Return ``x`` in the kind and float dtype of ``template`` (numpy in, numpy out)."""
        if isinstance(template, np.ndarray):
            return x.detach().cpu().numpy().astype(template.dtype, copy=False)
        dtype = template.dtype if template.dtype in (torch.float32, torch.float64) else torch.float32
        return x.detach().to(device=template.device, dtype=dtype)

    def _generator(self, device: torch.device) -> torch.Generator:
        gen = torch.Generator(device=device)
        if self.random_state is None:
            gen.seed()
        elif isinstance(self.random_state, numbers.Integral):
            gen.manual_seed(int(self.random_state))
        else:  # a RandomState: its next draw seeds torch, so successive fits differ, as in scikit-learn
            gen.manual_seed(int(self.random_state.randint(np.iinfo(np.int32).max)))
        return gen

    # -------------------------------------------------------------------- api
    def fit(self, A: Any, y: None = None) -> "NMF":
        """Learn the bank from ``A`` of shape (n, C) (array-like or tensor); returns ``self``."""
        self._fit_transform(A, "fit")
        return self

    def fit_transform(self, A: Any, y: None = None) -> ArrayLike:
        """Learn the bank and return the codes ``U`` of shape (n, k): a tensor for a tensor, else numpy."""
        return self._fit_transform(A, "fit_transform")

    def _fit_transform(self, A: Any, caller: str) -> ArrayLike:
        self._validate_params()
        t, template = self._check_data(A, caller, reset=True)
        k = int(self.n_components)
        U, W, n_iter = self._factorise(t, k)
        if n_iter >= self.max_iter:
            warnings.warn(f"{self._name} ({self.solver}) reached max_iter={self.max_iter} before converging "
                          f"(tol={self.tol}); increase max_iter or tol.", ConvergenceWarning, stacklevel=3)
        err = squared_error(t, U, W) ** 0.5
        norm = float(t.pow(2).sum(dtype=torch.float64)) ** 0.5
        components = self._like(W, template)
        self.components_ = components.cpu() if isinstance(components, torch.Tensor) else components
        self.n_components_ = k
        self.n_iter_ = int(n_iter)
        self.reconstruction_err_ = err
        self.relative_reconstruction_err_ = err / norm if norm > 0 else 0.0
        return self._like(U, template)

    def _factorise(self, t: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """``U (n, k)``, ``W (k, C)`` and the iteration count for the checked data ``t (n, C)``."""
        if self.solver == "sklearn":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)  # ours, in _fit_transform, says which solver
                U_np, W_np, n_iter = non_negative_factorization(
                    t.cpu().numpy(), n_components=k, init=self.init, solver="cd", max_iter=self.max_iter,
                    tol=self.tol, random_state=self.random_state)
            return torch.from_numpy(U_np).to(t), torch.from_numpy(W_np).to(t), n_iter
        U0, W0 = init_factors(t, k, self.init, self._generator(t.device))
        return SOLVERS[self.solver](t, U0, W0, update_W=True, max_iter=int(self.max_iter), tol=float(self.tol))

    def transform(self, A: Any, *, batch_size: int = 65536) -> ArrayLike:
        """Codes ``U`` (n, k) of ``A`` (n, C) with the bank fixed (non-negative least squares).

        Rows are solved in chunks of ``batch_size`` with the current ``solver``,
        ``max_iter`` and ``tol`` (they may have changed through ``set_params``
        since ``fit``); the result is a tensor for a tensor, else numpy.
        """
        check_is_fitted(self, "components_")
        self._validate_params()
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"`batch_size` of `{self._name}.transform` must be an int >= 1; got {batch_size!r}.")
        t, template = self._check_data(A, "transform", reset=False)
        W = torch.as_tensor(self.components_).to(t)
        if t.shape[0] == 0:
            return self._like(t.new_zeros(0, W.shape[0]), template)
        out = [self._transform_chunk(t[start:start + batch_size], W) for start in range(0, t.shape[0], batch_size)]
        return self._like(torch.cat(out), template)

    def _transform_chunk(self, A: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        if self.solver == "sklearn":
            U, _, _ = non_negative_factorization(A.cpu().numpy(), H=W.cpu().numpy(), n_components=W.shape[0],
                                                 update_H=False, solver="cd", max_iter=self.max_iter, tol=self.tol)
            return torch.from_numpy(U).to(A)
        return nnls(A, W, self.solver, int(self.max_iter), float(self.tol) * 1e-2)

    def inverse_transform(self, U: Any) -> ArrayLike:
        """Reconstruction ``U @ components_`` of shape (n, C): a tensor for a tensor, else numpy."""
        check_is_fitted(self, "components_")
        k = self.components_.shape[0]
        if isinstance(U, torch.Tensor):
            if U.ndim != 2 or U.shape[1] != k:
                raise ValueError(f"`U` of `{self._name}.inverse_transform` must have shape (n, {k}); "
                                 f"got {tuple(U.shape)}. Pass codes from transform.")
            dtype = U.dtype if U.is_floating_point() else torch.float32
            return U.to(dtype) @ torch.as_tensor(self.components_).to(device=U.device, dtype=dtype)
        U = check_array(U, dtype=[np.float64, np.float32], input_name="U")
        if U.shape[1] != k:
            raise ValueError(f"`U` of `{self._name}.inverse_transform` must have {k} columns (n_components_); got "
                             f"{U.shape[1]}. Pass codes from transform.")
        return U @ np.asarray(self.components_, dtype=U.dtype)


def _check_tensor(A: torch.Tensor, whom: str, *, non_negative: bool = True) -> torch.Tensor:
    """``A`` detached, after the checks ``check_array`` and (when ``non_negative``) ``check_non_negative`` make on
    arrays, in torch."""
    if A.ndim != 2:
        raise ValueError(f"{whom} must be 2-D (n_samples, n_features); got shape {tuple(A.shape)}. Reshape your "
                         "data, e.g. A.reshape(len(A), -1), or A.reshape(1, -1) for a single sample.")
    if not (A.is_floating_point() or A.dtype in _REAL_TENSOR_DTYPES):
        raise TypeError(f"{whom} must hold real numbers; got dtype {A.dtype}. Convert it with A.float().")
    A = A.detach()
    if not A.numel():
        return A
    # one pass for both checks: min and max are NaN when any value is, and +-inf when any value is
    low, high = (float(v) for v in torch.stack(torch.aminmax(A)).tolist())
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"{whom} must be finite; got NaN or inf values. Remove or impute them.")
    if non_negative and low < 0:
        raise ValueError(f"Negative values in data passed to {whom} (minimum {low:.4g}; {_NON_NEGATIVE_HINT}).")
    return A


def nnls_codes(A: torch.Tensor, components: torch.Tensor, *, solver: str = "hals", max_iter: int = 500,
               tol: float = 1e-6, batch_size: int = 65536, signed: bool = False) -> torch.Tensor:
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
    signed : bool, default False
        ``A`` and the bank may be of any sign (a :class:`concepts.SemiNMF` bank): its solvers, codes still >= 0.

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
    solvers = SEMI_SOLVERS if signed else None
    out = [nnls(A[s:s + batch_size].to(dtype), W, solver, max_iter, tol, solvers=solvers)
           for s in range(0, A.shape[0], batch_size)]
    if not out:
        return A.new_zeros(0, W.shape[0], dtype=torch.float32)
    return torch.cat(out).float()
