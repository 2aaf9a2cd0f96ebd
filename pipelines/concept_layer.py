"""Where the concepts of a model can live: checked before any work, and how their features are factorised.

The concept stage needs, at the layer, spatial features (or a ViT's tokens)
whose pooling the head reads: the split's head on the pooled features must
give the model's logits. :func:`concept_split` checks it on a probe image, on
the architecture before any weights are loaded, and stops with the reason and
the choices (the ``--layer`` modules that would do). Any head will do (a
linear one gives exact contributions, another gradient x input ones) and so
will features of any sign: :func:`resolve_factorization` picks Semi-NMF for
a layer whose features can be negative (``--factorization auto``) and says so.
``--shift-features`` remains for a linear head: it adds the lower bound of
the layer's last activation to its features (SiLU, Hardswish, GELU, Mish:
their outputs are bounded below) and subtracts it again through the head's
bias, so logits and contributions are unchanged and NMF applies; every class
page states the shift (:func:`feature_transform`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch import nn

from concepts import ModelSplit, PooledView, split_model
from maco import forward_to_layers, resolve_layer

__all__ = ["FeatureShift", "check_concept_split", "concept_split", "feature_transform", "resolve_factorization",
           "signed_features"]

_logger = logging.getLogger(__name__)


class FeatureShift(nn.Module):
    """Adds ``shift`` to features whose activation is bounded below by ``-shift``, so they are non-negative.

    ``reason`` says where the bound comes from, for the class pages.
    """

    def __init__(self, shift: float, reason: str) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor(float(shift)))
        self.reason = reason

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features + self.shift.to(features.dtype)

    def extra_repr(self) -> str:
        return f"shift={float(self.shift):.4g}"

    @property
    def description(self) -> str:
        return (f"features + {float(self.shift):.4g} ({self.reason}), so that they are non-negative for NMF; "
                "the head's bias absorbs the shift: logits and contributions are those of the model")


class _Features(nn.Module):
    """``g`` as a module of the rebuilt model: ``fn`` computes it from the modules of ``model``."""

    def __init__(self, model: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        object.__setattr__(self, "fn", fn)  # a plain attribute: its modules are `model`'s, registered once

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def _shifted(split: ModelSplit, shift: float, reason: str) -> ModelSplit:
    """The same classifier rebuilt as features -> +shift -> avgpool -> linear head with bias ``b - W shift``.

    The logits are unchanged; every stage that reads the pooled features (NMF, MaCo directions, inversions) reads
    them shifted, in ``avgpool`` of the rebuilt model.
    """
    weight, bias = split.head_weight, split.head_bias
    head = nn.Linear(weight.shape[1], weight.shape[0])
    head.weight = nn.Parameter(weight, requires_grad=False)
    head.bias = nn.Parameter(bias - shift * weight.sum(1), requires_grad=False)
    model = nn.Sequential(OrderedDict(features=_Features(split.model, split.g), shift=FeatureShift(shift, reason),
                                      avgpool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(1), fc=head))

    def g(x: torch.Tensor) -> torch.Tensor:
        return model.shift(model.features(x))

    return replace(split, g=g, h=head, head_weight=head.weight.detach(), head_bias=head.bias.detach(),
                   model=model, pooled_layer="avgpool")


def feature_transform(split: ModelSplit) -> str | None:
    """What was done to the features of ``split`` to make them non-negative (None: nothing), for the records."""
    shift = next((m for m in split.modules() for m in m.modules() if isinstance(m, FeatureShift)), None)
    return shift.description if shift is not None else None


# The lowest output of activations that go negative but are bounded below (SiLU's at x = -1.2785).
_MINIMA = {"SiLU": -0.27846, "Swish": -0.27846, "Hardswish": -0.375, "HardSwish": -0.375, "GELU": -0.16997,
           "Mish": -0.30884}
_MARGIN = 1.01  # bf16 rounds by up to 0.4 %: a shift 1 % past the minimum keeps features >= 0 under autocast


@dataclass
class _Probe:
    """What one call ``fn(x)`` on the probe batch shows.

    Attributes
    ----------
    output : Tensor
    last_leaf : str
        Class name of the last leaf module of the model that ran (the final activation of a layer, usually).
    maps : dict
        Module name -> (a copy of its first output, the last leaf that had run then), for the outputs shaped
        like the split's features, spatial maps or a ViT's tokens, when asked for (copies: in-place additions and
        activations later overwrite the outputs).
    """

    output: torch.Tensor
    last_leaf: str
    maps: dict[str, tuple[torch.Tensor, str]]


def _probe(split: ModelSplit, fn: Callable[[torch.Tensor], torch.Tensor], maps: bool = False) -> _Probe:
    """``fn`` on one seeded random image, watched by hooks on every module of ``split.model`` (with ``maps``: their
    outputs shaped like features are kept, for the ``--layer`` choices).

    The checks are about the architecture (its activations and head), not the data, so one image will do.
    """
    ran: list[str] = []
    outputs: dict[str, tuple[torch.Tensor, str]] = {}

    def hook(name: str, leaf: bool) -> Callable[[nn.Module, tuple, object], None]:
        def record(module: nn.Module, inputs: tuple, output: object) -> None:
            if leaf:
                ran.append(type(module).__name__)
            if maps and name not in outputs and _like_features(split, output):
                outputs[name] = output.detach().clone(), ran[-1] if ran else ""
        return record

    handles = [module.register_forward_hook(hook(name, not any(True for _ in module.children())))
               for name, module in split.model.named_modules() if name]
    x = torch.rand(1, 3, split.input_size, split.input_size, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad(), split.inference() as device:
            output = fn(split.prepare(x.to(device)))
    finally:
        for handle in handles:
            handle.remove()
    return _Probe(output, ran[-1] if ran else "", outputs)


def _like_features(split: ModelSplit, output: object) -> bool:
    """Whether ``output`` has the shape of the split's features: a map ``(N, C, h, w)`` larger than 1 x 1, or a
    ViT's tokens ``(N, T, C)``."""
    if not isinstance(output, torch.Tensor):
        return False
    if split.tokens is not None:
        return output.ndim == 3 and output.shape[1] > split.tokens.prefix
    return output.ndim == 4 and output.shape[-2:].numel() > 1


