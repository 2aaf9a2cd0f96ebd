"""Natural-image magnitude spectra for MaCo.

MaCo fixes the Fourier magnitude of the optimised image to the mean magnitude
spectrum of natural images and optimises only the phase. The spectrum lives in
the *decorrelated* colour basis that :mod:`maco.param` re-correlates, in the
``rfft2`` layout: shape ``(3, H, W // 2 + 1)`` for an ``H x W`` canvas.

The packaged default (``maco/data/spectrum_imagenet.npy``, float16, 512 x 512)
was computed with :func:`compute_spectrum` from 500 ImageNet photographs (one
per even class index); ``maco/data/README.md`` records the command.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import warnings
from importlib import resources
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from ._atomic import atomic_write
from .param import COLOR_CORRELATION

__all__ = [
    "compute_spectrum",
    "default_spectrum",
    "load_spectrum",
    "resize_spectrum",
    "save_spectrum",
    "symmetrize_spectrum",
]

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
_DEFAULT_FILE = "spectrum_imagenet.npy"
_MIN_SIDE = 8  # thinner images are mostly interpolation once resized to the canvas
_SHOWN_SKIPS = 20  # the warning names at most this many skipped files

logger = logging.getLogger(__name__)


def _square_image(path: Path, size: int) -> np.ndarray | str:
    """An image as RGB, its centred square resized to ``size``; or the reason it cannot be used.

    The size is checked from the header before decoding, so a decompression
    bomb costs nothing; JPEGs are decoded at the smallest DCT scale covering
    ``size``.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # reported below, as the reason
        with Image.open(path) as img:
            width, height = img.size
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and width * height > limit:
                return (f"image is {width} x {height} px, over Pillow's decompression-bomb limit of {limit} pixels "
                        "(PIL.Image.MAX_IMAGE_PIXELS)")
            if min(width, height) < _MIN_SIDE:
                return f"image is {width} x {height} px: its short side is under {_MIN_SIDE} px"
            if img.format == "JPEG":
                img.draft(None, (size, size))
            img = ImageOps.exif_transpose(img).convert("RGB")
            img = ImageOps.fit(img, (size, size), method=Image.Resampling.BICUBIC)
            return np.asarray(img, dtype=np.float32) / 255.0


def _path_problem(path: Path) -> str | None:
    """Why a path cannot be an image file (folder, broken link, link loop, pipe), or None to try decoding it."""
    try:
        mode = path.stat().st_mode
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symbolic link loop"
        if path.is_symlink():
            return "broken symbolic link"
        return None  # missing or unreadable: decoding gives the reason
    if stat.S_ISDIR(mode):
        return "a folder, not an image (folders are not searched)"
    if not stat.S_ISREG(mode):
        return "not a regular file (a pipe, socket or device)"
    return None


