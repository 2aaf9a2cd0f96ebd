"""The class record: what a finished class folder holds, typed, saved as ``class.json``.

The class run fills a :class:`ClassRecord` stage by stage; the gallery and the
run bookkeeping read it back with :meth:`ClassRecord.load`, which checks every
field's type against these dataclasses, so a damaged or hand-edited file is
one clear :class:`RecordError` instead of a ``KeyError`` three modules away.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from concepts import EVERYWHERE_IMAGE_SPREAD, EVERYWHERE_SPREAD, ConceptFidelity, Decomposition, NConceptsSweep

from .deletion import ImageCurves
from ..io import json_text, save
from .layouts import ImagePoint, LayoutPoint

__all__ = [
    "RECORD_SCHEMA",
    "AlignedClass",
    "ClassRecord",
    "ConceptEntry",
    "InversionEntry",
    "RecordError",
    "SkippedFile",
]

# 9: `decomposition` (how the decision splits into concepts), `fit_on`, a concept's `image_spread`;
# 8: a concept's `spread` (of its coefficients over the crops: in every crop alike, or a part);
# 7: `k` became `n_concepts` (one name from --n-concepts to the bank); 6: `factorization`, `importance_method`,
# `contributions`, `aligned_by`; 5: `n_concepts_sweep`, `digest`; 4: `insertion`, `fidelity`, random regions;
# 3: WebP pictures; 2: `layer`, `feature_transform`
RECORD_SCHEMA = 9
READABLE_SCHEMAS = (6, 7, 8, 9)  # older records still show (without what came later); a rerun redoes them


class RecordError(ValueError):
    """A ``class.json`` that is not a valid class record."""


@dataclass
class AlignedClass:
    """A class whose direction (``ClassRecord.aligned_by``) points the same way as a concept (as on the Lens site)."""

    class_index: int
    class_name: str
    cosine: float


@dataclass
class ConceptEntry:
    """One concept of the class, by rank; file names are relative to the class folder."""

    rank: int
    concept_id: int
    importance_pct: float
    sobol: float | None
    visualization: str
    visualization_alpha: str
    mosaic: str
    top_crops: list[str]
    aligned_classes: list[AlignedClass]
    colour: str = "#999999"
    maps: list[str] = field(default_factory=list)
    most_important_for: int = 0
    visualization_full: str | None = None  # the full-size lossless image (the render cache's), linked from the page
    spread: float | None = None  # ConceptBank.coefficient_spread: std / mean of its coefficients over the crops
    image_spread: float | None = None  # ConceptBank.image_spread, over the whole images (None: too few to tell)

    @property
    def alike(self) -> str | None:
        """``"every crop"`` or ``"every photo"`` where the concept is in all of them at about the same strength
        (spread below :data:`concepts.EVERYWHERE_SPREAD` over the crops, or :data:`concepts.EVERYWHERE_IMAGE_SPREAD`
        over the photos): a component all the features share (a ViT's LayerNorm offset, the class's mean), not a
        part of the images (ConceptBank.everywhere); None for a part."""
        if self.spread is not None and self.spread < EVERYWHERE_SPREAD:
            return "every crop"
        if self.image_spread is not None and self.image_spread < EVERYWHERE_IMAGE_SPREAD:
            return "every photo"
        return None

    @property
    def everywhere(self) -> bool:
        """In every crop or every photo alike (:attr:`alike`)."""
        return self.alike is not None


@dataclass
class InversionEntry:
    """A feature inversion of one of the class's images, and how close it came (cosine)."""

    reference: str
    inversion: str
    cosine: float
    source: str
    probability: float


@dataclass
class SkippedFile:
    """An input file that could not be used, with the reason."""

    path: str
    reason: str


