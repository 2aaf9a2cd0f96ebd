"""Orchestration and Stage 3, in four rooms: :mod:`pipelines.run` (a class through every stage,
:func:`explain_class`; many classes, :func:`run_classes`; their settings, caches, record and plots),
:mod:`pipelines.site` (the static gallery), :mod:`pipelines.cli` (``concept-lens``) and :mod:`pipelines.demo`
(the demo world). :mod:`pipelines.io`, :mod:`pipelines.models` and :mod:`pipelines.concept_layer` serve them all.

The only package of concept-lens that writes files (through :mod:`pipelines.io`).
"""

from .run.result import ClassResult, open_class
from .run.explain import ClassExplanation, class_dir, explain_class, run_class, unfinished_reason
from .run.config import ConceptConfig, RunConfig
from .demo.run import DEMO_CONFIG, run_demo
from .demo.experiment import evaluate_demo
from .evaluate import concept_purity, plausibility, retrieval, transferability
from .site.gallery import build_gallery
from .run.inversion import inversion_cosines, layer_features, render_inversions
from .io import OutputNotWritableError, atomic_write_bytes, atomic_write_text, load_json, save, to_pil
from .run.jobs import ClassJob, imagenet_jobs, parse_class_list
from .concept_layer import concept_split, feature_transform
from .models import (ModelMeta, ModelSpec, WeightsUnavailableError, demo_model, imagenet_resnet50, load_model,
                     model_meta, parse_model, read_class_names)
from .run.mosaic import alpha_over_white, concept_mosaic
from .run.record import ClassRecord, RecordError
from .run.classes import RunSummary, run_classes

__all__ = [
    "alpha_over_white",
    "atomic_write_bytes",
    "atomic_write_text",
    "build_gallery",
    "class_dir",
    "ClassExplanation",
    "ClassJob",
    "ClassResult",
    "ClassRecord",
    "concept_mosaic",
    "concept_purity",
    "concept_split",
    "ConceptConfig",
    "DEMO_CONFIG",
    "demo_model",
    "evaluate_demo",
    "explain_class",
    "feature_transform",
    "imagenet_jobs",
    "imagenet_resnet50",
    "inversion_cosines",
    "layer_features",
    "load_json",
    "load_model",
    "open_class",
    "model_meta",
    "ModelMeta",
    "ModelSpec",
    "OutputNotWritableError",
    "parse_class_list",
    "parse_model",
    "plausibility",
    "read_class_names",
    "RecordError",
    "render_inversions",
    "retrieval",
    "run_class",
    "run_classes",
    "run_demo",
    "RunConfig",
    "RunSummary",
    "save",
    "to_pil",
    "transferability",
    "unfinished_reason",
    "WeightsUnavailableError",
]
