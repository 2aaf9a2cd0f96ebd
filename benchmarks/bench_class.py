"""One ImageNet-sized class end to end, with a per-stage breakdown.

Runs the class pipeline (concepts -> MaCo visualizations -> feature inversions
-> mosaics -> page) on a ResNet50 (random weights are fine for timing) over
``--images`` images at 224 px, reads the per-stage timings (and, on CUDA, peak
memory) that ``class.json`` records, and projects the hours for all 1000
ImageNet classes on 1 and on 8 GPUs (classes shard over ranks, so time divides).

    python benchmarks/bench_class.py --device cuda                          # 300 images, paper settings
    python benchmarks/bench_class.py --device cpu --images 12 --steps 4 --crops 4 --image-size 128 --inversions 2

Images: the shared sample photos if ``--photos`` exists (repeated to reach
``--images``), else random noise images.
"""
from __future__ import annotations

import argparse
import datetime
import json
import tempfile
from pathlib import Path

import torch
import torchvision
from PIL import Image
from torchvision.models import ResNet50_Weights

from concepts import split_model
from maco import RenderSettings
from pipelines import ClassJob, ConceptConfig, RunConfig, run_classes


def write_images(folder: Path, n: int, photos: Path) -> None:
    sources = sorted(photos.glob("*.JPEG")) if photos.is_dir() else []
    if not sources:
        raise SystemExit(f"bench_class: no *.JPEG photos in {photos}; pass --photos DIR (noise images would "
                         "not time a real class).")
    for i in range(n):
        with Image.open(sources[i % len(sources)]) as image:
            image.convert("RGB").save(folder / f"{i:04d}.jpg", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--crops", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--inversions", type=int, default=10)
    parser.add_argument("--photos", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample-even")
    args = parser.parse_args()
    torch.manual_seed(0)
    enum = ResNet50_Weights.IMAGENET1K_V2
    split = split_model(torchvision.models.resnet50().eval(), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                        input_size=224, categories=list(enum.meta["categories"]), model_id="resnet50/random")
    viz = RenderSettings(steps=args.steps, image_size=args.image_size, crops=args.crops, seed=0)
    config = RunConfig(concepts=ConceptConfig(n_concepts=args.k), visualization=viz, inversion=viz,
                       inversions=args.inversions)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        write_images(folder, args.images, args.photos)
        summary = run_classes([ClassJob(class_index=1, class_name="goldfish", folder=folder)], split, config,
                              Path(tmp) / "run", device=args.device, progress=False)
        record = json.loads((Path(tmp) / "run" / "classes" / "0001" / "class.json").read_text())
    total = sum(record["timings"].values())
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    print(f"device: {name}; date: {datetime.date.today()}; {args.images} images, k={args.k}, "
          f"{args.steps} steps x {args.crops} crops at {args.image_size} px, {args.inversions} inversions")
    print("| stage | seconds | peak memory (MB) |")
    print("|---|---|---|")
    for stage in ("load", "concepts", "visualizations", "mosaics", "inversions"):
        print(f"| {stage} | {record['timings'][stage]:.1f} | {record['peak_memory_mb'].get(stage, '-')} |")
    print(f"| **class total** | **{total:.1f}** | |")
    print(f"run wall time (with the gallery): {summary.seconds:.1f} s; projected for 1000 classes: "
          f"{1000 * total / 3600:.1f} h on 1 device, {1000 * total / 3600 / 8:.1f} h on 8")


if __name__ == "__main__":
    main()
