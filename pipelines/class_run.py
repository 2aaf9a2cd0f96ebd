"""Stage 1 -> 2 -> 3 for one class, resumable.

Layout of ``<run>/classes/<class_index:04d>/``::

    bank/                 ConceptBank (Stage 1), saved as soon as it exists
    renders/concepts/     RenderResult of the k concept visualizations (Stage 2)
    renders/inversions/   RenderResult of the feature inversions (Stage 3)
    concepts/, inversions/  PNGs for the gallery
    class.json            written last: its ``"status": "done"`` marks the class finished

Each intermediate result is written atomically as soon as it exists, with a
:class:`~pipelines.stamp.Stamp` of what it was made from (``stamp.json``
beside it), so a run killed at any point redoes at most the stage it was in,
and a rerun with other settings, weights or images redoes exactly the stages
they change (and logs why). ``class.json`` records the class's stamp and the
size of every file it lists: a class is finished only when its stamp matches
and those files are all there, intact.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch
import torch.nn.functional as F

from concepts import ConceptBank, LoadedImages, ModelSplit, crop_image, extract_concepts, extract_features, load_images
from maco import Objective, RenderResult, RenderSettings, render
from maco.device import peak_memory_mb, reset_peak_memory, synchronize

from .config import RunConfig
from .inversion import inversion_cosines, render_inversions
from .io import save, to_pil
from .jobs import ClassJob
from .concept_layer import feature_transform
from .mosaic import alpha_over_white, concept_mosaic
from .record import AlignedClass, ClassRecord, ConceptEntry, InversionEntry, RecordError, SkippedFile
from .stamp import Stamp, folder_digest, weights_digest

__all__ = ["ClassStamps", "class_dir", "class_stamps", "run_class", "unfinished_reason"]

_logger = logging.getLogger(__name__)
T = TypeVar("T")


def class_dir(run_dir: Path, class_index: int) -> Path:
    return Path(run_dir) / "classes" / f"{class_index:04d}"


@dataclass(frozen=True)
class ClassStamps:
    """What each cached stage of a class is made from; each stage's stamp includes the one it builds on."""

    bank: Stamp
    concepts: Stamp
    inversions: Stamp
    record: Stamp


def class_stamps(job: ClassJob, split: ModelSplit, config: RunConfig) -> ClassStamps:
    """The stamps of every stage of ``job`` under ``config`` (stats the image folder; no decoding)."""
    if not Path(job.folder).is_dir():
        raise ValueError(f"class {job.class_index} ({job.class_name}): image folder {job.folder} does not exist.")
    common = {
        "model": {
            "id": split.model_id,
            "weights": weights_digest(split),
            "layer": split.layer,
            "pooled_layer": split.pooled_layer,
            "input_size": split.input_size,
            "mean": split.mean,
            "std": split.std,
        },
        "class_index": job.class_index,
        "images": {"folder": str(job.folder), **folder_digest(job.folder)},
        "image_size": config.image_size,
        "max_images": config.max_images,
    }
    bank = Stamp({**common, "concepts": asdict(config.concepts)})
    concepts = Stamp(
        {"bank": bank.key, "visualization": config.visualization.to_dict(), "cossim_pow": config.cossim_pow}
    )
    inversions = Stamp(
        {
            **common,
            "inversion": config.inversion.to_dict(),
            "inversions": config.inversions,
            "inversion_cossim_pow": config.inversion_cossim_pow,
        }
    )
    record = Stamp(
        {
            "bank": bank.key,
            "concepts": concepts.key,
            "inversions": inversions.key,
            "class_name": job.class_name,
            "wnid": job.wnid,
            "top_crops": config.top_crops,
            "aligned_classes": config.aligned_classes,
        }
    )
    return ClassStamps(bank=bank, concepts=concepts, inversions=inversions, record=record)


def unfinished_reason(folder: Path, stamp: Stamp) -> str | None:
    """Why the class in ``folder`` must be (re)done under ``stamp``; None when it is finished and intact."""
    path = Path(folder) / "class.json"
    if not path.is_file():
        return "it has not finished"
    try:
        record = ClassRecord.load(path)
    except RecordError as err:
        return f"its class record is unreadable ({err})"
    if record.status != "done":
        return "it has not finished"
    changed = stamp.changes_from(record.stamp)
    if changed is not None:
        return changed
    for name, size in record.files.items():
        try:
            actual = (Path(folder) / name).stat().st_size
        except OSError:
            return f"{name} is missing"
        if actual != size:
            return f"{name} is damaged ({actual} bytes, {size} expected)"
    return None


def _cached(directory: Path, stamp: Stamp, load: Callable[[Path], T], make: Callable[[], T], what: str) -> T:
    """Reuse the result saved in ``directory`` if its stamp matches and it loads; else make, save and stamp it."""
    reason = stamp.check(directory)
    if reason is None:
        try:
            return load(directory)
        except Exception as err:  # noqa: BLE001 - any damage (truncated zip, wrong JSON shape, ...) means: redo it
            reason = f"it is damaged ({type(err).__name__}: {err})"
    if directory.exists():
        _logger.warning("redoing %s: %s", what, reason)
    Stamp.clear(directory)
    result = make()
    result.save(directory)
    stamp.write(directory)
    return result


def _clear_outputs(folder: Path) -> None:
    """Before a class is (re)done: unmark it, and drop leftovers (temp files of a killed write, stale PNGs)."""
    (folder / "class.json").unlink(missing_ok=True)
    if not folder.is_dir():
        return
    for path in folder.rglob(".*.tmp"):
        path.unlink(missing_ok=True)
    for sub in ("concepts", "inversions"):
        for path in (folder / sub).glob("*.png"):
            path.unlink()


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