def _faithful(split: ModelSplit, features: torch.Tensor, logits: torch.Tensor) -> bool:
    """Whether the split's head on the pooled ``features`` gives the model's ``logits``."""
    try:
        pooled = split.h(split.pool(features))
    except (RuntimeError, ValueError):  # a width or a token count the head cannot take: not what it reads
        return False
    return pooled.shape == logits.shape and bool(torch.allclose(pooled, logits, rtol=1e-3,
                                                                atol=1e-3 * (1 + float(logits.abs().max()))))


def _valid_layers(split: ModelSplit, probe: _Probe) -> list[str]:
    """Modules whose pooled output the head reads: the ``--layer`` choices."""
    return [name for name, (out, _) in probe.maps.items() if _faithful(split, out, probe.output)]


def _head_text(model: nn.Module) -> str:
    head = next((getattr(model, name) for name in ("fc", "classifier", "head") if hasattr(model, name)), None)
    if isinstance(head, nn.Sequential):
        return f" ({', '.join(type(m).__name__ for m in head)})"
    return ""


def check_concept_split(split: ModelSplit) -> None:
    """Raise a ``ValueError`` naming the layer, why and the choices when the concept stage cannot run on ``split``.

    It needs, at ``split.layer``, spatial features ``(N, C, h, w)`` (a ViT: tokens) whose pooling the split's head
    reads: ``h`` on them must give the model's logits (any head; features of any sign). ``g`` and the model run on
    one seeded random image to check it, and to list the modules that would do (the ``--layer`` choices).
    """
    if split.model is None:
        raise ValueError(f"`split` of check_concept_split must have its `model` ({split.model_id} has none): the "
                         "check compares the split with the model's own logits. Build it with split_model.")
    features = _probe(split, split.g).output
    logits = _probe(split, split.model).output
    if not _like_features(split, features):
        want = "tokens (N, T, C)" if split.tokens is not None else "a spatial map (N, C, h, w)"
        problem = f"its output has shape {tuple(features.shape)}, not {want} that the head pools"
    elif not _faithful(split, features, logits):
        problem = (f"the model's logits are not its head{_head_text(split.model)} applied to the pooled output of "
                   "this layer (the model does more between them than pooling)")
    else:
        return
    layers = _valid_layers(split, _probe(split, split.model, maps=True))
    choice = f"pick a layer whose pooled output the head reads with --layer: {', '.join(layers)}" if layers \
        else "no layer of this model gives features that its head reads after pooling"
    raise ValueError(f"the concept stage cannot explain {split.model_id} at layer `{split.layer}`: {problem}. "
                     f"Choices: {choice}. Feature visualization (concept-lens visualize) works on any model.")


