"""The ``concept-lens`` command: one subcommand per job, each calling one function.

    concept-lens demo                      # everything on the embedded demo world, offline
    concept-lens run --imagenet-root R --classes 0-9
    concept-lens run --images DIR --class-index 1
    concept-lens run --model efficientnet_b0 --weights mine.pth --class-names names.txt --data-root R \
        --shift-features                   # your own model and classes
    concept-lens gallery outputs/run       # rebuild a run's static site
    concept-lens spectrum --images DIR -o spectrum.npy
    concept-lens visualize --layer fc --neuron 1 -o goldfish.png

Several GPUs: ``torchrun --nproc-per-node 8 -m pipelines.cli run ...``.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from maco import RenderSettings

from .parser import build_parser
from ..run.config import INVERSION_CROP_SIZE, ConceptConfig, RunConfig
from ..demo.run import DEMO_CONFIG
from ..io import OutputNotWritableError, full_disk_error
from ..run.jobs import ClassJob
from ..run.lock import RunLockedError
from ..models import ModelMeta, ModelSpec, WeightsUnavailableError

if TYPE_CHECKING:
    import torch

    from concepts import ModelSplit

__all__ = ["build_parser", "main"]

_logger = logging.getLogger("pipelines.cli")


@dataclass(frozen=True)
class _ModelArgs:
    """``--model``, ``--weights``, ``--mean``/``--std`` checked, and the weights file read (not yet loaded)."""

    spec: ModelSpec
    meta: ModelMeta
    state: dict[str, torch.Tensor] | None


def _model_args(args: argparse.Namespace) -> _ModelArgs:
    """The model the command line names, checked without loading (or downloading) its weights."""
    from ..models import model_meta, parse_model, read_state_dict

    spec = parse_model(args.model, args.weights)
    state = read_state_dict(spec.weights_file) if spec.weights_file is not None else None
    return _ModelArgs(spec, model_meta(spec, state=state, mean=args.mean, std=args.std), state)


def _model(
    model: _ModelArgs,
    *,
    categories: list[str] | None = None,
    layer: str | None = None,
    shift_features: bool = False,
    concepts: bool = False,
) -> ModelSplit:
    """The one place the command line loads weights (after every other check)."""
    from ..models import load_model

    return load_model(
        model.spec,
        model.meta,
        state=model.state,
        categories=categories,
        layer=layer,
        shift_features=shift_features,
        concepts=concepts,
    )


def _categories(args: argparse.Namespace, model: _ModelArgs) -> list[str]:
    """The class names of the model's outputs: its weights' own, ``--class-names``, or ``--data-root``'s folders."""
    from ..run.jobs import class_folders
    from ..models import read_class_names

    spec, n = model.spec, model.meta.num_classes
    if args.class_names is not None:
        if spec.weights_file is None:
            raise ValueError(
                f"`--class-names` is for a local weights file; the {spec.weights} weights of {spec.name} name their "
                f"{n} classes themselves. Drop it, or pass `--weights FILE`."
            )
        names = read_class_names(args.class_names)
        if len(names) != n:
            raise ValueError(
                f"`--class-names` {args.class_names} names {len(names)} classes but the head of `--weights` "
                f"{spec.weights_file} has {n} outputs; list one name per output, in order."
            )
        return names
    if model.meta.categories is not None:
        return model.meta.categories
    if args.data_root is not None:
        folders = class_folders(args.data_root)
        if len(folders) == n:
            _logger.info("class names: the %d folders of %s, in ImageFolder's order", n, args.data_root)
            return folders
        raise ValueError(
            f"`--data-root` {args.data_root} has {len(folders)} class folders but the head of `--weights` "
            f"{spec.weights_file} has {n} outputs, so ImageFolder's order cannot give its class names; pass "
            f"`--class-names FILE` with the {n} names, one per line, in the order of the outputs."
        )
    raise ValueError(
        f"the head of `--weights` {spec.weights_file} has {n} classes; name them with `--class-names FILE` (one per "
        "line, in the order of the outputs) or `--data-root DIR` (one folder per class, ImageFolder's order)."
    )


