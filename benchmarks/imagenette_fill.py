"""What should a deleted pixel become? Grey, the image's mean or a blur, measured on imagenette-val.

For each class cached by :mod:`imagenette_features`: the class pipeline's bank
(``concepts.NMF`` on the crops, k = 10, exact ranking on the images), its
concept maps on the ``--images`` photos the model is surest of, and the
image-space deletion curves (:func:`pipelines.run.deletion.image_curves`, the class
pipeline's share and seeds) with each fill. Two things are reported per fill:
p(class) once the whole image is filled (a fill must remove the class), and
the deletion areas of the ranking, random orders and random regions of the
same area. A fill that costs the class much where random regions are filled
measures the model's reaction to the fill's artifacts (edges, flat patches),
not the loss of the class's content.

Writes ``imagenette_fill.md`` and ``.json`` into ``--out``.

Usage::

    python benchmarks/imagenette_fill.py --out benchmarks/results
"""
from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from _report import write_report
from imagenette_features import DEFAULT_CACHE, IMAGENETTE, WEIGHTS, cached_classes, efficientnet_lite0, load_class

from concepts import NMF, concept_maps, imagenet_classes, linear_contributions, load_images
from pipelines.run.config import RunConfig
from pipelines.run.deletion import FILLS, _fill, image_curves

PIPELINE = RunConfig()


def class_row(split, wnid: str, args: argparse.Namespace) -> dict:
    data = load_class(args.cache, wnid, args.cached_images, 64)
    index = imagenet_classes().index_of[wnid]
    A, pooled = torch.from_numpy(data["crop_features"]), torch.from_numpy(data["image_features"])
    nmf = NMF(10, random_state=0)
    nmf.fit(A)
    W = torch.as_tensor(nmf.components_).float()
    codes = nmf.transform(pooled).float()
    exact = linear_contributions(pooled, codes, W, split.head_weight[index].detach().float())
    order = np.argsort(-exact.percent.numpy(), kind="stable").tolist()
    probs = split.logits(pooled).softmax(1)[:, index]
    chosen = probs.argsort(descending=True)[: args.images].tolist()
    images = load_images(IMAGENETTE / wnid, image_size=split.input_size, max_images=args.cached_images).images[chosen]
    maps = concept_maps(split, SimpleNamespace(W=W.numpy()), images)
    row = {"wnid": wnid, "class_name": split.categories[index], "fills": {}}
    for fill in FILLS:
        deletion, _ = image_curves(split, images, maps, order, index, share=PIPELINE.deletion_share,
                                   seeds=PIPELINE.deletion_seeds, fill=fill, insertion=False)
        filled = split.map_batches(_fill(images, fill), lambda x: split.model(x).softmax(1)[:, index])
        row["fills"][fill] = {"all_filled": round(float(filled.mean()), 4), "untouched": deletion.ranking[0],
                              "auc": [deletion.auc_ranking, deletion.auc_random_order, deletion.auc_random_regions]}
    return row


def table(rows: list[dict]) -> str:
    lines = ["| fill | p(class) untouched | p(class) all filled | deletion area: ranking | random order | "
             "random regions | ranking beats random regions | random regions' area / untouched p |",
             "|---|---|---|---|---|---|---|---|"]
    for fill in FILLS:
        xs = [r["fills"][fill] for r in rows]
        auc = np.asarray([x["auc"] for x in xs])
        untouched = np.mean([x["untouched"] for x in xs])
        lines.append(f"| {fill} | {untouched:.3f} | {np.mean([x['all_filled'] for x in xs]):.3f} | "
                     f"{auc[:, 0].mean():.3f} | {auc[:, 1].mean():.3f} | {auc[:, 2].mean():.3f} | "
                     f"{int((auc[:, 0] < auc[:, 2]).sum())}/{len(xs)} | {auc[:, 2].mean() / untouched:.3f} |")
    lines += ["", "| class | " + " | ".join(f"{f}: ranking / order / regions (all filled)" for f in FILLS) + " |",
              "|---|" + "---|" * len(FILLS)]
    for r in rows:
        cells = [f"{x['auc'][0]:.3f} / {x['auc'][1]:.3f} / {x['auc'][2]:.3f} ({x['all_filled']:.2f})"
                 for x in (r["fills"][f] for f in FILLS)]
        lines.append(f"| {r['class_name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=3, help="most confident photos per class")
    parser.add_argument("--cached-images", type=int, default=120)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    split = efficientnet_lite0(WEIGHTS)
    rows = []
    for wnid in cached_classes(args.cache, args.cached_images):
        with torch.inference_mode():
            rows.append(class_row(split, wnid, args))
        print(rows[-1], flush=True)
    write_report("imagenette_fill", table(rows), device=torch.device("cpu"),
                 settings={"images": args.images, "share": PIPELINE.deletion_share, "seeds": PIPELINE.deletion_seeds},
                 figures={"classes": rows}, out=args.out)


if __name__ == "__main__":
    main()
