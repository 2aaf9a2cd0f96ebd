"""Patch grid over images, cut and resized lazily, batch by batch.

A grid of square patches of side ``p`` with stride ``int(0.8 p)`` and no
padding (as CRAFT): 224 px, p = 64 -> stride 51 -> 4 x 4 = 16 crops per image.
Holding 300 x 16 resized crops would take 2.9 GB, so :class:`Crops` keeps only
the images and the boxes and cuts + resizes one batch at a time.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Crops", "extract_crops", "grid_boxes"]


def grid_boxes(height: int, width: int, patch_size: int, stride: int) -> torch.Tensor:
    """Boxes ``(m, 4)`` as ``x0, y0, x1, y1`` (pixels, exclusive end), row-major."""
    ys = range(0, height - patch_size + 1, stride)
    xs = range(0, width - patch_size + 1, stride)
    boxes = [(x, y, x + patch_size, y + patch_size) for y in ys for x in xs]
    return torch.tensor(boxes, dtype=torch.long).view(-1, 4)


@dataclass(eq=False)
class Crops:
    """Crops of a batch of images, as boxes; pixels are cut on demand.

    Attributes
    ----------
    images : Tensor, shape (N, 3, H, W)
        The source images in [0, 1] (not copied).
    boxes : LongTensor, shape (n, 4)
        ``x0, y0, x1, y1`` in image pixels.
    image_index : LongTensor, shape (n,)
        Source image of each crop.
    out_size : int
        Default side crops are resized to (the model input).
    """

    images: torch.Tensor
    boxes: torch.Tensor
    image_index: torch.Tensor
    out_size: int = 224

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def crop(self, index: int) -> torch.Tensor:
        """Crop ``index`` at its native size, ``(3, p, p)``, in [0, 1] (true colour)."""
        x0, y0, x1, y1 = (int(v) for v in self.boxes[index])
        return self.images[int(self.image_index[index]), :, y0:y1, x0:x1]

    def batch(self, start: int, stop: int, *, out_size: int | None = None,
              device: torch.device | str | None = None) -> torch.Tensor:
        """Crops ``start:stop`` resized to ``out_size`` (bilinear), ``(b, 3, out, out)`` float32."""
        size = self.out_size if out_size is None else out_size
        stop = min(stop, len(self))
        patches = torch.stack([self.crop(i) for i in range(start, stop)])
        patches = patches.to(device=device, dtype=torch.float32)
        if patches.shape[-1] != size or patches.shape[-2] != size:
            patches = F.interpolate(patches, size=(size, size), mode="bilinear", align_corners=False)
        return patches


def extract_crops(images: torch.Tensor, *, patch_size: int = 64, stride: int | None = None,
                  out_size: int = 224) -> Crops:
    """A CRAFT patch grid over every image.

    Parameters
    ----------
    images : Tensor, shape (N, 3, H, W)
        Images in [0, 1].
    patch_size : int, default 64
        Side ``p`` of the square patches, in image pixels.
    stride : int, optional
        Default ``int(0.8 * patch_size)``.
    out_size : int, default 224
        Side the crops are resized to when batched (the model input).

    Returns
    -------
    Crops
        ``len = N * m`` crops, image by image, each image's grid row-major.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"`images` of `extract_crops` must be a Tensor (N, 3, H, W); got {shape}.")
    height, width = int(images.shape[2]), int(images.shape[3])
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or not 1 <= patch_size <= min(height, width):
        raise ValueError(f"`patch_size` of `extract_crops` must be an int in [1, {min(height, width)}] (the image "
                         f"side); got {patch_size!r}. Use a smaller patch or larger images.")
    stride = max(int(0.8 * patch_size), 1) if stride is None else stride
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"`stride` of `extract_crops` must be an int >= 1; got {stride!r}.")
    if isinstance(out_size, bool) or not isinstance(out_size, int) or out_size < 1:
        raise ValueError(f"`out_size` of `extract_crops` must be an int >= 1; got {out_size!r}.")
    grid = grid_boxes(height, width, patch_size, stride)
    n = images.shape[0]
    boxes = grid.repeat(n, 1)
    image_index = torch.arange(n).repeat_interleave(len(grid))
    return Crops(images=images, boxes=boxes, image_index=image_index, out_size=out_size)
