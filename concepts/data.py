"""Image sources: a folder or list of files, or classes of an ImageNet-style root; and the class resolver.

Images are decoded with Pillow in DataLoader workers, EXIF-transposed, cropped
to their centred square in source pixels, converted to RGB (grayscale,
palette, CMYK, RGBA, 16-bit) and resized to ``image_size`` (antialiased
bilinear). Cropping first keeps memory at the size of the square, whatever
the aspect ratio. Files that cannot be used are skipped and reported with the
reason: corrupt or truncated files, non-images, images over Pillow's
decompression-bomb limit or with a short side under 8 px, and, in a folder,
subfolders, broken symbolic links and symbolic link loops. Regular files
whose extension is not an image extension are ignored without a report. The
order is the sorted order of the paths.
"""
from __future__ import annotations

import difflib
import errno
import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset

from .imagenet import imagenet_classes, imagenet_root_folders

__all__ = ["IMAGE_EXTENSIONS", "LoadedImages", "imagenet_class_folders", "load_images",
           "resolve_class"]

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_MIN_SIDE = 8  # a thinner strip holds almost nothing of a square crop: its resize would be mostly invented pixels


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
        ``(path, reason)`` for every file or folder entry that could not be
        used, sorted by path.
    """

    images: torch.Tensor
    paths: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB (16-bit and float images are rescaled to 8 bits)."""
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


def _size_problem(width: int, height: int) -> str | None:
    """Why an image of this size is not decoded (read before decoding, so a bomb costs nothing), or None."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        return (f"image is {width} x {height} px, over Pillow's decompression-bomb limit of {limit} pixels "
                "(PIL.Image.MAX_IMAGE_PIXELS)")
    if min(width, height) < _MIN_SIDE:
        return f"image is {width} x {height} px: its short side is under {_MIN_SIDE} px, too thin to crop a square"
    return None


def _decode_square(path: str, size: int) -> torch.Tensor | str:
    """One file -> ``(3, size, size)`` in [0, 1], or the reason it is skipped.

    The centred square is cropped in source pixels before any resize, so no
    tensor is ever larger than that square: a 1 x 12000 px strip used to be
    upscaled to 224 x 2.7M px first. JPEGs are decoded at the smallest DCT
    scale that still covers ``size``, and squares over ``4 * size`` are
    box-reduced first, so large photos cost memory near their output size.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # _size_problem reports it as the reason
        with Image.open(path) as image:
            problem = _size_problem(*image.size)
            if problem is not None:
                return problem
            if image.format == "JPEG":
                image.draft(None, (size, size))
            image.load()
            image = ImageOps.exif_transpose(image)
            side = min(image.size)
            left, top = (image.width - side) // 2, (image.height - side) // 2
            rgb = _to_rgb(image.crop((left, top, left + side, top + side)))
    if side > 4 * size:
        rgb = rgb.reduce(side // (2 * size))
    x = torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255)
    x = F.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    return x.clamp_(0, 1)


class _ImageFiles(Dataset):
    """Decodes one file per item: ``(tensor (3, S, S) or None, reason it was skipped)``."""

    def __init__(self, paths: Sequence[str], image_size: int) -> None:
        self.paths = list(paths)
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, str]:
        try:
            decoded = _decode_square(self.paths[index], self.image_size)
        except Exception as err:  # noqa: BLE001 - any decoding failure skips the file, with its reason
            return None, f"{type(err).__name__}: {err}"
        return (None, decoded) if isinstance(decoded, str) else (decoded, "")


def _collate(batch: list[tuple[torch.Tensor | None, str]]) -> list[tuple[torch.Tensor | None, str]]:
    return batch


