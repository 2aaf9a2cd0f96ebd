"""How much each concept's coefficient varies over the crops (``ConceptBank.coefficient_spread``), by model.

A part of an object is strong in some crops and absent from others; a concept in every crop at about the same
strength (spread below ``concepts.EVERYWHERE_SPREAD``) is what all the features share, and the class page says
so. Prints each bank's spreads, lowest first, for the demo CNN (NMF) and the demo ViT (Semi-NMF) on the demo's
images (k = 5), and, where ``imagenette_features.py --images 40`` cached them, for the offline EfficientNet-Lite0
on imagenette-val (k = 10) with NMF (its default: the features are non-negative) and with Semi-NMF.

Usage::

    python benchmarks/imagenette_features.py --images 40   # optional: the real model's features
    python benchmarks/coefficient_spread.py
"""
from __future__ import annotations

import numpy as np
import torch
from imagenette_features import DEFAULT_CACHE, cached_classes, load_features

from concepts import EVERYWHERE_SPREAD, FACTORIZATIONS, extract_concepts
from concepts.bank import coefficient_spread
from concepts.n_concepts import factorize
from pipelines.demo import CLASS_NAMES, DEMO_INPUT_SIZE, DemoWorld
from pipelines.demo.run import DEMO_CONFIG, DEMO_IMAGES_PER_CLASS, DEMO_IMAGES_SEED
from pipelines.models import demo_model


def row(model: str, factorization: str, name: str, values: np.ndarray) -> str:
    low = int((values < EVERYWHERE_SPREAD).sum())
    return f"| {model} | {factorization} | {name} | {', '.join(f'{v:.2f}' for v in np.sort(values))} | {low} |"


def main() -> None:
    torch.set_num_threads(1)
    print(f"| model | factorization | class | spread of each concept, lowest first | below {EVERYWHERE_SPREAD} |")
    print("|---|---|---|---|---|")
    world = DemoWorld(DEMO_INPUT_SIZE)
    for arch, model in (("a", "demo CNN"), ("vit", "demo ViT")):
        split = demo_model(arch)
        for c, name in enumerate(CLASS_NAMES):
            raw, _ = world.sample(c, DEMO_IMAGES_PER_CLASS, seed=DEMO_IMAGES_SEED)
            images = torch.from_numpy(raw).permute(0, 3, 1, 2).float().div_(255)
            bank = extract_concepts(split, images, c, n_concepts=DEMO_CONFIG.concepts.n_concepts, sobol_designs=0,
                                    patch_size=DEMO_CONFIG.concepts.patch_size, progress=False)
            print(row(model, bank.factorization, name, bank.coefficient_spread))
    for factorization in FACTORIZATIONS:
        for wnid in cached_classes(DEFAULT_CACHE, 40):
            _, U, _ = factorize(load_features(DEFAULT_CACHE, wnid, 40), 10, fit_on="crops+images",
                                factorization=factorization)
            print(row("EfficientNet-Lite0", factorization, wnid, coefficient_spread(U.numpy())))


if __name__ == "__main__":
    main()
