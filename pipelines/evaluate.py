"""Quality metrics of DESIGN.md section 6: transferability, plausibility, concept purity.

Notation: ``T`` visualizations (targets), ``M`` reference images of a class,
``D`` feature dimension, ``N`` images with ground-truth part masks, ``P``
parts, ``n_c`` top patches of concept ``c``. Images are ``(., 3, H, W)`` RGB
in [0, 1]; every model receives them resized to its ``input_size`` and
normalised with its own ``mean``/``std``.

- :func:`transferability`: share of visualizations that a model (ideally an
  independently trained one) classifies as their target class.
- :func:`plausibility`: cosine distance (``1 - cos``) in a model's feature
  space from each visualization to its nearest real image of the same class
  (1-nearest-neighbour); lower is more plausible.
- :func:`retrieval`: where the real image of each visualization's class
  ranks among real images of many classes in that feature space (for a
  reference set with one image per class, such as the ImageNet sample photos).
- :func:`concept_purity`: how much the top patches of a concept show one
  ground-truth part (demo world).

The metrics work on any model; the experiment that applies them all to the
demo world is :func:`pipelines.demo.experiment.evaluate_demo`. Nothing here
writes files.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from concepts import ModelSplit
from maco import fourier, maco, pixels, resolve_layer

from .run.inversion import layer_features

__all__ = [
    "METHODS",
    "concept_purity",
    "layer_feature_fn",
    "plausibility",
    "reference_features",
    "retrieval",
    "transferability",
]

METHODS: dict[str, Callable] = {"maco": maco, "fourier": fourier, "pixels": pixels}
FeatureFn = Callable[[torch.Tensor], torch.Tensor]


def _check_images(images, name: str, where: str) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3 or len(images) == 0:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"`{name}` of {where} must be a tensor (n, 3, H, W) in [0, 1] with n >= 1; got {got}.")


def _check_labels(images, labels, where: str) -> torch.Tensor:
    """Check ``images`` and return ``labels`` as a long tensor with one entry per image."""
    _check_images(images, "images", where)
    labels = torch.as_tensor(labels, dtype=torch.long).flatten()
    if len(labels) != len(images):
        raise ValueError(f"`labels` of {where} must have one entry per image ({len(images)}); got {len(labels)}.")
    return labels


def transferability(
    images: torch.Tensor,
    labels: torch.Tensor | Sequence[int],
    split: ModelSplit,
    *,
    batch_size: int = 32,
) -> dict:
    """Share of images that the split's model classifies as their label (whole canvas, resized).

    Parameters
    ----------
    images : Tensor, shape (T, 3, H, W)
        Visualizations (or real images) in [0, 1].
    labels : Tensor or sequence of int, shape (T,)
        Target class of each image.
    split : ModelSplit
        The classifier (``split.model``) with its own preprocessing.

    Returns
    -------
    dict
        ``top1`` (float), ``top5`` (float, only with >= 5 classes), ``correct``
        and ``top5_correct`` (list of bool per target), ``predicted`` (list of int).
    """
    labels = _check_labels(images, labels, "transferability")
    if split.model is None:
        raise ValueError("`split` of transferability has no `model`; build it with split_model(model, ...).")
    logits = split.map_batches(images, split.model, batch_size=batch_size)
    predicted = logits.argmax(1)
    correct = predicted == labels
    out = {"top1": correct.float().mean().item(), "correct": correct.tolist(), "predicted": predicted.tolist()}
    if logits.shape[1] >= 5:
        top5 = (logits.topk(5, dim=1).indices == labels[:, None]).any(1)
        out.update(top5=top5.float().mean().item(), top5_correct=top5.tolist())
    return out


def layer_feature_fn(split: ModelSplit, layer: str | None = None, *, batch_size: int = 32) -> FeatureFn:
    """A feature function ``(n, 3, H, W) in [0, 1] -> (n, D)``: ``layer``'s output, flattened, no gradients.

    Built on :func:`pipelines.run.inversion.layer_features`; the default layer is
    the split's pooled layer (``avgpool``, ``global_pool``), the right one for
    plausibility.
    """
    name = resolve_layer(split.model, layer) if layer is not None else None

    def features(images: torch.Tensor) -> torch.Tensor:
        _check_images(images, "images", "layer_feature_fn")
        return layer_features(split, images, name, batch_size=batch_size)

    return features


def reference_features(references: Mapping[int, torch.Tensor], feature_fn: FeatureFn) -> dict[int, torch.Tensor]:
    """Features ``(M, D)`` of each class's reference images ``(M, 3, H, W)``, computed once."""
    return {int(c): feature_fn(images) for c, images in references.items()}