def _entry_problem(path: Path) -> str | None:
    """Why a path cannot be an image file (folder, broken link, link loop, pipe...), or None to try decoding it."""
    try:
        mode = path.stat().st_mode
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symbolic link loop"
        if path.is_symlink():
            return f"broken symbolic link (its target {os.readlink(path)!r} does not exist)"
        return None  # missing or unreadable: decoding reports Pillow's own reason
    if stat.S_ISDIR(mode):
        return "a folder, not an image (folders are not searched)"
    if not stat.S_ISREG(mode):
        return "not a regular file (a pipe, socket or device)"
    return None


def _list_files(source: str | os.PathLike | Sequence[str | os.PathLike]) -> tuple[list[str], list[tuple[str, str]]]:
    """Files to decode and ``(path, reason)`` for entries that cannot be images, both sorted."""
    in_folder = isinstance(source, (str, os.PathLike))
    if in_folder:
        root = Path(source)
        if root.is_file():
            return [str(root)], []
        if not root.is_dir():
            raise ValueError(f"`paths_or_folder` of `load_images` must be an existing folder, file or a list of "
                             f"files; got {str(root)!r}, which does not exist.")
        try:
            entries = sorted(root.iterdir())
        except OSError as err:
            raise ValueError(f"`paths_or_folder` of `load_images`: cannot list the folder {str(root)!r} "
                             f"({err.strerror}); check its permissions.") from err
    else:
        try:
            entries = sorted(Path(p) for p in source)
        except TypeError as err:
            raise TypeError(f"`paths_or_folder` of `load_images` must be a path or a sequence of paths; got "
                            f"{type(source).__name__}.") from err
    files: list[str] = []
    skipped: list[tuple[str, str]] = []
    for path in entries:
        problem = _entry_problem(path)
        if problem is not None:
            skipped.append((str(path), problem))
        elif not in_folder or path.suffix.lower() in IMAGE_EXTENSIONS:
            files.append(str(path))
        # else: a regular file of a folder with another extension (notes.txt) is not meant as an image: ignored
    return files, skipped


