"""The stages of one class's run, each a function that returns its own small result.

A stage reads the results it is given and edits none of them. The pictures a
stage makes for the class page stay in memory in its result's ``pictures``,
keyed by the file name they get in the class folder; :mod:`pipelines.run.explain`
writes them (when the run has a folder) and assembles the class record. The
stages whose results are expensive (features, bank, renders) go through
:meth:`ClassContext.cached`, which reuses a result saved with the same stamp.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from concepts import (ClassFeatures, ConceptBank, ConceptFidelity, LoadedImages, ModelSplit, class_directions,
                      class_features, concept_fidelity, concept_maps, crop_image, extract_concepts, load_images)
from concepts.decomposition import top_counts
from maco import Objective, RenderResult, RenderSettings, render
from maco.device import peak_memory_mb, reset_peak_memory, synchronize

from ..io import readable, to_pil
from .cache import DISPLAY_SIDE, INVERSION_QUALITY, MOSAIC_WIDTH, ClassStamps, cached
from .config import RunConfig
from .deletion import ImageCurves, image_curves
from .inversion import inversion_cosines, render_inversions
from .jobs import ClassJob
from .layouts import SPRITE_CELL, ImagePoint, LayoutPoint, pca_2d, thumbnail_sprite
from .mosaic import alpha_over_white, concept_mosaic
from .overlays import all_concepts_overlay, concept_colour, one_concept_overlay
from .record import AlignedClass, ConceptEntry, InversionEntry

__all__ = [
    "CONCEPT_RENDERS",
    "ClassContext",
    "ConceptPanels",
    "Inversions",
    "Layouts",
    "MapsOnImages",
    "Pictures",
    "RankingChecks",
    "concepts_stage",
    "features_stage",
    "fidelity_stage",
    "inversions_stage",
    "layouts_stage",
    "load_stage",
    "maps_stage",
    "panels_stage",
    "ranking_checks_stage",
    "visualization_stage",
]

T = TypeVar("T")

CONCEPT_RENDERS = "renders/concepts"  # the concepts' MaCo renders (full size, lossless), in the class folder
INVERSION_RENDERS = "renders/inversions"


class Pictures(dict[str, Image.Image]):
    """The page's pictures a stage made, by their file name in the class folder (relative)."""

    def add(self, name: str, picture: Image.Image) -> str:
        self[name] = picture
        return name


@dataclass
class ClassContext:
    """What every stage of one class reads: its job, model, settings, device, and where results are cached
    (``folder`` None: nowhere, the run stays in memory); and the clock that times each stage on its own."""

    job: ClassJob
    split: ModelSplit
    config: RunConfig
    device: torch.device
    progress: bool
    folder: Path | None = None
    stamps: ClassStamps | None = None
    timings: dict[str, float] = field(default_factory=dict)
    peak_memory_mb: dict[str, float] = field(default_factory=dict)
    clock: float = field(default_factory=time.perf_counter)

    @property
    def what(self) -> str:
        return f"class {self.job.class_index} ({self.job.class_name})"

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

    def cached(self, sub: str, stamp: str, load: Callable[[Path], T], make: Callable[[], T], what: str,
               save: Callable[[T, Path], object] | None = None) -> T:
        """``make()``, or the result saved in ``folder/sub`` with the same stamp (:func:`pipelines.run.cache.cached`);
        in memory, always ``make()``."""
        if self.folder is None:
            return make()
        writer = {} if save is None else {"save": save}
        return cached(self.folder / sub, getattr(self.stamps, stamp), load, make, f"{what} of {self.what}", **writer)

    def render(self, objective: Objective, settings: RenderSettings) -> RenderResult:
        split = self.split
        return render(objective, settings, input_size=split.input_size, mean=split.mean, std=split.std,
                      device=self.device, progress=self.progress)


def _display(image: Any, side: int) -> Image.Image:
    """``image`` as an 8-bit picture whose longest side is at most ``side`` (Lanczos; never enlarged)."""
    picture = to_pil(image)
    picture.thumbnail((side, side), Image.Resampling.LANCZOS)
    return picture


def _relative(path: str, folder: Path) -> str:
    """``path`` relative to the class's image folder (what a reader of the page can find), else as it is."""
    try:
        return readable(Path(path).relative_to(folder).as_posix())
    except ValueError:
        return readable(path)


def _by_confidence(probabilities: torch.Tensor, n: int) -> list[int]:
    """The ``n`` images the model gives the class the highest probability, most confident first."""
    return probabilities.argsort(descending=True)[:n].tolist()


