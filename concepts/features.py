"""The model split ``g`` / ``h`` and batched feature extraction.

``g``: normalised images ``(N, 3, S, S)`` -> spatial features ``(N, C, h, w)``
before global pooling (or a transformer's tokens ``(N, T, C)``, see
:mod:`concepts.tokens`). ``h``: pooled features ``(N, C)`` -> logits
``(N, num_classes)``. A :class:`ModelSplit` takes images in [0, 1] and applies
the model's own normalisation (``mean``/``std``) itself.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .crops import Crops
from .tokens import TokenLayout

__all__ = ["ModelSplit", "extract_features"]


@dataclass(eq=False)
class ModelSplit:
    """A classifier cut at its last spatial layer, with everything that describes its input.

    The one object that knows how to feed the model: resize to ``input_size``,
    normalise with ``mean``/``std``, forward in batches (bf16 autocast and
    channels_last on CUDA) with the model in inference mode, restored after
    (:meth:`map_batches`). Every stage that runs the model goes through it.

    Attributes
    ----------
    g : callable
        Normalised images ``(N, 3, S, S)`` -> features ``(N, C, h, w)`` (tokens ``(N, T, C)`` with ``tokens``).
    h : callable
        Pooled features ``(N, C)`` -> logits ``(N, num_classes)``; any differentiable head.
    mean, std : tuple of 3 floats
        Input normalisation, applied to images in [0, 1].
    input_size : int
        Side ``S`` the model expects.
    categories : list of str or None
        Class names, indexed by class.
    head_weight : Tensor, shape (num_classes, C), or None
        Linear head weights (for exact contributions); None when the head is not one linear layer.
    head_bias : Tensor, shape (num_classes,), or None
    model_id : str
    layer : str
        Name of the layer ``g`` ends at (used in error messages and records).
    model : nn.Module or None
        The whole classifier ``g`` and ``h`` are cut from: feature
        visualization optimises its inputs.
    pooled_layer : str or None
        The module of ``model`` whose output is the pooled features (``avgpool``
        for a ResNet): concept directions live there.
    tokens : TokenLayout or None
        For a transformer: how ``g``'s tokens give the spatial grid and the pooled features
        (:mod:`concepts.tokens`); None: ``g`` gives a map, pooled by its spatial mean.
    """

    g: Callable[[torch.Tensor], torch.Tensor]
    h: Callable[[torch.Tensor], torch.Tensor]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int
    categories: list[str] | None = None
    head_weight: torch.Tensor | None = None
    head_bias: torch.Tensor | None = None
    model_id: str = "model"
    layer: str = "features"
    model: nn.Module | None = None
    pooled_layer: str | None = None
    tokens: TokenLayout | None = None

    def spatial(self, features: torch.Tensor) -> torch.Tensor:
        """Features of ``g`` -> the spatial map ``(N, C, h, w)`` (a transformer's patch tokens as a grid)."""
        return features if self.tokens is None else self.tokens.grid(features)

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """Features of ``g`` -> what the head reads ``(N, C)``: the spatial mean, or the tokens' pooling."""
        return features.mean((2, 3)) if self.tokens is None else self.tokens.pooled(features)

    def modules(self) -> Iterator[nn.Module]:
        """The distinct ``nn.Module`` parts: the whole model if known, else those of ``g`` and ``h``."""
        parts = [self.model] if self.model is not None else []
        for part in (self.g, self.h):
            if isinstance(part, nn.Module):
                parts.append(part)
            elif isinstance(getattr(part, "__self__", None), nn.Module):
                parts.append(part.__self__)
        seen: set[int] = set()
        for module in parts:
            if id(module) not in seen:
                seen.add(id(module))
                yield module

    def device(self) -> torch.device:
        """The device of the model's first parameter (CPU if it has none)."""
        for module in self.modules():
            for tensor in (*module.parameters(), *module.buffers()):
                return tensor.device
        return torch.device("cpu")

    def to(self, device: torch.device | str) -> "ModelSplit":
        """Move the model parts to ``device`` (in place); returns ``self``."""
        for module in self.modules():
            module.to(device)
        return self

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] ``(N, 3, S, S)`` -> normalised inputs of ``g``."""
        mean = torch.tensor(self.mean, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
        return (images - mean) / std

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] ``(N, 3, H, W)`` -> model inputs: resized to ``input_size`` (antialiased), normalised."""
        if images.shape[-2:] != (self.input_size, self.input_size):
            images = F.interpolate(images, size=(self.input_size, self.input_size), mode="bilinear",
                                   antialias=True, align_corners=False)
        return self.normalize(images)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] ``(N, 3, S, S)`` -> spatial features ``(N, C, h, w)``."""
        return self.g(self.normalize(images))

    @contextmanager
    def inference(self, device: torch.device | str | None = None) -> Iterator[torch.device]:
        """``eval()``, no weight gradients and on ``device`` inside the context; the caller's state is restored.

        Yields the device the model runs on (its own if ``device`` is None).
        """
        modules = list(self.modules())
        found = self.device()
        target = found if device is None else torch.device(device)
        modes = [(m, m.training) for module in modules for m in module.modules()]
        flags = [(p, p.requires_grad) for module in modules for p in module.parameters()]
        for module in modules:
            module.eval().requires_grad_(False)
        if target != found:
            self.to(target)
        try:
            yield target
        finally:
            if target != found:
                self.to(found)
            for module, training in modes:
                module.training = training
            for param, requires_grad in flags:
                param.requires_grad_(requires_grad)

    @torch.no_grad()
    def map_batches(self, images: torch.Tensor | Crops, fn: Callable[[torch.Tensor], torch.Tensor], *,
                    batch_size: int = 64, device: torch.device | str | None = None,
                    progress: Callable[[int], object] | None = None, amp: bool | None = None,
                    channels_last: bool | None = None) -> torch.Tensor:
        """``fn`` applied to the prepared model inputs of images in [0, 1] (or crops), batch by batch.

        Parameters
        ----------
        images : Tensor, shape (N, 3, H, W), or Crops
            Images in [0, 1], resized to ``input_size`` as needed; crops are cut
            and resized batch by batch.
        fn : callable
            Normalised inputs ``(b, 3, S, S)`` -> a tensor with ``b`` rows.
        batch_size : int, default 64
        device : torch.device or str, optional
            Default: the model's device.
        progress : callable, optional
            Called with the number of items done after each batch.
        amp : bool, optional
            Run ``fn`` in bf16 autocast. ``None``: on CUDA only (on most CPUs bf16 is slower than float32);
            ``True``/``False`` on every device, so the GPU path also runs, and is tested, on a CPU.
        channels_last : bool, optional
            Give ``fn`` its inputs in the channels_last memory format (faster convolutions on GPUs);
            ``None``, ``True`` and ``False`` as for ``amp``.

        Returns
        -------
        Tensor, float32 on the CPU, ``fn``'s outputs concatenated.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` of `ModelSplit.map_batches` must be an int >= 1; got {batch_size!r}.")
        if not isinstance(images, (torch.Tensor, Crops)):
            raise TypeError(f"`images` of `ModelSplit.map_batches` must be a Tensor (N, 3, H, W) or Crops; got "
                            f"{type(images).__name__}.")
        if isinstance(images, torch.Tensor) and (images.ndim != 4 or images.shape[1] != 3):
            raise ValueError(f"`images` of `ModelSplit.map_batches` must have shape (N, 3, H, W); got "
                             f"{tuple(images.shape)}.")
        if len(images) == 0:
            raise ValueError("`images` of `ModelSplit.map_batches` must not be empty; got 0 items.")
        for name, value in (("amp", amp), ("channels_last", channels_last)):
            if value is not None and not isinstance(value, bool):
                raise TypeError(f"`{name}` of `ModelSplit.map_batches` must be True, False or None (None: on CUDA "
                                f"only); got {value!r}.")
        out = []
        with self.inference(device) as dev:
            amp = dev.type == "cuda" if amp is None else amp
            channels_last = dev.type == "cuda" if channels_last is None else channels_last
            if isinstance(images, Crops) and images.images.device != dev:  # cut crops where the model runs
                images = Crops(images=images.images.to(dev), boxes=images.boxes, image_index=images.image_index,
                               out_size=images.out_size)
            for start in range(0, len(images), batch_size):
                if isinstance(images, Crops):
                    x = images.batch(start, start + batch_size, out_size=self.input_size, device=dev)
                else:
                    x = images[start:start + batch_size].to(dev, torch.float32)
                x = self.prepare(x)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                    y = fn(x)
                out.append(y.float().cpu())
                if progress is not None:
                    progress(len(x))
        return torch.cat(out)

    def logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(N, C)`` (from :func:`extract_features`) -> logits ``(N, num_classes)``, float32, CPU."""
        with torch.no_grad(), self.inference() as dev:
            return self.h(pooled.to(dev)).float().cpu()


def extract_features(split: ModelSplit, images: torch.Tensor | Crops, *, batch_size: int = 64,
                     device: torch.device | str | None = None, pooled: bool = True,
                     progress: Callable[[int], object] | None = None, amp: bool | None = None,
                     channels_last: bool | None = None) -> torch.Tensor:
    """Features of images in [0, 1] or of crops, batched, without gradients.

    Parameters
    ----------
    split : ModelSplit
    images : Tensor, shape (N, 3, S, S), or Crops
        Images in [0, 1] (resized to ``split.input_size`` when needed), or
        crops, which are cut and resized batch by batch.
    batch_size : int, default 64
    device : torch.device or str, optional
        Default: the device of the model's parameters.
    pooled : bool, default True
        Return pooled features ``(N, C)`` (what the head reads) instead of the spatial map ``(N, C, h, w)``.
    progress : callable, optional
        Called with the number of items done after each batch.
    amp, channels_last : bool, optional
        bf16 autocast and channels_last inputs; None: on CUDA only (see :meth:`ModelSplit.map_batches`).

    Returns
    -------
    Tensor, float32 on the CPU, shape (N, C) or (N, C, h, w)
    """
    if not isinstance(split, ModelSplit):
        raise TypeError(f"`split` of `extract_features` must be a ModelSplit; got {type(split).__name__}.")

    def features(x: torch.Tensor) -> torch.Tensor:
        f = split.g(x)
        if f.ndim != (4 if split.tokens is None else 3):
            want = "spatial features (N, C, h, w)" if split.tokens is None else "tokens (N, T, C)"
            raise ValueError(f"`g` of layer `{split.layer}` must return {want}; got shape {tuple(f.shape)}. Cut the "
                             "model before its global pooling.")
        return split.pool(f.float()) if pooled else split.spatial(f.float())

    return split.map_batches(images, features, batch_size=batch_size, device=device, progress=progress, amp=amp,
                             channels_last=channels_last)
