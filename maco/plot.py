"""Showing visualizations: alpha-blended RGBA arrays, a matplotlib helper and small inline pictures.

Computation lives elsewhere; this module only turns ``(3, H, W)`` images and
``(1, H, W)`` alpha maps into pictures. :func:`encode_thumbnail` and
:func:`data_uri` make the downscaled copies that notebook displays embed, so a
notebook's HTML stays small and needs no file or network.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import torch
from PIL import Image

__all__ = ["alpha_to_unit", "blend_alpha", "data_uri", "encode_thumbnail", "plot_maco"]


def _to_hwc(image: torch.Tensor | np.ndarray) -> np.ndarray:
    array = (
        image.detach().float().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image, dtype=np.float32)
    )
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(1, 2, 0)
    if array.ndim != 3:
        raise ValueError(f"expected one image of shape (C, H, W) or (H, W, C); got {array.shape}.")
    return array


def alpha_to_unit(alpha: torch.Tensor | np.ndarray, *, percentile: float = 80.0) -> np.ndarray:
    """``(H, W)`` alpha in [0, 1]: channel mean, clipped at a percentile, divided by its max."""
    array = _to_hwc(alpha).mean(-1)
    top = np.percentile(array, percentile)
    array = np.clip(array, 0, top) if top > 0 else array
    peak = array.max()
    return array / peak if peak > 0 else np.ones_like(array)


def blend_alpha(
    image: torch.Tensor | np.ndarray,
    alpha: torch.Tensor | np.ndarray,
    *,
    percentile_image: float = 1.0,
    percentile_alpha: float = 80.0,
) -> np.ndarray:
    """RGBA ``(H, W, 4)`` float array: the image (percentile-clipped) with the alpha map as transparency."""
    rgb = _to_hwc(image)
    low, high = np.percentile(rgb, [percentile_image, 100 - percentile_image])
    rgb = np.clip((rgb - low) / max(high - low, 1e-8), 0, 1)
    return np.concatenate([rgb, alpha_to_unit(alpha, percentile=percentile_alpha)[..., None]], axis=-1)


def plot_maco(
    image: torch.Tensor | np.ndarray,
    alpha: torch.Tensor | np.ndarray | None = None,
    *,
    ax=None,
    percentile_image: float = 1.0,
    percentile_alpha: float = 80.0,
):
    """Show a visualization, alpha-blended over white if ``alpha`` is given. Returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        ax = plt.gca()
    if alpha is None:
        ax.imshow(np.clip(_to_hwc(image), 0, 1))
    else:
        ax.imshow(blend_alpha(image, alpha, percentile_image=percentile_image, percentile_alpha=percentile_alpha))
    ax.axis("off")
    return ax


def encode_thumbnail(image: torch.Tensor | np.ndarray | Image.Image, *, size: int = 128, format: str = "PNG") -> bytes:
    """``image`` (``(3, H, W)`` or ``(H, W, 3)`` in [0, 1], or a PIL image) as file bytes, longest side <= ``size``.

    ``format`` is a PIL format name: PNG for pictures of their own (exact), JPEG for many small photos in one page
    (about a fifth of the bytes).
    """
    if not isinstance(image, Image.Image):
        array = np.round(np.clip(np.nan_to_num(_to_hwc(image)), 0, 1) * 255).astype(np.uint8)
        image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    image = image.copy()
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    if format.upper() == "JPEG" and image.mode != "RGB":
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def data_uri(image: torch.Tensor | np.ndarray | Image.Image, *, size: int = 128, format: str = "PNG") -> str:
    """A ``data:`` URI of :func:`encode_thumbnail`'s bytes, for an ``<img src>`` that needs no file."""
    payload = base64.b64encode(encode_thumbnail(image, size=size, format=format)).decode("ascii")
    return f"data:image/{format.lower()};base64,{payload}"