def load_images(paths_or_folder: str | os.PathLike | Sequence[str | os.PathLike], *, image_size: int = 224,
                max_images: int | None = None, num_workers: int = 0) -> LoadedImages:
    """Decode images into a ``(N, 3, S, S)`` tensor in [0, 1], skipping unreadable files.

    Parameters
    ----------
    paths_or_folder : path or sequence of paths
        A folder (its image files, by extension, not recursive: subfolders,
        broken links and link loops are listed in ``skipped``), one file, or
        a list of files (all tried, whatever the extension).
    image_size : int, default 224
        Side ``S``: the centred square of each image, resized to ``S``.
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
    files, skipped = _list_files(paths_or_folder)
    images: list[torch.Tensor] = []
    paths: list[str] = []
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
    return LoadedImages(images=stacked, paths=paths, skipped=sorted(skipped))


def resolve_class(cls: int | str, categories: Sequence[str], wnids: Sequence[str] | None = None, *,
                  argument: str = "`cls` of `resolve_class`") -> int:
    """Class index from an int, a digit string, a WordNet id or a class name.

    A name matches exactly first, then case-insensitively, and a name that
    still names several classes is refused with their indices rather than
    guessed: ImageNet has ``'Cardigan'`` (264, the corgi) and ``'cardigan'``
    (474, the sweater), so ``"Cardigan"`` is 264, ``"cardigan"`` is 474 and
    ``"CARDIGAN"`` is an error naming both. This is the one resolver of the
    project, so a class spec means the same class everywhere.

    Parameters
    ----------
    cls : int or str
        A class index (``217`` or ``"217"``), a WordNet id (with ``wnids``) or
        a class name.
    categories : sequence of str
        Name of each class index.
    wnids : sequence of str, optional
        WordNet id of each class index, to accept ids such as ``"n02102040"``.
    argument : str, default "`cls` of `resolve_class`"
        How error messages name ``cls`` (e.g. "`--classes`").

    Returns
    -------
    int

    Raises
    ------
    TypeError
        If ``cls`` is neither an int nor a str.
    ValueError
        For an index out of range, an unknown name (with close matches) or an
        ambiguous one (with the candidate indices).
    """
    n = len(categories)
    if isinstance(cls, bool) or not isinstance(cls, (int, str)):
        raise TypeError(f"{argument} must be an int or a str; got {type(cls).__name__}.")
    text = cls.strip() if isinstance(cls, str) else ""
    if isinstance(cls, int) or text.isdecimal():
        index = int(cls)
        if not 0 <= index < n:
            raise ValueError(f"{argument} must be a class index in [0, {n - 1}]; got {index}.")
        return index
    if wnids is not None and text in wnids:
        return list(wnids).index(text)
    hits = ([i for i, name in enumerate(categories) if name == text]
            or [i for i, name in enumerate(categories) if name.lower() == text.lower()])
    if len(hits) == 1:
        return hits[0]
    if hits:
        listed = ", ".join(f"{i} ({categories[i]})" for i in hits)
        raise ValueError(f"{argument} is ambiguous: {text!r} names classes {listed}. Pass the class index instead.")
    known = {key.lower(): (key, i) for i, key in reversed([*enumerate(categories), *enumerate(wnids or ())])}
    close = difflib.get_close_matches(text.lower(), list(known), n=5, cutoff=0.6)
    hint = " Close matches: " + ", ".join(f"{known[c][0]!r} ({known[c][1]})" for c in close) + "." if close else ""
    kinds = ", a class name or a WordNet id" if wnids is not None else " or a class name"
    raise ValueError(f"{argument} must be a class index in [0, {n - 1}]{kinds}; got {cls!r}.{hint}")


def imagenet_class_folders(root: str | os.PathLike, classes: Sequence[int | str], *, root_argument: str = "`root`",
                           classes_argument: str = "`classes`") -> list[tuple[int, str, Path]]:
    """Find classes of an ImageNet-style root ``root/<wnid>/*.JPEG``, by their standard ILSVRC-2012 index.

    The index and name come from the packaged class table
    (:func:`concepts.imagenet.imagenet_classes`), never from the position of
    the folder under ``root``, so a subset of ImageNet keeps every class's
    index: ``n02102040`` is 217 (English springer) whatever else is there.
    Every missing folder is reported in one error, so a long class list is
    fixed in one go.

    Parameters
    ----------
    root : path
        Folder of ILSVRC-2012 wnid folders (any subset of the 1000); any other
        non-hidden folder is an error.
    classes : sequence of int or str
        Class indices, wnids (``"n01440764"``) or class names (``"tench"``),
        as :func:`resolve_class` reads them; each folder must be under ``root``.
    root_argument, classes_argument : str
        How error messages name ``root`` and ``classes`` (e.g. "`--imagenet-root`").

    Returns
    -------
    list of (class_index, wnid, folder)
        One per entry of ``classes``, in order.
    """
    table = imagenet_classes()
    present = imagenet_root_folders(root, argument=root_argument)
    indices = [resolve_class(c, table.names, table.wnids, argument=classes_argument) for c in classes]
    missing = [i for i in dict.fromkeys(indices) if i not in present]
    if missing:
        listed = "; ".join(f"class {i} ({table.names[i]}), whose folder {table.wnids[i]}/" for i in missing[:5])
        more = f"; and {len(missing) - 5} more" if len(missing) > 5 else ""
        held = ", ".join(f"{w}/ ({i}, {table.names[i]})" for i, w in list(present.items())[:5])
        raise ValueError(f"{classes_argument} asks for {listed}{more} {'is' if len(missing) == 1 else 'are'} not in "
                         f"{root_argument} {root}; it holds {len(present)} class folders: {held}"
                         f"{', ...' if len(present) > 5 else ''}. Pick classes present there or add their folders.")
    return [(i, table.wnids[i], Path(root) / table.wnids[i]) for i in indices]
