"""Feature inversion: what does the model keep of an image at one layer?

MaCo searches an image whose activations at ``layer`` match those of a
reference image (``maco.Objective.inversion``); all references are inverted
in one batch (:func:`render_inversions`). The cosine between the reached and
the target activations (:func:`inversion_cosines`) says how faithful each
inversion is. The two are separate so a resumed run can measure the cosines of
a saved render without rendering again.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import nn

from maco import Objective, RenderResult, forward_to_layers, frozen, maco

from .config import VisualizationConfig

__all__ = ["inversion_cosines", "layer_features", "render_inversions"]


@torch.no_grad()
def layer_features(
    model: nn.Module,
    layer: str,
    images: torch.Tensor,
    *,
    input_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    batch_size: int = 64,
) -> torch.Tensor:
    """Activations ``(N, ...)`` of ``layer`` for ``(N, 3, H, W)`` images in [0, 1], resized to ``input_size``."""
    device = next(model.parameters()).device
    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1)
    outputs = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device).float()
        if x.shape[-1] != input_size or x.shape[-2] != input_size:
            x = F.interpolate(x, size=(input_size, input_size), mode="bilinear", antialias=True, align_corners=False)
        acts = forward_to_layers(model, (x - mean_t) / std_t, [layer])[layer]
        outputs.append(acts.float().flatten(1))
    return torch.cat(outputs)


def render_inversions(
    model: nn.Module,
    layer: str,
    references: torch.Tensor,
    config: VisualizationConfig,
    *,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    cossim_pow: float | None = None,
    progress: bool = False,
) -> RenderResult:
    """MaCo images whose ``layer`` activations match those of ``(T, 3, H, W)`` references, in one batch."""
    with frozen(model):
        targets = layer_features(model, layer, references, input_size=config.input_size, mean=mean, std=std)
    return maco(
        Objective.inversion(model, layer, targets, cossim_pow=cossim_pow),
        **asdict(config),
        mean=mean,
        std=std,
        progress=progress,
    )


def inversion_cosines(
    model: nn.Module,
    layer: str,
    inverted: torch.Tensor,
    references: torch.Tensor,
    *,
    input_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> torch.Tensor:
    """``(T,)`` cosine between the ``layer`` activations of each inversion (whole canvas) and its reference."""
    with frozen(model):
        reached = layer_features(model, layer, inverted, input_size=input_size, mean=mean, std=std)
        targets = layer_features(model, layer, references, input_size=input_size, mean=mean, std=std)
    return F.cosine_similarity(reached, targets, dim=1).cpu()

