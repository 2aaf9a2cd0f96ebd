"""Concept-space fidelity: is the concept ranking faithful to the model, measured on the features themselves?

The protocol of Fel et al. (2023, "A Holistic Approach to Unifying Automatic
Concept Extraction and Concept Importance Estimation"), exact and cheap: no
image is edited. Notation: ``u`` codes ``(N, k)`` of a class's images, ``W``
the bank ``(k, C)``, ``a`` their pooled features ``(N, C)``, ``h`` the head.

- The features are rebuilt as ``a(m) = (u * m) W + r`` with a concept mask
  ``m`` in {0, 1}^k and the NMF residual ``r = a - u W`` kept as a constant,
  so that with every concept present the model's own output comes back
  exactly (on real models ``u W`` alone gives the class a probability of a
  few percent where the model gives about one half).
- The score is the class *probability* ``softmax(h(a(m)))[c]``, mean over the
  images: a concept that raises every class's logit alike moves it little,
  and on a linear head a logit score would make C-μFidelity 1 by
  construction for the exact contributions.
- **C-Deletion**: concepts removed one at a time in ranking order; the area
  under the curve (x = share of concepts removed, trapezoids) is lower when
  the ranking puts first what the class needs. **C-Insertion**: from no
  concept, added in ranking order; higher is better. Both against the same
  steps in seeded random orders (mean curve).
- **C-μFidelity**: per image, the Pearson correlation over random concept
  subsets (each concept dropped with probability 1/2, seeded) between the
  sum of the dropped concepts' per-image importances and the drop of the
  score; mean over the images whose drops vary (None when none does).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import torch

__all__ = ["ConceptCurves", "ConceptFidelity", "concept_fidelity", "curve_area"]


def curve_area(curve: Sequence[float]) -> float:
    """Trapezoid area under ``curve`` sampled at x = 0, 1/k, ..., 1 (the value itself for one point)."""
    y = np.asarray(curve, dtype=np.float64)
    return float((y[:-1] + y[1:]).sum() / (2 * (len(y) - 1))) if len(y) > 1 else float(y[0])


@dataclass
class ConceptCurves:
    """Mean class probability after 0..k steps, for the ranking and for random orders, with their areas."""

    ranking: list[float]
    random_order: list[float]
    auc_ranking: float
    auc_random_order: float


@dataclass
class ConceptFidelity:
    """C-Deletion, C-Insertion and C-μFidelity of one class (stored in ``class.json`` as ``fidelity``)."""

    c_deletion: ConceptCurves
    c_insertion: ConceptCurves
    c_mufidelity: float | None
    seeds: int
    subsets: int
    n_images: int
    score: str = "probability"
    residual: str = "kept"

    def to_dict(self) -> dict:
        return asdict(self)


def _curves(scores: torch.Tensor, k: int, seeds: int) -> ConceptCurves:
    """``scores (1 + seeds, k + 1)``: the ranking's row, then one row per random order."""
    ranking, random_order = scores[0].tolist(), scores[1:].mean(0).tolist()
    return ConceptCurves(ranking=[round(v, 5) for v in ranking], random_order=[round(v, 5) for v in random_order],
                         auc_ranking=round(curve_area(ranking), 5), auc_random_order=round(curve_area(random_order), 5))


def _step_masks(orders: list[list[int]], k: int, insert: bool) -> torch.Tensor:
    """``(len(orders) * (k + 1), k)`` masks: 1 keeps a concept. Deletion starts full, insertion empty."""
    rows = []
    for order in orders:
        mask = torch.zeros(k) if insert else torch.ones(k)
        rows.append(mask.clone())
        for concept in order:
            mask[concept] = 1.0 if insert else 0.0
            rows.append(mask.clone())
    return torch.stack(rows)


@torch.no_grad()
def _masked_scores(codes: torch.Tensor, components: torch.Tensor, residual: torch.Tensor,
                   h: Callable[[torch.Tensor], torch.Tensor], class_index: int, masks: torch.Tensor,
                   batch_size: int) -> torch.Tensor:
    """Class probability ``(N, M)`` of every image under every mask ``(M, k)``."""
    n, m = codes.shape[0], masks.shape[0]
    out = torch.empty(n * m)
    for lo in range(0, n * m, batch_size):
        rows = torch.arange(lo, min(lo + batch_size, n * m))
        image, mask = rows // m, masks[rows % m]
        rebuilt = (codes[image] * mask) @ components + residual[image]
        out[lo:lo + len(rows)] = h(rebuilt).float().softmax(1)[:, class_index].cpu()
    return out.view(n, m)


