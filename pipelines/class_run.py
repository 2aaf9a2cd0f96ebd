"""Stage 1 -> 2 -> 3 for one class, resumable.

Layout of ``<run>/classes/<class_index:04d>/``::

    bank/                 ConceptBank (Stage 1), saved as soon as it exists
    renders/concepts/     RenderResult of the k concept visualizations (Stage 2)
    renders/inversions/   RenderResult of the feature inversions (Stage 3)
    concepts/, inversions/  PNGs for the gallery
    class.json            written last: its ``"status": "done"`` marks the class finished

Each intermediate result is written atomically as soon as it exists, so a
run killed at any point redoes at most the stage it was in.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

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

__all__ = ["class_dir", "is_done", "run_class"]

_logger = logging.getLogger(__name__)


def class_dir(run_dir: Path, class_index: int) -> Path:
    return Path(run_dir) / "classes" / f"{class_index:04d}"


def is_done(run_dir: Path, class_index: int) -> bool:
    path = class_dir(run_dir, class_index) / "class.json"
    try:
        return load_json(path).get("status") == "done"
    except (OSError, ValueError):
        return False


def _cached_render(directory: Path, make) -> RenderResult:
    if (directory / "result.json").is_file():
        try:
            return RenderResult.load(directory)
        except (OSError, ValueError, KeyError) as err:
            _logger.warning("redoing %s: %s", directory, err)
    result = make()
    result.save(directory)
    return result


def _bank(
    folder: Path, job: ClassJob, bundle: ModelBundle, config: RunConfig, device: torch.device, loaded, progress: bool
) -> ConceptBank:
    if (folder / "bank").is_dir():
        try:
            return ConceptBank.load(folder / "bank")
        except (OSError, ValueError, KeyError) as err:
            _logger.warning("redoing the concept bank of class %d: %s", job.class_index, err)
    split = split_model(
        bundle.model,
        mean=bundle.mean,
        std=bundle.std,
        input_size=bundle.input_size,
        categories=bundle.categories,
        model_id=bundle.model_id,
    )
    bank = extract_concepts(split, loaded, job.class_index, **asdict(config.concepts), device=device, progress=progress)
    bank.save(folder / "bank")
    return bank


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
    """Run every stage for one class and write its folder; returns the ``class.json`` content."""
    folder = class_dir(run_dir, job.class_index)
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
    bank = _bank(folder, job, bundle, config, device, loaded, progress)
    lap("concepts")

    order = [int(c) for c in bank.order]
    vectors = torch.as_tensor(bank.W)[order].float().to(device)
    viz = config.visualization
    renders = _cached_render(
        folder / "renders" / "concepts",
        lambda: maco(
            Objective.direction(bundle.model, bundle.layer, vectors, cossim_pow=config.cossim_pow),
            **asdict(viz),
            mean=bundle.mean,
            std=bundle.std,
            device=device,
            progress=progress,
        ),
    )
    lap("visualizations")

    top_crops = bank.top_crops(config.top_crops)
    concepts = []
    for position, concept in enumerate(order):
        stem = f"concepts/{position:02d}"
        image, alpha = renders.images[position], renders.alphas[position]
        save(to_pil(image), folder / f"{stem}_viz.png")
        save(alpha_over_white(image, alpha), folder / f"{stem}_alpha.png")
        patches = [crop_image(loaded.images, bank, int(i)) for i in top_crops[concept]]
        crop_files = []
        for j, patch in enumerate(patches):
            crop_files.append(f"{stem}_crop_{j}.png")
            save(to_pil(patch), folder / crop_files[-1])
        importance = float(bank.importance_pct[concept])
        title = (
            f"{job.class_name} ({job.class_index}) - concept {position + 1} of {len(order)} "
            f"- {importance:.1f}% of logit"
        )
        save(concept_mosaic(image, alpha, patches, title=title), folder / f"{stem}_mosaic.png")
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
        result = _cached_render(
            folder / "renders" / "inversions",
            lambda: render_inversions(
                bundle.model,
                bundle.layer,
                references,
                config.inversion,
                cossim_pow=config.inversion_cossim_pow,
                progress=progress,
                **norm,
            ),
        )
        reached = inversion_cosines(
            bundle.model, bundle.layer, result.images, references, input_size=bundle.input_size, **norm
        )
        for i, source in enumerate(chosen):
            save(to_pil(loaded.images[source]), folder / f"inversions/{i:02d}_ref.png")
            save(to_pil(result.images[i]), folder / f"inversions/{i:02d}_inv.png")
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
        "status": "done",
    }
    save(record, folder / "class.json")
    return record
