"""Feature inversion: what does the model keep of an image at one layer?

MaCo searches an image whose activations at a layer (by default the split's
pooled layer, where the concepts live) match target activations, those of
reference images (``maco.Objective.inversion``); all references are inverted
in one batch (:func:`render_inversions`). The cosine between the reached and
the target activations (:func:`inversion_cosines`) says how faithful each
inversion is. The two are separate so a resumed run can measure the cosines of
a saved render without rendering again, and a class run passes the pooled
features its concept stage already computed as targets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from concepts import ModelSplit
from maco import Objective, RenderResult, RenderSettings, forward_to_layers, render

__all__ = ["inversion_cosines", "layer_features", "render_inversions"]


def _layer(split: ModelSplit, layer: str | None) -> str:
    if split.model is None:
        raise ValueError("`split` has no `model`: feature inversion optimises the whole model's input; "
                         "build the split with split_model(model, ...).")
    layer = layer or split.pooled_layer
    if layer is None:
        raise ValueError(f"`layer` is needed: the split of {split.model_id} names no pooled layer.")
    return layer


def layer_features(
    split: ModelSplit,
    images: torch.Tensor,
    layer: str | None = None,
    *,
    batch_size: int = 64,
    amp: bool | None = None,
    channels_last: bool | None = None,
) -> torch.Tensor:
    """Activations ``(N, D)`` (flattened) of ``layer`` for ``(N, 3, H, W)`` images in [0, 1].

    ``amp`` / ``channels_last``: as in :meth:`concepts.ModelSplit.map_batches` (None: on CUDA only).
    """
    layer = _layer(split, layer)
    return split.map_batches(
        images,
        lambda x: forward_to_layers(split.model, x, [layer])[layer].flatten(1),
        batch_size=batch_size,
        amp=amp,
        channels_last=channels_last,
    )


def render_inversions(
    split: ModelSplit,
    targets: torch.Tensor,
    settings: RenderSettings,
    *,
    layer: str | None = None,
    cossim_pow: float | None = None,
    progress: bool = False,
) -> RenderResult:
    """MaCo images whose ``layer`` activations match ``targets`` ``(T, D)`` (e.g. :func:`layer_features`)."""
    layer = _layer(split, layer)
    return render(
        Objective.inversion(split.model, layer, targets.to(split.device()), cossim_pow=cossim_pow),
        settings,
        input_size=split.input_size,
        mean=split.mean,
        std=split.std,
        progress=progress,
    )


def inversion_cosines(
    split: ModelSplit,
    inverted: torch.Tensor,
    targets: torch.Tensor,
    *,
    layer: str | None = None,
    amp: bool | None = None,
    channels_last: bool | None = None,
) -> torch.Tensor:
    """``(T,)`` cosine between the ``layer`` activations of each inversion (whole canvas) and its target."""
    reached = layer_features(split, inverted, layer, amp=amp, channels_last=channels_last)
    return F.cosine_similarity(reached, targets.float().cpu(), dim=1)