def _mu_fidelity(drops: torch.Tensor, attributed: torch.Tensor) -> float | None:
    """Mean over images of the Pearson correlation of ``drops`` and ``attributed`` (both ``(N, S)``)."""
    d = drops.double() - drops.double().mean(1, keepdim=True)
    a = attributed.double() - attributed.double().mean(1, keepdim=True)
    denominator = d.norm(dim=1) * a.norm(dim=1)
    valid = denominator > 1e-12
    if not bool(valid.any()):
        return None  # no image's score moves (or no importance varies): the correlation is undefined
    return round(float(((d * a).sum(1)[valid] / denominator[valid]).mean()), 5)


def concept_fidelity(features: torch.Tensor, codes: torch.Tensor, components: torch.Tensor,
                     h: Callable[[torch.Tensor], torch.Tensor], class_index: int, order: Sequence[int],
                     importance: torch.Tensor, *, seeds: int = 8, subsets: int = 128, seed: int = 0,
                     batch_size: int = 4096) -> ConceptFidelity:
    """C-Deletion, C-Insertion and C-μFidelity of a concept ranking (see the module docstring).

    Parameters
    ----------
    features : Tensor, shape (N, C)
        Pooled features of the class's images (the residual ``features - codes @ components`` is kept).
    codes : Tensor, shape (N, k)
        Their concept coefficients.
    components : Tensor, shape (k, C)
        The bank ``W``.
    h : callable
        Pooled features ``(M, C)`` -> logits ``(M, classes)``: the model's real head.
    class_index : int
    order : sequence of int
        The ranking under test, most important first (a permutation of ``range(k)``).
    importance : Tensor, shape (N, k) or (k,)
        Per-image importances of the concepts (a ``(k,)`` vector is used for every image): C-μFidelity.
    seeds : int, default 8
        Random orders for the baselines (seeded 0..seeds-1).
    subsets : int, default 128
        Random concept subsets per image for C-μFidelity.
    seed : int, default 0
        Seed of the subsets.
    batch_size : int, default 4096
        Rebuilt feature vectors per call of ``h``.
    """
    caller = "concept_fidelity"
    if features.ndim != 2 or codes.ndim != 2 or components.ndim != 2 or codes.shape[0] != features.shape[0] \
            or codes.shape[1] != components.shape[0] or components.shape[1] != features.shape[1]:
        raise ValueError(f"`features` (N, C), `codes` (N, k) and `components` (k, C) of `{caller}` must agree; got "
                         f"{tuple(features.shape)}, {tuple(codes.shape)} and {tuple(components.shape)}.")
    k = components.shape[0]
    if sorted(int(c) for c in order) != list(range(k)):
        raise ValueError(f"`order` of `{caller}` must be a permutation of the {k} concept ids; got {list(order)}.")
    importance = torch.as_tensor(importance, dtype=torch.float64)
    if importance.shape not in ((k,), (features.shape[0], k)):
        raise ValueError(f"`importance` of `{caller}` must have shape ({k},) or ({features.shape[0]}, {k}); got "
                         f"{tuple(importance.shape)}.")
    for name, value in (("seeds", seeds), ("subsets", subsets)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 2:
            raise ValueError(f"`{name}` of `{caller}` must be an int >= 2; got {value!r}.")
    a, u, W = features.float().cpu(), codes.float().cpu(), components.float().cpu()
    residual = a - u @ W
    orders = [[int(c) for c in order]] + [np.random.default_rng(s).permutation(k).tolist() for s in range(seeds)]
    gen = torch.Generator().manual_seed(seed)
    dropped = (torch.rand(subsets, k, generator=gen) < 0.5).float()
    masks = torch.cat([_step_masks(orders, k, insert=False), _step_masks(orders, k, insert=True), 1 - dropped])
    scores = _masked_scores(u, W, residual, h, class_index, masks, batch_size)  # (N, M)
    steps = len(orders) * (k + 1)
    mean = scores.mean(0)
    deletion = _curves(mean[:steps].view(len(orders), k + 1), k, seeds)
    insertion = _curves(mean[steps:2 * steps].view(len(orders), k + 1), k, seeds)
    full = scores[:, 0:1]  # the first deletion step keeps every concept: the model's own probability
    drops = full - scores[:, 2 * steps:]
    per_image = importance.expand(features.shape[0], k)
    attributed = per_image @ dropped.double().T  # (N, S)
    return ConceptFidelity(c_deletion=deletion, c_insertion=insertion,
                           c_mufidelity=_mu_fidelity(drops, attributed), seeds=seeds, subsets=subsets,
                           n_images=int(features.shape[0]))
