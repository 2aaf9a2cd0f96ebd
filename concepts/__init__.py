"""CRAFT-style concept extraction: which concepts a model uses for a class, and how much each matters.

Works on any model split into ``g`` (images -> spatial features, or a ViT's
tokens) and ``h`` (pooled features -> logits: exact contributions through a
linear head, gradient x input through any other). Uses torch, never ``maco`` or
``pipelines``; writes files only through :meth:`ConceptBank.save`.
"""
from .alignment import ALIGNED_BY, class_directions
from .bank import (EVERYWHERE_IMAGE_SPREAD, EVERYWHERE_MIN_IMAGES, EVERYWHERE_SPREAD, SCHEMA_VERSION, ConceptBank,
                   library_versions)
from .feature_store import ClassFeatures, class_features
from .decomposition import IMPORTANT_SHARE, Decomposition, split_half_stability
from .crops import Crops, extract_crops, grid_boxes
from .data import (IMAGE_EXTENSIONS, LoadedImages, imagenet_class_folders, load_images,
                   resolve_class)
from .extract import crop_image, extract_concepts
from .features import ModelSplit, extract_features
from .split import load_resnet50, resnet50_split, split_model
from .imagenet import ImageNetClasses, imagenet_classes, imagenet_root_folders
from .fidelity import ConceptCurves, ConceptFidelity, concept_fidelity, curve_area
from .importance import (Importance, completeness, gradient_contributions, gradient_x_input, linear_contributions,
                         percent_of_logit, sobol_total_indices)
from .maps import concept_maps
from .n_concepts import (AUTO_CANDIDATES, AUTO_COMPLETENESS, FACTORIZATIONS, FIT_ON, FIT_ON_AUTO, FIT_ON_DEFAULT,
                         NConceptsSweep, factorize, resolve_fit_on, sweep_n_concepts)
from .nmf import NMF, nnls_codes
from .seminmf import SemiNMF
from .tokens import PooledView, TokenLayout

__all__ = [
    "ALIGNED_BY",
    "AUTO_CANDIDATES",
    "AUTO_COMPLETENESS",
    "EVERYWHERE_IMAGE_SPREAD",
    "EVERYWHERE_MIN_IMAGES",
    "EVERYWHERE_SPREAD",
    "FACTORIZATIONS",
    "FIT_ON",
    "FIT_ON_AUTO",
    "FIT_ON_DEFAULT",
    "IMAGE_EXTENSIONS",
    "IMPORTANT_SHARE",
    "NMF",
    "SCHEMA_VERSION",
    "SemiNMF",
    "ClassFeatures",
    "ConceptBank",
    "ConceptCurves",
    "ConceptFidelity",
    "Crops",
    "Decomposition",
    "ImageNetClasses",
    "Importance",
    "LoadedImages",
    "NConceptsSweep",
    "PooledView",
    "TokenLayout",
    "ModelSplit",
    "class_directions",
    "class_features",
    "completeness",
    "concept_fidelity",
    "concept_maps",
    "crop_image",
    "curve_area",
    "extract_concepts",
    "extract_crops",
    "extract_features",
    "factorize",
    "gradient_contributions",
    "gradient_x_input",
    "grid_boxes",
    "imagenet_class_folders",
    "imagenet_classes",
    "imagenet_root_folders",
    "library_versions",
    "linear_contributions",
    "load_resnet50",
    "load_images",
    "nnls_codes",
    "percent_of_logit",
    "resnet50_split",
    "resolve_class",
    "resolve_fit_on",
    "sobol_total_indices",
    "split_half_stability",
    "sweep_n_concepts",
    "split_model",
]