def plausibility(
    images: torch.Tensor,
    labels: torch.Tensor | Sequence[int],
    references: Mapping[int, torch.Tensor],
    feature_fn: FeatureFn,
) -> dict:
    """1-nearest-neighbour cosine distance from each image to the real images of its class (lower is better).

    Parameters
    ----------
    images : Tensor, shape (T, 3, H, W)
        Visualizations in [0, 1].
    labels : Tensor or sequence of int, shape (T,)
        Class of each image; every label must be a key of ``references``.
    references : mapping class -> Tensor
        Real images ``(M, 3, H, W)`` of each class, or their features ``(M, D)``
        (from :func:`reference_features`, to compute them once).
    feature_fn : callable
        ``(n, 3, H, W) -> (n, D)``, e.g. from :func:`layer_feature_fn`.

    Returns
    -------
    dict
        ``distance`` (list of float per target, ``1 - cos`` in [0, 2]),
        ``nearest`` (index of the nearest reference) and ``mean``.
    """
    labels = _check_labels(images, labels, "plausibility")
    references = {int(c): ref for c, ref in references.items()}
    missing = sorted(set(labels.tolist()) - set(references))
    if missing:
        raise ValueError(
            f"`references` of plausibility must hold real images of every label; missing classes "
            f"{missing}. Pass references[c] = images (M, 3, H, W) of class c."
        )
    feats = F.normalize(feature_fn(images).float(), dim=1)
    distance, nearest = [], []
    for f, c in zip(feats, labels.tolist()):
        ref = references[c] if references[c].ndim == 2 else feature_fn(references[c])
        cos = F.normalize(ref.float(), dim=1) @ f
        distance.append(1.0 - cos.max().item())
        nearest.append(int(cos.argmax()))
    return {"distance": distance, "nearest": nearest, "mean": float(np.mean(distance))}


def retrieval(
    images: torch.Tensor,
    labels: torch.Tensor | Sequence[int],
    gallery: torch.Tensor,
    gallery_labels: torch.Tensor | Sequence[int],
    feature_fn: FeatureFn,
) -> dict:
    """Rank of each image's class among real images of many classes, by cosine similarity in features.

    Parameters
    ----------
    images : Tensor, shape (T, 3, H, W)
        Visualizations in [0, 1].
    labels : Tensor or sequence of int, shape (T,)
        Class of each image; each must occur in ``gallery_labels``.
    gallery : Tensor, shape (G, D)
        Features of the real images (from ``feature_fn``, computed once).
    gallery_labels : Tensor or sequence of int, shape (G,)
        Class of each real image.
    feature_fn : callable
        ``(n, 3, H, W) -> (n, D)``.

    Returns
    -------
    dict
        ``rank`` (per image: 1 + the number of real images of *other* classes
        more similar than the most similar one of its class), ``r1`` and ``r5``
        (share of ranks <= 1 and <= 5) and ``nearest_any`` (mean ``1 - cos`` to
        the nearest real image of any class).
    """
    labels = _check_labels(images, labels, "retrieval")
    gallery_labels = torch.as_tensor(gallery_labels, dtype=torch.long).flatten()
    if gallery.ndim != 2 or len(gallery) != len(gallery_labels):
        raise ValueError(
            f"`gallery` of retrieval must be features (G, D) with one entry of `gallery_labels` each; got "
            f"{tuple(gallery.shape)} and {len(gallery_labels)} labels."
        )
    missing = sorted(set(labels.tolist()) - set(gallery_labels.tolist()))
    if missing:
        raise ValueError(f"`gallery_labels` of retrieval must include every label; missing classes {missing}.")
    sims = F.normalize(feature_fn(images).float(), dim=1) @ F.normalize(gallery.float(), dim=1).T
    same = gallery_labels[None] == labels[:, None]
    own = sims.masked_fill(~same, -2.0).max(1).values
    rank = ((sims > own[:, None]) & ~same).sum(1) + 1
    return {
        "rank": rank.tolist(),
        "r1": (rank <= 1).float().mean().item(),
        "r5": (rank <= 5).float().mean().item(),
        "nearest_any": (1 - sims.max(1).values).mean().item(),
    }


