"""The models a run explains, as :class:`concepts.ModelSplit` objects.

A split is the one description of a model a run needs: the whole network
(for MaCo), where its concepts live (``g`` up to ``layer4``, pooled at
``avgpool``), its linear head, input normalisation and size, and category
names. Built-in: torchvision's ResNet50 through its weights API (downloaded
and cached by torch on a user's machine) or from a local state-dict file,
and the embedded demo network.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torchvision.models import ResNet50_Weights

from concepts import ModelSplit, resnet50_split, split_model

__all__ = ["WeightsUnavailableError", "demo_model", "imagenet_resnet50"]

_logger = logging.getLogger(__name__)


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be downloaded (no network) and are not in torch's cache."""


def imagenet_resnet50(
    weights: str | ResNet50_Weights = "IMAGENET1K_V2", weights_path: str | os.PathLike | None = None
) -> ModelSplit:
    """torchvision's ResNet50, split at ``layer4``, from its weights enum or a local state-dict file.

    Parameters
    ----------
    weights : str or ResNet50_Weights
        Which torchvision weights (``"IMAGENET1K_V2"``, ``"IMAGENET1K_V1"``,
        ``"DEFAULT"``); they also give the normalisation and the category names.
        Downloaded once and cached by torch.
    weights_path : path, optional
        A local ``state_dict`` file, for machines without internet; metadata
        still comes from ``weights``.

    Raises
    ------
    WeightsUnavailableError
        When the weights cannot be downloaded: one line saying where to put
        them or to pass a local file.
    """
    if weights is None:
        raise ValueError(
            "`weights` of imagenet_resnet50 must name torchvision weights (e.g. IMAGENET1K_V2): "
            "they give the normalisation and the class names."
        )
    try:
        split = resnet50_split(weights, weights_path=weights_path)
    except (OSError, RuntimeError) as err:  # urllib's URLError is an OSError; a cut download raises RuntimeError
        if weights_path is not None:
            raise
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise WeightsUnavailableError(
            f"could not get torchvision's ResNet50 weights {weights} ({type(err).__name__}: {err}). "
            f"Without a network, put the weights file in torch's cache folder {cache} "
            "or pass `--weights FILE` (a local ResNet50 state-dict)."
        ) from None
    if weights_path is not None:
        _logger.info("loaded ResNet50 weights from %s", weights_path)
    return split


def demo_model(which: str = "a") -> ModelSplit:
    """The embedded demo network (see :mod:`pipelines.demo`), split like a ResNet."""
    from .demo import CLASS_NAMES, DEMO_INPUT_SIZE, DEMO_MEAN, DEMO_STD, load_demo_model

    return split_model(
        load_demo_model(which),
        mean=tuple(DEMO_MEAN),
        std=tuple(DEMO_STD),
        input_size=DEMO_INPUT_SIZE,
        categories=list(CLASS_NAMES),
        model_id=f"demo/{which}",
    )
