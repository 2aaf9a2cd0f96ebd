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

__all__ = ["AUTO_CANDIDATES", "AUTO_COMPLETENESS", "FACTORIZATIONS", "FIT_ON", "FIT_ON_AUTO", "FIT_ON_DEFAULT",
           "NConceptsSweep", "factorize", "resolve_fit_on", "sweep_n_concepts"]

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


# The rows a bank is fitted on, and what each means (``fit_on``): the page and the CLI read the labels from here.
FIT_ON = {
    "crops": "the crops (CRAFT)",
    "crops+images": "the crops and the whole images",
    "positions": "the whole images' feature-map positions",
    "crops+positions": "the crops and the whole images' feature-map positions",
}
FIT_ON_DEFAULT = "auto"
# "auto", by the factorization, chosen by data (BENCHMARKS.md "Parts, not the class"): fitted on the positions, NMF
# splits a real class's decision into parts (EfficientNet-Lite0 on imagenette-val); Semi-NMF on a ViT's LayerNorm'd
# tokens makes several concepts of the offset every token carries (the demo ViT), so it keeps the crops and images.
FIT_ON_AUTO = {"nmf": "positions", "semi-nmf": "crops+images"}


def resolve_fit_on(fit_on: str, factorization: str) -> str:
    """``fit_on`` with ``"auto"`` decided by the factorization (:data:`FIT_ON_AUTO`); other names as they are."""
    if fit_on != "auto" and fit_on not in FIT_ON:
        raise ValueError(f"`fit_on` must be auto or one of {', '.join(FIT_ON)}; got {fit_on!r}.")
    return FIT_ON_AUTO[factorization] if fit_on == "auto" else fit_on


def factorize(features: ClassFeatures, k: int, *, solver: str = "hals", fit_on: str = FIT_ON_DEFAULT,
              factorization: str = "nmf", random_state: int = 0, device: torch.device | str | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The bank ``W`` (k, C), the crops' codes ``U`` (n, k) and the images' codes (N, k), float32 on the CPU.

    ``fit_on`` (a key of :data:`FIT_ON`, or ``"auto"``: :func:`resolve_fit_on`) names the rows fitted: the crops'
    pooled features, with the whole images' appended (``crops+images``), or the whole images' feature-map
    positions (with the crops' rows before them for ``crops+positions``). A crop's codes are its fitted rows, or
    its features projected on the bank when the crops were not fitted. Fitted on positions, an image's codes are
    the mean of its positions' codes when its pooled features are the positions' mean (a CNN, an average-pooled
    ViT): the bank then rebuilds what the head reads up to the positions' own error, and every photo is a sum of
    parts; for a class-token ViT they are its pooled features projected on the bank. ``factorization``: a key of
    :data:`FACTORIZATIONS` (``"semi-nmf"`` for features of any sign: the bank is signed, the codes still
    non-negative).
    """
    fit_on = resolve_fit_on(fit_on, factorization)
    crops, images, positions = features.crops, features.images, features.positions.flatten(0, 1)
    rows = {"crops": [crops], "crops+images": [crops, images], "positions": [positions],
            "crops+positions": [crops, positions]}[fit_on]
    on_crops, on_positions = fit_on.startswith("crops"), fit_on.endswith("positions")
    nmf = FACTORIZATIONS[factorization](k, solver=solver, random_state=random_state, device=device)
    fitted = nmf.fit_transform(torch.cat(rows).to(device)).float().cpu()
    W = torch.as_tensor(nmf.components_).float().cpu()
    U = fitted[: len(crops)] if on_crops else nmf.transform(crops.to(device)).float().cpu()
    if on_positions and features.pooled_is_mean:
        codes = fitted[len(crops) if on_crops else 0:].reshape(len(images), -1, k).mean(1)
    else:
        codes = nmf.transform(images.to(device)).float().cpu()
    return W, U, codes


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
                     solver: str = "hals", fit_on: str = FIT_ON_DEFAULT, factorization: str = "nmf",
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
        W, U, codes = fits[k] = factorize(features, k, solver=solver, fit_on=fit_on, factorization=factorization,
                                          random_state=random_state, device=device)
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
