"""The demo-world experiment: MaCo, Fourier and pixels scored with every metric of :mod:`pipelines.evaluate`.

Every method renders one logit visualization per demo class on demo model
``a``; the independently trained model ``b`` scores them (transferability,
plausibility), next to real-image, noise and other-class baselines, and the
concepts extracted on ``a`` are scored against the world's ground-truth part
masks (concept purity). It lives beside the demo because it needs the demo's
world and models, while :mod:`pipelines.evaluate` holds the metrics, which
work on any model. ``benchmarks/quality_demo.py`` runs it and writes the
tables; nothing here writes files.
"""

from __future__ import annotations

import logging
import time
from typing import Sequence

import numpy as np
import torch

from concepts import ModelSplit, extract_concepts
from maco import Objective

from ..evaluate import (METHODS, FeatureFn, concept_purity, layer_feature_fn, plausibility, reference_features,
                        transferability)
from ..models import demo_model
from .model import DEMO_INPUT_SIZE
from .parts import CLASS_NAMES, PART_NAMES
from .world import DemoWorld

_logger = logging.getLogger(__name__)

__all__ = ["evaluate_demo"]


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
    model_a, model_b = demo_model("a"), demo_model("b")
    norm = dict(mean=model_a.mean, std=model_a.std, input_size=model_a.input_size)
    classes = list(range(len(CLASS_NAMES)))
    world = DemoWorld(image_size=DEMO_INPUT_SIZE)
    ref_images, ref_labels, _ = world.dataset(n_reference, seed=data_seed)
    held_images, held_labels, _ = world.dataset(n_heldout, seed=data_seed + 1)
    feature_fn = layer_feature_fn(model_b)
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
                Objective.neuron(model_a.model, "fc", classes),
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
        transfer = transferability(images, labels, model_b)
        plaus = plausibility(images, labels, refs, feature_fn)
        out["methods"][name] = {
            "top1": transfer["top1"],
            "top5": transfer.get("top5"),
            "self_top1": transferability(images, labels, model_a)["top1"],
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
        held_images, held_labels, refs, feature_fn, model_b, len(classes), len(seeds), image_size
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
    model_b: ModelSplit,
    n_classes: int,
    n_seeds: int,
    image_size: int,
) -> dict:
    """Real held-out images, uniform noise and other-class images, scored like the visualizations."""
    transfer = transferability(held_images, held_labels, model_b)
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
            "top1": transferability(noise_images, noise_labels, model_b)["top1"],
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
    split = demo_model("a")
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
