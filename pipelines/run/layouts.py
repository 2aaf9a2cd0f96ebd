"""2-D layouts for a class page, as on the Lens site: images by their concept importances, concepts by direction.

- The *strategic cluster graph*: each image of the class is a point placed by
  a 2-D PCA of its per-concept contributions to the class logit, coloured by
  its most important concept; images that the model recognises for the same
  reasons sit together.
- *Concept similarity*: the concepts placed by a 2-D PCA of their directions
  (unit-normalised bank rows), so concepts the model reads alike sit together.

PCA is deterministic (SVD, signs fixed so the largest loading is positive), so
a rerun draws the same picture. Coordinates are scaled to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

__all__ = ["ImagePoint", "LayoutPoint", "pca_2d", "thumbnail_sprite"]

SPRITE_CELL = 48  # px, side of one image in the sprite the cluster graph shows on hover


@dataclass
class LayoutPoint:
    """A point of a layout in [0, 1] x [0, 1], with the rank of the concept it stands for or is coloured by."""

    x: float
    y: float
    rank: int


@dataclass
class ImagePoint(LayoutPoint):
    """An image of the cluster graph: its cell in the thumbnail sprite and its file (relative to the image folder)."""

    cell: int
    source: str


def pca_2d(rows: np.ndarray) -> np.ndarray:
    """``(n, d)`` -> ``(n, 2)`` in [0, 1]: the first two principal components, deterministic signs."""
    rows = np.asarray(rows, dtype=np.float64)
    if len(rows) < 2:
        return np.full((len(rows), 2), 0.5)
    centred = rows - rows.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:2]
    axes *= np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(1)])[:, None]
    coords = centred @ axes.T
    if coords.shape[1] < 2:
        coords = np.concatenate([coords, np.zeros((len(coords), 1))], axis=1)
    low, span = coords.min(0), np.ptp(coords, axis=0)
    return np.where(span > 0, (coords - low) / np.where(span > 0, span, 1), 0.5)


def thumbnail_sprite(images: torch.Tensor) -> Image.Image:
    """``(n, 3, H, W)`` images in [0, 1] tiled into one square-ish RGB sprite of ``SPRITE_CELL`` px cells, row-major."""
    n = len(images)
    columns = max(1, int(np.ceil(np.sqrt(n))))
    rows = max(1, int(np.ceil(n / columns)))
    small = torch.nn.functional.interpolate(images.float(), size=(SPRITE_CELL, SPRITE_CELL), mode="bilinear",
                                            antialias=True, align_corners=False).clamp(0, 1)
    sheet = torch.ones(3, rows * SPRITE_CELL, columns * SPRITE_CELL)
    for i, image in enumerate(small):
        r, c = divmod(i, columns)
        sheet[:, r * SPRITE_CELL:(r + 1) * SPRITE_CELL, c * SPRITE_CELL:(c + 1) * SPRITE_CELL] = image
    array = (sheet.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(array, mode="RGB")
