"""Parts, not the class: which bank splits a class's decision into parts? Every candidate, every figure.

For each class cached by :mod:`imagenette_features` (EfficientNet-Lite0, the
first 120 photos of imagenette-val, crops of 64 px and the whole images'
7 x 7 feature-map positions), each candidate bank (k = ``--k``, NMF, HALS,
seed 0) is fitted and scored:

- the decomposition (:mod:`concepts.decomposition`): important concepts (the
  most important for >= 8% of the photos), median top share, decision kept,
  split-half stability, and how many concepts are in every photo alike
  (image spread below :data:`concepts.EVERYWHERE_IMAGE_SPREAD`) or every crop
  alike;
- completeness, the relative NMF error on the crops, the images and the
  positions;
- C-Deletion and C-Insertion against random orders (:func:`concepts.concept_fidelity`);
- image deletion and insertion (:func:`pipelines.run.deletion.image_curves`, blur, 10% of the pixels a
  concept) on the ``--check-images`` most confident photos, against random orders and random regions, the
  concepts in every photo or crop alike left out as the class run leaves them out;
- seconds: the fit and the codes (the features are cached; the forward passes a candidate needs are counted
  in the table's last column: 16 crops + 1 image per photo, or 1 image only).

Candidates: ``crops`` (CRAFT), ``crops+images`` (the default before), ``positions``, ``crops+positions``
(:data:`concepts.FIT_ON`); ``centred`` (the class's mean feature moved into the bias, Semi-NMF on the rest);
``face`` (FACE's prediction-preserving NMF: from the crops+images fit, U and W refined by projected Adam on the
reconstruction error plus ``--face-weight`` x KL between the head's predictions on the real and the rebuilt
image features); ``crop-importance`` (crops+images, each photo's contributions the mean of its crops').

Usage::

    python benchmarks/imagenette_features.py                 # once: the cached features (about 17 min on 2 cores)
    python benchmarks/imagenette_decomposition.py --out benchmarks/results
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from _report import write_report
from imagenette_features import DEFAULT_CACHE, IMAGENETTE, WEIGHTS, cached_classes, efficientnet_lite0, load_features

from concepts import (EVERYWHERE_IMAGE_SPREAD, EVERYWHERE_SPREAD, ClassFeatures, SemiNMF, concept_fidelity, factorize,
                      imagenet_classes, linear_contributions, load_images, nnls_codes, percent_of_logit)
from concepts.bank import coefficient_spread
from concepts.decomposition import (IMPORTANT_SHARE, decision_kept, important_concepts, matched_cosine,
                                    median_top_share)
from pipelines.run.deletion import image_curves


@dataclass
class Fit:
    """A candidate's bank on a class: directions, crop and image codes, what the head reads, and maps."""

    W: torch.Tensor
    U: torch.Tensor
    codes: torch.Tensor
    features: torch.Tensor  # what the rebuilt features are compared with (centred for ``centred``)
    bias: float
    position_codes: torch.Tensor  # (N, P, k): the maps on the 7 x 7 grid
    signed: bool = False
    per_image: torch.Tensor | None = None  # contributions, when not the exact ones of the images' codes


def _position_codes(features: ClassFeatures, W: torch.Tensor, signed: bool, offset: torch.Tensor | None = None
                    ) -> torch.Tensor:
    rows = features.positions.flatten(0, 1)
    if offset is not None:
        rows = rows - offset
    return nnls_codes(rows, W, solver="hals", signed=signed).reshape(len(features.images), -1, len(W))


def product(fit_on: str) -> Callable[[ClassFeatures, int, object, int], Fit]:
    def fit(features: ClassFeatures, k: int, split, index: int) -> Fit:
        W, U, codes = factorize(features, k, fit_on=fit_on)
        return Fit(W, U, codes, features.images, float(split.head_bias[index]), _position_codes(features, W, False))
    return fit


def centred(features: ClassFeatures, k: int, split, index: int) -> Fit:
    mean = features.images.mean(0)
    weight = split.head_weight[index].detach().float()
    rows = torch.cat([features.crops, features.images]) - mean
    nmf = SemiNMF(k, random_state=0)
    U = nmf.fit_transform(rows)[: len(features.crops)].float()
    W = torch.as_tensor(nmf.components_).float()
    codes = nmf.transform(features.images - mean).float()
    return Fit(W, U, codes, features.images - mean, float(split.head_bias[index]) + float(mean @ weight),
               _position_codes(features, W, True, mean), signed=True)


