"""The model's features of a class's crops and whole images: computed once, reused by every k and factorization.

The crop features are most of a class's time on a CPU (about 90-120 s for 120
photos with EfficientNet-Lite0 on 2 cores) and depend only on the model, the
layer, the images and the crop grid, never on the number of concepts or on
the factorization. :func:`class_features` computes them;
:meth:`ClassFeatures.save` / :meth:`ClassFeatures.load` keep them (float32,
exact), so a sweep over ``k`` or a rerun with another ``--n-concepts`` starts
from them. The whole images' feature-map *positions* come with the same
forward passes (the pooled features are their mean for a CNN): a bank can be
fitted on them (``fit_on="positions"``), each position a part of one photo.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .bank import _atomic_write, _write_npz
from .crops import extract_crops
from .features import ModelSplit, extract_features

__all__ = ["FEATURES_SCHEMA", "ClassFeatures", "class_features"]

FEATURES_SCHEMA = 2  # 2: the whole images' positions
_ARRAYS = ("crops", "images", "positions", "boxes", "image_index")


@dataclass(eq=False)
class ClassFeatures:
    """Pooled features of a class's crops and whole images, float32 on the CPU.

    Attributes
    ----------
    crops : Tensor, shape (n, C)
        Spatially averaged features of each crop (resized to the model's input).
    images : Tensor, shape (N, C)
        Spatially averaged features of each whole image (what the head reads).
    positions : Tensor, shape (N, P, C)
        The whole images' features at each of the ``P = h * w`` positions of the feature map (a ViT's patch
        tokens), row-major: ``images`` is their mean for a CNN (a class-token ViT pools otherwise).
    boxes : LongTensor, shape (n, 4)
        ``x0, y0, x1, y1`` of each crop in its image.
    image_index : LongTensor, shape (n,)
        Source image of each crop.
    patch_size : int
        Crop side in image pixels.
    grid : tuple of 2 ints
        ``(h, w)`` of the feature map the positions come from.
    """

    crops: torch.Tensor
    images: torch.Tensor
    positions: torch.Tensor
    boxes: torch.Tensor
    image_index: torch.Tensor
    patch_size: int
    grid: tuple[int, int]

    @property
    def pooled_is_mean(self) -> bool:
        """Whether the pooled features are the positions' mean (a CNN, an average-pooled ViT; not a class token)."""
        mean = self.positions.mean(1)
        return bool(torch.allclose(mean, self.images, rtol=1e-4, atol=1e-5 * float(self.images.abs().max()) + 1e-8))

    def subset(self, images: torch.Tensor) -> "ClassFeatures":
        """The features of the images ``images`` (indices, in that order) and of their crops, renumbered."""
        images = torch.as_tensor(images, dtype=torch.long)
        new_index = torch.full((len(self.images),), -1, dtype=torch.long)
        new_index[images] = torch.arange(len(images))
        keep = new_index[self.image_index] >= 0
        return ClassFeatures(crops=self.crops[keep], images=self.images[images], positions=self.positions[images],
                             boxes=self.boxes[keep], image_index=new_index[self.image_index[keep]],
                             patch_size=self.patch_size, grid=self.grid)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``features.npz`` and ``features.json`` into ``directory`` (created, atomically); returns it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {name: getattr(self, name).numpy() for name in _ARRAYS}
        _atomic_write(directory / "features.npz", lambda fh: _write_npz(fh, arrays))
        meta = json.dumps({"schema_version": FEATURES_SCHEMA, "patch_size": self.patch_size, "grid": list(self.grid)})
        _atomic_write(directory / "features.json", lambda fh: fh.write(meta.encode("utf-8")))
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "ClassFeatures":
        """Read features written by :meth:`save`; raises ValueError when they are damaged or inconsistent."""
        directory = Path(directory)
        meta = json.loads((directory / "features.json").read_text(encoding="utf-8"))
        if meta.get("schema_version") != FEATURES_SCHEMA:
            raise ValueError(f"`directory` of `ClassFeatures.load` must hold features of schema version "
                             f"{FEATURES_SCHEMA}; got {meta.get('schema_version')!r} in {directory}.")
        with np.load(directory / "features.npz", allow_pickle=False) as npz:
            arrays = {name: torch.from_numpy(npz[name]) for name in _ARRAYS}
        n, N = len(arrays["crops"]), len(arrays["images"])
        grid = tuple(int(v) for v in meta["grid"])
        if arrays["boxes"].shape != (n, 4) or arrays["image_index"].shape != (n,) \
                or arrays["crops"].shape[1:] != arrays["images"].shape[1:] or N == 0 or len(grid) != 2 \
                or arrays["positions"].shape != (N, grid[0] * grid[1], arrays["images"].shape[1]):
            raise ValueError(f"`directory` of `ClassFeatures.load` holds inconsistent arrays in {directory}: "
                             f"{ {k: tuple(v.shape) for k, v in arrays.items()} }.")
        return cls(**arrays, patch_size=int(meta["patch_size"]), grid=grid)


def class_features(split: ModelSplit, images: torch.Tensor, *, patch_size: int = 64, batch_size: int = 64,
                   device: torch.device | str | None = None, amp: bool | None = None,
                   channels_last: bool | None = None, progress: bool = True) -> ClassFeatures:
    """The pooled features of the CRAFT crop grid over ``images``, and the pooled and per-position features of the
    whole images (one bar each).

    Parameters
    ----------
    split : ModelSplit
    images : Tensor, shape (N, 3, S, S)
        Images in [0, 1].
    patch_size : int, default 64
        Crop side in image pixels (stride ``int(0.8 p)``, :func:`concepts.extract_crops`).
    batch_size : int, default 64
    device : torch.device or str, optional
        Default: the device of the model.
    amp, channels_last : bool, optional
        bf16 autocast and channels_last; None: on CUDA only.
    progress : bool, default True
    """
    crops = extract_crops(images, patch_size=patch_size, out_size=split.input_size)
    with tqdm(total=len(crops), desc="crop features", unit="crop", disable=not progress) as bar:
        A = extract_features(split, crops, batch_size=batch_size, device=device, progress=bar.update, amp=amp,
                             channels_last=channels_last)
    with tqdm(total=len(images), desc="image features", unit="img", disable=not progress) as bar:
        pooled, positions, grid = image_features(split, images, batch_size=batch_size, device=device,
                                                 progress=bar.update, amp=amp, channels_last=channels_last)
    return ClassFeatures(crops=A.float().cpu(), images=pooled, positions=positions, boxes=crops.boxes.clone(),
                         image_index=crops.image_index.clone(), patch_size=int(patch_size), grid=grid)


def image_features(split: ModelSplit, images: torch.Tensor, **batching) -> tuple[torch.Tensor, torch.Tensor,
                                                                                  tuple[int, int]]:
    """The whole images' pooled features ``(N, C)``, their positions ``(N, h * w, C)`` and ``(h, w)``, from one
    forward pass per image (``batching``: the keywords of :meth:`ModelSplit.map_batches`)."""
    grid: list[tuple[int, int]] = []

    def pooled_and_positions(x: torch.Tensor) -> torch.Tensor:  # row 0 the pooled features, then the positions
        f = split.g(x).float()
        spatial = split.spatial(f)
        grid[:] = [tuple(spatial.shape[-2:])]
        return torch.cat([split.pool(f)[:, None], spatial.flatten(2).transpose(1, 2)], 1)

    both = split.map_batches(images, pooled_and_positions, **batching)
    return both[:, 0].contiguous(), both[:, 1:].contiguous(), grid[0]
