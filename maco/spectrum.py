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

import os
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


def _square_image(path: Path, size: int) -> np.ndarray:
    """Load an image as RGB, resize its shorter side to ``size`` and centre-crop."""
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img).convert("RGB")
        img = ImageOps.fit(img, (size, size), method=Image.Resampling.BICUBIC)
        return np.asarray(img, dtype=np.float32) / 255.0


def compute_spectrum(images: str | os.PathLike | Iterable[str | os.PathLike], *, size: int = 512) -> torch.Tensor:
    """Mean magnitude spectrum of natural images, in the decorrelated colour basis.

    Parameters
    ----------
    images : folder or iterable of image paths
        Unreadable files are skipped; at least one image must load.
    size : int
        Even canvas side; images are resized (shorter side) and centre-cropped.

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
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
    else:
        paths = [Path(p) for p in images]
    to_decorrelated = torch.linalg.inv(COLOR_CORRELATION.double()).float()
    total = torch.zeros(3, size, size // 2 + 1, dtype=torch.float64)
    count = 0
    for path in paths:
        try:
            rgb = torch.from_numpy(_square_image(path, size))
        except (OSError, ValueError):
            continue
        decorrelated = (rgb.reshape(-1, 3) @ to_decorrelated).reshape(size, size, 3).permute(2, 0, 1)
        total += torch.fft.rfft2(decorrelated.double()).abs()
        count += 1
    if count == 0:
        raise ValueError(f"`images` of compute_spectrum: none of {len(paths)} files could be read as an image.")
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
