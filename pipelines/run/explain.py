"""One class through Stages 1 -> 2 -> 3: :func:`explain_class`, in memory or into a class folder, resumable.

The command line's class run (:func:`run_class`) is this same path with a folder.
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
settings, weights or images redoes exactly the stages they change. In memory
(no folder) nothing is cached or written, and the renders are used as
computed instead of as read back from their 8-bit files.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from concepts import (ClassFeatures, ConceptBank, ConceptFidelity, Decomposition, LoadedImages, ModelSplit,
                      NConceptsSweep)
from maco import RenderResult
from maco.device import reset_peak_memory

from ..concept_layer import feature_transform
from ..io import readable, save
from .cache import class_stamps, unfinished_reason
from .config import RunConfig
from .jobs import ClassJob
from .record import ClassRecord, SkippedFile
from .result import class_html
from .stages import (ClassContext, ConceptPanels, Inversions, Layouts, MapsOnImages, Pictures, RankingChecks,
                     concepts_stage, features_stage, fidelity_stage, inversions_stage, layouts_stage, load_stage,
                     maps_stage, panels_stage, ranking_checks_stage, visualization_stage)

__all__ = ["ClassExplanation", "class_dir", "explain_class", "run_class", "unfinished_reason"]


def class_dir(run_dir: Path, class_index: int) -> Path:
    return Path(run_dir) / "classes" / f"{class_index:04d}"


@dataclass(repr=False, eq=False)
class ClassExplanation:
    """Everything one class's run found, stage by stage, and the :class:`ClassRecord` the class page shows.

    ``record`` is ``class.json``'s content: its picture names are the keys of :attr:`pictures`, except each
    concept's ``visualization_full`` (the full-size render in ``renders``); ``folder`` is the class folder it was
    written to, None for a run in memory. Plots (:mod:`pipelines.run.plots`) take the record and, for pictures,
    ``folder`` or :attr:`pictures`.
    """

    record: ClassRecord
    images: LoadedImages
    features: ClassFeatures
    bank: ConceptBank
    renders: RenderResult
    probabilities: torch.Tensor  # p(class) of each image
    panels: ConceptPanels
    inversions: Inversions
    maps: MapsOnImages
    checks: RankingChecks
    layouts: Layouts
    fidelity: ConceptFidelity
    folder: Path | None = None

    @property
    def pictures(self) -> Pictures:
        """Every picture of the class page, by its file name in the class folder."""
        return _pictures(self.panels, self.inversions, self.maps, self.layouts)

    def __repr__(self) -> str:
        r = self.record
        where = "in memory" if self.folder is None else f"folder={str(self.folder)!r}"
        return f"ClassExplanation({r.class_name!r} ({r.class_index}), n_concepts={r.n_concepts}, {where})"

    def _repr_html_(self) -> str:
        return class_html(self.record, self.pictures)


def _pictures(*stages: ConceptPanels | Inversions | MapsOnImages | Layouts) -> Pictures:
    found = Pictures()
    for stage in stages:
        found.update(stage.pictures)
    return found


def _record(ctx: ClassContext, loaded: LoadedImages, features: ClassFeatures, bank: ConceptBank,
            panels: ConceptPanels, inversions: Inversions, maps: MapsOnImages, checks: RankingChecks,
            layouts: Layouts, fidelity: ConceptFidelity, files: dict[str, int], rank: int) -> ClassRecord:
    """The class record from the stages' results (each concept's entry gains its maps here)."""
    job, split = ctx.job, ctx.split
    pooled = features.images.double().cpu()
    rebuilt = torch.as_tensor(bank.image_codes).double() @ torch.as_tensor(bank.W).double()
    image_error = float((pooled - rebuilt).norm() / pooled.norm().clamp_min(1e-12))
    return ClassRecord(
        class_index=job.class_index,
        class_name=job.class_name,
        wnid=job.wnid,
        model_id=split.model_id,
        layer=split.layer,
        feature_transform=feature_transform(split),
        n_images=len(loaded.paths),
        n_crops=int(len(bank.U)),
        n_concepts=bank.n_concepts,
        reconstruction_error=round(float(bank.relative_reconstruction_error), 5),
        skipped=[SkippedFile(readable(str(p)), readable(r)) for p, r in loaded.skipped],
        concepts=[replace(entry, maps=maps.by_concept.get(entry.concept_id, [])) for entry in panels.entries],
        inversions=inversions.entries,
        overlays=maps.overlays,
        deletion=checks.deletion,
        insertion=checks.insertion,
        fidelity=fidelity,
        importance=f"{bank.importance} on {bank.importance_on}",
        completeness=round(bank.completeness, 4) if math.isfinite(bank.completeness) else None,
        decomposition=None if bank.decomposition is None else Decomposition(**bank.decomposition),
        fit_on=bank.fit_on,
        reconstruction_error_images=round(image_error, 5),
        n_concepts_sweep=None if bank.n_concepts_sweep is None else NConceptsSweep(**bank.n_concepts_sweep),
        clusters=layouts.clusters,
        cluster_sprite=layouts.sprite,
        cluster_columns=layouts.columns,
        concept_layout=layouts.concepts,
        factorization=bank.factorization,
        importance_method=bank.importance,
        contributions="exact" if split.head_weight is not None else "gradient-input",
        aligned_by=panels.aligned_by,
        timings=ctx.timings,
        peak_memory_mb=ctx.peak_memory_mb,
        device=str(ctx.device),
        rank=rank,
        stamp={} if ctx.stamps is None else ctx.stamps.record.to_dict(),
        files=files,
    )


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


def _explain(ctx: ClassContext, rank: int) -> ClassExplanation:
    """Every stage in order, each timed on its own; with a folder, the pictures and ``class.json`` (last)."""
    if ctx.folder is not None:
        _clear_outputs(ctx.folder)
    reset_peak_memory(ctx.device)
    loaded = load_stage(ctx)
    ctx.lap("load")
    features = features_stage(ctx, loaded)
    ctx.lap("features")
    bank = concepts_stage(ctx, loaded, features)
    ctx.lap("concepts")
    renders = visualization_stage(ctx, bank)
    ctx.lap("visualizations")
    panels = panels_stage(ctx, loaded, features, bank, renders)
    ctx.lap("mosaics")
    probabilities = ctx.split.logits(features.images).softmax(1)[:, ctx.job.class_index]
    inversions = inversions_stage(ctx, loaded, features, probabilities)
    ctx.lap("inversions")
    maps = maps_stage(ctx, loaded, bank, probabilities)
    ctx.lap("maps")
    checks = ranking_checks_stage(ctx, loaded, bank, maps)
    ctx.lap("deletion and insertion")
    layouts = layouts_stage(ctx, loaded, bank, probabilities)
    ctx.lap("layouts")
    fidelity = fidelity_stage(ctx, bank, features)
    ctx.lap("concept fidelity")
    stages = dict(panels=panels, inversions=inversions, maps=maps, checks=checks, layouts=layouts)
    files: dict[str, int] = {}
    if ctx.folder is not None:
        pictures = _pictures(panels, inversions, maps, layouts)
        for name, picture in pictures.items():
            save(picture, ctx.folder / name)
        listed = [*pictures, *(entry.visualization_full for entry in panels.entries)]
        files = {name: (ctx.folder / name).stat().st_size for name in listed}
        ctx.lap("pictures")
    record = _record(ctx, loaded, features, bank, fidelity=fidelity, files=files, rank=rank, **stages)
    if ctx.folder is not None:
        record.save(ctx.folder / "class.json")
        record = ClassRecord.load(ctx.folder / "class.json")  # as open_class and a rerun will see it (its digest)
    return ClassExplanation(record, loaded, features, bank, renders, probabilities, **stages, fidelity=fidelity,
                            folder=ctx.folder)


def explain_class(
    split: ModelSplit,
    images: str | os.PathLike,
    class_index: int,
    *,
    config: RunConfig | None = None,
    folder: str | os.PathLike | None = None,
    class_name: str | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> ClassExplanation:
    """Explain one class of ``split``'s model from the images in the folder ``images``.

    Runs what ``concept-lens run`` runs for a class, with the same settings (``config``, default
    :class:`RunConfig`): the concept bank (Stage 1), the concepts' MaCo visualizations (Stage 2), and Stage 3's
    mosaics, feature inversions, concept maps, deletion and insertion curves, concept-space fidelity and layouts.

    With ``folder`` (a class folder, e.g. ``class_dir(run, class_index)``; new, empty, or one this function or
    the command line wrote) the features, the bank and the renders are cached there with the stamps the
    command line uses, so a rerun reuses those its settings do not change; the rest of Stage 3 is redone and
    the pictures and ``class.json`` are written (:func:`pipelines.open_class` reads them back; the gallery shows
    them). Without, nothing is written. ``device`` defaults to CUDA where there is one; the model is moved there.
    """
    names = split.categories
    if isinstance(class_index, bool) or not isinstance(class_index, numbers.Integral) or class_index < 0 \
            or (names and class_index >= len(names)):
        classes = f"in [0, {len(names) - 1}]" if names else ">= 0"
        raise ValueError(f"`class_index` of explain_class must be a class of the model (an int {classes}); "
                         f"got {class_index!r}.")
    class_index = int(class_index)
    if class_name is None:
        class_name = names[class_index] if names else f"class {class_index}"
    if folder is not None:
        _check_class_folder(Path(folder))
    job = ClassJob(class_index, class_name, Path(images))
    from .classes import resolve_device  # .classes runs classes through this module

    torch_device = resolve_device(None if device is None else str(device))
    split.to(torch_device)
    return _explain_job(job, split, config or RunConfig(), None if folder is None else Path(folder), torch_device,
                        progress, rank=0)


_CLASS_FOLDER_ENTRIES = {"class.json", "index.html", "features", "bank", "renders", "concepts", "inversions", "maps"}


def _check_class_folder(folder: Path) -> None:
    """Refuse a folder that holds anything but a class's files: a rerun clears a class folder's pictures."""
    if folder.is_file():
        raise ValueError(f"`folder` of explain_class must be a class folder; {folder} is a file.")
    if not folder.is_dir():
        return
    killed_write = re.compile(r"\..*\.tmp")  # what an interrupted atomic write leaves
    foreign = sorted(p.name for p in folder.iterdir()
                     if p.name not in _CLASS_FOLDER_ENTRIES and not killed_write.fullmatch(p.name))
    if foreign:
        raise ValueError(f"`folder` of explain_class must be a new or empty folder, or a class folder it or "
                         f"`concept-lens run` wrote; {folder} also holds {', '.join(foreign[:5])}. Pass a folder "
                         f"of its own, e.g. class_dir(run, class_index).")


def _explain_job(job: ClassJob, split: ModelSplit, config: RunConfig, folder: Path | None, device: torch.device,
                 progress: bool, rank: int) -> ClassExplanation:
    config = config.resolved(split)  # `auto` factorization by the layer (a no-op for a run that resolved it)
    stamps = None if folder is None else class_stamps(job, split, config)
    return _explain(ClassContext(job, split, config, device, progress, folder, stamps), rank)


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
    """Run every stage for one class of a run (:func:`pipelines.run_classes`) into its class folder, ``class.json``
    last; returns the record. Stages whose saved result carries a matching stamp are reused; the others redone."""
    return _explain_job(job, split, config, class_dir(run_dir, job.class_index), device, progress, rank).record
