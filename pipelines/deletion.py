"""Deletion curves: does removing the top-ranked concepts really remove the class?

A causal check of a concept ranking, in image space. Each concept ``c`` of an
image covers the ``share`` of its pixels where the concept's map is highest.
Concepts are removed one at a time (their pixels greyed out, cumulatively),
the full model classifies every edited image, and the class probability is
recorded after each removal. Three orders are compared:

- ``ranking``: the concept ranking under test (most important first);
- ``random_order``: the same concepts in random orders (several seeds);
- ``random_pixels``: after each step, as many pixels as the ranking removed,
  at random places (several seeds), so a curve cannot win by removing more.

The area under a curve (x = share of concepts removed, in [0, 1]) is lower
when the ranking finds what matters. All edited images of one image go
through the model in one batch: ``(1 + 2 * seeds) * k + 1`` forward passes per
image, batched by :meth:`concepts.ModelSplit.map_batches`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch

from concepts import ModelSplit

__all__ = ["DeletionCurves", "concept_masks", "deletion_curves"]

GREY = 0.5  # what a removed pixel becomes (images are in [0, 1])


@dataclass
class DeletionCurves:
    """Mean class probability after removing 0..k concepts, per order, and the areas under the curves.

    Curves are lists of ``k + 1`` floats (the first is the untouched images); areas use the trapezoid rule
    over x = 0, 1/k, ..., 1. Stored as is in the class record (``class.json``'s ``deletion``).
    """

    ranking: list[float]
    random_order: list[float]
    random_pixels: list[float]
    auc_ranking: float
    auc_random_order: float
    auc_random_pixels: float
    share: float
    seeds: int
    n_images: int

    def to_dict(self) -> dict:
        return asdict(self)


def concept_masks(maps: torch.Tensor, share: float) -> torch.Tensor:
    """``(N, k, H, W)`` maps -> boolean masks of the ``share`` of each image's pixels where each concept is highest.

    Ties at the threshold are broken by position (``topk``), so every mask holds exactly
    ``round(share * H * W)`` pixels (at least one).
    """
    if maps.ndim != 4:
        raise ValueError(f"`maps` of concept_masks must be (N, k, H, W); got shape {tuple(maps.shape)}.")
    if not 0 < share <= 1:
        raise ValueError(f"`share` of concept_masks must be in (0, 1]; got {share!r}.")
    n, k, h, w = maps.shape
    count = max(1, round(share * h * w))
    flat = maps.reshape(n, k, h * w)
    top = flat.topk(count, dim=2).indices
    masks = torch.zeros_like(flat, dtype=torch.bool).scatter_(2, top, True)
    return masks.reshape(n, k, h, w)


def _auc(curve: Sequence[float]) -> float:
    """Trapezoid area under ``curve`` sampled at x = 0, 1/k, ..., 1."""
    y = np.asarray(curve, dtype=np.float64)
    return float((y[:-1] + y[1:]).sum() / (2 * (len(y) - 1))) if len(y) > 1 else float(y[0])


def deletion_curves(
    split: ModelSplit,
    images: torch.Tensor,
    maps: torch.Tensor,
    order: Sequence[int],
    class_index: int,
    *,
    share: float = 0.1,
    seeds: int = 3,
    batch_size: int = 64,
) -> DeletionCurves:
    """Deletion curves of a concept ranking on ``images``.

    Parameters
    ----------
    split : ModelSplit
        The model (its ``model`` classifies the edited images).
    images : Tensor, shape (N, 3, H, W)
        Images in [0, 1] (the class's evaluation images).
    maps : Tensor, shape (N, k, H, W)
        Concept maps at the images' size (:func:`concepts.concept_maps`).
    order : sequence of int
        The ranking under test: concept ids, most important first (a permutation of ``range(k)``).
    class_index : int
        The class whose probability is followed.
    share : float, default 0.1
        Share of an image's pixels each concept covers.
    seeds : int, default 3
        Random orders and random-pixel draws (seeded 0..seeds-1).
    batch_size : int, default 64
        Images per forward pass.
    """
    if split.model is None:
        raise ValueError("`split` of deletion_curves has no `model`: the edited images go through the whole model.")
    if images.ndim != 4 or maps.ndim != 4 or maps.shape[0] != images.shape[0] or maps.shape[2:] != images.shape[2:]:
        raise ValueError(f"`maps` of deletion_curves must be (N, k, H, W) for `images` (N, 3, H, W); got "
                         f"{tuple(maps.shape)} and {tuple(images.shape)}.")
    k = maps.shape[1]
    if sorted(int(c) for c in order) != list(range(k)):
        raise ValueError(f"`order` of deletion_curves must be a permutation of the {k} concept ids; got {list(order)}.")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"`seeds` of deletion_curves must be an int >= 1; got {seeds!r}.")
    masks = concept_masks(maps, share)  # (N, k, H, W)
    orders = [list(order)] + [np.random.default_rng(s).permutation(k).tolist() for s in range(seeds)]
    n, _, h, w = maps.shape
    edited: list[torch.Tensor] = []
    for index in range(n):
        ranked: list[torch.Tensor] = []
        for o, sequence in enumerate(orders):
            removed = torch.zeros(h, w, dtype=torch.bool)
            steps = [removed.clone()]
            for c in sequence:
                removed |= masks[index, c]
                steps.append(removed.clone())
            edited.extend(steps)
            ranked = steps if o == 0 else ranked
        for s in range(seeds):  # as many pixels as the ranking removed, at random places
            places = torch.randperm(h * w, generator=torch.Generator().manual_seed(s))
            for removed in ranked:
                mask = torch.zeros(h * w, dtype=torch.bool)
                mask[places[: int(removed.sum())]] = True
                edited.append(mask.view(h, w))
    per_image = len(edited) // n
    stacked = torch.stack(edited).view(n, per_image, 1, h, w)
    inputs = torch.where(stacked, torch.full((), GREY), images[:, None].float()).view(-1, 3, h, w)
    probs = split.map_batches(inputs, lambda x: split.model(x).float().softmax(1)[:, class_index],
                              batch_size=batch_size).view(n, per_image)
    mean = probs.mean(0).view(-1, k + 1)  # rows: ranking, the random orders, then the random-pixel draws
    ranking = mean[0].tolist()
    random_order = mean[1 : 1 + seeds].mean(0).tolist()
    random_pixels = mean[1 + seeds :].mean(0).tolist()
    return DeletionCurves(
        ranking=[round(v, 5) for v in ranking],
        random_order=[round(v, 5) for v in random_order],
        random_pixels=[round(v, 5) for v in random_pixels],
        auc_ranking=round(_auc(ranking), 5),
        auc_random_order=round(_auc(random_order), 5),
        auc_random_pixels=round(_auc(random_pixels), 5),
        share=share,
        seeds=seeds,
        n_images=n,
    )
