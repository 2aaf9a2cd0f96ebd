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
- :func:`evaluate_demo`: all of it for MaCo, Fourier and pixels on the demo
  world (models ``a`` -> ``b``), with real-image, noise and other-class
  baselines. Nothing here writes files.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from concepts import extract_concepts, split_model
from maco import Objective, fourier, maco, pixels, resolve_layer
from pipelines.demo import CLASS_NAMES, DEMO_INPUT_SIZE, DEMO_MEAN, DEMO_STD, PART_NAMES, DemoWorld, load_demo_model
from pipelines.inversion import layer_features

_logger = logging.getLogger(__name__)

__all__ = [
    "METHODS",
    "concept_purity",
    "evaluate_demo",
    "layer_feature_fn",
    "plausibility",
    "reference_features",
    "retrieval",
    "transferability",
]

METHODS: dict[str, Callable] = {"maco": maco, "fourier": fourier, "pixels": pixels}
FeatureFn = Callable[[torch.Tensor], torch.Tensor]


def _prepare(images: torch.Tensor, mean: Sequence[float], std: Sequence[float], input_size: int) -> torch.Tensor:
    """Resize ``(n, 3, H, W)`` to ``input_size`` (antialiased) and normalise."""
    x = images.float()
    if x.shape[-2:] != (input_size, input_size):
        x = F.interpolate(x, size=(input_size, input_size), mode="bilinear", antialias=True, align_corners=False)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


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
    model: nn.Module,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    input_size: int,
    batch_size: int = 32,
) -> dict:
    """Share of images that ``model`` classifies as their label (whole canvas, resized).

    Parameters
    ----------
    images : Tensor, shape (T, 3, H, W)
        Visualizations (or real images) in [0, 1].
    labels : Tensor or sequence of int, shape (T,)
        Target class of each image.
    model : nn.Module
        Classifier taking normalised ``(n, 3, input_size, input_size)`` input.

    Returns
    -------
    dict
        ``top1`` (float), ``top5`` (float, only with >= 5 classes), ``correct``
        and ``top5_correct`` (list of bool per target), ``predicted`` (list of int).
    """
    labels = _check_labels(images, labels, "transferability")
    device = next(model.parameters()).device
    with torch.no_grad():
        logits = torch.cat(
            [
                model(_prepare(chunk.to(device), mean, std, input_size)).float().cpu()
                for chunk in images.split(batch_size)
            ]
        )
    predicted = logits.argmax(1)
    correct = predicted == labels
    out = {"top1": correct.float().mean().item(), "correct": correct.tolist(), "predicted": predicted.tolist()}
    if logits.shape[1] >= 5:
        top5 = (logits.topk(5, dim=1).indices == labels[:, None]).any(1)
        out.update(top5=top5.float().mean().item(), top5_correct=top5.tolist())
    return out


def layer_feature_fn(
    model: nn.Module, layer: str, *, mean: Sequence[float], std: Sequence[float], input_size: int, batch_size: int = 32
) -> FeatureFn:
    """A feature function ``(n, 3, H, W) in [0, 1] -> (n, D)``: ``layer``'s output, flattened, no gradients.

    Built on :func:`pipelines.inversion.layer_features`; use a pooled layer
    (``avgpool``, ``global_pool``) for plausibility.
    """
    name = resolve_layer(model, layer)

    def features(images: torch.Tensor) -> torch.Tensor:
        _check_images(images, "images", "layer_feature_fn")
        with torch.no_grad():
            return layer_features(
                model, name, images, input_size=input_size, mean=tuple(mean), std=tuple(std), batch_size=batch_size
            ).cpu()

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