def concept_purity(
    boxes: Sequence,
    image_index: Sequence,
    masks: torch.Tensor | np.ndarray,
    part_names: Sequence[str],
    *,
    min_coverage: float = 0.1,
) -> dict:
    """How much each concept's top patches show one ground-truth part.

    A patch's dominant part is the part with the largest mask area inside its
    box, or ``"background"`` when the parts together cover less than
    ``min_coverage`` of the box. A concept's purity is the share of its top
    patches whose dominant part is the concept's most common one.

    Parameters
    ----------
    boxes : sequence of array-like, one per concept, each shape (n_c, 4)
        ``x0, y0, x1, y1`` (pixels, exclusive end) of the concept's top patches.
    image_index : sequence of array-like, one per concept, each shape (n_c,)
        Index into ``masks`` of each patch's source image.
    masks : Tensor or ndarray, shape (N, P, H, W), bool
        Ground-truth part masks; channel ``p`` is ``part_names[p]``.
    part_names : sequence of str, length P

    Returns
    -------
    dict
        ``mean`` (over concepts with at least one patch; NaN if none),
        ``per_concept`` (float or None), ``labels`` (most common part per
        concept, or None), ``dominant`` (dominant part of every patch).
    """
    masks = torch.as_tensor(np.asarray(masks) if not isinstance(masks, torch.Tensor) else masks).bool()
    if masks.ndim != 4 or masks.shape[1] != len(part_names):
        raise ValueError(
            f"`masks` of concept_purity must have shape (N, P={len(part_names)}, H, W); got {tuple(masks.shape)}."
        )
    if len(boxes) != len(image_index):
        raise ValueError(
            f"`boxes` and `image_index` of concept_purity must both hold one entry per concept; "
            f"got {len(boxes)} and {len(image_index)}."
        )
    per_concept, labels, dominant = [], [], []
    for concept_boxes, concept_images in zip(boxes, image_index):
        concept_boxes = np.asarray(concept_boxes, dtype=np.int64).reshape(-1, 4)
        concept_images = np.asarray(concept_images, dtype=np.int64).reshape(-1)
        if len(concept_boxes) != len(concept_images):
            raise ValueError(
                f"concept_purity needs one image index per box; got {len(concept_boxes)} boxes and "
                f"{len(concept_images)} indices for one concept."
            )
        parts = [
            _dominant_part(masks[i], box, part_names, min_coverage) for box, i in zip(concept_boxes, concept_images)
        ]
        dominant.append(parts)
        if not parts:
            per_concept.append(None)
            labels.append(None)
            continue
        label, count = Counter(parts).most_common(1)[0]
        per_concept.append(count / len(parts))
        labels.append(label)
    scored = [p for p in per_concept if p is not None]
    return {
        "mean": float(np.mean(scored)) if scored else float("nan"),
        "per_concept": per_concept,
        "labels": labels,
        "dominant": dominant,
    }


def _dominant_part(mask: torch.Tensor, box: np.ndarray, part_names: Sequence[str], min_coverage: float) -> str:
    """``mask`` (P, H, W) -> the part with most area in ``box``, or "background"."""
    x0, y0, x1, y1 = (int(v) for v in box)
    window = mask[:, max(y0, 0) : y1, max(x0, 0) : x1]
    area = max(window.shape[1] * window.shape[2], 1)
    if window.any(0).sum().item() < min_coverage * area:
        return "background"
    return part_names[int(window.flatten(1).sum(1).argmax())]


def __getattr__(name: str) -> object:
    """Temporary: ``evaluate_demo`` moved to :mod:`pipelines.demo.experiment`.

    It stays importable from here until ``pipelines/__init__`` imports it from there; it is loaded lazily because
    that module imports this one.
    """
    if name == "evaluate_demo":
        from pipelines.demo.experiment import evaluate_demo

        return evaluate_demo
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
