"""Stage 1 -> 2 -> 3 for one class, resumable.

Layout of ``<run>/classes/<class_index:04d>/``::

    features/             ClassFeatures: the crops' and images' features (any k, any factorization)
    bank/                 ConceptBank (Stage 1), saved as soon as it exists
    renders/concepts/     RenderResult of the k concept visualizations (Stage 2)
    renders/inversions/   RenderResult of the feature inversions (Stage 3)
    concepts/, inversions/, maps/  the pages' pictures: display-sized lossy WebP
    class.json            written last: its ``"status": "done"`` marks the class finished

The full-size concept visualizations are the lossless images of
``renders/concepts/`` (stored once; the page links to them); the inversions
are cached as lossy WebP (quality :data:`INVERSION_QUALITY`) without their
alpha maps, since only their pictures are shown.

Each intermediate result is written atomically as soon as it exists, with a
stamp of what it was made from (:mod:`pipelines.run.cache`), so a run killed
at any point redoes at most the stage it was in, and a rerun with other
settings, weights or images redoes exactly the stages they change.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from concepts import (ClassFeatures, ConceptBank, ConceptFidelity, LoadedImages, ModelSplit, NConceptsSweep,
                      class_directions, class_features, concept_fidelity, concept_maps, crop_image, extract_concepts,
                      load_images)
from maco import Objective, RenderResult, RenderSettings, render
from maco.device import peak_memory_mb, reset_peak_memory, synchronize

from .cache import (DISPLAY_SIDE, INVERSION_QUALITY, MOSAIC_WIDTH, ClassStamps, cached, class_stamps,
                          unfinished_reason)
from ..concept_layer import feature_transform
from .config import RunConfig
from .deletion import ImageCurves, image_curves
from .inversion import inversion_cosines, render_inversions
from ..io import readable, save, to_pil
from .jobs import ClassJob
from .layouts import SPRITE_CELL, ImagePoint, LayoutPoint, pca_2d, thumbnail_sprite
from .mosaic import alpha_over_white, concept_mosaic
from .overlays import all_concepts_overlay, concept_colour, one_concept_overlay
from .record import AlignedClass, ClassRecord, ConceptEntry, InversionEntry, SkippedFile

__all__ = ["ClassStamps", "class_dir", "class_stamps", "run_class", "unfinished_reason"]


def class_dir(run_dir: Path, class_index: int) -> Path:
    return Path(run_dir) / "classes" / f"{class_index:04d}"


def _clear_outputs(folder: Path) -> None:
    """Before a class is (re)done: unmark it, and drop leftovers (temp files of a killed write, stale PNGs)."""
    (folder / "class.json").unlink(missing_ok=True)
    if not folder.is_dir():
        return
    for path in folder.rglob(".*.tmp"):
        path.unlink(missing_ok=True)
    for sub in ("concepts", "inversions", "maps"):
        for pattern in ("*.webp", "*.png"):  # PNGs: pages of runs before WebP pictures
            for path in (folder / sub).glob(pattern):
                path.unlink()


def _display(image: Any, side: int) -> Image.Image:
    """``image`` as an 8-bit picture whose longest side is at most ``side`` (Lanczos; never enlarged)."""
    picture = to_pil(image)
    picture.thumbnail((side, side), Image.Resampling.LANCZOS)
    return picture


@dataclass
class _ClassRun:
    """What the stages of one class share: inputs, the folder, the files written, the clock."""

    job: ClassJob
    split: ModelSplit
    config: RunConfig
    folder: Path
    device: torch.device
    progress: bool
    stamps: ClassStamps
    written: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    peak_memory_mb: dict[str, float] = field(default_factory=dict)
    clock: float = field(default_factory=time.perf_counter)

    @property
    def what(self) -> str:
        return f"class {self.job.class_index} ({self.job.class_name})"

    def write(self, obj: Any, name: str) -> str:
        """Save ``obj`` as ``name`` in the class folder and list it in the record."""
        save(obj, self.folder / name)
        return self.listed(name)

    def listed(self, name: str) -> str:
        """List a file of the class folder in the record (its size is checked when a rerun trusts the class)."""
        self.written.append(name)
        return name

    def lap(self, name: str) -> None:
        """Record the stage's wall time, and its peak memory where the device counts it (CUDA)."""
        synchronize(self.device)
        peak = peak_memory_mb(self.device)
        if peak is not None:
            self.peak_memory_mb[name] = round(peak, 1)
            reset_peak_memory(self.device)
        now = time.perf_counter()
        self.timings[name] = round(now - self.clock, 3)
        self.clock = now

    def render(self, objective: Objective, settings: RenderSettings) -> RenderResult:
        return render(
            objective,
            settings,
            input_size=self.split.input_size,
            mean=self.split.mean,
            std=self.split.std,
            device=self.device,
            progress=self.progress,
        )


