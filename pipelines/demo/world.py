"""A procedural image world whose classes are built from known parts.

Notation: ``n`` images, ``N`` images over all classes, ``H = W`` the image
size, ``P = len(PART_NAMES)`` parts. Each image shows one object of its class
(a shared part, if the class has one, and two distinctive parts, see
:data:`~pipelines.demo.parts.CLASS_PARTS`) at a random position, scale,
aspect and left-right orientation, over a smooth noisy background cluttered
with small distractor shapes whose colours include the part colours (so
colour alone does not give the class away).

Parts also appear apart from each other, so that a model must learn each
distinctive part as evidence on its own (and concepts can tell them apart):

- with probability ``1 - P_BOTH`` one of the two distinctive parts, chosen
  at random, is left out (at least one distinctive part is always drawn);
- the shared part is left out with probability ``P_DROP_SHARED``;
- with probability ``P_APART`` the drawn parts are scattered: each is placed
  on its own at a random position, away from the others where it fits, and
  drawn up to ``APART_ZOOM`` times larger (as a part looks in a crop that is
  enlarged to the model's input size).

The object is drawn last, so the ground-truth part masks are exact: a pixel
belongs to the last part that painted it, and a part left out has an empty
mask.

Every image is drawn from its own ``numpy.random.Generator`` seeded with
``(seed, class_index, i)``, so a given seed always yields the same bytes and
``sample(c, 10, seed=s)[0][:5] == sample(c, 5, seed=s)[0]``. The global RNG
is never used.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..io import save
from .parts import (CLASS_NAMES, CLASS_PARTS, COLOUR_JITTER, DISTINCTIVE_PARTS, PART_COLOURS, PART_NAMES, TEXTURES,
                    layout, part_extent)

__all__ = ["APART_ZOOM", "P_APART", "P_BOTH", "P_DROP_SHARED", "DemoWorld"]

P_BOTH = 0.5  # both distinctive parts drawn; otherwise one of them, at random
P_DROP_SHARED = 0.25  # the shared part left out
P_APART = 0.3  # the drawn parts scattered over the image, each on its own
APART_ZOOM = (1.0, 1.8)  # scattered parts are drawn this much larger (at most 0.6 of the image side)

_EXTRA_CLUTTER_COLOURS = ((150, 60, 170), (60, 190, 200), (230, 130, 180), (120, 120, 120), (250, 250, 250))
_CLUTTER_COLOURS = np.array([c for cols in PART_COLOURS.values() for c in cols] + list(_EXTRA_CLUTTER_COLOURS))


def _check_int(value, name: str, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` of {where} must be an integer >= {minimum}; got {value!r}.")
    return int(value)


class DemoWorld:
    """Generator of demo images, labels and ground-truth part masks.

    Parameters
    ----------
    image_size : int, default 128
        Side ``H = W`` of the square images, at least 32. Layouts scale with it.
    seed : int, default 0
        The seed used by :meth:`sample`, :meth:`dataset` and
        :meth:`write_class_folders` when they are called with ``seed=None``.

    Attributes
    ----------
    class_names : tuple of str
        ``CLASS_NAMES``; the label of class ``c`` is ``c``.
    part_names : tuple of str
        ``PART_NAMES``; the order of the ``P`` mask channels.

    Examples
    --------
    >>> world = DemoWorld()
    >>> images, masks = world.sample(0, 4, seed=1)   # (4, 128, 128, 3) uint8, (4, 14, 128, 128) bool
    """

    class_names = CLASS_NAMES
    part_names = PART_NAMES

    def __init__(self, image_size: int = 128, seed: int = 0) -> None:
        self.image_size = _check_int(image_size, "image_size", "DemoWorld", 32)
        self.seed = _check_int(seed, "seed", "DemoWorld", 0)
        self._yy, self._xx = np.mgrid[0:self.image_size, 0:self.image_size]

    def __repr__(self) -> str:
        return f"DemoWorld(image_size={self.image_size}, seed={self.seed})"

    # ------------------------------------------------------------------ drawing
    def _background(self, rng: np.random.Generator) -> np.ndarray:
        s = self.image_size
        grey = rng.uniform(110, 210)
        tint = rng.uniform(-25, 25, size=3)
        gx, gy = rng.uniform(-30, 30, size=2)
        bg = (grey + tint + gx * (self._xx / s - 0.5)[..., None] + gy * (self._yy / s - 0.5)[..., None]
              + rng.normal(0.0, 4.0, size=(s, s, 3)))
        return np.clip(np.rint(bg), 0, 255).astype(np.uint8)

    def _clutter(self, canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        s, k = self.image_size, self.image_size / 128
        img = Image.fromarray(canvas)
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(4, 11))):
            kind = int(rng.integers(3))
            w, h = rng.uniform(3, 12, size=2) * k
            x, y = rng.uniform(-4, s - 4, size=2)
            colour = _CLUTTER_COLOURS[rng.integers(len(_CLUTTER_COLOURS))] + rng.integers(-20, 21, size=3)
            fill = tuple(int(c) for c in np.clip(colour, 0, 255))
            if kind == 0:
                draw.rectangle((x, y, x + w, y + h), fill=fill)
            elif kind == 1:
                draw.ellipse((x, y, x + w, y + h), fill=fill)
            else:
                draw.polygon((x, y + h, x + w / 2, y, x + w, y + h), fill=fill)
        return np.array(img)

    def _kept(self, class_index: int, rng: np.random.Generator) -> set[str]:
        """The parts drawn in one image: at least one distinctive part, see the module docstring."""
        name = CLASS_NAMES[class_index]
        distinctive = DISTINCTIVE_PARTS[name]
        both, which, drop_shared = rng.random() < P_BOTH, int(rng.integers(len(distinctive))), rng.random()
        keep = set(distinctive) if both else {distinctive[which]}
        if drop_shared >= P_DROP_SHARED:
            keep.update(p for p in CLASS_PARTS[name] if p not in distinctive)
        return keep

    def _place(self, parts, apart: bool, rng: np.random.Generator) -> list:
        """Shift the parts (pixels, origin at their box) to random places in the image.

        Whole objects move as one; scattered parts are placed one by one, each
        at the first of up to 20 random places whose box (plus a gap) misses
        the boxes placed before it, or at the last place tried.
        """
        s, k = self.image_size, self.image_size / 128
        margin, gap = 2 * k, 3 * k
        groups = [[part] for part in parts] if apart else [parts]
        placed, boxes = [], []
        for group in groups:
            x0, y0, x1, y1 = part_extent([p for _, prims in group for p in prims])
            w, h = x1 - x0, y1 - y0
            for _ in range(20):
                ox = rng.uniform(margin, max(margin, s - margin - w)) - x0
                oy = rng.uniform(margin, max(margin, s - margin - h)) - y0
                box = (x0 + ox - gap, y0 + oy - gap, x1 + ox + gap, y1 + oy + gap)
                if all(box[2] <= b[0] or b[2] <= box[0] or box[3] <= b[1] or b[3] <= box[1] for b in boxes):
                    break
            boxes.append(box)
            placed.extend((part, [(kind, tuple(c + (ox if i % 2 == 0 else oy) for i, c in enumerate(coords)))
                                  for kind, coords in prims]) for part, prims in group)
        return placed

    def _draw(self, class_index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One image ``(H, W, 3)`` uint8 and its masks ``(P, H, W)`` bool."""
        s, k = self.image_size, self.image_size / 128
        canvas = self._clutter(self._background(rng), rng)
        u = rng.uniform(0.7, 1.15) * k
        ux = u * rng.uniform(0.88, 1.12)
        mirror = bool(rng.random() < 0.5)
        keep = self._kept(class_index, rng)
        apart, zoom = bool(rng.random() < P_APART), rng.uniform(*APART_ZOOM)
        parts = [(part, prims) for part, prims in layout(CLASS_NAMES[class_index], ux, u, mirror) if part in keep]
        if apart:  # scattered parts are drawn larger (as in a crop), each at most 0.6 of the image side
            x0, y0, x1, y1 = zip(*(part_extent(prims) for _, prims in parts))
            side = max(max(b - a for a, b in zip(x0, x1)), max(b - a for a, b in zip(y0, y1)))
            zoom = max(1.0, min(zoom, 0.6 * s / side))
            u, ux = u * zoom, ux * zoom
            parts = [(part, prims) for part, prims in layout(CLASS_NAMES[class_index], ux, u, mirror) if part in keep]
        owner = np.full((s, s), -1, dtype=np.int64)
        for part, prims in self._place(parts, apart, rng):
            palette = np.array(PART_COLOURS[part]) + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=3)
            palette = np.clip(palette, 0, 255).astype(np.uint8)
            for kind, xy in prims:
                box = (min(xy[0::2]), min(xy[1::2]), max(xy[0::2]), max(xy[1::2]))
                stencil = Image.new("L", (s, s), 0)
                getattr(ImageDraw.Draw(stencil), "rectangle" if kind == "rect" else kind)(xy, fill=1)
                inside = np.asarray(stencil, dtype=bool)
                index = TEXTURES[part](self._yy, self._xx, box, u)
                canvas[inside] = palette[index[inside]]
                owner[inside] = PART_NAMES.index(part)
        masks = owner[None] == np.arange(len(PART_NAMES))[:, None, None]
        return canvas, masks

    # --------------------------------------------------------------- public API
    def sample(self, class_index: int, n: int, *, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` images of one class with their part masks.

        Parameters
        ----------
        class_index : int
            In ``[0, len(CLASS_NAMES))``.
        n : int
            Number of images, at least 1.
        seed : int, optional
            Non-negative; ``None`` uses the world's ``seed``. Image ``i`` depends
            only on ``(seed, class_index, i)``.

        Returns
        -------
        images : np.ndarray
            ``(n, H, W, 3)`` uint8 RGB.
        masks : np.ndarray
            ``(n, P, H, W)`` bool; channel ``p`` is part ``PART_NAMES[p]``
            (all False for parts the class does not have and for parts left out
            of that image).
        """
        if isinstance(class_index, bool) or not isinstance(class_index, (int, np.integer)) \
                or not 0 <= class_index < len(CLASS_NAMES):
            raise ValueError(f"`class_index` of DemoWorld.sample must be an integer in [0, {len(CLASS_NAMES)}) "
                             f"(classes {CLASS_NAMES}); got {class_index!r}.")
        n = _check_int(n, "n", "DemoWorld.sample", 1)
        seed = self.seed if seed is None else _check_int(seed, "seed", "DemoWorld.sample", 0)
        s, p = self.image_size, len(PART_NAMES)
        images = np.empty((n, s, s, 3), dtype=np.uint8)
        masks = np.empty((n, p, s, s), dtype=bool)
        for i in range(n):
            images[i], masks[i] = self._draw(int(class_index), np.random.default_rng([seed, int(class_index), i]))
        return images, masks

    def dataset(self, n_per_class: int, *, seed: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n_per_class`` images of every class, class by class.

        Memory is about ``N * (3 * 4 + P) * H * W`` bytes (masks included).

        Returns
        -------
        images : torch.Tensor
            ``(N, 3, H, W)`` float32 in [0, 1], ``N = n_per_class * len(CLASS_NAMES)``.
        labels : torch.Tensor
            ``(N,)`` int64 class indices.
        masks : torch.Tensor
            ``(N, P, H, W)`` bool part masks (see :meth:`sample`).
        """
        n_per_class = _check_int(n_per_class, "n_per_class", "DemoWorld.dataset", 1)
        drawn = [self.sample(c, n_per_class, seed=seed) for c in range(len(CLASS_NAMES))]
        images = torch.from_numpy(np.concatenate([d[0] for d in drawn])).permute(0, 3, 1, 2).float().div_(255)
        labels = torch.arange(len(CLASS_NAMES)).repeat_interleave(n_per_class)
        masks = torch.from_numpy(np.concatenate([d[1] for d in drawn]))
        return images.contiguous(), labels, masks

    def write_class_folders(self, root: str | os.PathLike, n_per_class: int, *, seed: int | None = None
                            ) -> list[Path]:
        """Write the images as PNGs in one folder per class, ``root/<c:03d>_<name>/<i:04d>.png``.

        Each file is written atomically (temporary file, then rename) through
        :mod:`pipelines.io`; existing files of the same names are replaced.

        Returns
        -------
        list of Path
            The written files, class by class, in order.
        """
        n_per_class = _check_int(n_per_class, "n_per_class", "DemoWorld.write_class_folders", 1)
        root = Path(root)
        paths = []
        for c, name in enumerate(CLASS_NAMES):
            images, _ = self.sample(c, n_per_class, seed=seed)
            paths.extend(save(image, root / f"{c:03d}_{name}" / f"{i:04d}.png") for i, image in enumerate(images))
        return paths
