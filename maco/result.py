"""The record of a visualization run: images, alpha maps, score trace and configuration, saved and loaded.

:func:`maco.render` returns a :class:`RenderResult`; pipelines store it with :meth:`RenderResult.save` and read it
back with :meth:`RenderResult.load`, which refuses files of another schema version rather than misread them.

Saved at display precision, as files a person can open: each image as an 8-bit WebP, lossless by default (the
same pixels as an 8-bit PNG, about 30% smaller on MaCo images) or lossy at a chosen quality; each alpha map as an
8-bit grayscale PNG of the square root of the map over its own maximum (kept in float32), so the low values the
pictures stretch (their 80th percentile is typically 10-20% of the maximum) keep 40-60 levels. A resumed run
rebuilds the same pictures from the files as from the run itself, because a pipeline computes from the reloaded
result in both cases.
"""

from __future__ import annotations

import html
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image

from ._atomic import atomic_write
from .plot import data_uri, encode_thumbnail

__all__ = ["SCHEMA_VERSION", "RenderResult"]

SCHEMA_VERSION = 3  # 3: images as WebP files, alphas as 8-bit square-root PNGs over a float32 scale per target
DISPLAY_SIZE = 256  # px, longest side of the picture a notebook shows for a one-target result
DISPLAY_THUMB = 128  # px, each target's thumbnail in the HTML display
DISPLAY_TARGETS = 16  # targets the HTML display shows; the rest are counted


