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

    Notes
    -----
    On the CPU the same ``roi_align`` (``aligned=True``, adaptive sampling
    grid) runs as two small matrix products per crop (equal to float
    rounding): torchvision's CPU backward is a one-thread scatter that cost
    several times the crops' forward pass. Elsewhere ``torchvision.ops.roi_align``
    runs as is: its GPU kernels are parallel, and need no host sync per step.
    """
    pixels = _pixel_boxes(boxes, images.shape[-2], images.shape[-1]).to(images.device, images.dtype)
    if images.device.type == "cpu":
        rows = _axis_weights(pixels[:, 1], pixels[:, 3], images.shape[-2], out_size)
        cols = _axis_weights(pixels[:, 0], pixels[:, 2], images.shape[-1], out_size)
        return _SeparableCrops.apply(images, rows, cols, boxes.shape[1])
    index = torch.arange(boxes.shape[0], device=images.device, dtype=images.dtype).repeat_interleave(boxes.shape[1])
    rois = torch.cat([index[:, None], pixels], dim=1)
    return roi_align(images, rois, output_size=(out_size, out_size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)


def _pixel_boxes(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(T, K, 4)`` normalised boxes -> ``(T * K, 4)`` pixels, scaled by Python numbers (no host-to-device copy)."""
    corners = boxes.reshape(-1, 2, 2)  # (T * K, corner, xy)
    return torch.stack([corners[..., 0] * width, corners[..., 1] * height], dim=-1).reshape(-1, 4)


def _axis_weights(start: torch.Tensor, end: torch.Tensor, size: int, out_size: int) -> torch.Tensor:
    """``(N, out_size, size)`` matrices: what ``roi_align`` (aligned, adaptive grid) does along one axis.

    Output pixel ``o`` of box ``n`` averages ``g = ceil(length / out_size)`` samples at
    ``start + o * bin + (i + 0.5) * bin / g``, each split linearly between its two neighbouring
    pixels. As torchvision's CPU kernel: samples beyond one pixel outside the image count zero, the
    others are clamped to ``[0, size - 1]``; the same float operations in the same order, so both
    place every sample identically. The 2-D weight of ``roi_align`` is the product of the two axes'.
    """
    start, end = start - 0.5, end - 0.5  # aligned=True: pixel centres at integer coordinates
    length = end - start
    bin_size = (length / out_size)[:, None, None]
    grid = torch.ceil(length / out_size)[:, None, None]  # samples per output pixel (0 for an empty box)
    pixel = torch.arange(out_size, dtype=start.dtype, device=start.device)[:, None]
    sample = torch.arange(max(int(grid.max()), 0), dtype=start.dtype, device=start.device)
    at = start[:, None, None] + pixel * bin_size + (sample + 0.5) * bin_size / grid.clamp_min(1)  # (N, out_size, g)
    used = (sample < grid) & (at >= -1) & (at <= size)
    at = at.clamp(0, size - 1)
    low = at.floor()
    frac = at - low
    share = torch.where(used, 1 / grid.clamp_min(1), 0)
    weights = torch.zeros(len(start), out_size, size, dtype=start.dtype, device=start.device)
    weights.scatter_add_(2, low.long(), (1 - frac) * share)
    return weights.scatter_add_(2, (low + 1).clamp_max(size - 1).long(), frac * share)


def _spans(weights: torch.Tensor) -> list[tuple[int, int]]:
    """First and one-past-last pixel each ``(N, out_size, size)`` matrix reads: the crop's products skip the rest."""
    read = weights.ne(0).any(1).int()
    first = read.argmax(1)
    stop = read.shape[1] - read.flip(1).argmax(1)
    return [(int(a), int(b)) for a, b in torch.stack([first, stop], 1).tolist()]


class _SeparableCrops(torch.autograd.Function):
    """``crop_n = rows_n @ images[t] @ cols_n.T`` per channel, on the pixels the crop reads.

    A hand-written backward (two products per crop, added into one gradient buffer) instead of
    autograd's, which would make a zero canvas-sized gradient per crop for its slices. Both passes
    work on contiguous tensors, so a crop rounds alike whatever the memory format of the gradient
    (channels_last from a whole batch, contiguous from ``max_batch`` chunks): other layouts take
    other BLAS paths.
    """

    @staticmethod
    def forward(ctx, images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, per_target: int) -> torch.Tensor:
        images, row_spans, col_spans = images.contiguous(), _spans(rows), _spans(cols)
        crops = images.new_empty(len(rows), images.shape[1], rows.shape[1], cols.shape[1])
        for n, ((y0, y1), (x0, x1)) in enumerate(zip(row_spans, col_spans)):
            window = images[n // per_target, :, y0:y1, x0:x1]
            torch.matmul(rows[n, :, y0:y1], window @ cols[n, :, x0:x1].T, out=crops[n])
        ctx.save_for_backward(rows, cols)
        ctx.spans, ctx.per_target, ctx.shape = (row_spans, col_spans), per_target, images.shape
        return crops

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        rows, cols = ctx.saved_tensors
        grad = grad.contiguous()
        grad_images = grad.new_zeros(ctx.shape)
        for n, ((y0, y1), (x0, x1)) in enumerate(zip(*ctx.spans)):
            grad_images[n // ctx.per_target, :, y0:y1, x0:x1] += rows[n, :, y0:y1].T @ grad[n] @ cols[n, :, x0:x1]
        return grad_images, None, None, None


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
