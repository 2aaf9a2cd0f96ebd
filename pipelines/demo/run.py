"""``concept-lens demo``: every stage on the embedded demo world, offline, on a CPU.

The demo world's images are written as class folders under ``<out>/images``
(deterministic, so a rerun rewrites identical files), then the ordinary
class pipeline runs on them with the shipped demo network and budgets scaled
to a laptop CPU.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import torch.distributed as dist

from maco import RenderSettings

from ..run.config import INVERSION_CROP_SIZE, ConceptConfig, RunConfig
from . import CLASS_NAMES, DEMO_INPUT_SIZE, DemoWorld
from ..run.jobs import ClassJob
from ..models import demo_model
from ..run.classes import RunSummary, distributed_context, run_classes, run_folder_lock

__all__ = ["DEMO_ARCHS", "DEMO_CONFIG", "DEMO_IMAGES_PER_CLASS", "DEMO_IMAGES_SEED", "demo_jobs", "run_demo"]

DEMO_IMAGES_PER_CLASS = 40
DEMO_ARCHS = ("cnn", "vit")  # the shipped demo networks to explain: DemoNet "a" and DemoViT "vit"
DEMO_IMAGES_SEED = 2026  # not a training seed: these images are new to the model
_VIZ = RenderSettings(steps=64, image_size=256, crops=8, seed=0)
DEMO_CONFIG = RunConfig(
    concepts=ConceptConfig(n_concepts=5, patch_size=DEMO_INPUT_SIZE // 2, sobol_designs=32),
    visualization=_VIZ,
    inversion=replace(_VIZ, crop_size=INVERSION_CROP_SIZE),
    image_size=DEMO_INPUT_SIZE,
    load_workers=0,  # 40 small PNGs per class: worker start-up would cost more than it saves
    top_crops=10,
    inversions=2,
)


def demo_jobs(image_root: str | os.PathLike, *, n_per_class: int = DEMO_IMAGES_PER_CLASS) -> list[ClassJob]:
    """Write the demo world's class folders (if not complete) and return one job per class."""
    root = Path(image_root)
    folders = [root / f"{c:03d}_{name}" for c, name in enumerate(CLASS_NAMES)]
    if not all(len(list(f.glob("*.png"))) >= n_per_class for f in folders):
        DemoWorld(image_size=DEMO_INPUT_SIZE).write_class_folders(root, n_per_class, seed=DEMO_IMAGES_SEED)
    return [ClassJob(class_index=c, class_name=name, folder=folders[c]) for c, name in enumerate(CLASS_NAMES)]


def run_demo(
    out: str | os.PathLike = "outputs/demo",
    *,
    config: RunConfig = DEMO_CONFIG,
    n_per_class: int = DEMO_IMAGES_PER_CLASS,
    device: str | None = None,
    progress: bool = True,
    arch: str = "cnn",
) -> RunSummary:
    """Run the whole pipeline on the demo world into ``out`` and build its gallery.

    ``arch`` picks the network to explain: ``"cnn"`` (the demo CNN ``a``) or ``"vit"`` (the tiny transformer).
    """
    if arch not in DEMO_ARCHS:
        raise ValueError(f"`arch` of run_demo must be one of {DEMO_ARCHS}; got {arch!r}.")
    out = Path(out)
    with run_folder_lock(out):
        ctx = distributed_context()
        if ctx.rank == 0:  # one writer of the images; the other ranks read them once written
            demo_jobs(out / "images", n_per_class=n_per_class)
        if ctx.world_size > 1:
            dist.barrier()
        jobs = demo_jobs(out / "images", n_per_class=n_per_class)
        split = demo_model("a" if arch == "cnn" else "vit")
        return run_classes(jobs, split, config, out, device=device, progress=progress)
