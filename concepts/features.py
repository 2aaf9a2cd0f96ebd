"""The model split ``g`` / ``h`` and batched feature extraction.

``g``: normalised images ``(N, 3, S, S)`` -> spatial features ``(N, C, h, w)``
before global pooling, non-negative (post-ReLU). ``h``: pooled features
``(N, C)`` -> logits ``(N, num_classes)``. A :class:`ModelSplit` takes images
in [0, 1] and applies the model's own normalisation (``mean``/``std``) itself.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models import ResNet50_Weights

from .crops import Crops

__all__ = ["ModelSplit", "extract_features", "load_resnet50", "resnet50_split", "split_model"]


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
        Normalised images ``(N, 3, S, S)`` -> features ``(N, C, h, w)``, >= 0.
    h : callable
        Pooled features ``(N, C)`` -> logits ``(N, num_classes)``.
    mean, std : tuple of 3 floats
        Input normalisation, applied to images in [0, 1].
    input_size : int
        Side ``S`` the model expects.
    categories : list of str or None
        Class names, indexed by class.
    head_weight : Tensor, shape (num_classes, C), or None
        Linear head weights (for exact contributions).
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


def _as_triple(value: object, name: str, caller: str) -> tuple[float, float, float]:
    try:
        triple = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except TypeError:
        triple = ()
    if len(triple) != 3:
        raise ValueError(f"`{name}` of `{caller}` must be 3 floats (one per RGB channel); got {value!r}. "
                         "Pass the normalisation the model was trained with, e.g. (0.485, 0.456, 0.406).")
    return triple  # type: ignore[return-value]


# Layers that are the identity in inference mode: a head made of them and one final nn.Linear is linear.
_INFERENCE_IDENTITY = (nn.Dropout, nn.Identity, nn.Flatten)


def _torchvision_body(model: nn.Module) -> tuple[nn.Module, str] | None:
    """The part of a torchvision classifier before its global pooling, and the name of its last layer.

    torchvision's ResNets and RegNets (``fc`` head) and its EfficientNets,
    MobileNets and ConvNeXts (``features``, ``avgpool``, ``classifier``) run
    these modules in order; None for any other layout.
    """
    if not any(isinstance(getattr(model, name, None), nn.Module) for name in ("fc", "classifier")):
        return None
    if all(hasattr(model, name) for name in ("conv1", "bn1", "relu", "maxpool", "layer4")):
        return nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2,
                             model.layer3, model.layer4), "layer4"
    if hasattr(model, "stem") and hasattr(model, "trunk_output"):
        return nn.Sequential(model.stem, model.trunk_output), "trunk_output"
    if isinstance(getattr(model, "features", None), nn.Module) and hasattr(model, "classifier"):
        return model.features, "features"
    return None


def _linear_layer(head: nn.Module) -> nn.Linear | None:
    """The one linear map from pooled features to logits that ``head`` is, or None (a norm, an MLP).

    ``head`` itself if it is an ``nn.Linear``, or the last layer of a Sequential whose other layers are
    identities in inference mode (dropout, flatten).
    """
    if isinstance(head, nn.Linear):
        return head
    if isinstance(head, nn.Sequential) and len(head) and isinstance(head[-1], nn.Linear) \
            and all(isinstance(m, _INFERENCE_IDENTITY) for m in list(head)[:-1]):
        return head[-1]
    return None


def _nonlinear_head(head: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """Pooled features ``(N, C)`` -> logits through a head that is not one linear map.

    MobileNetV3's MLP takes ``(N, C)``; ConvNeXt's LayerNorm2d takes the ``(N, C, 1, 1)`` map and flattens it
    itself (it holds an ``nn.Flatten``).
    """
    takes_map = any(isinstance(m, nn.Flatten) for m in head.modules())

    def h(pooled: torch.Tensor) -> torch.Tensor:
        return head(pooled[:, :, None, None] if takes_map else pooled)

    return h


def split_model(model: nn.Module, *, mean: tuple[float, float, float], std: tuple[float, float, float],
                input_size: int, categories: list[str] | None = None, model_id: str | None = None,
                layer: str | None = None, pooled_layer: str | None = None) -> ModelSplit:
    """Split a classifier into ``g`` / ``h``.

    ``g`` and ``h`` share the modules of ``model``, which is left as it is:
    the split's forward passes (:meth:`ModelSplit.map_batches`) run it in
    inference mode and give it back in the mode, gradient flags and device
    they found it in.

    Supported layouts:

    - any model with ``forward_features`` / ``forward_head`` methods (a timm
      model, or a torchvision layout that has them): ``g`` is
      ``forward_features``; the linear head is ``fc`` or ``get_classifier()``
      (timm's name for it: ``classifier``, ``head.fc``, ...);
    - torchvision ResNets (``conv1 ... layer4``, ``avgpool``, ``fc``) and
      RegNets (``stem``, ``trunk_output``, ``avgpool``, ``fc``);
    - torchvision EfficientNets, MobileNets and ConvNeXts (``features``,
      ``avgpool``, ``classifier``): the linear head is ``classifier[-1]`` when
      the layers before it are dropout only.

    ``head_weight`` / ``head_bias`` (exact contributions, concept-to-class
    alignment) are set only when pooled features -> logits is that one linear
    layer; a head with a norm or a hidden layer (ConvNeXt, MobileNetV3) gives
    ``None`` and an ``h`` that runs the whole head, so feature visualization
    still works but the concept stage refuses the split. The split assumes
    the model's forward is ``g``, global average pooling, then the head, as
    in these layouts: for another model, compare ``h(g(x).mean((2, 3)))``
    with ``model(x)`` (the command line does, before any work).

    Parameters
    ----------
    model : nn.Module
    mean, std : tuple of 3 floats
        The input normalisation of the model (from its weights' metadata).
    input_size : int
    categories : list of str, optional
    model_id : str, optional
        Defaults to the class name of ``model``.
    layer : str, optional
        Name of the last spatial layer, for records and messages; defaults to
        ``"layer4"`` (ResNet), ``"trunk_output"`` (RegNet), ``"features"``
        (EfficientNet, MobileNet, ConvNeXt) or ``"forward_features"``.
    pooled_layer : str, optional
        The module whose output is the pooled features (where concept
        directions live for feature visualization); defaults to ``"avgpool"``
        (torchvision) or ``"global_pool"`` (timm) when present, else to the
        head's leading dropout (``"classifier.0"`` of a MobileNetV2, whose
        forward pools with a function: dropout is the identity in inference).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` of `split_model` must be an nn.Module; got {type(model).__name__}.")
    mean, std = _as_triple(mean, "mean", "split_model"), _as_triple(std, "std", "split_model")
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
        raise ValueError(f"`input_size` of `split_model` must be a positive int; got {input_size!r}.")
    head_name = next((name for name in ("fc", "classifier") if isinstance(getattr(model, name, None), nn.Module)),
                     None)
    head = getattr(model, head_name) if head_name is not None else None
    if pooled_layer is None:
        pooled_layer = next((name for name in ("avgpool", "global_pool") if hasattr(model, name)), None)
    if pooled_layer is None and isinstance(head, nn.Sequential) and len(head) and isinstance(head[0], nn.Dropout):
        pooled_layer = f"{head_name}.0"
    body = _torchvision_body(model)
    has_methods = hasattr(model, "forward_features") and hasattr(model, "forward_head")
    if has_methods:
        g = model.forward_features
        layer = layer or ("layer4" if hasattr(model, "layer4") else "forward_features")
    elif body is not None:
        g, default_layer = body
        layer = layer or default_layer
    else:
        raise ValueError(f"`model` of `split_model` must have `forward_features`/`forward_head` methods or a "
                         f"torchvision layout (ResNet, RegNet, EfficientNet, MobileNet, ConvNeXt); got "
                         f"{type(model).__name__}. Build a ModelSplit(g=..., h=...) yourself for other models.")
    linear = _linear_layer(head) if head is not None else None
    if linear is None and callable(getattr(model, "get_classifier", None)):
        linear = _linear_layer(model.get_classifier())  # timm's final linear layer (`classifier`, `head.fc`, ...)
    if linear is not None:
        h: Callable[[torch.Tensor], torch.Tensor] = linear
        weight, bias = linear.weight.detach(), linear.bias.detach() if linear.bias is not None else None
    elif not has_methods:
        h, weight, bias = _nonlinear_head(head), None, None
    else:  # pooling a 1 x 1 map is the identity, so the head maps pooled features to logits
        def h(pooled: torch.Tensor) -> torch.Tensor:
            return model.forward_head(pooled[:, :, None, None])
        weight = bias = None
    return ModelSplit(g=g, h=h, mean=mean, std=std, input_size=input_size, categories=categories,
                      head_weight=weight, head_bias=bias, model_id=model_id or type(model).__name__, layer=layer,
                      model=model, pooled_layer=pooled_layer)


def load_resnet50(weights: str | ResNet50_Weights | None = "IMAGENET1K_V2", *,
                  weights_path: str | os.PathLike | None = None,
                  progress: bool = True) -> tuple[nn.Module, ResNet50_Weights | None, str]:
    """torchvision ResNet50 from its weights API or a local state-dict file.

    Returns the model (eval mode), the verified weights enum (``None`` for
    random weights) and a model id for records.

    Parameters
    ----------
    weights : str, ResNet50_Weights or None, default "IMAGENET1K_V2"
        torchvision weights; downloaded and cached by torch unless
        ``weights_path`` is given. Their ``transforms()`` and ``meta`` give
        mean, std, input size and categories. ``None``: random weights.
    weights_path : path, optional
        A local ``state_dict`` file, loaded with ``torch.load(weights_only=True)``
        (no network); metadata still comes from ``weights``.
    progress : bool
        Show torchvision's download bar.
    """
    try:
        enum = ResNet50_Weights.verify(weights)
    except (KeyError, TypeError, ValueError) as err:
        names = ", ".join(w.name for w in ResNet50_Weights)
        raise ValueError(f"`weights` of `load_resnet50` must be one of {names}, DEFAULT, a ResNet50_Weights "
                         f"member or None; got {weights!r}.") from err
    if weights_path is None:
        model = torchvision.models.resnet50(weights=enum, progress=progress)
        return model.eval(), enum, f"torchvision/resnet50/{enum.name if enum is not None else 'random'}"
    path = Path(weights_path)
    if not path.is_file():
        raise ValueError(f"`weights_path` of `load_resnet50` must be an existing file; got {str(path)!r}. "
                         "Save one with torch.save(model.state_dict(), path).")
    model = torchvision.models.resnet50()
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as err:  # noqa: BLE001 - unpickling and shape errors get the same actionable message
        raise ValueError(f"`weights_path` of `load_resnet50` must hold a torchvision ResNet50 state_dict; "
                         f"{path} does not ({err}).") from err
    return model.eval(), enum, f"resnet50/{path.name}"


def resnet50_split(weights: str | ResNet50_Weights | None = "IMAGENET1K_V2", *,
                   weights_path: str | os.PathLike | None = None, progress: bool = True) -> ModelSplit:
    """torchvision ResNet50 split at ``layer4`` (post-ReLU, ``(N, 2048, 7, 7)`` at 224 px).

    Arguments as in :func:`load_resnet50`.
    """
    model, enum, model_id = load_resnet50(weights, weights_path=weights_path, progress=progress)
    transforms = (enum if enum is not None else ResNet50_Weights.DEFAULT).transforms()
    categories = list(enum.meta["categories"]) if enum is not None else None
    return split_model(model, mean=tuple(transforms.mean), std=tuple(transforms.std),
                       input_size=int(transforms.crop_size[0]), categories=categories, model_id=model_id,
                       layer="layer4")


def extract_features(split: ModelSplit, images: torch.Tensor | Crops, *, batch_size: int = 64,
                     device: torch.device | str | None = None, pooled: bool = True,
                     progress: Callable[[int], object] | None = None) -> torch.Tensor:
    """Features of images in [0, 1] or of crops, batched, without gradients.

    Parameters
    ----------
    split : ModelSplit
    images : Tensor, shape (N, 3, S, S), or Crops
        Images in [0, 1] (resized to ``split.input_size`` when needed), or
        crops, which are cut and resized batch by batch.
    batch_size : int, default 64
    device : torch.device or str, optional
        Default: the device of the model's parameters. On CUDA: bf16
        autocast and channels_last.
    pooled : bool, default True
        Return spatially averaged features ``(N, C)`` instead of ``(N, C, h, w)``.
    progress : callable, optional
        Called with the number of items done after each batch.

    Returns
    -------
    Tensor, float32 on the CPU, shape (N, C) or (N, C, h, w)
    """
    if not isinstance(split, ModelSplit):
        raise TypeError(f"`split` of `extract_features` must be a ModelSplit; got {type(split).__name__}.")

    def features(x: torch.Tensor) -> torch.Tensor:
        f = split.g(x)
        if f.ndim != 4:
            raise ValueError(f"`g` of layer `{split.layer}` must return spatial features (N, C, h, w); got shape "
                             f"{tuple(f.shape)}. Cut the model before its global pooling.")
        low = float(f.min())
        if low < 0:
            raise ValueError(f"features of layer `{split.layer}` must be non-negative for NMF; got a minimum of "
                             f"{low:.4g}. Cut the model after a ReLU (e.g. ResNet `layer4`) or add one to `g`.")
        return f.float().mean((2, 3)) if pooled else f.float()

    return split.map_batches(images, features, batch_size=batch_size, device=device, progress=progress)
