"""The record of a visualization run: images, alpha maps, score trace and configuration, saved and loaded.

:func:`maco.render` returns a :class:`RenderResult`; pipelines store it with :meth:`RenderResult.save` and read it
back with :meth:`RenderResult.load`, which refuses files of another schema version rather than misread them.

Saved at display precision, a quarter of float32's size: images as 8-bit (exactly what an 8-bit PNG of them
holds), each alpha map as float16 divided by its own maximum (kept in float32), so a resumed run rebuilds the
same pictures from the file as from the run itself.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ._atomic import atomic_write

__all__ = ["SCHEMA_VERSION", "RenderResult"]

SCHEMA_VERSION = 2  # 2: images as uint8, alphas as float16 over a float32 scale per target


@dataclass
class RenderResult:
    """What a visualization run returns.

    ``images`` ``(T, 3, H, W)`` in [0, 1] and ``alphas`` ``(T, 1, H, W)``
    (raw accumulated gradient magnitude) are on the CPU; ``history`` is the
    ``(steps, T)`` score trace. Unpacking gives ``images, alphas``, without
    the ``T`` axis for a single target: ``image, alpha = maco(...)``.
    """

    images: torch.Tensor
    alphas: torch.Tensor
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

    def save(self, directory: str | Path) -> Path:
        """Write ``tensors.npz`` (8-bit images, scaled float16 alphas, history) and ``result.json``, atomically."""
        directory = Path(directory)
        images = np.round(np.clip(np.nan_to_num(self.images.float().numpy()), 0.0, 1.0) * 255.0).astype(np.uint8)
        alphas = self.alphas.float().numpy()
        scale = np.abs(alphas).reshape(len(alphas), -1).max(1, initial=0.0).astype(np.float32)
        safe = np.where(scale > 0, scale, 1.0).reshape(-1, *([1] * (alphas.ndim - 1)))
        arrays = {"images": images, "alphas": (alphas / safe).astype(np.float16), "alpha_scale": scale,
                  "history": self.history.numpy()}
        atomic_write(directory / "tensors.npz", lambda handle: np.savez_compressed(handle, **arrays))
        meta = {key: value for key, value in asdict(self).items() if key not in ("images", "alphas", "history")}
        meta["schema_version"] = SCHEMA_VERSION
        text = json.dumps(meta, indent=1, sort_keys=True, allow_nan=False).encode()
        atomic_write(directory / "result.json", lambda handle: handle.write(text))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "RenderResult":
        directory = Path(directory)
        meta = json.loads((directory / "result.json").read_text())
        if meta.pop("schema_version", None) != SCHEMA_VERSION:
            raise ValueError(f"{directory} holds a RenderResult of another schema version; re-run the visualization.")
        with np.load(directory / "tensors.npz", allow_pickle=False) as arrays:
            images = torch.from_numpy(arrays["images"]).float().div_(255.0)
            scale = torch.from_numpy(arrays["alpha_scale"]).view(-1, *([1] * (arrays["alphas"].ndim - 1)))
            alphas = torch.from_numpy(arrays["alphas"]).float() * scale
            history = torch.from_numpy(arrays["history"])
        return cls(images=images, alphas=alphas, history=history, **meta)
