"""Does centring a ViT's features on a baseline before Semi-NMF remove the LayerNorm-offset concept?

On the demo ViT, one Semi-NMF concept per class is about 4x longer than the others (the final LayerNorm's shift,
shared by every token) and concepts of opposite sign cancel (flag: +231 / -168% of the logit). The hypothesis
noted in BENCHMARKS.md: factorize ``A - b`` instead of ``A`` (Semi-NMF has no intercept) and count ``w . b`` in the
bias. This fits the demo's banks (the demo's images, crops, k = 5, crops+images, Semi-NMF) for three baselines and
checks each against the world's ground-truth parts, as ``demo_pages.py`` does for the pages:

- ``none``: the product's bank (no centring);
- ``gray``: the pooled features of a uniform mid-gray image (needs no other class);
- ``data-mean``: the mean feature over the crops and images of all six classes.

Per class: completeness, relative error of the centred rows, % of the logit by rank, the cancellation
``sum |%| / |sum %|`` (1: no concept against another), the concepts >= 15% and their parts (purity of the top 10
crops, one per image), and whether two of them sit on different parts.

Usage::

    python benchmarks/vit_centring.py
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from concepts import SemiNMF, class_features, extract_features, linear_contributions
from concepts.bank import top_crops
from pipelines.demo import CLASS_NAMES, DEMO_INPUT_SIZE, PART_NAMES, DemoWorld
from pipelines.demo.run import DEMO_CONFIG, DEMO_IMAGES_PER_CLASS, DEMO_IMAGES_SEED
from pipelines.evaluate import concept_purity
from pipelines.models import demo_model

IMPORTANT_PCT = 15.0  # as demo_pages.py
TOP_CROPS = 10


def class_row(split, features, masks, class_index: int, baseline: torch.Tensor, k: int) -> dict:
    rows = torch.cat([features.crops, features.images]).float() - baseline
    nmf = SemiNMF(k, random_state=0)
    fitted = nmf.fit_transform(rows).float()
    U = fitted[: len(features.crops)]
    W = torch.as_tensor(nmf.components_).float()
    pooled = features.images.float() - baseline
    codes = nmf.transform(pooled).float()
    weight = split.head_weight[class_index].detach().float()
    bias = float(split.head_bias[class_index]) + float(weight @ baseline)
    imp = linear_contributions(pooled, codes, W, weight, bias)
    pct = imp.percent.numpy()
    top = top_crops(U.numpy(), features.image_index.numpy(), TOP_CROPS)
    purity = concept_purity([features.boxes[t].numpy() for t in top], [features.image_index[t].numpy() for t in top],
                            masks, PART_NAMES)
    important = [j for j in np.argsort(-pct) if pct[j] >= IMPORTANT_PCT]
    parts = [purity["labels"][j] for j in important]
    error = float((rows - fitted @ W).norm() / rows.norm())
    return {"class": CLASS_NAMES[class_index], "completeness": imp.completeness, "error": error,
            "pct": np.sort(pct)[::-1], "cancel": float(np.abs(pct).sum() / max(abs(pct.sum()), 1e-9)),
            "important": [(parts[i], purity["per_concept"][j]) for i, j in enumerate(important)],
            "different_parts": len(set(parts) - {"background"}) >= 2,
            "longest": float(W.norm(dim=1).max() / W.norm(dim=1).median())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=DEMO_CONFIG.concepts.n_concepts)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    split, world = demo_model("vit"), DemoWorld(DEMO_INPUT_SIZE)
    patch = DEMO_CONFIG.concepts.patch_size
    data = []
    for c in range(len(CLASS_NAMES)):
        raw, masks = world.sample(c, DEMO_IMAGES_PER_CLASS, seed=DEMO_IMAGES_SEED)
        images = torch.from_numpy(raw).permute(0, 3, 1, 2).float().div_(255)
        data.append((class_features(split, images, patch_size=patch, progress=False), masks))
    gray = torch.full((1, 3, DEMO_INPUT_SIZE, DEMO_INPUT_SIZE), 0.5)
    baselines = {
        "none": torch.zeros(split.head_weight.shape[1]),
        "gray": extract_features(split, gray, pooled=True)[0].float(),
        "data-mean": torch.cat([torch.cat([f.crops, f.images]) for f, _ in data]).float().mean(0),
    }
    print("| baseline | class | completeness | rel. error | % of logit by rank | cancellation | longest / median "
          "concept | concepts >= 15%: part (purity) | two parts |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, baseline in baselines.items():
        rows = [class_row(split, f, masks, c, baseline, args.k) for c, (f, masks) in enumerate(data)]
        for r in rows:
            parts = ", ".join(f"{part} ({purity:.1f})" for part, purity in r["important"])
            print(f"| {name} | {r['class']} | {r['completeness']:.2f} | {r['error']:.3f} | "
                  f"{', '.join(str(int(round(p))) for p in r['pct'])} | {r['cancel']:.1f} | {r['longest']:.1f} | "
                  f"{parts} | {'yes' if r['different_parts'] else 'no'} |")
        print(f"| {name} | **classes with two parts** | | | | mean {np.mean([r['cancel'] for r in rows]):.1f} | | | "
              f"**{sum(r['different_parts'] for r in rows)} / {len(rows)}** |")


if __name__ == "__main__":
    main()
