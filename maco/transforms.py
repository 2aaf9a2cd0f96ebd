"""Batched, seeded transforms applied to the canvas at every step.

Notation: ``T`` targets, ``K`` crops per target, canvas ``H x W``, model
input side ``s``. Every function is pure: randomness comes from the
generators passed in, one per target, so a target sees the same crops and
noise whether it runs alone or in a batch.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torchvision.ops import roi_align

__all__ = ["add_uniform_noise", "crop_and_resize", "sample_crop_boxes"]

MIN_CROP_AREA = 0.05


def sample_crop_boxes(
    n_crops: int,
    *,
    crop_size: tuple[float, float] = (0.25, 0.1),
    center_std: float = 0.15,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw ``K`` square crop boxes in normalised canvas coordinates.

    The crop *area*, as a fraction of the canvas, is drawn from
    ``N(mean, std)`` (the paper's "on average 25% of the image") and clipped to
    ``[0.05, 1]``; the side is its square root (0.5 on average). Centres are
    drawn from ``N(0.5, center_std)``, and each box is then shifted to lie
    inside the canvas, so no crop samples outside the image.

    Returns
    -------
    torch.Tensor
        ``(K, 4)`` float32 boxes ``(x0, y0, x1, y1)`` in ``[0, 1]``.
    """
    mean, std = crop_size
    area = (torch.randn(n_crops, generator=generator) * std + mean).clamp(MIN_CROP_AREA, 1.0)
    side = area.sqrt()
    centers = torch.randn(n_crops, 2, generator=generator) * center_std + 0.5
    half = side[:, None] / 2
    centers = torch.minimum(torch.maximum(centers, half), 1 - half)
    return torch.cat([centers - half, centers + half], dim=1)


def crop_and_resize(images: torch.Tensor, boxes: torch.Tensor, out_size: int) -> torch.Tensor:
    """Cut ``K`` boxes out of each of ``T`` images and resize them.

    Parameters
    ----------
    images : torch.Tensor
        ``(T, 3, H, W)``.
    boxes : torch.Tensor
        ``(T, K, 4)`` normalised boxes from :func:`sample_crop_boxes`.
    out_size : int
        Side ``s`` of the model input.

    Returns
    -------
    torch.Tensor
        ``(T * K, 3, s, s)``, target-major. ``roi_align`` averages several
        bilinear samples per output pixel when a box is larger than ``s``,
        which keeps downsampling free of aliasing.
    """
    n_targets, n_crops = boxes.shape[:2]
    height, width = images.shape[-2:]
    corners = boxes.reshape(-1, 2, 2)  # (T * K, corner, xy); scaled by Python numbers: no host-to-device copy
    pixels = torch.stack([corners[..., 0] * width, corners[..., 1] * height], dim=-1).reshape(-1, 4)
    index = torch.arange(n_targets, device=boxes.device, dtype=boxes.dtype).repeat_interleave(n_crops)[:, None]
    rois = torch.cat([index, pixels], dim=1).to(images.device, images.dtype)
    return roi_align(images, rois, output_size=(out_size, out_size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)


def add_uniform_noise(
    crops: torch.Tensor, amplitude: float, generators: Sequence[torch.Generator | None]
) -> torch.Tensor:
    """Add i.i.d. ``U(-amplitude, amplitude)`` noise; ``crops`` is ``(T * K, 3, s, s)``."""
    if amplitude == 0:
        return crops
    per_target = crops.shape[0] // len(generators)
    shape = (per_target, *crops.shape[1:])
    noise = torch.cat([torch.rand(shape, generator=gen, device=crops.device, dtype=crops.dtype) for gen in generators])
    return crops + (noise * 2 - 1) * amplitude


def _check_crop_size(crop_size: tuple[float, float], where: str) -> tuple[float, float]:
    if (
        not isinstance(crop_size, (tuple, list))
        or len(crop_size) != 2
        or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in crop_size)
        or not 0 < crop_size[0] <= 1
        or crop_size[1] < 0
    ):
        raise ValueError(
            f"`crop_size` of {where} must be (mean, std) of the crop area as a fraction of the canvas, "
            f"with 0 < mean <= 1 and std >= 0; got {crop_size!r}. The paper's default is (0.25, 0.1)."
        )
    return float(crop_size[0]), float(crop_size[1])
