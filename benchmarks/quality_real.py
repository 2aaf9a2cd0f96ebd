"""MaCo vs Fourier vs pixels on a real ImageNet model (EfficientNet-Lite0), at equal budgets.

For ``--classes`` classes spread evenly over the sample photos in
``../shared/data/imagenet-sample-even/`` (one photo per even class), renders
one logit visualization per class with each method (``Objective.neuron(model,
"classifier", classes)``, same seed, steps, crops and canvas; each method at
its default lr) and reports:

- top-1 / top-5: the model itself classifies the whole canvas (resized to 224);
- plausibility: 1-NN cosine distance in the model's ``global_pool`` features
  (1280-d) to the class's sample photo (one photo per class: a weak
  reference), with baselines: the photo of another class, uniform noise, and a
  flipped 80 % centre crop of the class's own photo (an optimistic floor);
- retrieval against all the sample photos (500 classes): the share of
  visualizations whose nearest photo in that feature space is their class's
  (R@1) or among its 5 nearest (R@5), and the mean distance to the nearest
  photo of any class (how natural, whatever the class);
- the model's own top-1 on the photos.

Writes ``quality_real.md``, ``quality_real.json`` and ``contact_sheet.png``
(first 8 classes; rows MaCo, MaCo alpha-over-white, Fourier, pixels) to
``--out``. The photos themselves are never written.

Usage::

    python benchmarks/quality_real.py --classes 2 --steps 8 --crops 2 --out /tmp/q   # timing probe
    python benchmarks/quality_real.py --classes 12 --steps 64 --crops 4   # the CPU run: ~9 min on 1 shared core
"""
from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.functional import to_tensor

from concepts import split_model
from maco import Objective
from pipelines.evaluate import METHODS, layer_feature_fn, plausibility, retrieval, transferability
from pipelines.io import atomic_write_text, save, to_pil
from pipelines.run.mosaic import alpha_over_white

SHARED = Path(__file__).resolve().parents[2] / "shared"
PHOTOS = SHARED / "data" / "imagenet-sample-even"
MEAN = STD = (0.5, 0.5, 0.5)
INPUT = 224


def command_line(script: str, args: argparse.Namespace) -> str:
    """The full command, every option spelled out (``--out`` left aside), for the results' provenance."""
    parts = [f"python benchmarks/{script}"]
    for key, value in vars(args).items():
        if key != "out":
            values = value if isinstance(value, list) else [value]
            parts.append(f"--{key.replace('_', '-')} " + " ".join(str(v) for v in values))
    return " ".join(parts)


