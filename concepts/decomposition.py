"""How a class's decision splits into concepts: figures that say whether a bank shows parts or the class.

A faithful bank can still say nothing: if one concept that every photo shares
(the class's mean) carries 95% of every photo's logit, the ranking is right
and the page shows no part. These figures, measured on every class, make that
visible:

- ``important_concepts``: how many concepts are the most important (largest
  contribution) for at least :data:`IMPORTANT_SHARE` of the images (the Lens
  site's rule: 10 of about 120 images).
- ``median_top_share``: the median over the images of the top concept's share
  of that image's positive contributions (1: one concept is the whole story).
- ``decision_kept``: of the images the model gives the class top-1, the share
  whose rebuilt features (codes x bank, residual dropped) still do (FACE's
  "accuracy after factorization").
- ``stability``: banks fitted on two disjoint halves of the images, their
  concepts matched one to one (Hungarian, on the cosine of the directions),
  the matched cosines averaged with the concepts' importance as weights
  (FACE's and interpreto's stability).
- ``image_spread``: per concept, std / mean of its codes over the whole
  images; a concept below :data:`concepts.bank.EVERYWHERE_IMAGE_SPREAD` is in
  every photo alike (the class's mean), not a part of some photos.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from .bank import coefficient_spread
from .feature_store import ClassFeatures
from .features import ModelSplit
from .importance import percent_of_logit
from .n_concepts import contributions, factorize

__all__ = ["IMPORTANT_SHARE", "Decomposition", "decision_kept", "important_concepts", "matched_cosine",
           "median_top_share", "split_half_stability", "top_concepts", "top_counts", "top_shares"]

IMPORTANT_SHARE = 0.08  # the Lens site's "most important for at least 10 images", of its ~120 per class


def top_concepts(contributions: np.ndarray) -> np.ndarray:
    """Per image, the concept id with the largest contribution, shape (N,)."""
    return np.asarray(contributions).argmax(1)


def top_counts(contributions: np.ndarray) -> np.ndarray:
    """Per concept id, the number of images for which it is the most important, shape (k,)."""
    contributions = np.asarray(contributions)
    return np.bincount(top_concepts(contributions), minlength=contributions.shape[1])


def important_concepts(contributions: np.ndarray, share: float = IMPORTANT_SHARE) -> int:
    """How many concepts are the most important for at least ``share`` of the images."""
    counts = top_counts(contributions)
    return int((counts >= share * len(np.asarray(contributions))).sum())


def top_shares(contributions: np.ndarray) -> np.ndarray:
    """Per image, the top concept's share of its positive contributions, shape (N,); NaN where none is positive."""
    c = np.asarray(contributions, dtype=np.float64)
    positive = np.clip(c, 0, None).sum(1)
    return np.divide(c.max(1), positive, out=np.full(len(c), np.nan), where=positive > 0)


def median_top_share(contributions: np.ndarray) -> float | None:
    """The median over the images of :func:`top_shares` (images with no positive contribution left out)."""
    shares = top_shares(contributions)
    shares = shares[np.isfinite(shares)]
    return float(np.median(shares)) if len(shares) else None


@torch.no_grad()
def decision_kept(split: ModelSplit, pooled: torch.Tensor, codes: torch.Tensor, W: torch.Tensor, class_index: int,
                  *, device: torch.device | str | None = None) -> tuple[float | None, int]:
    """Of the images whose features the head gives ``class_index`` top-1, the share whose rebuilt features
    ``codes @ W`` (the residual dropped) still do; and how many images that share is of (None when none)."""
    with split.inference(device) as dev:
        real = split.h(pooled.to(dev).float()).argmax(1).cpu()
        rebuilt = split.h((torch.as_tensor(codes).float() @ torch.as_tensor(W).float()).to(dev)).argmax(1).cpu()
    chosen = real == class_index
    n = int(chosen.sum())
    return (float((rebuilt[chosen] == class_index).float().mean()) if n else None), n


def matched_cosine(W_a: np.ndarray, W_b: np.ndarray, weights_a: np.ndarray, weights_b: np.ndarray) -> float:
    """Two banks' concepts matched one to one by the cosine of their directions (Hungarian), the matched cosines
    averaged with weights: each pair weighs the mean of its two concepts' ``|weights|``."""
    a = np.asarray(W_a, dtype=np.float64)
    b = np.asarray(W_b, dtype=np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    cos = a @ b.T
    rows, cols = linear_sum_assignment(-cos)
    weight = (np.abs(np.asarray(weights_a))[rows] + np.abs(np.asarray(weights_b))[cols]) / 2
    if weight.sum() <= 0:
        weight = np.ones(len(rows))
    return float((cos[rows, cols] * weight).sum() / weight.sum())


def split_half_stability(split: ModelSplit, features: ClassFeatures, class_index: int, n_concepts: int, *,
                         solver: str, fit_on: str, factorization: str, random_state: int = 0,
                         device: torch.device | str | None = None) -> float | None:
    """:func:`matched_cosine` of the banks fitted with the same settings on the even and on the odd images, each
    concept weighed by its % of logit on its own half; None when a half has fewer rows than concepts."""
    halves = []
    for start in (0, 1):
        half = features.subset(torch.arange(start, len(features.images), 2))
        if min(len(half.crops), len(half.images) * half.positions.shape[1]) < n_concepts:
            return None
        W, _, codes = factorize(half, n_concepts, solver=solver, fit_on=fit_on, factorization=factorization,
                                random_state=random_state, device=device)
        carried = contributions(split, half.images, codes, W, class_index, device=device).contributions
        halves.append((W.numpy(), percent_of_logit(carried).numpy()))
    (W_a, pct_a), (W_b, pct_b) = halves
    value = matched_cosine(W_a, W_b, pct_a, pct_b)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Decomposition:
    """The figures of :mod:`concepts.decomposition` for one bank; lists are indexed by concept id."""

    important_concepts: int
    important_share: float
    top_counts: list[int]
    median_top_share: float | None
    decision_kept: float | None
    decision_images: int
    stability: float | None
    image_spread: list[float | None]

    @classmethod
    def measure(cls, contributions: np.ndarray, image_codes: np.ndarray, *, decision: tuple[float | None, int],
                stability: float | None) -> "Decomposition":
        spread = coefficient_spread(image_codes)
        return cls(important_concepts=important_concepts(contributions), important_share=IMPORTANT_SHARE,
                   top_counts=[int(c) for c in top_counts(contributions)],
                   median_top_share=_rounded(median_top_share(contributions)),
                   decision_kept=_rounded(decision[0]), decision_images=int(decision[1]),
                   stability=_rounded(stability),
                   image_spread=[_rounded(float(v)) if math.isfinite(v) else None for v in spread])

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One line for a notebook or a plot: ``4 important concepts, median top share 41%, ...``."""
        parts = [f"{self.important_concepts} important concept{'s' if self.important_concepts != 1 else ''}"]
        if self.median_top_share is not None:
            parts.append(f"median top share {100 * self.median_top_share:.0f}%")
        if self.decision_kept is not None:
            parts.append(f"decision kept {100 * self.decision_kept:.0f}% (of {self.decision_images})")
        if self.stability is not None:
            parts.append(f"stability {self.stability:.2f}")
        return ", ".join(parts)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)
