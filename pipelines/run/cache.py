"""A class's cache: what each stage is made from, reuse only when it matches, and whether a class is intact.

Every cached stage of a class (the crop and image features, the concept bank,
the concept renders, the inversion renders, the class record) carries a :class:`~pipelines.run.stamp.Stamp`
of its inputs; each stage's stamp includes the key of the stage it builds on,
so a change anywhere redoes that stage and everything after it (and the log
says why). ``class.json`` records the class's stamp and the size of every file
it lists: a class is finished only when its stamp matches and those files are
all there, intact.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

from concepts import ModelSplit

from .config import RunConfig
from ..io import WEBP_QUALITY
from .jobs import ClassJob
from .record import RECORD_SCHEMA, ClassRecord, RecordError
from .stamp import Stamp, folder_digest, weights_digest

__all__ = ["DISPLAY_SIDE", "INVERSION_QUALITY", "MOSAIC_WIDTH", "ClassStamps", "cached", "class_stamps",
           "finished_record", "unfinished_reason"]

# How a class's pictures are made; in the record's stamp, so a rerun redoes pages made another way.
DISPLAY_SIDE = 256  # longest side of a visualization or inversion on the page (its column is 260 px wide)
MOSAIC_WIDTH = 880  # the mosaic's width on the page (the concept card's second column)
INVERSION_QUALITY = 90  # WebP quality of the cached inversions (kept without alphas): only their pictures are shown

_logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class ClassStamps:
    """What each cached stage of a class is made from; each stage's stamp includes the one it builds on."""

    features: Stamp
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
    concept_config = config.concepts
    features = Stamp({**common, "patch_size": concept_config.patch_size, "amp": concept_config.amp,
                      "channels_last": concept_config.channels_last})
    bank = Stamp({**common, "features": features.key, "concepts": asdict(concept_config)})
    concepts = Stamp(
        {"bank": bank.key, "visualization": config.visualization.to_dict(), "cossim_pow": config.cossim_pow}
    )
    inversions = Stamp(
        {
            **common,
            "inversion": config.inversion.to_dict(),
            "inversions": config.inversions,
            "inversion_cossim_pow": config.inversion_cossim_pow,
            "quality": INVERSION_QUALITY,
            "alphas": False,
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
            "pictures": {"display_side": DISPLAY_SIDE, "mosaic_width": MOSAIC_WIDTH, "webp_quality": WEBP_QUALITY},
            "maps": {
                "images": config.map_images,
                "strip": config.map_strip,
                "deletion_share": config.deletion_share,
                "deletion_seeds": config.deletion_seeds,
                "deletion_fill": config.deletion_fill,
                "fidelity_seeds": config.fidelity_seeds,
                "cluster_images": config.cluster_images,
            },
        }
    )
    return ClassStamps(features=features, bank=bank, concepts=concepts, inversions=inversions, record=record)


def finished_record(folder: Path, stamp: Stamp) -> tuple[ClassRecord | None, str | None]:
    """``(record, None)`` when the class in ``folder`` is finished and intact under ``stamp``, else ``(None, why)``.

    The record is read once: a rerun that skips a finished class reuses it for its bookkeeping.
    """
    path = Path(folder) / "class.json"
    if not path.is_file():
        return None, "it has not finished"
    try:
        record = ClassRecord.load(path, intact=True)
    except RecordError as err:
        return None, f"its class record is unreadable ({err})"
    if record.status != "done":
        return None, "it has not finished"
    if record.schema != RECORD_SCHEMA:  # read for its pages; as a cache it lacks what a newer version records
        return None, f"its class record was made by an older version (schema {record.schema}, now {RECORD_SCHEMA})"
    changed = stamp.changes_from(record.stamp)
    if changed is not None:
        return None, changed
    for name, size in record.files.items():
        try:
            actual = (Path(folder) / name).stat().st_size
        except OSError:
            return None, f"{name} is missing"
        if actual != size:
            return None, f"{name} is damaged ({actual} bytes, {size} expected)"
    return record, None


def unfinished_reason(folder: Path, stamp: Stamp) -> str | None:
    """Why the class in ``folder`` must be (re)done under ``stamp``; None when it is finished and intact."""
    return finished_record(folder, stamp)[1]


def _save(result: Any, directory: Path) -> object:
    return result.save(directory)


def cached(directory: Path, stamp: Stamp, load: Callable[[Path], T], make: Callable[[], T], what: str,
           save: Callable[[T, Path], object] = _save) -> T:
    """Reuse the result saved in ``directory`` if its stamp matches and it loads; else make, save and stamp it.

    ``save(result, directory)`` writes a fresh result (default: ``result.save(directory)``).
    """
    reason = stamp.check(directory)
    if reason is None:
        try:
            return load(directory)
        except Exception as err:  # noqa: BLE001 - any damage (truncated zip, wrong JSON shape, ...) means: redo it
            reason = f"it is damaged ({type(err).__name__}: {err})"
    if directory.exists():
        _logger.warning("redoing %s: %s", what, reason)
    Stamp.clear(directory)
    save(make(), directory)
    stamp.write(directory)
    return load(directory)  # what a resumed run will read: both paths compute from the same bytes