def _check_images(folder: Path, argument: str) -> None:
    """A folder that holds at least one image file, or a clear error naming ``argument``."""
    from concepts.data import IMAGE_EXTENSIONS

    if not folder.is_dir():
        raise ValueError(f"{argument} {folder} is not a folder of images.")
    if not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.iterdir()):
        raise ValueError(
            f"{argument} {folder} holds no image file ({' '.join(IMAGE_EXTENSIONS)}); point it at the class's images."
        )


def _check_run_target(out: Path, device: str | None) -> None:
    """Checks of a run's device and output folder, before any model or image is loaded."""
    from ..io import ensure_writable
    from ..run.lock import check_unlocked
    from ..run.classes import resolve_device

    resolve_device(device)
    ensure_writable(out)
    check_unlocked(out)


def _viz_config(args: argparse.Namespace) -> RenderSettings:
    """The one settings object from the command line's budget to the render loop."""
    return RenderSettings(steps=args.steps, image_size=args.image_size, crops=args.crops, seed=args.seed)


def _jobs(args: argparse.Namespace, model: _ModelArgs, categories: list[str] | None) -> list[ClassJob]:
    """The classes to run, each with an image folder that holds images (``categories``: None on ImageNet)."""
    from concepts import resolve_class

    from ..run.jobs import folder_jobs, imagenet_jobs

    if args.images is not None and args.class_index is None:
        raise ValueError("`--class-index` is required with --images: which class do the images show?")
    if args.images is None and args.class_index is not None:
        raise ValueError("`--class-index` goes with --images; with a root, pick classes with --classes.")
    if args.imagenet_root is not None:
        if not args.classes:
            raise ValueError("`--classes` is required with --imagenet-root, e.g. --classes 0-9 or --classes goldfish.")
        if model.meta.num_classes != 1000 or args.class_names is not None:
            raise ValueError(
                f"`--imagenet-root` is for ImageNet-1k models (their 1000 classes, by wnid); {model.spec.name} with "
                f"these weights has {model.meta.num_classes} classes of its own: pass its class folders with "
                "--data-root instead."
            )
        jobs = imagenet_jobs(args.imagenet_root, args.classes)
    elif args.data_root is not None:
        jobs = folder_jobs(args.data_root, args.classes, categories)
    else:
        if args.classes:
            raise ValueError("`--classes` picks classes of a root (--imagenet-root, --data-root); with --images, "
                             "say which class they show with --class-index.")
        _check_images(args.images, "`--images`")
        index = resolve_class(args.class_index, categories, argument="`--class-index`")
        return [ClassJob(class_index=index, class_name=categories[index], folder=args.images)]
    for job in jobs:
        _check_images(job.folder, f"class {job.class_index} ({job.class_name}):")
    return jobs


def _cmd_run(args: argparse.Namespace) -> int:
    from ..run.classes import run_classes

    # Check every argument before loading (maybe downloading) the weights; those that need no model first.
    _check_run_target(args.out, args.device)
    model = _model_args(args)
    categories = None if args.imagenet_root is not None else _categories(args, model)
    jobs = _jobs(args, model, categories)
    split = _model(
        model,
        categories=categories,
        layer=args.layer,
        shift_features=args.shift_features,
        concepts=True,
    )
    viz = _viz_config(args)
    config = RunConfig(
        concepts=ConceptConfig(n_concepts=args.n_concepts, patch_size=args.patch_size, random_state=args.seed,
                               importance=args.importance, importance_on=args.importance_on,
                               fit_on=args.fit_on, factorization=args.factorization),
        visualization=viz,
        inversion=replace(viz, crop_size=INVERSION_CROP_SIZE),
        max_images=args.max_images,
        inversions=args.inversions,
        load_workers=args.workers,
        keep_features=not args.no_feature_cache,
    )
    summary = run_classes(
        jobs, split, config, args.out, device=args.device, progress=not args.quiet, gallery=not args.no_gallery
    )
    return _report(summary)