def evaluate_demo(
    *,
    steps: int = 64,
    image_size: int = 128,
    crops: int = 8,
    seeds: Sequence[int] = (0,),
    crop_size: tuple[float, float] = (0.25, 0.1),
    noise: float = 0.1,
    methods: Sequence[str] = ("maco", "fourier", "pixels"),
    n_reference: int = 20,
    n_heldout: int = 10,
    data_seed: int = 1000,
    compute_purity: bool = True,
    purity_result: dict | None = None,
    n_concepts: int = 5,
    n_concept_images: int = 40,
    top_patches: int = 10,
    patch_size: int = 64,
    progress: bool = False,
) -> dict:
    """Transferability, plausibility and concept purity on the demo world.

    Every method renders one logit visualization per demo class on model
    ``a`` (``Objective.neuron(a, "fc", classes)``) for each seed, with the same
    seeds and budgets (each method keeps its own default learning rate).
    Transferability is scored by the independently trained model ``b``,
    plausibility with ``b``'s pooled features (``avgpool``) against
    ``n_reference`` real images per class. Baselines: ``n_heldout`` real
    held-out images per class (``real``), uniform noise (``noise``) and real
    images scored against another class's references (``other_class``).

    Parameters
    ----------
    steps, image_size, crops, crop_size, noise
        Rendering budget, shared by every method (see :func:`maco.maco`).
    seeds : sequence of int
        One batch of ``len(CLASS_NAMES)`` visualizations per seed.
    methods : sequence of {"maco", "fourier", "pixels"}
    n_reference, n_heldout, data_seed
        Real demo images per class for the references and the real baseline.
    compute_purity : bool
        Extract concepts of every class on model ``a`` (``concepts`` package,
        ``n_concepts``, ``patch_size`` on ``n_concept_images`` images, top
        ``top_patches`` patches per concept) and score their purity.
    purity_result : dict, optional
        Concept purity computed elsewhere; reported as is (no extraction).

    Returns
    -------
    dict
        ``config``; ``methods[name]`` with ``top1``, ``top5``, ``self_top1``
        (model ``a``), ``plausibility``, ``final_score``, ``per_target``,
        ``seconds`` and ``images`` (``(S * 6, 3, H, W)``, seed-major);
        ``baselines`` ``real`` / ``noise`` / ``other_class``; ``concept_purity``
        (dict or None).
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"`methods` of evaluate_demo must be a non-empty subset of {tuple(METHODS)}; got {methods!r}.")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("`seeds` of evaluate_demo must hold at least one seed; got an empty sequence.")
    norm = dict(mean=DEMO_MEAN, std=DEMO_STD, input_size=DEMO_INPUT_SIZE)
    model_a, model_b = load_demo_model("a"), load_demo_model("b")
    classes = list(range(len(CLASS_NAMES)))
    world = DemoWorld(image_size=DEMO_INPUT_SIZE)
    ref_images, ref_labels, _ = world.dataset(n_reference, seed=data_seed)
    held_images, held_labels, _ = world.dataset(n_heldout, seed=data_seed + 1)
    feature_fn = layer_feature_fn(model_b, "avgpool", **norm)
    refs = reference_features({c: ref_images[ref_labels == c] for c in classes}, feature_fn)

    out: dict = {
        "config": dict(
            steps=steps,
            image_size=image_size,
            crops=crops,
            seeds=seeds,
            crop_size=list(crop_size),
            noise=noise,
            n_reference=n_reference,
            n_heldout=n_heldout,
            data_seed=data_seed,
            scorer="demo model b",
            renderer="demo model a",
            feature_layer="b.avgpool",
        ),
        "methods": {},
    }
    for name in methods:
        start, images, history = time.perf_counter(), [], []
        for seed in seeds:
            result = METHODS[name](
                Objective.neuron(model_a, "fc", classes),
                steps=steps,
                image_size=image_size,
                crops=crops,
                crop_size=crop_size,
                noise=noise,
                seed=seed,
                progress=progress,
                **norm,
            )
            images.append(result.images)
            history.append(result.history[-1])
        images, labels = torch.cat(images), torch.tensor(classes * len(seeds))
        transfer = transferability(images, labels, model_b, **norm)
        plaus = plausibility(images, labels, refs, feature_fn)
        out["methods"][name] = {
            "top1": transfer["top1"],
            "top5": transfer.get("top5"),
            "self_top1": transferability(images, labels, model_a, **norm)["top1"],
            "plausibility": plaus["mean"],
            "final_score": torch.cat(history).mean().item(),
            "per_target": [
                dict(seed=seeds[i // len(classes)], target=int(t), correct=ok, predicted=p, distance=d)
                for i, (t, ok, p, d) in enumerate(
                    zip(labels.tolist(), transfer["correct"], transfer["predicted"], plaus["distance"])
                )
            ],
            "seconds": time.perf_counter() - start,
            "images": images,
        }
        _logger.info("%s: top-1 %.2f, plausibility %.3f", name, transfer["top1"], plaus["mean"])
    out["baselines"] = _demo_baselines(
        held_images, held_labels, refs, feature_fn, model_b, norm, len(classes), len(seeds), image_size
    )
    if purity_result is not None:
        out["concept_purity"] = purity_result
    elif compute_purity:
        out["concept_purity"] = _demo_purity(
            world,
            n_concepts=n_concepts,
            n_images=n_concept_images,
            top_patches=top_patches,
            patch_size=patch_size,
            seed=data_seed + 2,
        )
    else:
        out["concept_purity"] = None
    return out


def _demo_baselines(
    held_images: torch.Tensor,
    held_labels: torch.Tensor,
    refs: dict,
    feature_fn: FeatureFn,
    model_b: nn.Module,
    norm: dict,
    n_classes: int,
    n_seeds: int,
    image_size: int,
) -> dict:
    """Real held-out images, uniform noise and other-class images, scored like the visualizations."""
    transfer = transferability(held_images, held_labels, model_b, **norm)
    generator = torch.Generator().manual_seed(0)
    noise_labels = torch.arange(n_classes).repeat(n_seeds)
    noise_images = torch.rand(len(noise_labels), 3, image_size, image_size, generator=generator)
    return {
        "real": {
            "top1": transfer["top1"],
            "top5": transfer.get("top5"),
            "plausibility": plausibility(held_images, held_labels, refs, feature_fn)["mean"],
        },
        "noise": {
            "top1": transferability(noise_images, noise_labels, model_b, **norm)["top1"],
            "plausibility": plausibility(noise_images, noise_labels, refs, feature_fn)["mean"],
        },
        "other_class": {
            "plausibility": plausibility(held_images, (held_labels + 1) % n_classes, refs, feature_fn)["mean"]
        },
    }


def _demo_purity(
    world: DemoWorld, *, n_concepts: int, n_images: int, top_patches: int, patch_size: int, seed: int
) -> dict:
    """Concepts of every demo class on model ``a``; purity of their top patches, and a random-patch baseline."""
    split = split_model(
        load_demo_model("a"),
        mean=DEMO_MEAN,
        std=DEMO_STD,
        input_size=DEMO_INPUT_SIZE,
        categories=list(CLASS_NAMES),
        model_id="demo-a",
    )
    rng = np.random.default_rng(seed)
    per_class, chance = {}, []
    for c, name in enumerate(CLASS_NAMES):
        raw, masks = world.sample(c, n_images, seed=seed)
        images = torch.from_numpy(raw).permute(0, 3, 1, 2).float().div(255)
        bank = extract_concepts(
            split,
            images,
            c,
            n_concepts=n_concepts,
            patch_size=patch_size,
            sobol_designs=0,
            random_state=0,
            progress=False,
        )
        top = bank.top_crops(top_patches)
        result = concept_purity(
            [bank.crop_boxes[t] for t in top], [bank.crop_image_index[t] for t in top], masks, PART_NAMES
        )
        shuffled = [rng.choice(len(bank.crop_boxes), size=len(t), replace=False) for t in top]
        chance.append(
            concept_purity(
                [bank.crop_boxes[t] for t in shuffled], [bank.crop_image_index[t] for t in shuffled], masks, PART_NAMES
            )["mean"]
        )
        per_class[name] = {
            "mean": result["mean"],
            "per_concept": result["per_concept"],
            "labels": result["labels"],
            "importance_pct": [round(float(p), 1) for p in bank.importance_pct],
        }
    return {
        "mean": float(np.mean([v["mean"] for v in per_class.values()])),
        "random_patches": float(np.mean(chance)),
        "per_class": per_class,
        "config": dict(
            n_concepts=n_concepts,
            n_images=n_images,
            top_patches=top_patches,
            patch_size=patch_size,
            image_size=DEMO_INPUT_SIZE,
            model="demo model a",
            seed=seed,
        ),
    }
