"""Image sources: a folder or list of files, or one class of an ImageNet-style root.

Images are decoded with Pillow in DataLoader workers, EXIF-transposed,
converted to RGB (grayscale, palette, CMYK, RGBA, 16-bit), resized so the
shorter side is ``image_size`` and center-cropped to a square. Files Pillow
cannot decode (corrupt, truncated, not images) are skipped and reported with
the reason; the order is the sorted order of the paths.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset
from torchvision.models import ResNet50_Weights

__all__ = ["IMAGE_EXTENSIONS", "LoadedImages", "imagenet_class_folder", "load_images", "resolve_class"]

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(eq=False)
class LoadedImages:
    """Decoded images and what was skipped.

    Attributes
    ----------
    images : Tensor, shape (N, 3, S, S)
        float32 RGB in [0, 1].
    paths : list of str
        Source file of each image, in order.
    skipped : list of (str, str)
        ``(path, reason)`` for every file that could not be decoded.
    """

    images: torch.Tensor
    paths: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB (16-bit and float images are rescaled to 8 bits)."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        high = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        array = np.clip(array / high * 255.0, 0, 255).astype(np.uint8)
        image = Image.fromarray(array, mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


class _ImageFiles(Dataset):
    """Decodes one file per item: ``(tensor (3, S, S) or None, error message)``."""

    def __init__(self, paths: Sequence[str], image_size: int) -> None:
        self.paths = list(paths)
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, str]:
        try:
            with Image.open(self.paths[index]) as image:
                image.load()
                rgb = _to_rgb(image)
        except Exception as err:  # noqa: BLE001 - any decoding failure skips the file, with its reason
            return None, f"{type(err).__name__}: {err}"
        x = torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255)
        return _resize_center_crop(x, self.image_size), ""


def _resize_center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """``(3, H, W)`` -> ``(3, size, size)``: shorter side to ``size`` (antialiased), center crop."""
    h, w = x.shape[1:]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    x = F.interpolate(x[None], size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)[0]
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[:, top:top + size, left:left + size].clamp_(0, 1)


def _collate(batch: list[tuple[torch.Tensor | None, str]]) -> list[tuple[torch.Tensor | None, str]]:
    return batch


def _list_files(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    if isinstance(source, (str, os.PathLike)):
        root = Path(source)
        if root.is_dir():
            return sorted(str(p) for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if root.is_file():
            return [str(root)]
        raise ValueError(f"`paths_or_folder` of `load_images` must be an existing folder, file or a list of "
                         f"files; got {str(root)!r}, which does not exist.")
    try:
        return sorted(str(Path(p)) for p in source)
    except TypeError as err:
        raise TypeError(f"`paths_or_folder` of `load_images` must be a path or a sequence of paths; got "
                        f"{type(source).__name__}.") from err


def load_images(paths_or_folder: str | os.PathLike | Sequence[str | os.PathLike], *, image_size: int = 224,
                max_images: int | None = None, num_workers: int = 0) -> LoadedImages:
    """Decode images into a ``(N, 3, S, S)`` tensor in [0, 1], skipping unreadable files.

    Parameters
    ----------
    paths_or_folder : path or sequence of paths
        A folder (its image files, by extension, not recursive), one file, or
        a list of files (all tried, whatever the extension).
    image_size : int, default 224
        Side ``S``: shorter side resized to ``S``, then center crop.
    max_images : int, optional
        Keep at most this many decoded images (the first, in sorted order).
    num_workers : int, default 0
        DataLoader workers decoding in parallel.

    Returns
    -------
    LoadedImages
    """
    for name, value, low in (("image_size", image_size, 1), ("num_workers", num_workers, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"`{name}` of `load_images` must be an int >= {low}; got {value!r}.")
    if max_images is not None and (isinstance(max_images, bool) or not isinstance(max_images, int)
                                   or max_images < 1):
        raise ValueError(f"`max_images` of `load_images` must be an int >= 1 or None; got {max_images!r}.")
    files = _list_files(paths_or_folder)
    images: list[torch.Tensor] = []
    paths: list[str] = []
    skipped: list[tuple[str, str]] = []
    # with max_images, decode in chunks so that loading stops early without decoding every file
    chunk = max(len(files), 1) if max_images is None else max(2 * max_images, 64)
    for start in range(0, len(files), chunk):
        part = files[start:start + chunk]
        loader = DataLoader(_ImageFiles(part, image_size), batch_size=8, num_workers=num_workers,
                            collate_fn=_collate, shuffle=False)
        offset = 0
        for batch in loader:
            for x, reason in batch:
                path = part[offset]
                offset += 1
                if x is None:
                    skipped.append((path, reason))
                elif max_images is None or len(images) < max_images:
                    images.append(x)
                    paths.append(path)
        if max_images is not None and len(images) >= max_images:
            break
    stacked = torch.stack(images) if images else torch.empty(0, 3, image_size, image_size)
    return LoadedImages(images=stacked, paths=paths, skipped=skipped)


def resolve_class(cls: int | str, categories: Sequence[str]) -> int:
    """Class index from an int, a digit string or a class name (case-insensitive).

    Raises ``ValueError`` with close matches for unknown names, and with the
    candidate indices for names shared by several classes.
    """
    n = len(categories)
    if isinstance(cls, bool) or not isinstance(cls, (int, str)):
        raise TypeError(f"`cls` of `resolve_class` must be an int or a str; got {type(cls).__name__}.")
    if isinstance(cls, str) and cls.strip().isdigit():
        cls = int(cls.strip())
    if isinstance(cls, int):
        if not 0 <= cls < n:
            raise ValueError(f"`cls` of `resolve_class` must be a class index in [0, {n - 1}]; got {cls}.")
        return cls
    wanted = cls.strip().lower()
    hits = [i for i, name in enumerate(categories) if name.lower() == wanted]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        listed = ", ".join(f"{i} ({categories[i]})" for i in hits)
        raise ValueError(f"`cls` of `resolve_class` is ambiguous: {cls!r} names classes {listed}. "
                         "Pass the class index instead.")
    close = difflib.get_close_matches(wanted, [c.lower() for c in categories], n=5, cutoff=0.6)
    lowered = {c.lower(): i for i, c in reversed(list(enumerate(categories)))}
    hint = (" Close matches: " + ", ".join(f"{categories[lowered[c]]!r} ({lowered[c]})" for c in close) + "."
            if close else " Pass a class index or an exact class name.")
    raise ValueError(f"`cls` of `resolve_class` must be a known class name; got {cls!r}.{hint}")


def imagenet_class_folder(root: str | os.PathLike, cls: int | str,
                          categories: Sequence[str] | None = None) -> tuple[int, str, Path]:
    """Find one class of an ImageNet-style root ``root/<wnid>/*.JPEG``.

    Parameters
    ----------
    root : path
        Folder of wnid folders; class index = position of the wnid in the
        sorted list of wnid folders (the ImageNet convention).
    cls : int or str
        A class index, a wnid (``"n01440764"``) or a class name (``"tench"``).
    categories : sequence of str, optional
        Class names by index; default: torchvision's ResNet50 ImageNet
        categories (no network needed).

    Returns
    -------
    (class_index, wnid, folder)
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"`root` of `imagenet_class_folder` must be an existing folder of wnid folders; got "
                         f"{str(root)!r}.")
    wnids = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not wnids:
        raise ValueError(f"`root` of `imagenet_class_folder` must contain one folder per class; {root} has none.")
    if isinstance(cls, str) and cls in wnids:
        index = wnids.index(cls)
    elif isinstance(cls, str) and cls.startswith("n") and cls[1:].isdigit():
        close = difflib.get_close_matches(cls, wnids, n=5)
        raise ValueError(f"`cls` of `imagenet_class_folder` must be a wnid present in {root}; got {cls!r}."
                         + (f" Close matches: {', '.join(close)}." if close else ""))
    else:
        if categories is None:
            categories = ResNet50_Weights.IMAGENET1K_V2.meta["categories"]
        index = resolve_class(cls, categories)
    if index >= len(wnids):
        raise ValueError(f"`cls` of `imagenet_class_folder` must be below the number of wnid folders "
                         f"({len(wnids)}) in {root}; got class index {index}.")
    return index, wnids[index], root / wnids[index]
