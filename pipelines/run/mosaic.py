"""Pictures for people: alpha over white, and concept mosaics.

A mosaic pairs a concept's visualization (plain and alpha-blended) with its
top-activating patches, shown in true colour, under a title that gives the
concept's rank and importance. Images become PIL through
:func:`pipelines.io.to_pil`, the project's one tensor-to-image conversion.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from PIL import Image, ImageDraw, ImageFont

from maco import blend_alpha

from ..io import to_pil

__all__ = ["alpha_over_white", "concept_mosaic"]

BACKGROUND = (255, 255, 255)
TEXT = (30, 30, 30)


def alpha_over_white(image: torch.Tensor, alpha: torch.Tensor) -> Image.Image:
    """The visualization with its alpha map as opacity, flattened over white (RGB)."""
    rgba = blend_alpha(image, alpha)
    rgb = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])
    return to_pil(rgb)


def _title_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in font at ``size`` px (Pillow >= 10.1 with FreeType), else its fixed bitmap font."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # older Pillow, or no FreeType
        return ImageFont.load_default()


def concept_mosaic(
    visualization: torch.Tensor,
    alpha: torch.Tensor,
    patches: Sequence[torch.Tensor],
    *,
    title: str,
    tile: int = 128,
    columns: int = 5,
) -> Image.Image:
    """One picture per concept: visualization, alpha-blended visualization, and top patches.

    Parameters
    ----------
    visualization, alpha : torch.Tensor
        ``(3, H, W)`` image in [0, 1] and its ``(1, H, W)`` alpha map.
    patches : sequence of torch.Tensor
        ``(3, p, p)`` patches in true colour [0, 1], best first.
    title : str
        E.g. ``"Concept 1 - 45.2% of logit"``.
    """
    rows = max(1, math.ceil(len(patches) / columns))
    big = tile * rows if rows > 1 else 2 * tile
    gap = 8
    width = 2 * big + gap * 3 + columns * tile
    font = _title_font(max(14, width // 45))  # the page shows the mosaic at about half size: still ~13 px
    header = font.getbbox("Hg")[3] + 2 * gap
    height = header + max(big, rows * tile) + gap
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((gap, gap), title, fill=TEXT, font=font)
    canvas.paste(to_pil(visualization, big), (gap, header))
    canvas.paste(
        alpha_over_white(visualization, alpha).resize((big, big), Image.Resampling.LANCZOS), (2 * gap + big, header)
    )
    left = 3 * gap + 2 * big
    for i, patch in enumerate(patches):
        row, col = divmod(i, columns)
        canvas.paste(to_pil(patch, tile), (left + col * tile, header + row * tile))
    return canvas
