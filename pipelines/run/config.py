"""Frozen configuration of a run, recorded in ``run.json``.

The rendering budgets are :class:`maco.RenderSettings` themselves (concept
visualizations and inversions), passed to the renderer as they are; the
fields of :class:`ConceptConfig` are the keywords of
:func:`concepts.extract_concepts` (a test checks them). The model's own input
size and normalisation are not settings: they come with the model
(:class:`concepts.ModelSplit`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from concepts import FIT_ON_DEFAULT, ModelSplit, resolve_fit_on
from maco import RenderSettings

from ..concept_layer import resolve_factorization
from .deletion import FILL

__all__ = ["INVERSION_CROP_SIZE", "ConceptConfig", "RunConfig"]

# Feature inversion matches the features of a whole reference image, so its crops cover most of the canvas:
# on the demo world (flag, house, tree; 6 images each), crop area N(0.8, 0.1) reached cosines of 0.65-0.99
# where the visualization default N(0.25, 0.1) reached 0.42-0.77 on flag and house (BENCHMARKS.md).
INVERSION_CROP_SIZE = (0.8, 0.1)


@dataclass(frozen=True)
class ConceptConfig:
    """Keywords of :func:`concepts.extract_concepts` (CRAFT on the penultimate layer)."""

    n_concepts: int | str = 10  # or "auto": chosen by completeness (concepts.sweep_n_concepts)
    patch_size: int = 64
    solver: str = "hals"
    sobol_designs: int = 32
    batch_size: int = 64
    random_state: int = 0
    amp: bool | None = None  # bf16 autocast for the concept stage's forward passes; None: on CUDA only
    channels_last: bool | None = None  # likewise
    importance: str = "auto"  # exact, gradient-input or sobol; auto: exact for a linear head, else gradient-input
    importance_on: str = "images"  # measured on the whole images or on the crops
    fit_on: str = FIT_ON_DEFAULT  # auto: the photos' positions for NMF (parts), crops+images for Semi-NMF
    factorization: str = "auto"  # nmf, or semi-nmf for signed features (auto: semi-nmf where a feature is negative)
    stability: bool = True  # fit the even and the odd images too: the split-half stability of the decomposition


@dataclass(frozen=True)
class RunConfig:
    """Everything a class run chooses; ``asdict`` goes into ``run.json``."""

    concepts: ConceptConfig = field(default_factory=ConceptConfig)
    visualization: RenderSettings = field(default_factory=lambda: RenderSettings(seed=0))
    inversion: RenderSettings = field(default_factory=lambda: RenderSettings(seed=0, crop_size=INVERSION_CROP_SIZE))
    image_size: int = 224
    max_images: int | None = None
    load_workers: int = 4
    top_crops: int = 10
    inversions: int = 10
    cossim_pow: float = 2.0
    inversion_cossim_pow: float | None = None  # None: match by cosine (see maco.Objective.inversion)
    aligned_classes: int = 5
    map_images: int = 6  # the class's most confidently classified images: concept maps and deletion curves
    map_strip: int = 4  # per concept, its map on the images where it is strongest
    deletion_share: float = 0.1  # share of an image's pixels each removed concept covers
    deletion_seeds: int = 3  # random orders and random-region draws
    deletion_fill: str = FILL  # what a deleted pixel becomes (pipelines.run.deletion)
    fidelity_seeds: int = 8  # random orders of the concept-space curves
    cluster_images: int = 144  # images in the cluster graph (the most confident), with thumbnails on hover
    keep_features: bool = True  # cache the crops' features (reruns with another k compute none); off: less disk

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def resolved(self, split: ModelSplit) -> "RunConfig":
        """This config with ``factorization="auto"`` decided for ``split``'s layer by
        :func:`pipelines.concept_layer.resolve_factorization` (Semi-NMF where the layer's features can be
        negative; ``"nmf"`` on such a layer refused) and ``fit_on="auto"`` by the factorization
        (:func:`concepts.resolve_fit_on`): the one rule of :func:`pipelines.run_classes` and
        :func:`pipelines.explain_class`, so every class of a layer gets the same settings and the stamps of its
        caches name them (the library's ``extract_concepts`` alone decides by one class's features)."""
        factorization = resolve_factorization(split, self.concepts.factorization)
        fit_on = resolve_fit_on(self.concepts.fit_on, factorization)
        return replace(self, concepts=replace(self.concepts, factorization=factorization, fit_on=fit_on))
