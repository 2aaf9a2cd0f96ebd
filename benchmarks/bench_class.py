"""One ImageNet-sized class end to end, with a per-stage breakdown.

Runs the class pipeline (concepts -> MaCo visualizations -> feature inversions -> mosaics -> page) on a ResNet50
(random weights are fine for timing) over ``--images`` photos at 224 px, reads the per-stage timings (and, on
CUDA, peak memory) that ``class.json`` records, and projects the hours for all 1000 ImageNet classes on 1 and on
8 GPUs (classes shard over ranks, so time divides). The inversions use the pipeline's own settings (crop area
``N(0.8, 0.1)``), so the work is that of a real run.

    python benchmarks/bench_class.py --device cuda --out benchmarks/results/gpu     # 300 photos, paper settings
    python benchmarks/bench_class.py --device cpu --images 12 --steps 4 --crops 4 --image-size 128 --inversions 2

Images: the shared sample photos (``--photos``, repeated to reach ``--images``); the script stops with an error
when there are none, since noise images would not time a real class. ``--model demo`` runs the embedded demo
model on one class of its own world instead (a quick CPU check of the script, not an ImageNet-sized timing).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
import torchvision
from _report import write_report
from PIL import Image
from torchvision.models import ResNet50_Weights

from concepts import ModelSplit, split_model
from maco import RenderSettings
from pipelines import ClassJob, RunConfig, run_classes
from pipelines.run.config import INVERSION_CROP_SIZE
from pipelines.demo.run import DEMO_CONFIG, demo_jobs
from pipelines.models import demo_model

STAGES = ("load", "concepts", "visualizations", "mosaics", "inversions")


def write_images(folder: Path, n: int, photos: Path) -> None:
    sources = sorted(photos.glob("*.JPEG")) if photos.is_dir() else []
    if not sources:
        raise SystemExit(f"bench_class: no *.JPEG photos in {photos}; pass --photos DIR (noise images would "
                         "not time a real class), or --model demo for a check of the script.")
    folder.mkdir(parents=True)
    for i in range(n):
        with Image.open(sources[i % len(sources)]) as image:
            image.convert("RGB").save(folder / f"{i:04d}.jpg", quality=90)


def resnet50_class(args: argparse.Namespace, root: Path) -> tuple[ClassJob, ModelSplit, RunConfig]:
    """A goldfish-labelled class of ``--images`` sample photos, a random-weight ResNet50, ImageNet settings."""
    folder = root / "images"
    write_images(folder, args.images, args.photos)
    torch.manual_seed(0)
    split = split_model(torchvision.models.resnet50().eval(), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                        input_size=224, categories=list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"]),
                        model_id="resnet50/random")
    return ClassJob(class_index=1, class_name="goldfish", folder=folder), split, RunConfig()


def demo_class(args: argparse.Namespace, root: Path) -> tuple[ClassJob, ModelSplit, RunConfig]:
    """The demo world's first class (``--images`` images), the demo model, the demo settings."""
    return demo_jobs(root / "images", n_per_class=args.images)[0], demo_model(), DEMO_CONFIG


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", choices=["resnet50", "demo"], default="resnet50")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--crops", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--inversions", type=int, default=10)
    parser.add_argument("--photos", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample-even")
    parser.add_argument("--out", type=Path, default=None, help="also write class.md and class.json into this folder")
    args = parser.parse_args()
    viz = RenderSettings(steps=args.steps, image_size=args.image_size, crops=args.crops, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        job, split, base = (resnet50_class if args.model == "resnet50" else demo_class)(args, Path(tmp))
        config = replace(base, concepts=replace(base.concepts, n_concepts=args.k), visualization=viz,
                         inversion=replace(viz, crop_size=INVERSION_CROP_SIZE), inversions=args.inversions)
        summary = run_classes([job], split, config, Path(tmp) / "run", device=args.device, progress=False)
        record = json.loads((Path(tmp) / "run" / "classes" / f"{job.class_index:04d}" / "class.json").read_text())
    if summary.failed:
        raise SystemExit(f"bench_class: the class failed: {summary.failed}")
    timings, peaks = record["timings"], record["peak_memory_mb"]
    total = sum(timings[stage] for stage in STAGES)
    hours = 1000 * total / 3600
    table = "\n".join([
        f"{args.model}: {record['n_images']} images, k={args.k}, {args.steps} steps x {args.crops} crops at "
        f"{args.image_size} px, {args.inversions} inversions",
        "",
        "| stage | seconds | peak memory (MB) |",
        "|---|---|---|",
        *(f"| {stage} | {timings[stage]:.1f} | {peaks.get(stage, '-')} |" for stage in STAGES),
        f"| **class total** | **{total:.1f}** | |",
        "",
        f"run wall time (with the gallery): {summary.seconds:.1f} s; projected for 1000 classes: {hours:.1f} h on 1 "
        f"device, {hours / 8:.1f} h on 8",
    ])
    figures = dict(seconds={stage: timings[stage] for stage in STAGES}, peak_memory_mb=peaks, class_seconds=total,
                   run_seconds=summary.seconds, n_images=record["n_images"], n_crops=record["n_crops"],
                   projected_hours_1_device=hours, projected_hours_8_devices=hours / 8)
    write_report("class", table, device=torch.device(args.device), settings=vars(args), figures=figures, out=args.out)


if __name__ == "__main__":
    main()