def load_stage(ctx: ClassContext) -> LoadedImages:
    """The class's images, decoded and resized."""
    config, job = ctx.config, ctx.job
    loaded = load_images(job.folder, image_size=config.image_size, max_images=config.max_images,
                         num_workers=config.load_workers)
    if len(loaded.paths) == 0:
        raise ValueError(f"{ctx.what}: no readable image in {job.folder} ({len(loaded.skipped)} skipped).")
    return loaded


def features_stage(ctx: ClassContext, loaded: LoadedImages) -> ClassFeatures:
    """The crops' and whole images' pooled features, cached (unless ``keep_features`` is off): they depend on
    the model, the images and the crop grid only, so a rerun with another k or factorization computes none."""
    concepts = ctx.config.concepts

    def make() -> ClassFeatures:
        return class_features(ctx.split, loaded.images, patch_size=concepts.patch_size,
                              batch_size=concepts.batch_size, device=ctx.device, amp=concepts.amp,
                              channels_last=concepts.channels_last, progress=ctx.progress)

    if ctx.folder is not None and not ctx.config.keep_features and ctx.stamps.features.check(
            ctx.folder / "features") is not None:
        return make()
    return ctx.cached("features", "features", ClassFeatures.load, make, "the features")


def concepts_stage(ctx: ClassContext, loaded: LoadedImages, features: ClassFeatures) -> ConceptBank:
    """Stage 1: the concept bank (CRAFT), cached."""

    def make() -> ConceptBank:
        return extract_concepts(ctx.split, loaded, ctx.job.class_index, **asdict(ctx.config.concepts),
                                device=ctx.device, features=features, progress=ctx.progress)

    return ctx.cached("bank", "bank", ConceptBank.load, make, "the concept bank")


def visualization_stage(ctx: ClassContext, bank: ConceptBank) -> RenderResult:
    """Stage 2: one MaCo image per concept direction, most important first, in one batch, cached."""
    vectors = torch.as_tensor(bank.W)[[int(c) for c in bank.order]].float().to(ctx.device)
    objective = Objective.direction(ctx.split.model, ctx.split.pooled_layer, vectors,
                                    cossim_pow=ctx.config.cossim_pow)
    return ctx.cached(CONCEPT_RENDERS, "concepts", RenderResult.load,
                      lambda: ctx.render(objective, ctx.config.visualization), "the concept visualizations")


@dataclass
class ConceptPanels:
    """Stage 3a: each concept's section of the page, by rank: visualization, alpha view, top crops, mosaic, and
    the classes whose directions (``aligned_by``) point its way."""

    entries: list[ConceptEntry]
    aligned_by: str
    pictures: Pictures


def _aligned_classes(split: ModelSplit, classes: torch.Tensor, direction: torch.Tensor, n: int) -> list[AlignedClass]:
    """The ``n`` classes whose directions ``classes`` (:func:`concepts.class_directions`) are closest (cosine) to a
    concept direction, as on the Lens site."""
    cos = F.cosine_similarity(classes, direction[None].float(), dim=1)
    top = cos.topk(min(n, len(cos)))
    names = split.categories or [str(i) for i in range(len(cos))]
    return [AlignedClass(int(i), names[int(i)], round(float(c), 4)) for c, i in zip(top.values, top.indices)]


def panels_stage(ctx: ClassContext, loaded: LoadedImages, features: ClassFeatures, bank: ConceptBank,
                 renders: RenderResult) -> ConceptPanels:
    """Stage 3a: per concept, its visualization, alpha view, top crops, mosaic and aligned classes."""
    classes, aligned_by = class_directions(ctx.split, features.images, device=ctx.device)
    order = [int(c) for c in bank.order]
    top_crops = bank.top_crops(ctx.config.top_crops)
    most_important = top_counts(bank.contributions)
    spread, image_spread = bank.coefficient_spread, bank.image_spread
    pictures = Pictures()
    entries = []
    for position, concept in enumerate(order):
        stem = f"concepts/{position:02d}"
        image, alpha = renders.images[position], renders.alphas[position]
        patches = [crop_image(loaded.images, bank, int(i)) for i in top_crops[concept]]
        importance = float(bank.importance_pct[concept])
        title = f"{ctx.job.class_name} ({ctx.job.class_index}) - concept {position + 1} of {len(order)} " \
                f"- {importance:.1f}% of logit"
        entries.append(ConceptEntry(
            rank=position,
            concept_id=concept,
            importance_pct=round(importance, 3),
            sobol=None if bank.sobol is None else round(float(bank.sobol[concept]), 4),
            visualization=pictures.add(f"{stem}_viz.webp", _display(image, DISPLAY_SIDE)),
            visualization_alpha=pictures.add(f"{stem}_alpha.webp",
                                             _display(alpha_over_white(image, alpha), DISPLAY_SIDE)),
            visualization_full=f"{CONCEPT_RENDERS}/{RenderResult.image_file(position)}",
            top_crops=[pictures.add(f"{stem}_crop_{j}.webp", to_pil(patch)) for j, patch in enumerate(patches)],
            mosaic=pictures.add(f"{stem}_mosaic.webp",
                                _display(concept_mosaic(image, alpha, patches, title=title), MOSAIC_WIDTH)),
            aligned_classes=_aligned_classes(ctx.split, classes, torch.as_tensor(bank.W[concept]),
                                             ctx.config.aligned_classes),
            colour=concept_colour(position),
            most_important_for=int(most_important[concept]),
            spread=round(float(spread[concept]), 4) if np.isfinite(spread[concept]) else None,
            image_spread=round(float(image_spread[concept]), 4) if np.isfinite(image_spread[concept]) else None,
        ))
    return ConceptPanels(entries, aligned_by, pictures)