def _report(summary) -> int:
    print(
        f"{len(summary.done)} classes done, {len(summary.skipped)} already finished, {len(summary.failed)} failed "
        f"in {summary.seconds:.0f} s -> {summary.run_dir}"
    )
    for index, error in summary.failed.items():
        print(f"  class {index}: {error}")
    if summary.gallery is not None:
        print(f"gallery: {summary.gallery.resolve()}")
    return 1 if summary.failed else 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ..demo.run import run_demo

    _check_run_target(args.out, args.device)
    budget = dict(steps=args.steps, image_size=args.image_size, crops=args.crops)
    config = replace(
        DEMO_CONFIG,
        visualization=replace(DEMO_CONFIG.visualization, **budget),
        inversion=replace(DEMO_CONFIG.inversion, **budget),
    )
    return _report(
        run_demo(
            args.out,
            config=config,
            n_per_class=args.images_per_class,
            device=args.device,
            progress=not args.quiet,
            arch=args.arch,
        )
    )


def _cmd_gallery(args: argparse.Namespace) -> int:
    from ..site.gallery import build_gallery

    if not (args.out / "classes").is_dir():
        raise ValueError(f"`out` {args.out} is not a run folder (no classes/ inside); pass the --out of a run.")
    print(f"gallery: {build_gallery(args.out).resolve()}")
    return 0


def _cmd_spectrum(args: argparse.Namespace) -> int:
    from maco import compute_spectrum, save_spectrum

    skipped: list[tuple[str, str]] = []
    save_spectrum(compute_spectrum(args.images, size=args.size, skipped=skipped), args.output)
    for path, reason in skipped:
        print(f"  skipped {path}: {reason}")
    print(f"spectrum: {args.output} ({len(skipped)} files skipped)")
    return 0


def _cmd_visualize(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from maco import Objective, maco

    from ..io import ensure_writable, save, to_pil
    from ..run.classes import resolve_device

    device = resolve_device(args.device)
    ensure_writable(args.output.parent)
    if args.direction is not None and not args.direction.is_file():
        raise ValueError(f"`--direction` {args.direction}: no such file; pass a .npy file of shape (C,) or (k, C).")
    model_args = _model_args(args)
    split = _model(model_args)
    model = split.model.to(device)
    if args.neuron is not None:
        objective = Objective.neuron(model, args.layer, args.neuron)
    elif args.channel is not None:
        objective = Objective.channel(model, args.layer, args.channel)
    else:
        objective = Objective.direction(
            model, args.layer, torch.from_numpy(np.load(args.direction, allow_pickle=False))
        )
    result = maco(
        objective,
        settings=_viz_config(args),
        input_size=split.input_size,
        mean=split.mean,
        std=split.std,
        progress=not args.quiet,
    )
    outputs = (
        [args.output]
        if len(result.images) == 1
        else [args.output.with_name(f"{args.output.stem}_{i}{args.output.suffix}") for i in range(len(result.images))]
    )
    for image, path in zip(result.images, outputs):
        save(to_pil(image), path)
        print(path)
    return 0


_COMMANDS = {
    "demo": _cmd_demo,
    "run": _cmd_run,
    "gallery": _cmd_gallery,
    "spectrum": _cmd_spectrum,
    "visualize": _cmd_visualize,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return _COMMANDS[args.command](args)
    except (ValueError, OutputNotWritableError, RunLockedError, WeightsUnavailableError) as err:
        parser.exit(2, f"concept-lens {args.command}: error: {err}\n")
    except OSError as err:  # a full disk met by a writer of maco or concepts (the spectrum, a bank)
        full = full_disk_error(err)
        if full is None:
            raise
        parser.exit(2, f"concept-lens {args.command}: error: {full}\n")

