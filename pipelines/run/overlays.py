"""Concept maps drawn over photos: where each concept lives, in colours people with colour blindness can tell apart.

Colours are Paul Tol's "muted" qualitative scheme, designed to stay distinct
under the common forms of colour-vision deficiency (deuteranopia, protanopia,
tritanopia) and in greyscale, and the orange of his "vibrant" one (a hue muted
lacks), so the default ten concepts each get their own colour; an eleventh and
later concepts reuse them in order.
Maps are alpha-blended over the photo, never replacing it: a pixel's opacity
grows with its concept's map value (normalised per image), up to
:data:`MAX_ALPHA`, so the photo always shows through.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import torch
from PIL import Image

__all__ = ["CONCEPT_COLOURS", "MAX_ALPHA", "all_concepts_overlay", "concept_colour", "one_concept_overlay"]

CONCEPT_COLOURS: tuple[str, ...] = (
    "#CC6677", "#332288", "#DDCC77", "#117733", "#88CCEE", "#882255", "#44AA99", "#999933", "#AA4499", "#EE7733",
)
MAX_ALPHA = 0.65


def concept_colour(rank: int) -> str:
    """The colour of the concept ranked ``rank`` (0 = most important), as ``#RRGGBB``."""
    return CONCEPT_COLOURS[rank % len(CONCEPT_COLOURS)]


def _rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.float32) / 255.0


def _normalised(maps: torch.Tensor) -> np.ndarray:
    """``(k, H, W)`` maps -> [0, 1], each divided by the largest value of any concept in this image."""
    array = maps.detach().float().clamp_min(0).cpu().numpy()
    return array / max(float(array.max()), 1e-12)


def _blend(image: torch.Tensor, colour: np.ndarray, alpha: np.ndarray) -> Image.Image:
    """``(3, H, W)`` photo in [0, 1] under a colour layer ``(H, W, 3)`` of opacity ``alpha`` ``(H, W)``."""
    photo = image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    mixed = photo * (1 - alpha[..., None]) + colour * alpha[..., None]
    return Image.fromarray(np.round(mixed * 255).astype(np.uint8), mode="RGB")


def all_concepts_overlay(image: torch.Tensor, maps: torch.Tensor, order: list[int], *,
                         hidden: Collection[int] = ()) -> Image.Image:
    """Every concept's map over ``image``: each pixel takes the colour of its strongest concept.

    Parameters
    ----------
    image : Tensor, shape (3, H, W)
        The photo, in [0, 1].
    maps : Tensor, shape (k, H, W)
        Concept maps at the photo's size, indexed by concept id.
    order : list of int
        Concept ids by rank: the concept of rank ``r`` is drawn in :func:`concept_colour` ``(r)``.
    hidden : collection of int, optional
        Concept ids not drawn: a concept in every crop alike has a flat map that would colour the whole photo
        and, being the largest, dim every part's map.
    """
    shown = [rank for rank, concept in enumerate(order) if concept not in hidden]
    if not shown:
        return _blend(image, np.zeros((*maps.shape[1:], 3), np.float32), np.zeros(maps.shape[1:], np.float32))
    by_rank = _normalised(maps[[order[rank] for rank in shown]])  # (shown, H, W), rank-major
    palette = np.stack([_rgb(concept_colour(rank)) for rank in shown])
    strongest = by_rank.argmax(0)
    alpha = by_rank.max(0) * MAX_ALPHA
    return _blend(image, palette[strongest], alpha)


def one_concept_overlay(image: torch.Tensor, concept_map: torch.Tensor, rank: int) -> Image.Image:
    """One concept's map ``(H, W)`` over ``image``, in the colour of its rank, normalised to its own maximum."""
    norm = _normalised(concept_map[None])[0]
    colour = np.broadcast_to(_rgb(concept_colour(rank)), (*norm.shape, 3))
    return _blend(image, colour, norm * MAX_ALPHA)