@dataclass
class Inversions:
    """Stage 3b: feature inversions of the class's most confidently classified images (``renders`` None when
    the run asks for none)."""

    renders: RenderResult | None
    entries: list[InversionEntry]
    pictures: Pictures


def inversions_stage(ctx: ClassContext, loaded: LoadedImages, features: ClassFeatures,
                     probabilities: torch.Tensor) -> Inversions:
    """Stage 3b: feature inversions (MaCo matching the pooled features of a reference image), cached."""
    config = ctx.config
    if config.inversions == 0:
        return Inversions(None, [], Pictures())
    chosen = _by_confidence(probabilities, config.inversions)
    targets = features.images[chosen]
    result = ctx.cached(
        INVERSION_RENDERS, "inversions", RenderResult.load,
        lambda: render_inversions(ctx.split, targets, config.inversion, cossim_pow=config.inversion_cossim_pow,
                                  progress=ctx.progress),
        "the feature inversions",
        save=lambda result, directory: result.save(directory, quality=INVERSION_QUALITY, alphas=False),
    )
    reached = inversion_cosines(ctx.split, result.images, targets, amp=config.inversion.amp,
                                channels_last=config.inversion.channels_last)
    pictures = Pictures()
    entries = [
        InversionEntry(
            reference=pictures.add(f"inversions/{i:02d}_ref.webp", _display(loaded.images[source], DISPLAY_SIDE)),
            inversion=pictures.add(f"inversions/{i:02d}_inv.webp", _display(result.images[i], DISPLAY_SIDE)),
            cosine=round(float(reached[i]), 4),
            source=_relative(loaded.paths[source], ctx.job.folder),
            probability=round(float(probabilities[source]), 4),
        )
        for i, source in enumerate(chosen)
    ]
    return Inversions(result, entries, pictures)


@dataclass
class MapsOnImages:
    """Stage 3c: where each concept lives. ``maps[rows[i]]`` are the concept maps ``(k, h, w)`` of image ``i``,
    for the most confident images (``images``, with every concept over them in ``overlays``) and, per concept
    id, the images where it is strongest (``strongest``, its overlays in ``by_concept``)."""

    images: list[int]
    strongest: dict[int, list[int]]
    maps: torch.Tensor
    rows: dict[int, int]
    overlays: list[str]
    by_concept: dict[int, list[str]]
    pictures: Pictures


def maps_stage(ctx: ClassContext, loaded: LoadedImages, bank: ConceptBank,
               probabilities: torch.Tensor) -> MapsOnImages:
    """Stage 3c: the concept maps over the most confident images, and per concept where it is strongest."""
    config = ctx.config
    if config.map_images == 0:
        return MapsOnImages([], {}, torch.zeros(0), {}, [], {}, Pictures())
    order = [int(c) for c in bank.order]
    chosen = _by_confidence(probabilities, config.map_images)
    strongest = {c: np.argsort(-bank.image_codes[:, c], kind="stable")[: config.map_strip].tolist() for c in order}
    needed = sorted(set(chosen).union(*strongest.values()))
    maps = concept_maps(ctx.split, bank, loaded.images[needed], batch_size=config.concepts.batch_size,
                        device=ctx.device)
    rows = {image: row for row, image in enumerate(needed)}
    pictures = Pictures()
    hidden = set(np.flatnonzero(bank.everywhere).tolist())
    overlays = [pictures.add(f"maps/{n:02d}_all.webp",
                             all_concepts_overlay(loaded.images[i], maps[rows[i]], order, hidden=hidden))
                for n, i in enumerate(chosen)]
    by_concept = {
        concept: [pictures.add(f"maps/{rank:02d}_concept_{j}.webp",
                               one_concept_overlay(loaded.images[i], maps[rows[i], concept], rank))
                  for j, i in enumerate(strongest[concept])]
        for rank, concept in enumerate(order)
    }
    return MapsOnImages(chosen, strongest, maps, rows, overlays, by_concept, pictures)