def compute_spectrum(
    images: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    size: int = 512,
    skipped: list[tuple[str, str]] | None = None,
) -> torch.Tensor:
    """Mean magnitude spectrum of natural images, in the decorrelated colour basis.

    Parameters
    ----------
    images : folder or iterable of image paths
        A folder's image files, by extension (not recursive), or the given
        files. Files that cannot be used (unreadable, not images, over
        Pillow's decompression-bomb limit, short side under 8 px, broken
        links, folders) are skipped, all named in one logged warning; at
        least one image must load.
    size : int
        Even canvas side; the centred square of each image is resized to it.
    skipped : list, optional
        If given, ``(path, reason)`` is appended for each skipped file, so a
        caller can show them.

    Returns
    -------
    torch.Tensor
        ``(3, size, size // 2 + 1)`` float32 magnitudes, Hermitian-consistent.
    """
    _check_even_size(size, "compute_spectrum")
    if isinstance(images, (str, os.PathLike)):
        folder = Path(images)
        if not folder.is_dir():
            raise ValueError(
                f"`images` of compute_spectrum must be a folder or a list of files; "
                f"got {folder!s}, which is not a folder."
            )
        where = f"the folder {folder}"
        # a regular file with another extension (notes.txt) is not meant as an image: ignored, not reported
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES or _path_problem(p))
    else:
        paths = [Path(p) for p in images]
        where = "the given paths"
    to_decorrelated = torch.linalg.inv(COLOR_CORRELATION.double()).float()
    total = torch.zeros(3, size, size // 2 + 1, dtype=torch.float64)
    count = 0
    problems: list[tuple[str, str]] = []
    for path in paths:
        reason = _path_problem(path)
        if reason is None:
            try:
                square = _square_image(path, size)
            except Exception as err:  # noqa: BLE001 - any decoding failure skips the file, with its reason
                square = f"{type(err).__name__}: {err}"
            if isinstance(square, str):
                reason = square
        if reason is not None:
            problems.append((str(path), reason))
            continue
        rgb = torch.from_numpy(square)
        decorrelated = (rgb.reshape(-1, 3) @ to_decorrelated).reshape(size, size, 3).permute(2, 0, 1)
        total += torch.fft.rfft2(decorrelated.double()).abs()
        count += 1
    if skipped is not None:
        skipped.extend(problems)
    listed = "; ".join(f"{p} ({r})" for p, r in problems[:_SHOWN_SKIPS])
    listed += f"; and {len(problems) - _SHOWN_SKIPS} more" if len(problems) > _SHOWN_SKIPS else ""
    if count == 0:
        raise ValueError(
            f"`images` of compute_spectrum: none of {len(paths)} files in {where} could be used as an image"
            + (f"; skipped: {listed}." if problems else ". Pass a folder of .jpg/.png photographs.")
        )
    if problems:
        logger.warning("compute_spectrum skipped %d of %d files in %s: %s", len(problems), len(paths), where, listed)
    return symmetrize_spectrum((total / count).float())


def symmetrize_spectrum(spectrum: torch.Tensor) -> torch.Tensor:
    """Make the first and last ``rfft2`` columns Hermitian-consistent.

    A real image has ``|X[k, 0]| == |X[-k, 0]|`` (and likewise in the last
    column for even widths). With such a magnitude and an antisymmetric phase
    the inverse transform keeps the magnitude exactly (see :mod:`maco.param`).
    """
    out = spectrum.clone()
    h = spectrum.shape[-2]
    neg = (-torch.arange(h, device=spectrum.device)) % h
    for col in (0, spectrum.shape[-1] - 1):
        out[..., :, col] = 0.5 * (spectrum[..., :, col] + spectrum[..., neg, col])
    return out


def resize_spectrum(spectrum: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Resize a ``(3, H, W//2+1)`` spectrum to another even canvas.

    Frequencies scale in cycles per image (as in the references). Rows are
    fftshifted first so the interpolation does not blend across the wrap.
    """
    height, width = (size, size) if isinstance(size, int) else size
    _check_even_size(height, "resize_spectrum")
    _check_even_size(width, "resize_spectrum")
    _check_spectrum_shape(spectrum, None, "resize_spectrum")
    if spectrum.shape[-2:] == (height, width // 2 + 1):
        return spectrum.float().clone()
    shifted = torch.fft.fftshift(spectrum.float(), dim=-2)
    resized = F.interpolate(
        shifted[None], size=(height, width // 2 + 1), mode="bilinear", align_corners=False, antialias=True
    )[0]
    return symmetrize_spectrum(torch.fft.ifftshift(resized, dim=-2).clamp_min(0.0))


def save_spectrum(spectrum: torch.Tensor, path: str | os.PathLike, *, dtype: str = "float16") -> None:
    """Write a spectrum as ``.npy`` atomically (temp file + rename).

    Only the shape of a spectrum matters (the image is standardised after the
    inverse transform), so it is stored divided by its median, which keeps
    float16 from overflowing.
    """
    path = Path(path)
    _check_spectrum_shape(spectrum, None, "save_spectrum")
    spectrum = spectrum.detach().float().cpu()
    array = (spectrum / spectrum.median().clamp_min(1e-12)).numpy().astype(dtype)
    atomic_write(path, lambda handle: np.save(handle, array, allow_pickle=False))


def load_spectrum(path: str | os.PathLike) -> torch.Tensor:
    """Read a ``(3, H, W//2+1)`` ``.npy`` spectrum as float32."""
    array = np.load(Path(path), allow_pickle=False)
    spectrum = torch.from_numpy(array.astype(np.float32))
    _check_spectrum_shape(spectrum, None, "load_spectrum")
    return spectrum


def default_spectrum(size: int | tuple[int, int] = 512) -> torch.Tensor:
    """The packaged ImageNet spectrum, resized to ``size``."""
    with resources.files("maco").joinpath("data", _DEFAULT_FILE).open("rb") as handle:
        array = np.load(handle, allow_pickle=False)
    return resize_spectrum(torch.from_numpy(array.astype(np.float32)), size)


def _check_even_size(size: int, where: str) -> None:
    if not isinstance(size, int) or size < 2 or size % 2:
        raise ValueError(
            f"`image_size` of {where} must be an even integer >= 2 (irfft2 needs even sides); "
            f"got {size!r}. Use e.g. 512."
        )


def _check_spectrum_shape(spectrum: torch.Tensor, canvas: tuple[int, int] | None, where: str) -> None:
    if not isinstance(spectrum, torch.Tensor) or spectrum.ndim != 3 or spectrum.shape[0] != 3:
        shape = tuple(spectrum.shape) if isinstance(spectrum, torch.Tensor) else type(spectrum).__name__
        raise ValueError(f"`spectrum` of {where} must be a (3, H, W//2+1) tensor; got {shape}.")
    if canvas is not None and tuple(spectrum.shape[-2:]) != (canvas[0], canvas[1] // 2 + 1):
        raise ValueError(
            f"`spectrum` of {where} must have shape (3, {canvas[0]}, {canvas[1] // 2 + 1}) "
            f"for a {canvas[0]}x{canvas[1]} canvas; "
            f"got {tuple(spectrum.shape)}. Resize it with maco.resize_spectrum(spectrum, {canvas[0]})."
        )
    if not torch.isfinite(spectrum).all() or (spectrum < 0).any():
        raise ValueError(f"`spectrum` of {where} must be finite and non-negative.")
