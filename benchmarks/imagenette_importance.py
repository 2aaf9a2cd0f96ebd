"""Which importance, measured where? The Holistic paper's protocol on imagenette-val with EfficientNet-Lite0.

For each class cached by :mod:`imagenette_features` (120 photos, 1920 crops of
64 px): the bank is fitted on the crops (``concepts.NMF``, k = ``--k``, the
class pipeline's defaults), the whole images get their codes, and six rankings
are made: the exact share of the logit, gradient x input and CRAFT's Sobol
total index, each measured on the whole images and on the crops
(:func:`concepts.extract.extract_concepts`'s ``importance`` and
``importance_on``). Each ranking is scored by concept-space fidelity on the
class's whole images (:func:`concepts.concept_fidelity`: C-Deletion and
C-Insertion areas against random orders, C-μFidelity with the method's
per-image importances). Also per class: the relative NMF error on the crops and
on the images, and the *completeness* (the concepts' summed exact contributions
over the class logit above the head's bias, mean over images).

Writes ``imagenette_importance.md`` and ``.json`` into ``--out`` (``imagenette_importance_crops_images.*``
with ``--fit-on crops+images``: the bank fitted on the crops and the whole images).

Usage::

    python benchmarks/imagenette_features.py       # once: the cached features (about 20 min on 2 cores)
    python benchmarks/imagenette_importance.py --out benchmarks/results
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _report import write_report
from imagenette_features import DEFAULT_CACHE, WEIGHTS, cached_classes, efficientnet_lite0, load_class

from concepts import NMF, concept_fidelity, imagenet_classes, linear_contributions, sobol_total_indices
from concepts import FIT_ON
from concepts.extract import IMPORTANCE_ON, IMPORTANCES, _ranking_importance

VARIANTS = [(method, on) for method in IMPORTANCES for on in IMPORTANCE_ON]


def class_rows(split, wnid: str, args: argparse.Namespace) -> dict:
    data = load_class(args.cache, wnid, args.images, 64)
    index = imagenet_classes().index_of[wnid]
    A, pooled = torch.from_numpy(data["crop_features"]), torch.from_numpy(data["image_features"])
    nmf = NMF(args.k, random_state=0)
    U = nmf.fit_transform(A if args.fit_on == "crops" else torch.cat([A, pooled]))[: len(A)]
    W = torch.as_tensor(nmf.components_).float()
    codes = nmf.transform(pooled).float()
    weight, bias = split.head_weight[index].detach().float(), float(split.head_bias[index])
    exact = linear_contributions(pooled, codes, W, weight, bias)
    image_error = float((pooled - codes @ W).norm() / pooled.norm())
    completeness = float(exact.contributions.sum(1).mean() / (exact.logits - bias).mean())
    sobol_per_image = sobol_total_indices(codes, W, split.h, index, seed=0).numpy()
    crop_error = float((A - U @ W).norm() / A.norm())
    row = {"wnid": wnid, "class_index": index, "class_name": split.categories[index],
           "crop_error": round(crop_error, 4), "image_error": round(image_error, 4),
           "completeness": round(completeness, 4), "variants": {}}
    for method, on in VARIANTS:
        start = time.perf_counter()
        per_image, scores = _ranking_importance(method, on, split, index, exact.contributions, pooled, codes, W,
                                                crops=(A, U.float()), sobol_per_image=sobol_per_image, designs=32,
                                                batch_size=64, seed=0, device=torch.device("cpu"))
        seconds = time.perf_counter() - start
        order = np.argsort(-scores.numpy(), kind="stable").tolist()
        fid = concept_fidelity(pooled, codes, W, split.h, index, order, per_image)
        row["variants"][f"{method}@{on}"] = {
            "order": order, "seconds": round(seconds, 2),
            "c_deletion": [fid.c_deletion.auc_ranking, fid.c_deletion.auc_random_order],
            "c_insertion": [fid.c_insertion.auc_ranking, fid.c_insertion.auc_random_order],
            "c_mufidelity": fid.c_mufidelity}
    return row


def table(rows: list[dict]) -> str:
    lines = ["| class | crop err | image err | completeness |"
             + "".join(f" {v} C-Del / C-Ins / μF |" for v in ("exact@images", "sobol@images", "exact@crops")),
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = []
        for v in ("exact@images", "sobol@images", "exact@crops"):
            x = r["variants"][v]
            cells.append(f" {x['c_deletion'][0]:.3f} / {x['c_insertion'][0]:.3f} / {x['c_mufidelity']:.2f} |")
        rnd = r["variants"]["exact@images"]
        lines.append(f"| {r['class_name']} | {r['crop_error']:.3f} | {r['image_error']:.3f} | "
                     f"{r['completeness']:.2f} |" + "".join(cells)
                     + f" random order {rnd['c_deletion'][1]:.3f} / {rnd['c_insertion'][1]:.3f}")
    lines += ["", "| ranking | C-Del area (mean) | beats random order | C-Ins area (mean) | beats random order | "
              "C-μFidelity (mean) | seconds per class |", "|---|---|---|---|---|---|---|"]
    for method, on in VARIANTS:
        v = f"{method}@{on}"
        xs = [r["variants"][v] for r in rows]
        lines.append(
            f"| {method} on {on} | {np.mean([x['c_deletion'][0] for x in xs]):.4f} | "
            f"{sum(x['c_deletion'][0] < x['c_deletion'][1] for x in xs)}/{len(xs)} | "
            f"{np.mean([x['c_insertion'][0] for x in xs]):.4f} | "
            f"{sum(x['c_insertion'][0] > x['c_insertion'][1] for x in xs)}/{len(xs)} | "
            f"{np.nanmean([x['c_mufidelity'] for x in xs]):.3f} | {np.mean([x['seconds'] for x in xs]):.2f} |")
    rnd = [r["variants"]["exact@images"] for r in rows]
    lines.append(f"| random order | {np.mean([x['c_deletion'][1] for x in rnd]):.4f} | | "
                 f"{np.mean([x['c_insertion'][1] for x in rnd]):.4f} | | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--fit-on", choices=FIT_ON, default="crops", help="the rows the NMF factorises")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    split = efficientnet_lite0(WEIGHTS)
    rows = []
    for wnid in cached_classes(args.cache, args.images):
        rows.append(class_rows(split, wnid, args))
        print(rows[-1]["class_name"], {v: x["c_deletion"] + x["c_insertion"] + [x["c_mufidelity"]]
                                       for v, x in rows[-1]["variants"].items()}, flush=True)
    part = "imagenette_importance" + ("" if args.fit_on == "crops" else "_crops_images")
    write_report(part, table(rows), device=torch.device("cpu"),
                 settings={"fit_on": args.fit_on, "k": args.k, "images": args.images, "patch_size": 64,
                           "model": "efficientnet_lite0"},
                 figures={"classes": rows}, out=args.out)


if __name__ == "__main__":
    main()