def spread_photos(folder: Path, n_classes: int) -> list[tuple[Path, int, str]]:
    """``n_classes`` photos spread evenly over the folder: ``(path, class index, class name)`` each."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    if not files:
        raise FileNotFoundError(f"no photos in {folder}; see ../shared/data/README.md")
    chosen = [files[i] for i in np.linspace(0, len(files) - 1, min(n_classes, len(files))).round().astype(int)]
    return [(path, int(path.stem.split("_", 2)[0]), path.stem.split("_", 2)[2].replace("_", " ")) for path in chosen]


def tile(image: torch.Tensor | Image.Image, size: int) -> np.ndarray:
    """``(size, size, 3)`` float array in [0, 1] of a ``(3, H, W)`` image or an RGB PIL image (antialiased)."""
    image = to_tensor(image) if isinstance(image, Image.Image) else image
    image = F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True)[0]
    return image.clamp(0, 1).permute(1, 2, 0).numpy()


def load_photos(folder: Path, n_classes: int) -> tuple[list[int], list[str], torch.Tensor]:
    """``n_classes`` photos spread evenly over the folder: class indices, names, ``(n, 3, 224, 224)`` in [0, 1]."""
    classes, names, images = [], [], []
    for path, index, name in spread_photos(folder, n_classes):
        image = Image.open(path).convert("RGB")
        scale = INPUT / min(image.size)
        image = image.resize((max(INPUT, round(image.width * scale)), max(INPUT, round(image.height * scale))),
                             Image.BICUBIC)
        left, top = (image.width - INPUT) // 2, (image.height - INPUT) // 2
        image = image.crop((left, top, left + INPUT, top + INPUT))
        images.append(to_tensor(image))
        classes.append(index)
        names.append(name)
    return classes, names, torch.stack(images)


def contact_sheet(results: dict, n: int = 8, size: int = 96) -> np.ndarray:
    """``(4 * size, n * size, 3)`` uint8 (6 bits used): rows MaCo, MaCo alpha over white, Fourier, pixels."""

    rows = []
    for row in ("maco", "maco_alpha", "fourier", "pixels"):
        method = row.split("_")[0]
        if method not in results:
            continue
        tiles = []
        for t in range(min(n, len(results[method].images))):
            image = results[method].images[t]
            if row == "maco_alpha":
                image = alpha_over_white(image, results[method].alphas[t])
            tiles.append(tile(image, size))
        rows.append(np.concatenate(tiles, axis=1))
    # 6 bits per channel: invisible here, and keeps the PNG under 400 KB
    return np.asarray(to_pil(np.concatenate(rows, axis=0))) & 0xFC


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=12)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--crops", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 is fastest on a shared 2-core CPU: 2 threads oversubscribe)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    command = command_line("quality_real.py", args)
    sys.path.insert(0, str(SHARED / "tools"))
    from real_model import load_efficientnet_lite0

    start = time.perf_counter()
    split = split_model(load_efficientnet_lite0(), mean=MEAN, std=STD, input_size=INPUT, model_id="efficientnet_lite0")
    norm = dict(mean=MEAN, std=STD, input_size=INPUT)
    classes, names, photos = load_photos(PHOTOS, args.classes)
    labels = torch.tensor(classes)
    feature_fn = layer_feature_fn(split, "global_pool")
    refs = {c: f[None] for c, f in zip(classes, feature_fn(photos))}
    all_classes, _, all_photos = load_photos(PHOTOS, 10**6)
    gallery_labels = torch.tensor(all_classes)
    gallery = torch.cat([feature_fn(all_photos[i:i + 50]) for i in range(0, len(all_photos), 50)])
    del all_photos
    results, rows = {}, []
    for method in args.methods:
        t0 = time.perf_counter()
        result = METHODS[method](Objective.neuron(split.model, "classifier", classes), steps=args.steps,
                                 image_size=args.image_size, crops=args.crops, seed=args.seed, progress=False, **norm)
        seconds = time.perf_counter() - t0
        results[method] = result
        transfer = transferability(result.images, labels, split)
        plaus = plausibility(result.images, labels, refs, feature_fn)
        found = retrieval(result.images, labels, gallery, gallery_labels, feature_fn)
        rows.append(dict(method=method, top1=transfer["top1"], top5=transfer["top5"], plausibility=plaus["mean"],
                         r1=found["r1"], r5=found["r5"], nearest_any=found["nearest_any"],
                         final_logit=result.history[-1].mean().item(), seconds=seconds,
                         correct=transfer["correct"], predicted=transfer["predicted"], distance=plaus["distance"],
                         photo_rank=found["rank"]))
        print(f"{method}: top-1 {transfer['top1']:.2f} top-5 {transfer['top5']:.2f} plaus {plaus['mean']:.3f} "
              f"R@1 {found['r1']:.2f} R@5 {found['r5']:.2f} ({seconds:.0f} s)", flush=True)
    other = torch.roll(labels, 1)
    noise = torch.rand(len(classes), 3, INPUT, INPUT, generator=torch.Generator().manual_seed(0))
    flipped = F.interpolate(photos.flip(-1)[:, :, 22:-22, 22:-22], size=INPUT, mode="bilinear", antialias=True)
    photo_transfer = transferability(photos, labels, split)
    flipped_found = retrieval(flipped, labels, gallery, gallery_labels, feature_fn)
    noise_found = retrieval(noise, labels, gallery, gallery_labels, feature_fn)
    baselines = {
        "photo of the class (model accuracy)": dict(top1=photo_transfer["top1"], top5=photo_transfer["top5"]),
        "flipped 80% crop of the class's photo": dict(
            plausibility=plausibility(flipped, labels, refs, feature_fn)["mean"], r1=flipped_found["r1"],
            r5=flipped_found["r5"], nearest_any=flipped_found["nearest_any"]),
        "photo of another class": dict(plausibility=plausibility(photos, other, refs, feature_fn)["mean"]),
        "uniform noise": dict(top1=transferability(noise, labels, split)["top1"],
                              plausibility=plausibility(noise, labels, refs, feature_fn)["mean"],
                              r1=noise_found["r1"], r5=noise_found["r5"], nearest_any=noise_found["nearest_any"]),
    }
    wall = time.perf_counter() - start
    save(contact_sheet(results), args.out / "contact_sheet.png")

    def f(v, d=3):
        return "" if v is None else f"{v:.{d}f}"

    lines = [
        f"### Quality on EfficientNet-Lite0 ({datetime.date.today()}, CPU {platform.machine()}, "
        f"torch {torch.__version__})", "",
        f"`{command}` — {wall:.0f} s wall. {len(classes)} classes (indices {classes}), one logit visualization per "
        f"class and method, {args.steps} steps x {args.crops} crops, {args.image_size} px canvas, seed {args.seed}, "
        f"default crop sizes and noise, each method at its default lr. top-1/top-5: the model itself on the whole "
        f"canvas. Plausibility: 1-NN cosine distance in `global_pool` features to the class's single sample photo "
        f"(lower is better). R@1 / R@5: the class's photo is the nearest / among the 5 nearest of all "
        f"{len(all_classes)} sample photos. Nearest photo: mean distance to the nearest photo of any class.", "",
        "| method | top-1 | top-5 | plausibility | R@1 | R@5 | nearest photo | final logit | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['method']} | {f(r['top1'], 2)} | {f(r['top5'], 2)} | {f(r['plausibility'])} | "
              f"{f(r['r1'], 2)} | {f(r['r5'], 2)} | {f(r['nearest_any'])} | "
              f"{f(r['final_logit'], 1)} | {r['seconds']:.0f} |" for r in rows]
    lines += [f"| {k} | {f(v.get('top1'), 2)} | {f(v.get('top5'), 2)} | {f(v.get('plausibility'))} | "
              f"{f(v.get('r1'), 2)} | {f(v.get('r5'), 2)} | {f(v.get('nearest_any'))} | | |"
              for k, v in baselines.items()]
    text = "\n".join(lines) + "\n"
    print(text)
    atomic_write_text(args.out / "quality_real.md", text)
    save(dict(command=command, wall_seconds=wall, classes=classes, names=names, rows=rows, baselines=baselines,
              contact_sheet_classes=list(zip(classes[:8], names[:8]))), args.out / "quality_real.json")


if __name__ == "__main__":
    main()
