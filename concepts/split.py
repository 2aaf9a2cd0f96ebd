"""Cutting a classifier into ``g`` / ``h``: the layouts of torchvision and timm models, and ResNet50 loading.

:func:`split_model` finds where a model's spatial features end and its head
begins (ResNet/RegNet ``fc``; EfficientNet/MobileNet/ConvNeXt ``features`` +
``avgpool`` + ``classifier``; timm ``forward_features`` / ``forward_head`` /
``get_classifier()``) and returns the :class:`~concepts.features.ModelSplit`
that describes the model from then on.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch
import torchvision
from torch import nn
from torchvision.models import ResNet50_Weights

from .features import ModelSplit
from .tokens import PooledView, TokenLayout

__all__ = ["load_resnet50", "resnet50_split", "split_model"]

_TV_VIT = ("conv_proj", "class_token", "encoder", "heads")  # torchvision.models.VisionTransformer
_TIMM_VIT = ("patch_embed", "blocks", "norm", "head", "num_prefix_tokens", "global_pool")  # timm VisionTransformer


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


def _tokens_at(run: Callable[[torch.Tensor], torch.Tensor], module: nn.Module
               ) -> Callable[[torch.Tensor], torch.Tensor]:
    """Images -> the output of ``module`` (tokens) while ``run`` goes through it."""

    def g(x: torch.Tensor) -> torch.Tensor:
        seen: list[torch.Tensor] = []
        handle = module.register_forward_hook(lambda _m, _i, out: seen.append(out))
        try:
            run(x)
        finally:
            handle.remove()
        return seen[0]

    return g


def _vit(model: nn.Module, input_size: int, layer: str | None
         ) -> tuple[Callable, Callable, TokenLayout, str] | None:
    """A torchvision or timm ViT as ``(g, head, tokens, layer)``; None for another model.

    ``g`` gives the tokens after the final norm (``layer`` None, ``encoder`` / ``norm``) or at the module
    ``layer`` (a block: the head then starts with the final norm, which acts on each token alone).
    """
    if all(hasattr(model, name) for name in _TV_VIT):
        def run(x: torch.Tensor) -> torch.Tensor:
            x = model._process_input(x)
            return model.encoder(torch.cat([model.class_token.expand(len(x), -1, -1), x], dim=1))

        tokens, head, norm = TokenLayout(1, "token"), model.heads, model.encoder.ln
        default, size = "encoder", int(model.image_size)
    elif all(hasattr(model, name) for name in _TIMM_VIT):
        pool, prefix = model.global_pool, int(model.num_prefix_tokens)
        if pool not in ("token", "avg") or getattr(model, "attn_pool", None) is not None \
                or getattr(model, "pool_include_prefix", False) or hasattr(model, "head_dist"):
            why = "it has a distillation head (two tokens read)" if hasattr(model, "head_dist") else \
                f"its global_pool is {pool!r}{' with attention pooling' if getattr(model, 'attn_pool', None) else ''}"
            raise ValueError(f"`model` of `split_model` must be a timm ViT whose head reads the class token or the "
                             f"mean of the patch tokens (global_pool 'token' or 'avg'); {why}. Build one with "
                             "global_pool='token' or 'avg', or a ModelSplit(g=..., h=...) yourself.")
        run = model.forward_features
        tokens, norm = TokenLayout(prefix, pool), model.norm

        def head(pooled: torch.Tensor) -> torch.Tensor:
            return model.head(model.head_drop(model.fc_norm(pooled)))

        if isinstance(model.fc_norm, _INFERENCE_IDENTITY):
            head = model.head
        default, size = "norm", int(model.patch_embed.img_size[0])
    else:
        return None
    if input_size != size:
        raise ValueError(f"`input_size` of `split_model` must be the ViT's own image size {size} (its position "
                         f"embeddings are fixed); got {input_size}. Pass input_size={size}.")
    if layer in (None, default, "encoder.ln"):
        return run, head, tokens, default
    modules = dict(model.named_modules())
    if layer not in modules:
        raise ValueError(f"`layer` of `split_model` must be a module of {type(model).__name__} (a block, e.g. "
                         f"{'blocks.11' if default == 'norm' else 'encoder.layers.encoder_layer_11'}); got {layer!r}.")
    return _tokens_at(run, modules[layer]), lambda pooled: head(norm(pooled)), tokens, layer


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
      the layers before it are dropout only;
    - vision transformers: torchvision's ``VisionTransformer`` (``vit_b_16``:
      ``conv_proj``, ``class_token``, ``encoder``, ``heads``) and timm's
      (``patch_embed``, ``blocks``, ``norm``, ``head``; ``global_pool``
      ``"token"`` or ``"avg"``, class and register tokens skipped). ``g`` gives
      tokens (``tokens`` of the split, :mod:`concepts.tokens`): the patch
      tokens are the spatial grid and the pooled features are what the head
      reads (the class token, or the patch tokens' mean). ``model`` of the
      split is a :class:`~concepts.tokens.PooledView` of the ViT whose module
      ``pooled`` outputs them. ``input_size`` must be the ViT's own.

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
        (EfficientNet, MobileNet, ConvNeXt) or ``"forward_features"``. For a
        ViT it picks the tokens: ``"encoder"`` / ``"norm"`` (default: after the
        final norm, read by the head) or a block (``"encoder.layers.encoder_layer_11"``,
        ``"blocks.11"``), whose head then starts with the final norm.
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
    vit = _vit(model, input_size, layer)
    if vit is not None:
        g, head, tokens, layer = vit
        linear = _linear_layer(head) if isinstance(head, nn.Module) else None
        h = linear if linear is not None else head
        view = PooledView(model, g, tokens.pooled, h)
        return ModelSplit(g=g, h=h, mean=mean, std=std, input_size=input_size, categories=categories,
                          head_weight=None if linear is None else linear.weight.detach(),
                          head_bias=None if linear is None or linear.bias is None else linear.bias.detach(),
                          model_id=model_id or type(model).__name__, layer=layer, model=view, pooled_layer="pooled",
                          tokens=tokens)
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
        container = getattr(model, "head", None)
        if isinstance(container, nn.Module) and not all(
                m is linear or isinstance(m, (*_INFERENCE_IDENTITY, nn.AdaptiveAvgPool2d))
                for m in container.modules() if next(m.children(), None) is None):
            linear = None  # a head that also normalises (timm's ConvNeXt: NormMlpClassifierHead) is not linear
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