@dataclass
class RenderResult:
    """What a visualization run returns.

    ``images`` ``(T, 3, H, W)`` in [0, 1] and ``alphas`` ``(T, 1, H, W)``
    (raw accumulated gradient magnitude; None when loaded from a result saved
    without them) are on the CPU; ``history`` is the
    ``(steps, T)`` score trace. Unpacking gives ``images, alphas``, without
    the ``T`` axis for a single target: ``image, alpha = maco(...)``.
    """

    images: torch.Tensor
    alphas: torch.Tensor | None
    names: list[str]
    history: torch.Tensor
    seeds: list[int]
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self.images.shape[0] == 1:
            return iter((self.images[0], self.alphas[0]))
        return iter((self.images, self.alphas))

    @property
    def images_per_second(self) -> float:
        """Crops through the model per second (``steps * T * K / seconds``)."""
        steps, n_targets = self.history.shape
        return steps * n_targets * self.config.get("crops", 1) / max(self.seconds, 1e-9)

    def _repr_png_(self) -> bytes | None:
        """A notebook's picture of a one-target result (downscaled); None for several (the HTML shows them)."""
        if self.images.shape[0] != 1:
            return None
        return encode_thumbnail(self.images[0], size=DISPLAY_SIZE)

    def _repr_html_(self) -> str:
        """Each target's thumbnail with its name and final score, and what the run cost: inline, no file."""
        steps, n_targets = self.history.shape
        cells = "".join(
            f'<figure style="display:inline-block;margin:2px;text-align:center">'
            f'<img src="{data_uri(image, size=DISPLAY_THUMB, format="JPEG")}" alt="{html.escape(name)}">'
            f'<figcaption style="font-size:11px">{html.escape(name)}<br>score {float(score):.3g}</figcaption></figure>'
            for image, name, score in zip(self.images[:DISPLAY_TARGETS], self.names, self.history[-1])
        )
        more = f"<p>... and {n_targets - DISPLAY_TARGETS} more targets</p>" if n_targets > DISPLAY_TARGETS else ""
        height, width = self.images.shape[-2:]
        return (f"<div><b>RenderResult</b>: {n_targets} target(s), {width}x{height} px, {steps} steps, "
                f"{self.seconds:.1f} s<br>{cells}{more}</div>")

    @staticmethod
    def image_file(target: int) -> str:
        """The name :meth:`save` gives target ``target``'s image in its directory (pages link to it)."""
        return f"image_{target:02d}.webp"

    def save(self, directory: str | Path, *, quality: int | None = None, alphas: bool = True) -> Path:
        """Write ``image_NN.webp``, ``alpha_NN.png``, ``tensors.npz`` (alpha scales, history) and ``result.json``.

        ``quality=None`` writes the images losslessly (8-bit); an integer in [1, 100] writes lossy WebP at that
        quality, for images that are only looked at. ``alphas=False`` leaves the alpha maps out (a feature
        inversion's, which nothing shows); :meth:`load` then gives ``alphas=None``. Every file is written
        atomically.
        """
        if quality is not None and (isinstance(quality, bool) or not isinstance(quality, int)
                                    or not 1 <= quality <= 100):
            raise ValueError(f"`quality` of RenderResult.save must be None (lossless) or an integer in [1, 100]; "
                             f"got {quality!r}.")
        if alphas and self.alphas is None:
            raise ValueError("this RenderResult has no alpha maps to save; pass alphas=False.")
        directory = Path(directory)
        images = np.round(np.clip(np.nan_to_num(self.images.float().numpy()), 0.0, 1.0) * 255.0).astype(np.uint8)
        webp = {"lossless": True} if quality is None else {"quality": quality}
        for i, image in enumerate(images):
            _write_image(directory / self.image_file(i), Image.fromarray(image.transpose(1, 2, 0)),
                         format="WEBP", method=4, **webp)
        arrays = {"history": self.history.numpy()}
        if alphas:
            maps = self.alphas.float().numpy().mean(1)  # (T, H, W): the pictures use the channel mean
            arrays["alpha_scale"] = np.abs(maps).reshape(len(maps), -1).max(1, initial=0.0).astype(np.float32)
            safe = np.where(arrays["alpha_scale"] > 0, arrays["alpha_scale"], 1.0)[:, None, None]
            levels = np.round(np.sqrt(np.clip(maps / safe, 0.0, 1.0)) * 255.0).astype(np.uint8)
            for i, level in enumerate(levels):
                _write_image(directory / f"alpha_{i:02d}.png", Image.fromarray(level), format="PNG")
        for path in [*directory.glob("image_*.webp"), *directory.glob("alpha_*.png")]:
            number = path.stem.rpartition("_")[2]
            kept = len(images) if path.suffix == ".webp" or alphas else 0
            if number.isdigit() and int(number) >= kept:  # left by an earlier, larger result
                path.unlink()
        atomic_write(directory / "tensors.npz", lambda handle: np.savez_compressed(handle, **arrays))
        meta = {key: value for key, value in asdict(self).items() if key not in ("images", "alphas", "history")}
        meta.update(schema_version=SCHEMA_VERSION, image_quality=quality, alphas_saved=alphas)
        text = json.dumps(meta, indent=1, sort_keys=True, allow_nan=False).encode()
        atomic_write(directory / "result.json", lambda handle: handle.write(text))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "RenderResult":
        directory = Path(directory)
        meta = json.loads((directory / "result.json").read_text())
        if meta.pop("schema_version", None) != SCHEMA_VERSION:
            raise ValueError(f"{directory} holds a RenderResult of another schema version; re-run the visualization.")
        meta.pop("image_quality", None)
        alphas_saved = meta.pop("alphas_saved")
        with np.load(directory / "tensors.npz", allow_pickle=False) as arrays:
            history = torch.from_numpy(arrays["history"])
            scale = torch.from_numpy(arrays["alpha_scale"]) if alphas_saved else None
        n_targets = history.shape[1]
        images = torch.stack([_read_image(directory / cls.image_file(i), "RGB").permute(2, 0, 1)
                              for i in range(n_targets)]).float().div_(255.0)
        alphas = None
        if scale is not None:
            levels = torch.stack([_read_image(directory / f"alpha_{i:02d}.png", "L") for i in range(n_targets)])
            alphas = (levels.float().div_(255.0).square_() * scale[:, None, None])[:, None]
        return cls(images=images, alphas=alphas, history=history, **meta)


def _write_image(path: Path, image: Image.Image, **kwargs: Any) -> None:
    buffer = io.BytesIO()
    image.save(buffer, **kwargs)
    atomic_write(path, lambda handle: handle.write(buffer.getvalue()))


def _read_image(path: Path, mode: str) -> torch.Tensor:
    """The 8-bit pixels of ``path`` as ``(H, W, C)`` or ``(H, W)`` uint8; a wrong mode means a foreign file."""
    with Image.open(path) as image:
        if image.mode != mode:
            raise ValueError(f"{path} is {image.mode}, not the {mode} image RenderResult.save writes; "
                             "re-run the visualization.")
        return torch.from_numpy(np.array(image))
