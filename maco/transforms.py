"""Batched, seeded transforms applied to the canvas at every step.

Notation: ``T`` targets, ``K`` crops per target, canvas ``H x W``, model
input side ``s``. Every function is pure: randomness comes from the
generators passed in, one per target (:func:`target_generators`), so a
target sees the same crops and noise whether it runs alone or in a batch.
:class:`CropsAndNoise` combines them into the render loop's default
transforms.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torchvision.ops import roi_align

from .device import generator
from .settings import RenderSettings

__all__ = ["CropsAndNoise", "add_uniform_noise", "crop_and_resize", "sample_crop_boxes", "target_generators"]

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


def target_generators(seeds: Sequence[int], stream: int, device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per target for one random stream (0: init, 1: crops, 2: noise, 3: the BatchNorm-folding probe)."""
    return [generator(device, (int(seed) * 4 + stream) % (2**63)) for seed in seeds]


class CropsAndNoise:
    """The default transforms: ``K`` random crops per target, resized to the model input, plus uniform noise.

    ``transforms(canvas, step)`` takes the ``(T, 3, H, W)`` canvases in [0, 1] and returns ``(T * K, 3, s, s)``
    model inputs, target-major. Target ``t`` draws its boxes and noise from its own generators (seed
    ``seeds[t]``), so it sees the same crops alone or in a batch. Every step's boxes are drawn up front, in step
    order, and copied to the device once: a small host-to-device copy per step would synchronise the host with
    the GPU at every step.

    Parameters
    ----------
    settings : RenderSettings
        Gives ``steps``, ``crops`` (``K``), ``crop_size`` and ``noise``.
    seeds : sequence of int
        One seed per target.
    input_size : int
        Side ``s`` of the model input.
    device : torch.device or str
        Where the canvases are.
    """

    def __init__(
        self, settings: RenderSettings, seeds: Sequence[int], input_size: int, device: torch.device | str
    ) -> None:
        self.input_size = input_size
        self.noise = settings.noise
        per_target = [
            torch.stack(
                [
                    sample_crop_boxes(settings.crops, crop_size=settings.crop_size, generator=gen)
                    for _ in range(settings.steps)
                ]
            )
            for gen in target_generators(seeds, 1)
        ]
        self.boxes = torch.stack(per_target, dim=1).to(device)  # (steps, T, K, 4)
        self.noise_generators = target_generators(seeds, 2, device)

    def __call__(self, canvas: torch.Tensor, step: int) -> torch.Tensor:
        crops = crop_and_resize(canvas, self.boxes[step], self.input_size)
        return add_uniform_noise(crops, self.noise, self.noise_generators)
