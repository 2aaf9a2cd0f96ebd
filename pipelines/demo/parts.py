"""The parts of the demo world: their colours, textures and per-class layouts.

Notation: ``H, W`` image height and width; ``u`` the drawing scale in pixels
per layout unit (an object is about 80 units tall); a *primitive* is one
filled shape (``"rect"``, ``"ellipse"`` or ``"polygon"``) with a texture; a
*part* is one or more primitives sharing a palette.

Every part is a shape + colour + texture: e.g. ``"stripes"`` is a red/white
horizontally striped rectangle, ``"post"`` a plain dark-grey bar. Some parts
are shared between classes (``"post"`` by lamp, flag and sign; ``"bricks"`` by
house and cart) so that concepts are not just class identity.

Texture functions map pixel grids to an index into the part's palette
(``PART_COLOURS[part]``); every pixel a part paints is one palette colour
plus a per-instance colour offset of at most ``COLOUR_JITTER`` per channel.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["CLASS_NAMES", "CLASS_PARTS", "COLOUR_JITTER", "PART_COLOURS", "PART_NAMES", "TEXTURES", "layout"]

CLASS_NAMES: tuple[str, ...] = ("lamp", "flag", "sign", "house", "cart", "tree")
PART_NAMES: tuple[str, ...] = ("disc", "post", "stripes", "diamond", "roof", "bricks", "wheels", "crown", "trunk")
CLASS_PARTS: dict[str, tuple[str, ...]] = {
    "lamp": ("post", "disc"),
    "flag": ("post", "stripes"),
    "sign": ("post", "diamond"),
    "house": ("bricks", "roof"),
    "cart": ("bricks", "wheels"),
    "tree": ("trunk", "crown"),
}
PART_COLOURS: dict[str, tuple[tuple[int, int, int], ...]] = {
    "disc": ((235, 200, 40),),                      # yellow, plain
    "post": ((55, 55, 62),),                        # dark grey, plain
    "stripes": ((200, 30, 40), (240, 240, 240)),    # red / white horizontal stripes
    "diamond": ((40, 80, 200), (240, 240, 240)),    # blue with a white border
    "roof": ((150, 30, 45), (100, 20, 30)),         # dark red with shingle lines
    "bricks": ((175, 95, 45), (205, 200, 190)),     # orange bricks, pale mortar
    "wheels": ((25, 25, 25), (150, 150, 155)),      # black tyres, grey hubs
    "crown": ((50, 150, 50), (25, 90, 30)),         # green with dark-green dots
    "trunk": ((115, 75, 35), (80, 50, 25)),         # brown with bark lines
}
COLOUR_JITTER = 12

# A texture: (yy, xx, box, u) -> palette index (H, W) int; box = (x0, y0, x1, y1).
Texture = Callable[[np.ndarray, np.ndarray, tuple[float, float, float, float], float], np.ndarray]


def _plain(yy, xx, box, u):
    return np.zeros(np.broadcast_shapes(yy.shape, xx.shape), dtype=np.int64)


def _stripes(yy, xx, box, u):
    period = max(3.0, 4.5 * u)
    return (np.floor((yy - box[1]) / period).astype(np.int64) % 2) + 0 * xx


def _border(yy, xx, box, u):
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    rx, ry = max((box[2] - box[0]) / 2, 1.0), max((box[3] - box[1]) / 2, 1.0)
    return ((np.abs(xx - cx) / rx + np.abs(yy - cy) / ry) > 0.68).astype(np.int64)


def _shingles(yy, xx, box, u):
    period = max(3, int(round(5 * u)))
    return (((yy - int(box[1])) % period) == 0).astype(np.int64) + 0 * xx


def _bricks(yy, xx, box, u):
    bh, bw = max(3, int(round(6 * u))), max(6, int(round(12 * u)))
    dy, dx = yy - int(box[1]), xx - int(box[0])
    shift = ((dy // bh) % 2) * (bw // 2)
    return (((dy % bh) == 0) | (((dx + shift) % bw) == 0)).astype(np.int64)


def _hub(yy, xx, box, u):
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    r = max((box[2] - box[0]) / 2, 1.0)
    return (((xx - cx) ** 2 + (yy - cy) ** 2) < (0.42 * r) ** 2).astype(np.int64)


def _dots(yy, xx, box, u):
    period = max(5, int(round(7 * u)))
    return ((((xx - int(box[0])) % period) < 2) & (((yy - int(box[1])) % period) < 2)).astype(np.int64)


def _bark(yy, xx, box, u):
    period = max(3, int(round(4 * u)))
    return (((xx - int(box[0])) % period) == 0).astype(np.int64) + 0 * yy


TEXTURES: dict[str, Texture] = {
    "disc": _plain, "post": _plain, "stripes": _stripes, "diamond": _border, "roof": _shingles,
    "bricks": _bricks, "wheels": _hub, "crown": _dots, "trunk": _bark,
}

# Layouts in units, x centred on the object's axis, y down from its top; parts are listed in drawing order.
# Each primitive is (kind, coordinates): rect/ellipse (x0, y0, x1, y1); polygon (x0, y0, x1, y1, ...).
_LAYOUTS: dict[str, list[tuple[str, list[tuple[str, tuple[float, ...]]]]]] = {
    "lamp": [("post", [("rect", (-4, 26, 4, 80))]),
             ("disc", [("ellipse", (-15, 0, 15, 30))])],
    "flag": [("post", [("rect", (-3, 0, 3, 80))]),
             ("stripes", [("rect", (3, 2, 40, 29))])],
    "sign": [("post", [("rect", (-4, 30, 4, 80))]),
             ("diamond", [("polygon", (0, 0, 19, 19, 0, 38, -19, 19))])],
    "house": [("bricks", [("rect", (-24, 30, 24, 72))]),
              ("roof", [("polygon", (-31, 32, 0, 0, 31, 32))])],
    "cart": [("bricks", [("rect", (-27, 18, 27, 50))]),
             ("wheels", [("ellipse", (-22, 40, -3, 59)), ("ellipse", (3, 40, 22, 59))])],
    "tree": [("trunk", [("rect", (-5, 40, 5, 80))]),
             ("crown", [("ellipse", (-24, 0, 24, 46))])],
}


def layout(class_name: str, ux: float, uy: float, mirror: bool
           ) -> list[tuple[str, list[tuple[str, tuple[float, ...]]]]]:
    """The parts of one object, scaled to pixels, with the object's box at the origin.

    Parameters
    ----------
    class_name : str
        One of ``CLASS_NAMES``.
    ux, uy : float
        Pixels per layout unit, horizontally and vertically.
    mirror : bool
        Flip the object left-right (e.g. the flag's cloth on the left).

    Returns
    -------
    list of (part, primitives)
        In drawing order; each primitive is ``(kind, coords)`` in pixels, the
        union of all coordinates having its top-left corner at ``(0, 0)``.
    """
    sign = -1.0 if mirror else 1.0
    scaled = [(part, [(kind, tuple(c * (sign * ux if i % 2 == 0 else uy) for i, c in enumerate(coords)))
                      for kind, coords in prims]) for part, prims in _LAYOUTS[class_name]]
    xs = [c for _, prims in scaled for _, coords in prims for c in coords[0::2]]
    ys = [c for _, prims in scaled for _, coords in prims for c in coords[1::2]]
    x0, y0 = min(xs), min(ys)
    out = []
    for part, prims in scaled:
        moved = []
        for kind, coords in prims:
            coords = tuple(c - (x0 if i % 2 == 0 else y0) for i, c in enumerate(coords))
            if kind != "polygon":  # PIL wants x0 <= x1 for boxes; mirroring swapped them
                coords = (min(coords[0], coords[2]), coords[1], max(coords[0], coords[2]), coords[3])
            moved.append((kind, coords))
        out.append((part, moved))
    return out