@dataclass
class ClassRecord:
    """Everything a class page shows and a rerun checks.

    ``model_id`` names the model and its weights (``torchvision/resnet50/IMAGENET1K_V2``, or
    ``.../sha256:<hex>`` of a weights file), ``layer`` the module whose features the concepts decompose, and
    ``feature_transform`` what was done to them to make them non-negative (None: nothing),
    ``factorization`` how they became concepts (``nmf``; ``semi-nmf`` for signed features: a signed bank),
    ``importance_method`` what ranks the concepts (``exact``, ``gradient-input`` or ``sobol``; ``importance``
    adds where it was measured), ``contributions`` how each concept's share of the logit was measured (``exact``
    through a linear head, ``gradient-input`` through another: the % of logit and completeness are then gradient
    x input sums) and ``aligned_by`` what a concept direction is compared with to find its aligned classes
    (``head weights``, or ``mean logit gradients``: each class logit's gradient with respect to the pooled
    features, mean over this class's images, for a head that is not linear).
    ``overlays`` are every concept's map over the class's most confidently classified images, and
    ``deletion`` and ``insertion`` the causal checks of the ranking on those images (:mod:`pipelines.run.deletion`),
    ``fidelity`` the same in concept space on all the class's images (:mod:`concepts.fidelity`);
    ``completeness`` the share of the class logit above the bias that the concepts carry (mean over the images),
    ``decomposition`` how the decision splits into them (:class:`concepts.Decomposition`: important concepts,
    median top share, decision kept, split-half stability), ``fit_on`` the rows the bank was fitted on
    (:data:`concepts.FIT_ON`),
    ``reconstruction_error_images`` the bank's relative error on the whole images, ``n_concepts_sweep`` the
    completeness curve ``n_concepts`` was chosen from (``--n-concepts auto``; None when it was given); ``clusters``
    (with the thumbnails in ``cluster_sprite``, ``cluster_columns`` wide) place the images by their concept
    importances and
    ``concept_layout`` the concepts by their directions (:mod:`pipelines.run.layouts`).
    ``stamp`` says what the class was made from (:mod:`pipelines.run.stamp`) and
    ``files`` the size of every file the record lists, so a rerun can tell a
    finished, intact class from a stale or damaged one.
    """

    class_index: int
    class_name: str
    wnid: str | None
    model_id: str
    layer: str
    n_images: int
    n_crops: int
    n_concepts: int
    reconstruction_error: float
    skipped: list[SkippedFile] = field(default_factory=list)
    concepts: list[ConceptEntry] = field(default_factory=list)
    inversions: list[InversionEntry] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    peak_memory_mb: dict[str, float] = field(default_factory=dict)
    device: str = "cpu"
    rank: int = 0
    stamp: dict[str, Any] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)
    feature_transform: str | None = None
    overlays: list[str] = field(default_factory=list)
    deletion: ImageCurves | None = None
    insertion: ImageCurves | None = None
    fidelity: ConceptFidelity | None = None
    importance: str = "exact on images"
    completeness: float | None = None
    decomposition: Decomposition | None = None
    fit_on: str = "crops+images"  # records before schema 9 were all fitted so
    reconstruction_error_images: float | None = None
    n_concepts_sweep: NConceptsSweep | None = None
    clusters: list[ImagePoint] = field(default_factory=list)
    cluster_sprite: str | None = None
    cluster_columns: int = 0
    concept_layout: list[LayoutPoint] = field(default_factory=list)
    factorization: str = "nmf"
    importance_method: str = "exact"
    contributions: str = "exact"
    aligned_by: str = "head weights"
    status: str = "done"
    schema: int = RECORD_SCHEMA
    # SHA-256 of the file as written with this field empty: set by `save`, checked by `load(..., intact=True)`
    digest: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the record as JSON, atomically, with the digest of its own text."""
        data = self.to_dict()
        data["digest"] = _digest(data)
        return save(data, path)

    @classmethod
    def from_dict(cls, data: Any) -> "ClassRecord":
        """Build a record from parsed JSON, checking every field; raises :class:`RecordError`."""
        if not isinstance(data, dict):
            raise RecordError(f"a class record must be a JSON object; got {type(data).__name__}")
        if data.get("schema") == 6 and "k" in data:  # 7 renamed `k` only
            data = {**{key: value for key, value in data.items() if key != "k"}, "n_concepts": data["k"]}
        if data.get("schema") not in READABLE_SCHEMAS:
            raise RecordError(f"class record schema {data.get('schema')!r}, expected {RECORD_SCHEMA}; rerun the "
                              "class (its cached stages are reused)")
        return _build(cls, data, "class.json")

    @classmethod
    def load(cls, path: str | os.PathLike, *, intact: bool = False) -> "ClassRecord":
        """Read ``class.json``; raises :class:`RecordError` naming the file and the bad field.

        ``intact=True`` (a cache about to be trusted) also requires the file to be, byte for byte, the text
        :meth:`save` wrote: a flipped byte that still parses (a digit of a score, a letter of a file name) is
        damage, found by the record's digest and by writing the parsed record back out.
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
            data = json.loads(text)
        except (OSError, ValueError) as err:
            raise RecordError(f"cannot read {path}: {err}") from err
        try:
            record = cls.from_dict(data)
            if intact and (data.get("digest") != _digest(data) or json_text(data) != text):
                raise RecordError("its text is not the text its digest was made from (damaged or edited)")
            return record
        except RecordError as err:
            raise RecordError(f"{path}: {err}") from None


def _digest(data: dict[str, Any]) -> str:
    """SHA-256 of the JSON text of ``data`` with an empty ``digest``."""
    return hashlib.sha256(json_text({**data, "digest": ""}).encode("utf-8")).hexdigest()


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """The resolved field types of a record dataclass, once per class (a 1000-class gallery reads 34,000 objects)."""
    return typing.get_type_hints(cls)


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise RecordError(f"{where} must be an object; got {type(data).__name__}")
    hints = _hints(cls)
    unknown = sorted(set(data) - set(hints))
    if unknown:  # a key we never write is damage (one flipped bit of a name), not a field to ignore
        raise RecordError(f"{where} has unknown field(s) {', '.join(f'`{key}`' for key in unknown)}")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise RecordError(f"{where} lacks `{f.name}`")
            continue
        values[f.name] = _convert(hints[f.name], data[f.name], f"{where}.{f.name}")
    return cls(**values)


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _convert(next(a for a in args if a is not type(None)), value, where)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise RecordError(f"{where} must be a list; got {type(value).__name__}")
        return [_convert(args[0], item, f"{where}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where} must be an object; got {type(value).__name__}")
        return {str(k): _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise RecordError(f"{where} must be {hint.__name__}; got {type(value).__name__}")
    return value