def _load_stage(run: _ClassRun) -> LoadedImages:
    """The class's images, decoded and resized."""
    config, job = run.config, run.job
    loaded = load_images(
        job.folder, image_size=config.image_size, max_images=config.max_images, num_workers=config.load_workers
    )
    if len(loaded.paths) == 0:
        raise ValueError(f"{run.what}: no readable image in {job.folder} ({len(loaded.skipped)} skipped).")
    return loaded


def _features_stage(run: _ClassRun, loaded: LoadedImages) -> ClassFeatures:
    """The crops' and whole images' pooled features, cached (unless ``keep_features`` is off): they depend on
    the model, the images and the crop grid only, so a rerun with another k or factorization computes none."""
    concepts = run.config.concepts

    def make() -> ClassFeatures:
        return class_features(run.split, loaded.images, patch_size=concepts.patch_size,
                              batch_size=concepts.batch_size, device=run.device, amp=concepts.amp,
                              channels_last=concepts.channels_last, progress=run.progress)

    folder = run.folder / "features"
    if not run.config.keep_features and run.stamps.features.check(folder) is not None:
        return make()
    return cached(folder, run.stamps.features, ClassFeatures.load, make, f"the features of {run.what}")


def _concepts_stage(run: _ClassRun, loaded: LoadedImages, features: ClassFeatures) -> ConceptBank:
    """Stage 1: the concept bank (CRAFT), cached."""

    def make() -> ConceptBank:
        return extract_concepts(
            run.split,
            loaded,
            run.job.class_index,
            **asdict(run.config.concepts),
            device=run.device,
            features=features,
            progress=run.progress,
        )

    return cached(run.folder / "bank", run.stamps.bank, ConceptBank.load, make, f"the concept bank of {run.what}")


def _visualization_stage(run: _ClassRun, bank: ConceptBank) -> RenderResult:
    """Stage 2: one MaCo image per concept direction, most important first, in one batch, cached."""
    split = run.split
    vectors = torch.as_tensor(bank.W)[[int(c) for c in bank.order]].float().to(run.device)
    objective = Objective.direction(split.model, split.pooled_layer, vectors, cossim_pow=run.config.cossim_pow)
    return cached(
        run.folder / "renders" / "concepts",
        run.stamps.concepts,
        RenderResult.load,
        lambda: run.render(objective, run.config.visualization),
        f"the concept visualizations of {run.what}",
    )


def _aligned_classes(split: ModelSplit, classes: torch.Tensor, direction: torch.Tensor, n: int) -> list[AlignedClass]:
    """The ``n`` classes whose directions ``classes`` (:func:`concepts.class_directions`) are closest (cosine) to a
    concept direction, as on the Lens site."""
    cos = F.cosine_similarity(classes, direction[None].float(), dim=1)
    top = cos.topk(min(n, len(cos)))
    names = split.categories or [str(i) for i in range(len(cos))]
    return [AlignedClass(int(i), names[int(i)], round(float(c), 4)) for c, i in zip(top.values, top.indices)]


def _mosaics_stage(
    run: _ClassRun, loaded: LoadedImages, bank: ConceptBank, renders: RenderResult, classes: torch.Tensor
) -> list[ConceptEntry]:
    """Stage 3a: per concept, its visualization, alpha view, top crops and mosaic, as files; ``classes`` are the
    class directions its aligned classes are found with."""
    order = [int(c) for c in bank.order]
    top_crops = bank.top_crops(run.config.top_crops)
    most_important = np.bincount(np.asarray(bank.contributions).argmax(1), minlength=bank.k)
    entries = []
    for position, concept in enumerate(order):
        stem = f"concepts/{position:02d}"
        image, alpha = renders.images[position], renders.alphas[position]
        patches = [crop_image(loaded.images, bank, int(i)) for i in top_crops[concept]]
        importance = float(bank.importance_pct[concept])
        title = f"{run.job.class_name} ({run.job.class_index}) - concept {position + 1} of {len(order)} " \
                f"- {importance:.1f}% of logit"
        entries.append(
            ConceptEntry(
                rank=position,
                concept_id=concept,
                importance_pct=round(importance, 3),
                sobol=None if bank.sobol is None else round(float(bank.sobol[concept]), 4),
                visualization=run.write(_display(image, DISPLAY_SIDE), f"{stem}_viz.webp"),
                visualization_alpha=run.write(
                    _display(alpha_over_white(image, alpha), DISPLAY_SIDE), f"{stem}_alpha.webp"
                ),
                visualization_full=run.listed(f"renders/concepts/image_{position:02d}.webp"),
                top_crops=[run.write(to_pil(patch), f"{stem}_crop_{j}.webp") for j, patch in enumerate(patches)],
                mosaic=run.write(
                    _display(concept_mosaic(image, alpha, patches, title=title), MOSAIC_WIDTH), f"{stem}_mosaic.webp"
                ),
                aligned_classes=_aligned_classes(
                    run.split, classes, torch.as_tensor(bank.W[concept]), run.config.aligned_classes
                ),
                colour=concept_colour(position),
                most_important_for=int(most_important[concept]),
            )
        )
    return entries


