"""How many concepts a class needs: a sweep of ``k`` from features computed once, chosen by completeness.

Completeness (:func:`concepts.completeness`) is the share of the class
evidence (logit above the head's bias) the concepts carry; the rest is the
factorization's residual. It grows with ``k`` and saturates. ``"auto"`` picks
the smallest ``k`` of :data:`AUTO_CANDIDATES` whose completeness reaches
:data:`AUTO_COMPLETENESS`: the fewest concepts that explain most of the
decision. The curve (``k``, completeness, reconstruction errors) is kept, so
a reader sees what the choice was made from.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from ._solvers import squared_error
from .feature_store import ClassFeatures
from .features import ModelSplit
from .importance import Importance, gradient_contributions, linear_contributions
from .nmf import NMF
from .seminmf import SemiNMF

__all__ = ["AUTO_CANDIDATES", "AUTO_COMPLETENESS", "FACTORIZATIONS", "NConceptsSweep", "factorize",
           "sweep_n_concepts"]

FACTORIZATIONS = {"nmf": NMF, "semi-nmf": SemiNMF}  # name -> estimator: non-negative or signed features

AUTO_CANDIDATES = (2, 4, 6, 8, 10, 12, 16, 20, 24)
AUTO_COMPLETENESS = 0.8


@dataclass(frozen=True)
class NConceptsSweep:
    """The curve ``k`` -> completeness (and relative reconstruction errors) and the ``k`` it chose.

    ``reached`` is False when no candidate reached ``threshold``: ``chosen`` is then the most complete (the
    largest ``k`` when the class has no evidence above the bias, where completeness is undefined: None).
    """

    k: list[int]
    completeness: list[float | None]
    reconstruction_error: list[float]  # relative, on the crops
    reconstruction_error_images: list[float]  # relative, on the whole images' features
    threshold: float
    chosen: int
    reached: bool

    def to_dict(self) -> dict:
        return asdict(self)


def factorize(crops: torch.Tensor, images: torch.Tensor, k: int, *, solver: str = "hals", fit_on: str = "crops+images",
              factorization: str = "nmf", random_state: int = 0, device: torch.device | str | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The bank ``W`` (k, C), the crops' codes ``U`` (n, k) and the images' codes (N, k), float32 on the CPU.

    ``fit_on="crops+images"`` appends the whole images' rows to the crops' before fitting; the crops' codes
    are the first rows either way. ``factorization``: a key of :data:`FACTORIZATIONS` (``"semi-nmf"`` for
    features of any sign: the bank is then signed, the codes still non-negative).
    """
    nmf = FACTORIZATIONS[factorization](k, solver=solver, random_state=random_state, device=device)
    rows = crops if fit_on == "crops" else torch.cat([crops, images.to(crops)])
    U = nmf.fit_transform(rows.to(device))[: len(crops)]
    W = torch.as_tensor(nmf.components_).float().cpu()
    codes = nmf.transform(images.to(device)).float().cpu()
    return W, U.float().cpu(), codes


def _relative_error(A: torch.Tensor, U: torch.Tensor, W: torch.Tensor) -> float:
    return float(squared_error(A, U.to(A), W.to(A)) ** 0.5 / max(float(A.pow(2).sum(dtype=torch.float64)) ** 0.5,
                                                                 1e-12))


def contributions(split: ModelSplit, pooled: torch.Tensor, codes: torch.Tensor, W: torch.Tensor, class_index: int,
                  *, device: torch.device | str | None = None) -> Importance:
    """The concepts' contributions to the class logit: exact through a linear head (``split.head_weight``),
    gradient x input through any other (:func:`concepts.gradient_contributions`)."""
    if split.head_weight is not None:
        bias = float(split.head_bias[class_index]) if split.head_bias is not None else 0.0
        return linear_contributions(pooled, codes, W, split.head_weight[class_index].detach().float().cpu(), bias)
    return gradient_contributions(pooled, codes, W, split.h, class_index, device=device)


def sweep_n_concepts(split: ModelSplit, features: ClassFeatures, class_index: int, *,
                     candidates: tuple[int, ...] = AUTO_CANDIDATES, threshold: float = AUTO_COMPLETENESS,
                     solver: str = "hals", fit_on: str = "crops+images", factorization: str = "nmf",
                     random_state: int = 0, device: torch.device | str | None = None,
                     progress: bool = True) -> NConceptsSweep:
    """Fit one bank per candidate ``k`` on the same features; the smallest ``k`` with completeness >= threshold.

    Candidates larger than the number of crops or of channels are left out. Completeness is measured with the
    contributions of :func:`contributions` (exact for a linear head, gradient x input for another).
    """
    return _sweep(split, features, class_index, candidates=candidates, threshold=threshold, solver=solver,
                  fit_on=fit_on, factorization=factorization, random_state=random_state, device=device,
                  progress=progress)[0]


def _sweep(split: ModelSplit, features: ClassFeatures, class_index: int, *, candidates: tuple[int, ...],
           threshold: float, solver: str, fit_on: str, factorization: str, random_state: int,
           device: torch.device | str | None, progress: bool
           ) -> tuple[NConceptsSweep, dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]:
    """:func:`sweep_n_concepts` and every fitted ``(W, U, codes)`` by ``k``: the caller that keeps the chosen
    bank (:func:`concepts.extract_concepts`) takes it from here instead of fitting it a second time."""
    if factorization not in FACTORIZATIONS:
        raise ValueError(f"`factorization` of `sweep_n_concepts` must be one of {', '.join(FACTORIZATIONS)}; got "
                         f"{factorization!r}.")
    ks = sorted({int(k) for k in candidates if 1 <= k <= min(features.crops.shape)})
    if not ks:
        raise ValueError(f"`candidates` of `sweep_n_concepts` must hold a k in [1, {min(features.crops.shape)}] "
                         f"(crops and channels); got {candidates!r}.")
    curve, errors, image_errors, fits = [], [], [], {}
    for k in tqdm(ks, desc="k sweep", disable=not progress):
        W, U, codes = fits[k] = factorize(features.crops, features.images, k, solver=solver, fit_on=fit_on,
                                          factorization=factorization, random_state=random_state, device=device)
        carried = contributions(split, features.images, codes, W, class_index, device=device).completeness
        curve.append(round(carried, 6) if math.isfinite(carried) else None)
        errors.append(round(_relative_error(features.crops, U, W), 6))
        image_errors.append(round(_relative_error(features.images, codes, W), 6))
    reached = [k for k, c in zip(ks, curve) if c is not None and c >= threshold]
    defined = [(c, k) for k, c in zip(ks, curve) if c is not None]
    chosen = reached[0] if reached else max(defined, key=lambda ck: ck[0])[1] if defined else ks[-1]
    sweep = NConceptsSweep(k=ks, completeness=curve, reconstruction_error=errors,
                           reconstruction_error_images=image_errors, threshold=float(threshold), chosen=chosen,
                           reached=bool(reached))
    return sweep, fits
