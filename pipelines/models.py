"""The models a run explains: the full network (for MaCo) plus its metadata.

A :class:`ModelBundle` carries the model, the layer whose pooled output the
concepts live in (``avgpool`` for a ResNet), the input normalisation and
size, and the category names. Built-in: torchvision's ResNet50 through its
weights API (downloaded and cached by torch on a user's machine) or from a
local state-dict file, and the embedded demo network.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet50_Weights

from concepts import load_resnet50

__all__ = ["ModelBundle", "WeightsUnavailableError", "demo_bundle", "resnet50_bundle"]

_logger = logging.getLogger(__name__)


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be downloaded (no network) and are not in torch's cache."""


@dataclass
class ModelBundle:
    """A model with what a run needs to know about it."""

    model: nn.Module
    model_id: str
    layer: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int
    categories: list[str]
    wnids: list[str] | None = None

    def to(self, device: torch.device | str) -> "ModelBundle":
        self.model.to(device)
        return self

    @functools.cached_property
    def weights_digest(self) -> str:
        """Digest of the model's parameters and buffers: cached results record it (see :mod:`pipelines.stamp`)."""
        from .stamp import weights_digest

        return weights_digest(self.model)


def resnet50_bundle(
    weights: str | ResNet50_Weights | None = "IMAGENET1K_V2", weights_path: str | os.PathLike | None = None
) -> ModelBundle:
    """torchvision ResNet50, from its weights enum or a local state-dict file.

    Parameters
    ----------
    weights : str or ResNet50_Weights
        Which torchvision weights (``"IMAGENET1K_V2"``, ``"IMAGENET1K_V1"``,
        ``"DEFAULT"``); they also give the normalisation and the category names.
        Downloaded once and cached by torch.
    weights_path : path, optional
        A local ``state_dict`` file (``torch.save(model.state_dict(), path)``),
        for machines without internet; metadata still comes from ``weights``.
    """
    if weights is None:
        raise ValueError(
            "`weights` of resnet50_bundle must name torchvision weights (e.g. IMAGENET1K_V2): "
            "they give the normalisation and the class names."
        )
    try:
        model, enum, model_id = load_resnet50(weights, weights_path=weights_path)
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
    transforms = enum.transforms()
    return ModelBundle(
        model=model,
        model_id=model_id,
        layer="avgpool",
        mean=tuple(transforms.mean),
        std=tuple(transforms.std),
        input_size=transforms.crop_size[0],
        categories=list(enum.meta["categories"]),
    )


def demo_bundle(which: str = "a") -> ModelBundle:
    """The embedded demo network (see :mod:`pipelines.demo`)."""
    from .demo import CLASS_NAMES, DEMO_INPUT_SIZE, DEMO_MEAN, DEMO_STD, load_demo_model

    return ModelBundle(
        model=load_demo_model(which),
        model_id=f"demo/{which}",
        layer="avgpool",
        mean=tuple(DEMO_MEAN),
        std=tuple(DEMO_STD),
        input_size=DEMO_INPUT_SIZE,
        categories=list(CLASS_NAMES),
    )