def _inversions_stage(
    run: _ClassRun, loaded: LoadedImages, features: torch.Tensor, probs: torch.Tensor
) -> list[InversionEntry]:
    """Stage 3b: feature inversions of the class's most confidently classified images, cached."""
    config = run.config
    if config.inversions == 0:
        return []
    chosen = probs.argsort(descending=True)[: config.inversions].tolist()
    targets = features[chosen]
    result = cached(
        run.folder / "renders" / "inversions",
        run.stamps.inversions,
        RenderResult.load,
        lambda: render_inversions(
            run.split, targets, config.inversion, cossim_pow=config.inversion_cossim_pow, progress=run.progress
        ),
        f"the feature inversions of {run.what}",
        save=lambda result, directory: result.save(directory, quality=INVERSION_QUALITY, alphas=False),
    )
    reached = inversion_cosines(
        run.split, result.images, targets, amp=config.inversion.amp, channels_last=config.inversion.channels_last
    )
    return [
        InversionEntry(
            reference=run.write(_display(loaded.images[source], DISPLAY_SIDE), f"inversions/{i:02d}_ref.webp"),
            inversion=run.write(_display(result.images[i], DISPLAY_SIDE), f"inversions/{i:02d}_inv.webp"),
            cosine=round(float(reached[i]), 4),
            source=_relative(loaded.paths[source], run.job.folder),
            probability=round(float(probs[source]), 4),
        )
        for i, source in enumerate(chosen)
    ]


def _relative(path: str, folder: Path) -> str:
    """``path`` relative to the class's image folder (what a reader of the page can find), else as it is."""
    try:
        return readable(Path(path).relative_to(folder).as_posix())
    except ValueError:
        return readable(path)


def _maps_stage(
    run: _ClassRun, loaded: LoadedImages, bank: ConceptBank, probs: torch.Tensor, concepts: list[ConceptEntry]
) -> tuple[list[str], ImageCurves | None, ImageCurves | None]:
    """Stage 3c: where each concept lives (maps over the most confident images, and per concept where it is
    strongest), and the deletion and insertion curves that check the ranking on the same images."""
    config = run.config
    if config.map_images == 0:
        return [], None, None
    order = [int(c) for c in bank.order]
    chosen = probs.argsort(descending=True)[: config.map_images].tolist()
    strongest = {c: np.argsort(-bank.image_codes[:, c], kind="stable")[: config.map_strip].tolist() for c in order}
    needed = sorted(set(chosen).union(*strongest.values()))
    maps = concept_maps(run.split, bank, loaded.images[needed], batch_size=config.concepts.batch_size,
                        device=run.device)
    at = {image: row for row, image in enumerate(needed)}
    overlays = [
        run.write(all_concepts_overlay(loaded.images[i], maps[at[i]], order), f"maps/{n:02d}_all.webp")
        for n, i in enumerate(chosen)
    ]
    for entry in concepts:
        entry.maps = [
            run.write(one_concept_overlay(loaded.images[i], maps[at[i], entry.concept_id], entry.rank),
                      f"maps/{entry.rank:02d}_concept_{j}.webp")
            for j, i in enumerate(strongest[entry.concept_id])
        ]
    deletion, insertion = image_curves(
        run.split,
        loaded.images[chosen],
        maps[[at[i] for i in chosen]],
        order,
        run.job.class_index,
        share=config.deletion_share,
        seeds=config.deletion_seeds,
        fill=config.deletion_fill,
        batch_size=config.concepts.batch_size,
    )
    return overlays, deletion, insertion


def _image_error(bank: ConceptBank, features: torch.Tensor) -> float:
    """The bank's relative reconstruction error on the whole images' pooled features."""
    pooled = features.double().cpu()
    rebuilt = torch.as_tensor(bank.image_codes).double() @ torch.as_tensor(bank.W).double()
    return float((pooled - rebuilt).norm() / pooled.norm().clamp_min(1e-12))


def _fidelity_stage(run: _ClassRun, bank: ConceptBank, features: torch.Tensor) -> ConceptFidelity:
    """Stage 3e: C-Deletion, C-Insertion and C-μFidelity of the ranking on all the class's images (exact, in
    the features: no image is edited)."""
    return concept_fidelity(
        features,
        torch.as_tensor(bank.image_codes),
        torch.as_tensor(bank.W),
        run.split.h,
        run.job.class_index,
        [int(c) for c in bank.order],
        torch.as_tensor(bank.importance_per_image),
        seeds=run.config.fidelity_seeds,
        seed=bank.seed,
    )