@dataclass
class RankingChecks:
    """Stage 3d: the deletion and insertion curves of the ranking on the maps' images, over the concepts that have a
    region (not those in every crop alike; ``left_out`` names them); None without maps or without such a concept."""

    deletion: ImageCurves | None
    insertion: ImageCurves | None


def ranking_checks_stage(ctx: ClassContext, loaded: LoadedImages, bank: ConceptBank,
                         maps: MapsOnImages) -> RankingChecks:
    """Stage 3d: remove (deletion) or put back (insertion) the concepts' regions in ranking order, against
    random orders and random regions (:mod:`pipelines.run.deletion`)."""
    order = [int(c) for c in bank.order]
    # a concept in every crop alike has no region of its own: removing "its" region would remove an arbitrary one
    located = np.flatnonzero(~bank.everywhere).tolist()  # by id: the maps' own order
    if not maps.images or not located:
        return RankingChecks(None, None)
    config = ctx.config
    on_images = maps.maps[[maps.rows[i] for i in maps.images]]
    deletion, insertion = image_curves(
        ctx.split, loaded.images[maps.images], on_images[:, located], [located.index(c) for c in order if c in located],
        ctx.job.class_index, share=config.deletion_share, seeds=config.deletion_seeds, fill=config.deletion_fill,
        batch_size=config.concepts.batch_size,
    )
    left_out = [rank for rank, concept in enumerate(order) if concept not in located]
    return RankingChecks(replace(deletion, left_out=left_out), replace(insertion, left_out=left_out))


@dataclass
class Layouts:
    """Stage 3e: the cluster graph (images by their concept contributions, thumbnails in the sprite picture
    ``sprite``, ``columns`` wide) and the concepts placed by their directions."""

    clusters: list[ImagePoint]
    sprite: str | None
    columns: int
    concepts: list[LayoutPoint]
    pictures: Pictures


def layouts_stage(ctx: ClassContext, loaded: LoadedImages, bank: ConceptBank,
                  probabilities: torch.Tensor) -> Layouts:
    """Stage 3e: both 2-D layouts (PCA, :mod:`pipelines.run.layouts`)."""
    order = [int(c) for c in bank.order]
    rank_of = {concept: rank for rank, concept in enumerate(order)}
    directions = np.asarray(bank.W, dtype=np.float64)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True).clip(1e-12)
    concept_layout = [LayoutPoint(float(x), float(y), rank_of[c]) for c, (x, y) in enumerate(pca_2d(directions))]
    if ctx.config.cluster_images == 0:
        return Layouts([], None, 0, concept_layout, Pictures())
    chosen = _by_confidence(probabilities, ctx.config.cluster_images)
    contributions = np.asarray(bank.contributions)[chosen]
    sprite = thumbnail_sprite(loaded.images[chosen])
    points = [
        ImagePoint(float(x), float(y), rank_of[int(contributions[j].argmax())], cell=j,
                   source=_relative(loaded.paths[i], ctx.job.folder))
        for j, (i, (x, y)) in enumerate(zip(chosen, pca_2d(contributions)))
    ]
    pictures = Pictures()
    name = pictures.add("maps/cluster_sprite.webp", sprite)
    return Layouts(points, name, sprite.width // SPRITE_CELL, concept_layout, pictures)


def fidelity_stage(ctx: ClassContext, bank: ConceptBank, features: ClassFeatures) -> ConceptFidelity:
    """Stage 3f: C-Deletion, C-Insertion and C-μFidelity of the ranking on all the class's images (exact, in
    the features: no image is edited)."""
    return concept_fidelity(
        features.images, torch.as_tensor(bank.image_codes), torch.as_tensor(bank.W), ctx.split.h,
        ctx.job.class_index, [int(c) for c in bank.order], torch.as_tensor(bank.importance_per_image),
        seeds=ctx.config.fidelity_seeds, seed=bank.seed,
    )
