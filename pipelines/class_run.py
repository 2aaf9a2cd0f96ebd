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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import torch
import torch.nn.functional as F

from concepts import ConceptBank, crop_image, extract_concepts, load_images, split_model
from maco import Objective, RenderResult, frozen, maco

from .config import RunConfig
from .inversion import inversion_cosines, render_inversions
from .io import load_json, save
from .jobs import ClassJob
from .models import ModelBundle
from .mosaic import alpha_over_white, concept_mosaic, to_pil
from .stamp import Stamp, folder_digest

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


def class_stamps(job: ClassJob, bundle: ModelBundle, config: RunConfig) -> ClassStamps:
    """The stamps of every stage of ``job`` under ``config`` (stats the image folder; no decoding)."""
    if not Path(job.folder).is_dir():
        raise ValueError(f"class {job.class_index} ({job.class_name}): image folder {job.folder} does not exist.")
    common = {
        "model": {"id": bundle.model_id, "weights": bundle.weights_digest, "layer": bundle.layer},
        "class_index": job.class_index,
        "images": {"folder": str(job.folder), **folder_digest(job.folder)},
        "image_size": config.image_size,
        "max_images": config.max_images,
    }
    bank = Stamp({**common, "concepts": asdict(config.concepts)})
    concepts = Stamp(
        {"bank": bank.key, "visualization": asdict(config.visualization), "cossim_pow": config.cossim_pow}
    )
    inversions = Stamp(
        {
            **common,
            "inversion": asdict(config.inversion),
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
        record = load_json(path)
    except (OSError, ValueError) as err:
        return f"its class.json is unreadable ({type(err).__name__})"
    if not isinstance(record, dict) or record.get("status") != "done":
        return "it has not finished"
    changed = stamp.changes_from(record.get("stamp"))
    if changed is not None:
        return changed
    files = record.get("files")
    if not isinstance(files, dict):
        return "its class.json lists no files"
    for name, size in files.items():
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


def _bank(job: ClassJob, bundle: ModelBundle, config: RunConfig, device: torch.device, loaded, progress: bool):
    """A maker of the class's concept bank (Stage 1)."""

    def make() -> ConceptBank:
        split = split_model(
            bundle.model,
            mean=bundle.mean,
            std=bundle.std,
            input_size=bundle.input_size,
            categories=bundle.categories,
            model_id=bundle.model_id,
        )
        return extract_concepts(
            split, loaded, job.class_index, **asdict(config.concepts), device=device, progress=progress
        )

    return make


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


@torch.no_grad()
def _class_probabilities(
    bundle: ModelBundle, images: torch.Tensor, class_index: int, device: torch.device
) -> torch.Tensor:
    mean = torch.tensor(bundle.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(bundle.std, device=device).view(1, 3, 1, 1)
    probs = []
    with frozen(bundle.model):
        for start in range(0, len(images), 64):
            x = images[start : start + 64].to(device)
            if x.shape[-1] != bundle.input_size:
                x = F.interpolate(x, size=bundle.input_size, mode="bilinear", antialias=True)
            probs.append(bundle.model((x - mean) / std).float().softmax(1)[:, class_index].cpu())
    return torch.cat(probs)


def _aligned_classes(bank: ConceptBank, bundle: ModelBundle, concept: int, n: int) -> list[dict[str, Any]]:
    """The ``n`` classes whose fc weights are closest (cosine) to the concept's direction, as on the Lens site."""
    head = bundle.model.fc.weight.detach().float().cpu()
    w = torch.as_tensor(bank.W[concept]).float()
    cos = F.cosine_similarity(head, w[None], dim=1)
    top = cos.topk(min(n, len(cos)))
    return [
        {"class_index": int(i), "class_name": bundle.categories[int(i)], "cosine": round(float(c), 4)}
        for c, i in zip(top.values, top.indices)
    ]


def run_class(
    job: ClassJob,
    bundle: ModelBundle,
    config: RunConfig,
    run_dir: Path,
    *,
    device: torch.device,
    progress: bool = True,
    rank: int = 0,
) -> dict[str, Any]:
    """Run every stage for one class and write its folder; returns the ``class.json`` content.

    Stages whose saved result carries a matching stamp are reused; the others are redone.
    """
    folder = class_dir(run_dir, job.class_index)
    stamps = class_stamps(job, bundle, config)
    _clear_outputs(folder)
    written: list[str] = []

    def write(obj: Any, name: str) -> str:
        save(obj, folder / name)
        written.append(name)
        return name
    timings: dict[str, float] = {}
    peak_memory_mb: dict[str, float] = {}
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    clock = time.perf_counter()

    def lap(name: str) -> None:
        """Record the stage's wall time (and, on CUDA, its peak memory)."""
        nonlocal clock
        if cuda:
            torch.cuda.synchronize(device)
            peak_memory_mb[name] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
            torch.cuda.reset_peak_memory_stats(device)
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    loaded = load_images(
        job.folder, image_size=config.image_size, max_images=config.max_images, num_workers=config.load_workers
    )
    if len(loaded.paths) == 0:
        raise ValueError(
            f"class {job.class_index} ({job.class_name}): no readable image in {job.folder} "
            f"({len(loaded.skipped)} skipped)."
        )
    lap("load")
    what = f"class {job.class_index} ({job.class_name})"
    bank = _cached(
        folder / "bank",
        stamps.bank,
        ConceptBank.load,
        _bank(job, bundle, config, device, loaded, progress),
        f"the concept bank of {what}",
    )
    lap("concepts")

    order = [int(c) for c in bank.order]
    vectors = torch.as_tensor(bank.W)[order].float().to(device)
    viz = config.visualization
    renders = _cached(
        folder / "renders" / "concepts",
        stamps.concepts,
        RenderResult.load,
        lambda: maco(
            Objective.direction(bundle.model, bundle.layer, vectors, cossim_pow=config.cossim_pow),
            **asdict(viz),
            mean=bundle.mean,
            std=bundle.std,
            device=device,
            progress=progress,
        ),
        f"the concept visualizations of {what}",
    )
    lap("visualizations")

    top_crops = bank.top_crops(config.top_crops)
    concepts = []
    for position, concept in enumerate(order):
        stem = f"concepts/{position:02d}"
        image, alpha = renders.images[position], renders.alphas[position]
        write(to_pil(image), f"{stem}_viz.png")
        write(alpha_over_white(image, alpha), f"{stem}_alpha.png")
        patches = [crop_image(loaded.images, bank, int(i)) for i in top_crops[concept]]
        crop_files = [write(to_pil(patch), f"{stem}_crop_{j}.png") for j, patch in enumerate(patches)]
        importance = float(bank.importance_pct[concept])
        title = (
            f"{job.class_name} ({job.class_index}) - concept {position + 1} of {len(order)} "
            f"- {importance:.1f}% of logit"
        )
        write(concept_mosaic(image, alpha, patches, title=title), f"{stem}_mosaic.png")
        sobol = getattr(bank, "sobol", None)
        concepts.append(
            {
                "rank": position,
                "concept_id": concept,
                "importance_pct": round(importance, 3),
                "sobol": None if sobol is None else round(float(sobol[concept]), 4),
                "visualization": f"{stem}_viz.png",
                "visualization_alpha": f"{stem}_alpha.png",
                "mosaic": f"{stem}_mosaic.png",
                "top_crops": crop_files,
                "aligned_classes": _aligned_classes(bank, bundle, concept, config.aligned_classes),
            }
        )
    lap("mosaics")

    inversions = []
    if config.inversions > 0:
        probs = _class_probabilities(bundle, loaded.images, job.class_index, device)
        chosen = probs.argsort(descending=True)[: config.inversions].tolist()
        references = loaded.images[chosen]
        norm = dict(mean=bundle.mean, std=bundle.std)
        result = _cached(
            folder / "renders" / "inversions",
            stamps.inversions,
            RenderResult.load,
            lambda: render_inversions(
                bundle.model,
                bundle.layer,
                references,
                config.inversion,
                cossim_pow=config.inversion_cossim_pow,
                progress=progress,
                **norm,
            ),
            f"the feature inversions of {what}",
        )
        reached = inversion_cosines(
            bundle.model, bundle.layer, result.images, references, input_size=bundle.input_size, **norm
        )
        for i, source in enumerate(chosen):
            write(to_pil(loaded.images[source]), f"inversions/{i:02d}_ref.png")
            write(to_pil(result.images[i]), f"inversions/{i:02d}_inv.png")
            inversions.append(
                {
                    "reference": f"inversions/{i:02d}_ref.png",
                    "inversion": f"inversions/{i:02d}_inv.png",
                    "cosine": round(float(reached[i]), 4),
                    "source": str(loaded.paths[source]),
                    "probability": round(float(probs[source]), 4),
                }
            )
    lap("inversions")

    record = {
        "class_index": job.class_index,
        "class_name": job.class_name,
        "wnid": job.wnid,
        "model_id": bundle.model_id,
        "n_images": len(loaded.paths),
        "n_crops": int(len(bank.U)),
        "k": len(order),
        "reconstruction_error": round(float(bank.relative_reconstruction_error), 5),
        "skipped": [{"path": str(p), "reason": r} for p, r in loaded.skipped],
        "concepts": concepts,
        "inversions": inversions,
        "timings": timings,
        "peak_memory_mb": peak_memory_mb,
        "device": str(device),
        "rank": rank,
        "stamp": stamps.record.to_dict(),
        "files": {name: (folder / name).stat().st_size for name in written},
        "status": "done",
    }
    save(record, folder / "class.json")
    return record
