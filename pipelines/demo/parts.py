"""The parts of the demo world: their colours, textures and per-class layouts.

Notation: ``H, W`` image height and width; ``u`` the drawing scale in pixels
per layout unit (an object is about 80 units tall); a *primitive* is one
filled shape (``"rect"``, ``"ellipse"`` or ``"polygon"``) with a texture; a
*part* is one or more primitives sharing a palette.

Every part is a shape + colour + texture: e.g. ``"stripes"`` is a red/white
horizontally striped rectangle, ``"post"`` a plain dark-grey bar. Every class
has two *distinctive* parts, found in no other class (:data:`DISTINCTIVE_PARTS`;
e.g. the flag's striped cloth and its dotted canton), laid out at
opposite ends or sides of the object and of similar areas, so that each one
alone is evidence for the class. Two parts are *shared* (``"post"`` by lamp,
flag and sign; ``"bricks"`` by house and cart) so that concepts are not just
class identity. The tree has no shared part.

Texture functions map pixel grids to an index into the part's palette
(``PART_COLOURS[part]``); every pixel a part paints is one palette colour
plus a per-instance colour offset of at most ``COLOUR_JITTER`` per channel.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["CLASS_NAMES", "CLASS_PARTS", "COLOUR_JITTER", "DISTINCTIVE_PARTS", "PART_COLOURS", "PART_NAMES",
           "SHARED_PARTS", "TEXTURES", "layout"]

CLASS_NAMES: tuple[str, ...] = ("lamp", "flag", "sign", "house", "cart", "tree")
PART_NAMES: tuple[str, ...] = ("disc", "post", "stripes", "diamond", "roof", "bricks", "wheels", "crown", "trunk",
                               "base", "canton", "plate", "fence", "awning")
# Shared part (if any) first, then the two distinctive parts.
CLASS_PARTS: dict[str, tuple[str, ...]] = {
    "lamp": ("post", "disc", "base"),
    "flag": ("post", "stripes", "canton"),
    "sign": ("post", "diamond", "plate"),
    "house": ("bricks", "roof", "fence"),
    "cart": ("bricks", "awning", "wheels"),
    "tree": ("crown", "trunk"),
}
SHARED_PARTS: tuple[str, ...] = tuple(p for p in PART_NAMES
                                      if sum(p in parts for parts in CLASS_PARTS.values()) > 1)
DISTINCTIVE_PARTS: dict[str, tuple[str, ...]] = {
    name: tuple(p for p in parts if p not in SHARED_PARTS) for name, parts in CLASS_PARTS.items()}
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
    "base": ((125, 60, 155), (200, 165, 225)),      # purple / lilac checks
    "canton": ((30, 30, 35), (245, 210, 50)),       # black with large yellow spots
    "plate": ((245, 245, 240), (20, 20, 20)),       # white with a black border and lines of "text"
    "fence": ((230, 225, 210), (110, 80, 50)),      # cream boards, brown gaps and rail
    "awning": ((30, 150, 120), (245, 235, 200)),    # teal / cream wide vertical stripes
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


def _spots(yy, xx, box, u):
    period = max(6.0, 8.0 * u)
    dy = (yy - box[1]) % period - period / 2
    dx = (xx - box[0]) % period - period / 2
    return ((dx ** 2 + dy ** 2) < (0.22 * period) ** 2).astype(np.int64)


def _bark(yy, xx, box, u):
    period = max(3, int(round(4 * u)))
    return (((xx - int(box[0])) % period) == 0).astype(np.int64) + 0 * yy


def _checks(yy, xx, box, u):
    period = max(3, int(round(5 * u)))
    return ((((yy - int(box[1])) // period) + ((xx - int(box[0])) // period)) % 2).astype(np.int64)


def _text(yy, xx, box, u):
    dy, dx = yy - box[1], xx - box[0]
    h, w = box[3] - box[1], box[2] - box[0]
    edge = max(1.0, 1.2 * u)
    border = (dx < edge) | (dx >= w - edge) | (dy < edge) | (dy >= h - edge)
    period = max(4.0, 5.0 * u)
    lines = ((dy % period) >= 0.5 * period) & (dy > 2 * edge) & (dy < h - 2 * edge) \
        & (dx > 3 * edge) & (dx < w - 3 * edge)
    return (border | lines).astype(np.int64)


def _boards(yy, xx, box, u):
    period = max(4, int(round(6 * u)))
    gap = ((xx - int(box[0])) % period) < max(1, int(round(1.5 * u)))
    rail = np.abs(yy - (box[1] + box[3]) / 2) < max(1.0, 1.2 * u)
    return (gap | rail).astype(np.int64)


def _wide_stripes(yy, xx, box, u):
    period = max(4.0, 6.0 * u)
    return (np.floor((xx - box[0]) / period).astype(np.int64) % 2) + 0 * yy


TEXTURES: dict[str, Texture] = {
    "disc": _plain, "post": _plain, "stripes": _stripes, "diamond": _border, "roof": _shingles,
    "bricks": _bricks, "wheels": _hub, "crown": _dots, "trunk": _bark, "base": _checks, "canton": _spots,
    "plate": _text, "fence": _boards, "awning": _wide_stripes,
}

# Layouts in units, x centred on the object's axis, y down from its top; parts are listed in drawing order.
# Each primitive is (kind, coordinates): rect/ellipse (x0, y0, x1, y1); polygon (x0, y0, x1, y1, ...).
# The two distinctive parts of a class sit at opposite ends (or sides) and have similar areas.
_LAYOUTS: dict[str, list[tuple[str, list[tuple[str, tuple[float, ...]]]]]] = {
    "lamp": [("post", [("rect", (-3, 28, 3, 64))]),
             ("disc", [("ellipse", (-15, 0, 15, 30))]),
             ("base", [("polygon", (-20, 80, -11, 62, 11, 62, 20, 80))])],
    "flag": [("post", [("rect", (-3, 0, 3, 80))]),
             ("stripes", [("rect", (22, 2, 45, 32))]),
             ("canton", [("rect", (3, 2, 22, 32))])],
    "sign": [("post", [("rect", (-3, 34, 3, 80))]),
             ("diamond", [("polygon", (0, 0, 19, 19, 0, 38, -19, 19))]),
             ("plate", [("rect", (-17, 44, 17, 63))])],
    "house": [("bricks", [("rect", (-24, 30, 24, 68))]),
              ("roof", [("polygon", (-31, 32, 0, 0, 31, 32))]),
              ("fence", [("rect", (-30, 64, 30, 80))])],
    "cart": [("bricks", [("rect", (-27, 20, 27, 50))]),
             ("awning", [("polygon", (-29, 20, -24, 2, 24, 2, 29, 20))]),
             ("wheels", [("ellipse", (-26, 38, -2, 62)), ("ellipse", (2, 38, 26, 62))])],
    "tree": [("trunk", [("rect", (-9, 40, 9, 80))]),
             ("crown", [("ellipse", (-18, 0, 18, 42))])],
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
    return [(part, _fix_boxes(prims)) for part, prims in _moved(scaled, *_origin(scaled))]


def part_extent(prims: list[tuple[str, tuple[float, ...]]]) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)``: the box around all coordinates of some primitives."""
    xs = [c for _, coords in prims for c in coords[0::2]]
    ys = [c for _, coords in prims for c in coords[1::2]]
    return min(xs), min(ys), max(xs), max(ys)


def _origin(scaled) -> tuple[float, float]:
    x0, y0, _, _ = part_extent([p for _, prims in scaled for p in prims])
    return x0, y0


def _moved(scaled, x0: float, y0: float):
    return [(part, [(kind, tuple(c - (x0 if i % 2 == 0 else y0) for i, c in enumerate(coords)))
                    for kind, coords in prims]) for part, prims in scaled]


def _fix_boxes(prims):
    out = []
    for kind, coords in prims:
        if kind != "polygon":  # PIL wants x0 <= x1 for boxes; mirroring swapped them
            coords = (min(coords[0], coords[2]), coords[1], max(coords[0], coords[2]), coords[3])
        out.append((kind, coords))
    return out
