"""Image-space deletion and insertion curves: does the ranking find *where* the class is?

A causal check of a concept ranking on the photos themselves. Each concept
``c`` of an image covers the ``share`` of its pixels where the concept's map
is highest. Concepts are taken one at a time, cumulatively:

- **deletion**: their pixels are replaced by :data:`FILL` (see below) and the
  class probability falls; lower area = the ranking removes what matters first;
- **insertion** (RISE's insertion metric): from a blurred copy of the image
  (:func:`blurred`) their pixels are put back and the probability rises;
  higher area is better.

Three orders are compared, each with the same edit on the same image:

- ``ranking``: the concept ranking under test (most important first);
- ``random_order``: the same concepts in random orders (``seeds`` of them);
- ``random_regions``: after each step, as many pixels as the ranking's step
  covered, as contiguous blobs at random places (the top pixels of a smooth
  random field: a random map on the model's feature grid, upsampled like a
  concept map), so the baseline edits as much as the ranking and in the same
  kind of shape. Scattered random pixels would test the model's tolerance of
  noise instead (a few thousand scattered grey pixels take EfficientNet-Lite0's
  gibbon from p = 0.77 to 0.05).

The area under a curve uses x = share of concepts taken, in [0, 1]. All edited
images of one image go through the model together, batched by
:meth:`concepts.ModelSplit.map_batches`: ``2 (1 + 2 seeds)(k + 1)`` forward
passes per image.

**What a deleted pixel becomes** (:data:`FILL`): the blurred image, the same
picture insertion starts from, so deletion and insertion edit between the same
two images. Measured on imagenette-val with EfficientNet-Lite0 (BENCHMARKS.md,
"What a deleted pixel becomes"; 10 classes, 3 photos each): filling the whole
photo removes the class with each of grey, the image mean and blur (p <= 0.002),
and blur separates the ranking most from both baselines (deletion area 0.405
vs 0.472 random order and 0.490 random regions; grey 0.448 / 0.509 / 0.523,
mean 0.412 / 0.459 / 0.464). Grey is the fill whose random regions cost the class
least, and beats random regions in 9 classes of 10 where blur does in 8.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur

from concepts import ModelSplit, curve_area

__all__ = ["FILL", "FILLS", "ImageCurves", "blurred", "concept_masks", "image_curves", "random_region_masks"]

FILLS = ("blur", "grey", "mean")
FILL = "blur"  # what a deleted pixel becomes (see the module docstring)
GREY = 0.5  # the "grey" fill (images are in [0, 1])
REGION_GRID = 7  # side of the random field behind random regions: the feature grid of a 224 px CNN


@dataclass
class ImageCurves:
    """Mean class probability after taking 0..k concepts, per order, and the areas under the curves.

    Curves are lists of ``k + 1`` floats; areas use the trapezoid rule over x = 0, 1/k, ..., 1. Stored as is
    in the class record (``class.json``'s ``deletion`` and ``insertion``).
    """

    ranking: list[float]
    random_order: list[float]
    random_regions: list[float]
    auc_ranking: float
    auc_random_order: float
    auc_random_regions: float
    share: float
    seeds: int
    n_images: int
    fill: str
    # ranks (0-based) of the concepts not taken: in every crop alike, they have no region to remove or put back
    left_out: list[int] = field(default_factory=list)

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


def random_region_masks(counts: Sequence[int], height: int, width: int, seed: int) -> torch.Tensor:
    """``(len(counts), H, W)`` nested masks of exactly ``counts[j]`` pixels each, in contiguous random blobs.

    The top pixels of one smooth random field (uniform noise on a :data:`REGION_GRID` grid, upsampled
    bilinearly, with a faint pixel noise to break ties), so each mask contains the previous one.
    """
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 1, REGION_GRID, REGION_GRID, generator=gen)
    field = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    field = field + 1e-4 * torch.rand(height, width, generator=gen)
    ranked = field.flatten().argsort(descending=True)
    masks = torch.zeros(len(counts), height * width, dtype=torch.bool)
    for j, count in enumerate(counts):
        masks[j, ranked[: int(count)]] = True
    return masks.view(len(counts), height, width)


def blurred(images: torch.Tensor) -> torch.Tensor:
    """A Gaussian blur of sigma = side / 16 (14 px at 224): the class's shapes are gone, its colours stay."""
    sigma = max(images.shape[-1], images.shape[-2]) / 16
    kernel = 2 * math.ceil(3 * sigma) + 1
    return gaussian_blur(images.float(), [kernel, kernel], [sigma, sigma])


def _fill(images: torch.Tensor, fill: str) -> torch.Tensor:
    if fill == "blur":
        return blurred(images)
    if fill == "grey":
        return torch.full_like(images, GREY)
    return images.mean((2, 3), keepdim=True).expand_as(images).clone()


def _step_masks(masks: torch.Tensor, orders: list[list[int]], seeds: int) -> torch.Tensor:
    """One image's ``((1 + 2 seeds)(k + 1), H, W)`` masks: the orders' cumulative unions, then random regions."""
    k, h, w = masks.shape
    steps = []
    for sequence in orders:
        taken = torch.zeros(h, w, dtype=torch.bool)
        steps.append(taken.clone())
        for c in sequence:
            taken |= masks[c]
            steps.append(taken.clone())
    counts = [int(m.sum()) for m in steps[: k + 1]]  # the ranking's area at each step
    steps.extend(random_region_masks(counts, h, w, seed=s)[j] for s in range(seeds) for j in range(k + 1))
    return torch.stack(steps)


def _curves(mean: torch.Tensor, k: int, seeds: int, **meta) -> ImageCurves:
    """``mean ((1 + 2 seeds) * (k + 1),)``: rows ranking, random orders, random regions."""
    rows = mean.view(-1, k + 1)
    ranking, random_order, random_regions = rows[0].tolist(), rows[1:1 + seeds].mean(0).tolist(), \
        rows[1 + seeds:].mean(0).tolist()
    return ImageCurves(
        ranking=[round(v, 5) for v in ranking],
        random_order=[round(v, 5) for v in random_order],
        random_regions=[round(v, 5) for v in random_regions],
        auc_ranking=round(curve_area(ranking), 5),
        auc_random_order=round(curve_area(random_order), 5),
        auc_random_regions=round(curve_area(random_regions), 5),
        seeds=seeds,
        **meta,
    )


def image_curves(
    split: ModelSplit,
    images: torch.Tensor,
    maps: torch.Tensor,
    order: Sequence[int],
    class_index: int,
    *,
    share: float = 0.1,
    seeds: int = 3,
    fill: str = FILL,
    insertion: bool = True,
    batch_size: int = 64,
) -> tuple[ImageCurves, ImageCurves | None]:
    """Deletion and insertion curves of a concept ranking on ``images``.

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
        Random orders and random-region draws (seeded 0..seeds-1).
    fill : {"blur", "grey", "mean"}, default :data:`FILL`
        What a deleted pixel becomes. Insertion always starts from the blurred image.
    insertion : bool, default True
        Also the insertion curves (twice the forward passes); None in their place otherwise.
    batch_size : int, default 64
        Images per forward pass.

    Returns
    -------
    (deletion, insertion) : ImageCurves, and ImageCurves or None
    """
    if split.model is None:
        raise ValueError("`split` of image_curves has no `model`: the edited images go through the whole model.")
    if images.ndim != 4 or maps.ndim != 4 or maps.shape[0] != images.shape[0] or maps.shape[2:] != images.shape[2:]:
        raise ValueError(f"`maps` of image_curves must be (N, k, H, W) for `images` (N, 3, H, W); got "
                         f"{tuple(maps.shape)} and {tuple(images.shape)}.")
    k = maps.shape[1]
    if sorted(int(c) for c in order) != list(range(k)):
        raise ValueError(f"`order` of image_curves must be a permutation of the {k} concept ids; got {list(order)}.")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"`seeds` of image_curves must be an int >= 1; got {seeds!r}.")
    if fill not in FILLS:
        raise ValueError(f"`fill` of image_curves must be one of {', '.join(FILLS)}; got {fill!r}.")
    masks = concept_masks(maps, share)  # (N, k, H, W)
    orders = [[int(c) for c in order]] + [np.random.default_rng(s).permutation(k).tolist() for s in range(seeds)]
    images = images.float()
    starts = blurred(images)  # insertion's start, and deletion's fill when the fill is blur
    filled = starts if fill == "blur" else _fill(images, fill)
    deleted, inserted = [], []
    for index in range(len(images)):
        steps = _step_masks(masks[index], orders, seeds)[:, None]  # (M, 1, H, W)
        image = images[index][None]
        edited = torch.where(steps, filled[index][None], image)
        if insertion:
            edited = torch.cat([edited, torch.where(steps, image, starts[index][None])])
        probs = split.map_batches(edited, lambda x: split.model(x).float().softmax(1)[:, class_index],
                                  batch_size=batch_size)
        deleted.append(probs[: len(steps)])
        inserted.append(probs[len(steps):])
    meta = {"share": share, "n_images": len(images)}
    return (_curves(torch.stack(deleted).mean(0), k, seeds, fill=fill, **meta),
            _curves(torch.stack(inserted).mean(0), k, seeds, fill="blur", **meta) if insertion else None)