def face(features: ClassFeatures, k: int, split, index: int, *, weight: float, steps: int = 150) -> Fit:
    """FACE: the reconstruction plus a KL term that keeps the head's predictions on the rebuilt image features."""
    W0, U0, codes0 = factorize(features, k, fit_on="crops+images")
    rows = torch.cat([features.crops, features.images])
    scale = float(rows.pow(2).mean())
    n = len(features.crops)
    with torch.no_grad():
        target = split.h(features.images).log_softmax(1)
    U = torch.cat([U0, codes0]).clone().requires_grad_(True)
    W = W0.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([U, W], lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        rebuilt = U @ W
        loss = (rebuilt - rows).pow(2).mean() / scale
        predicted = split.h(rebuilt[n:]).log_softmax(1)
        loss = loss + weight * F.kl_div(predicted, target, log_target=True, reduction="batchmean")
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            U.clamp_(min=0)
            W.clamp_(min=0)
    W = W.detach()
    return Fit(W, U.detach()[:n], U.detach()[n:], features.images, float(split.head_bias[index]),
               _position_codes(features, W, False))


def crop_importance(features: ClassFeatures, k: int, split, index: int) -> Fit:
    fit = product("crops+images")(features, k, split, index)
    weight = split.head_weight[index].detach().float()
    per_crop = fit.U * (fit.W @ weight)  # (n, k): each crop's exact contributions
    sums = torch.zeros(len(features.images), k).index_add_(0, features.image_index, per_crop)
    counts = torch.bincount(features.image_index, minlength=len(features.images)).clamp_min(1)[:, None]
    fit.per_image = sums / counts
    return fit


def candidates(args: argparse.Namespace) -> dict[str, Callable]:
    return {"crops": product("crops"), "crops+images": product("crops+images"), "positions": product("positions"),
            "crops+positions": product("crops+positions"), "centred": centred,
            "face": lambda f, k, s, i: face(f, k, s, i, weight=args.face_weight),
            "crop-importance": crop_importance}


def _contributions(fit: Fit, split, index: int) -> torch.Tensor:
    weight = split.head_weight[index].detach().float()
    return linear_contributions(fit.features, fit.codes, fit.W, weight, fit.bias)


def _relative(A: torch.Tensor, U: torch.Tensor, W: torch.Tensor) -> float:
    return round(float((A - U @ W).norm() / A.norm()), 4)


def score(name: str, make: Callable, features: ClassFeatures, split, index: int, photos: torch.Tensor,
          args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    fit = make(features, args.k, split, index)
    seconds = time.perf_counter() - start
    exact = _contributions(fit, split, index)
    per_image = exact.contributions if fit.per_image is None else fit.per_image
    order = np.argsort(-percent_of_logit(per_image).numpy(), kind="stable").tolist()
    halves = []
    for first in (0, 1):
        half = features.subset(torch.arange(first, len(features.images), 2))
        half_fit = make(half, args.k, split, index)
        carried = _contributions(half_fit, split, index).contributions if half_fit.per_image is None \
            else half_fit.per_image
        halves.append((half_fit.W.numpy(), percent_of_logit(carried).numpy()))
    stability = matched_cosine(halves[0][0], halves[1][0], halves[0][1], halves[1][1])
    crop_spread = coefficient_spread(fit.U.numpy())
    image_spread = coefficient_spread(fit.codes.numpy())
    with np.errstate(invalid="ignore"):
        everywhere_images = image_spread < EVERYWHERE_IMAGE_SPREAD
        everywhere = (crop_spread < EVERYWHERE_SPREAD) | everywhere_images
    kept, kept_of = _centred_kept(fit, features, split, index) if name == "centred" else \
        decision_kept(split, features.images, fit.codes, fit.W, index)
    # the head reads the real features: what a concept's removal leaves is the residual (and the mean, centred)
    fidelity = concept_fidelity(features.images, fit.codes, fit.W, split.h, index, order, per_image, seeds=8)
    row = {
        "important_concepts": important_concepts(per_image.numpy()),
        "median_top_share": round(median_top_share(per_image.numpy()), 4),
        "decision_kept": None if kept is None else round(kept, 4), "decision_images": kept_of,
        "stability": round(stability, 4),
        "everywhere_photo": int(everywhere_images.sum()), "everywhere": int(everywhere.sum()),
        "image_spread": [round(float(v), 3) if np.isfinite(v) else None for v in image_spread],  # None: unused
        # centred: the mean is in the bias, so the logit above it averages 0 over the class: no completeness
        "completeness": None if name == "centred" else round(exact.completeness, 4),
        "error_crops": _relative(features.crops, fit.U, fit.W),
        "error_images": _relative(fit.features, fit.codes, fit.W),
        "c_deletion": round(fidelity.c_deletion.auc_ranking, 4),
        "c_deletion_random": round(fidelity.c_deletion.auc_random_order, 4),
        "c_insertion": round(fidelity.c_insertion.auc_ranking, 4),
        "c_insertion_random": round(fidelity.c_insertion.auc_random_order, 4),
        "seconds_fit": round(seconds, 2),
        "forward_passes_per_photo": 1 if name == "positions" else 17,
    }
    located = [c for c in range(args.k) if not everywhere[c]]
    if args.check_images and located:
        with torch.no_grad():
            probabilities = split.logits(features.images).softmax(1)[:, index]
        chosen = probabilities.argsort(descending=True)[: args.check_images]
        grid = fit.position_codes[chosen].clamp_min(0).reshape(len(chosen), *features.grid, -1).permute(0, 3, 1, 2)
        maps = F.interpolate(grid, size=photos.shape[-2:], mode="bilinear", align_corners=False).clamp_min(0)
        start = time.perf_counter()
        deletion, insertion = image_curves(split, photos[chosen], maps[:, located],
                                           [located.index(c) for c in order if c in located], index,
                                           seeds=args.check_seeds)
        row.update(deletion=deletion.auc_ranking, deletion_random_order=deletion.auc_random_order,
                   deletion_random_regions=deletion.auc_random_regions, insertion=insertion.auc_ranking,
                   insertion_random_order=insertion.auc_random_order,
                   insertion_random_regions=insertion.auc_random_regions,
                   seconds_photo_checks=round(time.perf_counter() - start, 1))
    return row


def _centred_kept(fit: Fit, features: ClassFeatures, split, index: int) -> tuple[float | None, int]:
    """Decision kept with the mean put back: the rebuilt features are ``mean + codes @ W``."""
    mean = features.images.mean(0)
    with torch.no_grad():
        real = split.h(features.images).argmax(1)
        rebuilt = split.h(mean + fit.codes @ fit.W).argmax(1)
    chosen = real == index
    n = int(chosen.sum())
    return (float((rebuilt[chosen] == index).float().mean()) if n else None), n


TARGETS = {  # the "done when": (figure, test, classes of 10 that must pass)
    "important_concepts": (lambda v: v >= 3, 8), "median_top_share": (lambda v: v <= 0.6, 8),
    "completeness": (lambda v: v is not None and v >= 0.85, 10),
    "decision_kept": (lambda v: v is not None and v >= 0.9, 8),
}


def _beats(row: dict, check: str) -> bool:
    """Deletion below both randoms, insertion above both."""
    randoms = (row[f"{check}_random_order"], row[f"{check}_random_regions"])
    return row[check] < min(randoms) if check == "deletion" else row[check] > max(randoms)


def _two(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def table(rows: list[dict], names: list[str]) -> str:
    head = ("| candidate | important >= 3 | median top share <= 0.6 | completeness >= 0.85 | decision kept >= 0.9 | "
            "stability (median) | in every photo alike | C-Del < random | C-Ins > random | deletion < both randoms | "
            "insertion > both randoms | crop error | image error | fit s | passes / photo |")
    lines = [head, "|---" * 15 + "|"]
    for name in names:
        r = [row[name] for row in rows]
        passed = [sum(bool(test(x[key])) for x in r) for key, (test, _) in TARGETS.items()]
        checks = [x for x in r if "deletion" in x]
        lines.append(
            f"| {name} | " + " | ".join(f"{p}/{len(r)}" for p in passed)
            + f" | {np.median([x['stability'] for x in r]):.3f}"
            + f" | {sum(x['everywhere_photo'] for x in r)}"
            + f" | {sum(x['c_deletion'] < x['c_deletion_random'] for x in r)}/{len(r)}"
            + f" | {sum(x['c_insertion'] > x['c_insertion_random'] for x in r)}/{len(r)}"
            + f" | {sum(_beats(x, 'deletion') for x in checks)}/{len(checks)}"
            + f" | {sum(_beats(x, 'insertion') for x in checks)}/{len(checks)}"
            + f" | {np.mean([x['error_crops'] for x in r]):.3f} | {np.mean([x['error_images'] for x in r]):.3f}"
            + f" | {np.mean([x['seconds_fit'] for x in r]):.1f} | {r[0]['forward_passes_per_photo']} |")
    lines += ["", "Per class (important concepts / median top share / completeness / decision kept / stability):", "",
              "| class | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for row in rows:
        cells = [f"{row[n]['important_concepts']} / {row[n]['median_top_share']:.2f} / "
                 f"{_two(row[n]['completeness'])} / {_two(row[n]['decision_kept'])} / {row[n]['stability']:.2f}"
                 for n in names]
        lines.append(f"| {row['class_name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--check-images", type=int, default=6, help="photos of the image-space checks (0: none)")
    parser.add_argument("--check-seeds", type=int, default=3)
    parser.add_argument("--face-weight", type=float, default=1.0)
    parser.add_argument("--candidates", nargs="+", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    split = efficientnet_lite0(WEIGHTS)
    split.model.eval().requires_grad_(False)
    names = args.candidates or list(candidates(args))
    makers = candidates(args)
    rows = []
    for wnid in cached_classes(args.cache, args.images):
        features = load_features(args.cache, wnid, args.images)
        photos = load_images(IMAGENETTE / wnid, image_size=224, max_images=args.images).images
        index = imagenet_classes().index_of[wnid]
        row = {"wnid": wnid, "class_index": index, "class_name": split.categories[index]}
        for name in names:
            row[name] = score(name, makers[name], features, split, index, photos, args)
            print(row["class_name"], name, json.dumps(row[name]), flush=True)
        rows.append(row)
    text = table(rows, names)
    print(text)
    if args.out is not None:
        write_report("imagenette_decomposition", text, device=torch.device("cpu"),
                     settings={"images": args.images, "k": args.k, "check_images": args.check_images,
                               "check_seeds": args.check_seeds, "face_weight": args.face_weight,
                               "important_share": IMPORTANT_SHARE}, figures={"classes": rows}, out=args.out)


if __name__ == "__main__":
    main()