def _load_stage(run: _ClassRun) -> tuple[LoadedImages, torch.Tensor]:
    """The class's images, and their pooled features: the one forward pass every later stage reuses."""
    config, job = run.config, run.job
    loaded = load_images(
        job.folder, image_size=config.image_size, max_images=config.max_images, num_workers=config.load_workers
    )
    if len(loaded.paths) == 0:
        raise ValueError(f"{run.what}: no readable image in {job.folder} ({len(loaded.skipped)} skipped).")
    features = extract_features(run.split, loaded.images, batch_size=config.concepts.batch_size, device=run.device)
    return loaded, features


def _concepts_stage(run: _ClassRun, loaded: LoadedImages, features: torch.Tensor) -> ConceptBank:
    """Stage 1: the concept bank (CRAFT), cached."""

    def make() -> ConceptBank:
        return extract_concepts(
            run.split,
            loaded,
            run.job.class_index,
            **asdict(run.config.concepts),
            device=run.device,
            image_features=features,
            progress=run.progress,
        )

    return _cached(run.folder / "bank", run.stamps.bank, ConceptBank.load, make, f"the concept bank of {run.what}")


def _visualization_stage(run: _ClassRun, bank: ConceptBank) -> RenderResult:
    """Stage 2: one MaCo image per concept direction, most important first, in one batch, cached."""
    split = run.split
    vectors = torch.as_tensor(bank.W)[[int(c) for c in bank.order]].float().to(run.device)
    objective = Objective.direction(split.model, split.pooled_layer, vectors, cossim_pow=run.config.cossim_pow)
    return _cached(
        run.folder / "renders" / "concepts",
        run.stamps.concepts,
        RenderResult.load,
        lambda: run.render(objective, run.config.visualization),
        f"the concept visualizations of {run.what}",
    )


def _aligned_classes(split: ModelSplit, direction: torch.Tensor, n: int) -> list[AlignedClass]:
    """The ``n`` classes whose head weights are closest (cosine) to a concept direction, as on the Lens site."""
    if split.head_weight is None:
        return []
    cos = F.cosine_similarity(split.head_weight.detach().float().cpu(), direction[None].float(), dim=1)
    top = cos.topk(min(n, len(cos)))
    names = split.categories or [str(i) for i in range(len(cos))]
    return [AlignedClass(int(i), names[int(i)], round(float(c), 4)) for c, i in zip(top.values, top.indices)]


def _mosaics_stage(
    run: _ClassRun, loaded: LoadedImages, bank: ConceptBank, renders: RenderResult
) -> list[ConceptEntry]:
    """Stage 3a: per concept, its visualization, alpha view, top crops and mosaic, as files."""
    order = [int(c) for c in bank.order]
    top_crops = bank.top_crops(run.config.top_crops)
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
                visualization=run.write(to_pil(image), f"{stem}_viz.png"),
                visualization_alpha=run.write(alpha_over_white(image, alpha), f"{stem}_alpha.png"),
                top_crops=[run.write(to_pil(patch), f"{stem}_crop_{j}.png") for j, patch in enumerate(patches)],
                mosaic=run.write(concept_mosaic(image, alpha, patches, title=title), f"{stem}_mosaic.png"),
                aligned_classes=_aligned_classes(
                    run.split, torch.as_tensor(bank.W[concept]), run.config.aligned_classes
                ),
            )
        )
    return entries


def _inversions_stage(run: _ClassRun, loaded: LoadedImages, features: torch.Tensor) -> list[InversionEntry]:
    """Stage 3b: feature inversions of the class's most confidently classified images, cached."""
    config = run.config
    if config.inversions == 0:
        return []
    probs = run.split.logits(features).softmax(1)[:, run.job.class_index]
    chosen = probs.argsort(descending=True)[: config.inversions].tolist()
    targets = features[chosen]
    result = _cached(
        run.folder / "renders" / "inversions",
        run.stamps.inversions,
        RenderResult.load,
        lambda: render_inversions(
            run.split, targets, config.inversion, cossim_pow=config.inversion_cossim_pow, progress=run.progress
        ),
        f"the feature inversions of {run.what}",
    )
    reached = inversion_cosines(run.split, result.images, targets)
    return [
        InversionEntry(
            reference=run.write(to_pil(loaded.images[source]), f"inversions/{i:02d}_ref.png"),
            inversion=run.write(to_pil(result.images[i]), f"inversions/{i:02d}_inv.png"),
            cosine=round(float(reached[i]), 4),
            source=str(loaded.paths[source]),
            probability=round(float(probs[source]), 4),
        )
        for i, source in enumerate(chosen)
    ]


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
    loaded, features = _load_stage(run)
    run.lap("load")
    bank = _concepts_stage(run, loaded, features)
    run.lap("concepts")
    renders = _visualization_stage(run, bank)
    run.lap("visualizations")
    concepts = _mosaics_stage(run, loaded, bank, renders)
    run.lap("mosaics")
    inversions = _inversions_stage(run, loaded, features)
    run.lap("inversions")
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
        skipped=[SkippedFile(str(p), r) for p, r in loaded.skipped],
        concepts=concepts,
        inversions=inversions,
        timings=run.timings,
        peak_memory_mb=run.peak_memory_mb,
        device=str(device),
        rank=rank,
        stamp=run.stamps.record.to_dict(),
        files={name: (folder / name).stat().st_size for name in run.written},
    )
    record.save(folder / "class.json")
    return record