def _layouts_stage(
    run: _ClassRun, loaded: LoadedImages, bank: ConceptBank, probs: torch.Tensor
) -> tuple[list[ImagePoint], str | None, int, list[LayoutPoint]]:
    """Stage 3d: the cluster graph (images by their concept contributions) and the concepts by direction."""
    order = [int(c) for c in bank.order]
    rank_of = {concept: rank for rank, concept in enumerate(order)}
    directions = np.asarray(bank.W, dtype=np.float64)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True).clip(1e-12)
    concept_layout = [LayoutPoint(float(x), float(y), rank_of[c]) for c, (x, y) in enumerate(pca_2d(directions))]
    if run.config.cluster_images == 0:
        return [], None, 0, concept_layout
    chosen = probs.argsort(descending=True)[: run.config.cluster_images].tolist()
    contributions = np.asarray(bank.contributions)[chosen]
    sprite = thumbnail_sprite(loaded.images[chosen])
    points = [
        ImagePoint(float(x), float(y), rank_of[int(contributions[j].argmax())], cell=j,
                   source=_relative(loaded.paths[i], run.job.folder))
        for j, (i, (x, y)) in enumerate(zip(chosen, pca_2d(contributions)))
    ]
    return points, run.write(sprite, "maps/cluster_sprite.webp"), sprite.width // SPRITE_CELL, concept_layout


def run_class(
    job: ClassJob,
    split: ModelSplit,
    config: RunConfig,
    run_dir: Path,
    *,
    device: torch.device,
    progress: bool = True,
    rank: int = 0,
) -> ClassRecord:
    """Run every stage for one class and write its folder, ``class.json`` last; returns the record.

    Stages whose saved result carries a matching stamp are reused; the others are redone.
    """
    folder = class_dir(run_dir, job.class_index)
    run = _ClassRun(job, split, config, folder, device, progress, class_stamps(job, split, config))
    _clear_outputs(folder)
    reset_peak_memory(device)
    loaded = _load_stage(run)
    run.lap("load")
    cache = _features_stage(run, loaded)
    features = cache.images
    run.lap("features")
    bank = _concepts_stage(run, loaded, cache)
    run.lap("concepts")
    renders = _visualization_stage(run, bank)
    run.lap("visualizations")
    classes, aligned_by = class_directions(split, features, device=device)
    concepts = _mosaics_stage(run, loaded, bank, renders, classes)
    run.lap("mosaics")
    probs = split.logits(features).softmax(1)[:, job.class_index]
    inversions = _inversions_stage(run, loaded, features, probs)
    run.lap("inversions")
    overlays, deletion, insertion = _maps_stage(run, loaded, bank, probs, concepts)
    run.lap("maps, deletion and insertion")
    clusters, sprite, columns, concept_layout = _layouts_stage(run, loaded, bank, probs)
    run.lap("layouts")
    fidelity = _fidelity_stage(run, bank, features)
    run.lap("concept fidelity")
    record = ClassRecord(
        class_index=job.class_index,
        class_name=job.class_name,
        wnid=job.wnid,
        model_id=split.model_id,
        layer=split.layer,
        feature_transform=feature_transform(split),
        n_images=len(loaded.paths),
        n_crops=int(len(bank.U)),
        k=bank.k,
        reconstruction_error=round(float(bank.relative_reconstruction_error), 5),
        skipped=[SkippedFile(readable(str(p)), readable(r)) for p, r in loaded.skipped],
        concepts=concepts,
        inversions=inversions,
        overlays=overlays,
        deletion=deletion,
        insertion=insertion,
        fidelity=fidelity,
        importance=f"{bank.importance} on {bank.importance_on}",
        completeness=round(bank.completeness, 4) if math.isfinite(bank.completeness) else None,
        reconstruction_error_images=round(_image_error(bank, features), 5),
        n_concepts_sweep=None if bank.n_concepts_sweep is None else NConceptsSweep(**bank.n_concepts_sweep),
        clusters=clusters,
        cluster_sprite=sprite,
        cluster_columns=columns,
        concept_layout=concept_layout,
        factorization=bank.factorization,
        importance_method=bank.importance,
        contributions="exact" if split.head_weight is not None else "gradient-input",
        aligned_by=aligned_by,
        timings=run.timings,
        peak_memory_mb=run.peak_memory_mb,
        device=str(device),
        rank=rank,
        stamp=run.stamps.record.to_dict(),
        files={name: (folder / name).stat().st_size for name in run.written},
    )
    record.save(folder / "class.json")
    return record
