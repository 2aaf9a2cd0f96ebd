"""Orchestration and Stage 3: class runs, feature inversion, mosaics, the static gallery, the CLI.

The only package of concept-lens that writes files (through :mod:`pipelines.io`).
"""

from .class_run import class_dir, run_class, unfinished_reason
from .config import ConceptConfig, RunConfig, VisualizationConfig
from .demo_run import DEMO_CONFIG, run_demo
from .evaluate import concept_purity, evaluate_demo, plausibility, transferability
from .gallery import build_gallery
from .inversion import inversion_cosines, layer_features, render_inversions
from .io import OutputNotWritableError, atomic_write_bytes, atomic_write_text, load_json, save
from .jobs import ClassJob, imagenet_jobs, parse_class_list, resolve_class
from .models import ModelBundle, demo_bundle, resnet50_bundle
from .mosaic import alpha_over_white, concept_mosaic, to_pil
from .run import RunSummary, run_classes

__all__ = [
    "ClassJob",
    "ConceptConfig",
    "DEMO_CONFIG",
    "ModelBundle",
    "OutputNotWritableError",
    "RunConfig",
    "RunSummary",
    "VisualizationConfig",
    "alpha_over_white",
    "atomic_write_bytes",
    "atomic_write_text",
    "build_gallery",
    "class_dir",
    "concept_mosaic",
    "concept_purity",
    "evaluate_demo",
    "demo_bundle",
    "imagenet_jobs",
    "inversion_cosines",
    "layer_features",
    "load_json",
    "parse_class_list",
    "render_inversions",
    "plausibility",
    "resnet50_bundle",
    "resolve_class",
    "run_class",
    "run_classes",
    "run_demo",
    "save",
    "to_pil",
    "transferability",
    "unfinished_reason",
]
