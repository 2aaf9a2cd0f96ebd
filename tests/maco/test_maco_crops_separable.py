"""The CPU crops (two matrix products per crop) equal ``torchvision.ops.roi_align``, forward and backward."""

import pytest
import torch
from torchvision.ops import roi_align

from maco import crop_and_resize, sample_crop_boxes


def reference_crops(images: torch.Tensor, boxes: torch.Tensor, out_size: int) -> torch.Tensor:
    """What ``crop_and_resize`` computed before: ``roi_align``, aligned, adaptive sampling grid."""
    n_targets, n_crops = boxes.shape[:2]
    height, width = images.shape[-2:]
    pixels = boxes.reshape(-1, 4) * torch.tensor([width, height, width, height], dtype=boxes.dtype)
    index = torch.arange(n_targets, dtype=boxes.dtype).repeat_interleave(n_crops)[:, None]
    rois = torch.cat([index, pixels], dim=1).to(images.dtype)
    return roi_align(images, rois, output_size=(out_size, out_size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)


def edge_boxes() -> torch.Tensor:
    """The full canvas, boxes touching every edge and corner, a thin one and a tiny one: ``(1, 8, 4)``."""
    return torch.tensor(
        [
            [
                [0.0, 0.0, 1.0, 1.0],
                [0.0, 0.0, 0.3, 0.3],
                [0.7, 0.7, 1.0, 1.0],
                [0.0, 0.6, 0.4, 1.0],
                [0.55, 0.0, 1.0, 0.45],
                [0.0, 0.2, 1.0, 0.5],
                [0.31, 0.0, 0.37, 1.0],
                [0.5, 0.5, 0.51, 0.51],
            ]
        ]
    )


@pytest.mark.parametrize(
    ("height", "width", "out_size", "crop_size"),
    [(256, 256, 112, (0.25, 0.1)), (192, 192, 96, (0.25, 0.1)), (64, 80, 24, (0.5, 0.3)), (50, 50, 112, (0.25, 0.1))],
)
def test_cpu_crops_equal_roi_align_forward_and_backward(height, width, out_size, crop_size):
    gen = torch.Generator().manual_seed(height + out_size)
    sampled = torch.stack([sample_crop_boxes(24, crop_size=crop_size, generator=gen) for _ in range(2)])
    boxes = torch.cat([sampled, edge_boxes().expand(2, -1, -1)], dim=1)  # (2, 32, 4)
    images = torch.rand(2, 3, height, width, generator=gen, requires_grad=True)
    ours = crop_and_resize(images, boxes, out_size)
    theirs = reference_crops(images, boxes, out_size)
    assert ours.shape == theirs.shape == (64, 3, out_size, out_size)
    assert (ours - theirs).abs().max() <= 1e-5
    upstream = torch.rand(ours.shape, generator=gen) / ours[0].numel()  # a loss of the size of a mean
    (grad_ours,) = torch.autograd.grad(ours, images, upstream, retain_graph=True)
    (grad_theirs,) = torch.autograd.grad(theirs, images, upstream, retain_graph=True)
    assert grad_theirs.abs().max() > 1e-4  # the comparison below is not vacuous
    assert (grad_ours - grad_theirs).abs().max() <= 1e-5
    unit = torch.randn(ours.shape, generator=gen)  # unit-sized upstream values: relative agreement
    (grad_ours,) = torch.autograd.grad(ours, images, unit)
    (grad_theirs,) = torch.autograd.grad(theirs, images, unit)
    assert (grad_ours - grad_theirs).abs().max() <= 1e-5 * grad_theirs.abs().max()


def test_cpu_crops_without_gradient_and_in_float64():
    boxes = torch.cat([sample_crop_boxes(8, generator=torch.Generator().manual_seed(1))[None], edge_boxes()], dim=1)
    images = torch.rand(1, 3, 96, 96, dtype=torch.float64)
    with torch.no_grad():
        ours = crop_and_resize(images, boxes, 40)
    torch.testing.assert_close(ours, reference_crops(images, boxes, 40), rtol=0, atol=1e-12)
