"""Frozen configuration dataclasses, one per stage, recorded in ``run.json``.

The fields of :class:`VisualizationConfig` are exactly the keywords of
:func:`maco.maco` that a run chooses, and those of :class:`ConceptConfig` the
keywords of :func:`concepts.extract_concepts` (a test checks both), so the
library calls receive them one for one with ``**asdict(config)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["INVERSION_CROP_SIZE", "ConceptConfig", "RunConfig", "VisualizationConfig"]

# Feature inversion matches the features of a whole reference image, so its crops cover most of the canvas:
# on the demo world (flag, house, tree; 6 images each), crop area N(0.8, 0.1) reached cosines of 0.65-0.99
# where the visualization default N(0.25, 0.1) reached 0.42-0.77 on flag and house (BENCHMARKS.md).
INVERSION_CROP_SIZE = (0.8, 0.1)


@dataclass(frozen=True)
class VisualizationConfig:
    """Keywords of :func:`maco.maco` (paper defaults)."""

    steps: int = 256
    image_size: int = 512
    crops: int = 32
    crop_size: tuple[float, float] = (0.25, 0.1)
    noise: float = 0.1
    lr: float = 1.0
    seed: int | None = 0
    amp: bool = True
    input_size: int = 224
    phase_init: str = "offset"
    fold_bn: bool = True
    max_batch: int | None = None


@dataclass(frozen=True)
class ConceptConfig:
    """Keywords of :func:`concepts.extract_concepts` (CRAFT on the penultimate layer)."""

    n_concepts: int = 10
    patch_size: int = 64
    solver: str = "hals"
    sobol_designs: int = 32
    batch_size: int = 64
    random_state: int = 0


@dataclass(frozen=True)
class RunConfig:
    """Everything a class run chooses; ``asdict`` goes into ``run.json``."""

    concepts: ConceptConfig = field(default_factory=ConceptConfig)
    visualization: VisualizationConfig = field(default_factory=VisualizationConfig)
    inversion: VisualizationConfig = field(default_factory=lambda: VisualizationConfig(crop_size=INVERSION_CROP_SIZE))
    image_size: int = 224
    max_images: int | None = None
    load_workers: int = 4
    top_crops: int = 10
    inversions: int = 10
    cossim_pow: float = 2.0
    inversion_cossim_pow: float | None = None  # None: match by cosine (see maco.Objective.inversion)
    aligned_classes: int = 5

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