def signed_features(split: ModelSplit) -> str | None:
    """Why the features of ``split.layer`` can be negative (its last activation's bound, or a negative value on a
    probe image), or None when they cannot: what ``--factorization auto`` decides by."""
    probe = _probe(split, split.g)
    if probe.last_leaf in _MINIMA:
        return f"it ends in {probe.last_leaf}, whose outputs reach {_MINIMA[probe.last_leaf]}"
    low = float(probe.output.min())
    return f"they reach {low:.3g} on a probe image (it ends in {probe.last_leaf or 'no module'})" if low < 0 else None


def resolve_factorization(split: ModelSplit, factorization: str) -> str:
    """``--factorization`` for ``split``: ``auto`` is ``semi-nmf`` where the features can be negative (logged,
    naming the layer and why), ``nmf`` otherwise; ``nmf`` on such features is refused with the choices."""
    why = signed_features(split)
    if factorization == "nmf" and why is not None:
        raise ValueError(f"`--factorization nmf`: the features of layer `{split.layer}` of {split.model_id} can be "
                         f"negative ({why}) and NMF needs non-negative ones. Use --factorization semi-nmf (or auto; "
                         "factorization='semi-nmf' in Python), "
                         "or --shift-features where the head is linear.")
    if factorization != "auto":
        return factorization
    if why is None:
        return "nmf"
    _logger.info("layer `%s` of %s: the features can be negative (%s), so concepts are found by Semi-NMF (a "
                 "signed bank, non-negative coefficients)", split.layer, split.model_id, why)
    return "semi-nmf"


def concept_split(split: ModelSplit, *, layer: str | None = None, shift_features: bool = False) -> ModelSplit:
    """``split`` made ready for the concept stage: cut at ``layer``, shifted if asked, checked.

    Parameters
    ----------
    split : ModelSplit
        From :func:`concepts.split_model`.
    layer : str, optional
        A module of ``split.model`` whose output replaces ``g`` (``--layer``): where the concepts live.
    shift_features : bool
        Add the lower bound of the layer's last activation (+1 %) to the features (``--shift-features``), see
        :class:`FeatureShift`.

    Raises
    ------
    ValueError
        From :func:`check_concept_split`, or for a ``layer`` that is not a module or a shift with no known bound.
    """
    if layer is not None and isinstance(split.model, PooledView):  # a ViT: the head of a block starts with the norm
        try:
            split = split_model(split.model.source, mean=split.mean, std=split.std, input_size=split.input_size,
                                categories=split.categories, model_id=split.model_id, layer=layer)
        except ValueError as err:
            raise ValueError(f"`--layer`: {err}") from None
    elif layer is not None:
        try:
            name = resolve_layer(split.model, layer)
        except ValueError as err:
            raise ValueError(f"`--layer`: {err}") from None

        def g(x: torch.Tensor) -> torch.Tensor:
            return forward_to_layers(split.model, x, [name])[name]

        split = replace(split, g=g, layer=name)
    if shift_features:
        last_leaf = _probe(split, split.g).last_leaf
        if last_leaf not in _MINIMA:
            raise ValueError(f"`--shift-features`: layer `{split.layer}` of {split.model_id} ends in "
                             f"{last_leaf or 'no module'}, which has no known lower bound (known: "
                             f"{', '.join(sorted(_MINIMA))}); pick another layer with --layer instead.")
        if split.head_weight is None or split.head_bias is None:
            raise ValueError(f"`--shift-features` needs a linear head with a bias to absorb the shift; the head of "
                             f"{split.model_id}{_head_text(split.model)} is not one.")
        shift = -_MINIMA[last_leaf] * _MARGIN
        split = _shifted(split, shift, f"{last_leaf}'s lowest output is {_MINIMA[last_leaf]}, +1 %")
    check_concept_split(split)
    return split
