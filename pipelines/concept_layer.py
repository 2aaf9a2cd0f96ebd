"""Where the concepts of a model can live: checked before any work, and a shift that makes them possible.

The concept stage needs non-negative features at the layer (NMF) that the
head reads linearly after pooling (exact contributions).
:func:`concept_split` checks both on a probe batch, on the architecture before
any weights are loaded, and stops with the choices: another layer
(``--layer``), or ``--shift-features``, which adds the lower bound of the
layer's last activation to its features (SiLU, Hardswish, GELU, Mish: their
outputs are bounded below) and subtracts it again through the head's bias, so
logits and contributions are unchanged; every class page states the shift
(:func:`feature_transform`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch import nn

from concepts import ModelSplit
from maco import forward_to_layers, resolve_layer

__all__ = ["FeatureShift", "check_concept_split", "concept_split", "feature_transform"]


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
        Module name -> (a copy of its first output, the last leaf that had run then), for the spatial maps with
        ``channels`` channels (copies: in-place additions and activations later overwrite the outputs).
    """

    output: torch.Tensor
    last_leaf: str
    maps: dict[str, tuple[torch.Tensor, str]]


def _probe(split: ModelSplit, fn: Callable[[torch.Tensor], torch.Tensor], channels: int | None = None) -> _Probe:
    """``fn`` on one seeded random image, watched by hooks on every module of ``split.model``.

    The checks are about the architecture (its activations and head), not the data, so one image will do.
    """
    ran: list[str] = []
    maps: dict[str, tuple[torch.Tensor, str]] = {}

    def hook(name: str, leaf: bool) -> Callable[[nn.Module, tuple, object], None]:
        def record(module: nn.Module, inputs: tuple, output: object) -> None:
            if leaf:
                ran.append(type(module).__name__)
            if channels is not None and name not in maps and isinstance(output, torch.Tensor) and output.ndim == 4 \
                    and output.shape[1] == channels and output.shape[-2:].numel() > 1:
                maps[name] = output.detach().clone(), ran[-1] if ran else ""
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
    return _Probe(output, ran[-1] if ran else "", maps)


def _faithful(split: ModelSplit, features: torch.Tensor, logits: torch.Tensor) -> bool:
    """Whether the split's head on the pooled ``features`` gives the model's ``logits``."""
    if features.ndim != 4 or split.head_weight is None or features.shape[1] != split.head_weight.shape[1]:
        return False
    return bool(torch.allclose(split.h(features.mean((2, 3))), logits, rtol=1e-3,
                               atol=1e-3 * (1 + float(logits.abs().max()))))


def _non_negative(features: torch.Tensor, last_leaf: str) -> bool:
    return last_leaf not in _MINIMA and float(features.min()) >= 0


def _valid_layers(split: ModelSplit, probe: _Probe) -> list[str]:
    """Modules whose output is non-negative and read linearly by the head after pooling: the ``--layer`` choices."""
    return [name for name, (out, last_leaf) in probe.maps.items()
            if _faithful(split, out, probe.output) and _non_negative(out, last_leaf)]


def _head_text(model: nn.Module) -> str:
    head = next((getattr(model, name) for name in ("fc", "classifier", "head") if hasattr(model, name)), None)
    if isinstance(head, nn.Sequential):
        return f" ({', '.join(type(m).__name__ for m in head)})"
    return ""


def check_concept_split(split: ModelSplit) -> None:
    """Raise a ``ValueError`` naming the layer and the choices when the concept stage cannot run on ``split``.

    It needs, at ``split.layer``, spatial features ``(N, C, h, w)`` that are non-negative (NMF), and a head that
    reads them linearly after global average pooling (exact contributions, concept-to-class alignment). ``g``
    and the model run on one seeded random image to check both, and to list the modules that would do (the
    ``--layer`` choices) and whether ``--shift-features`` would.
    """
    if split.model is None:
        raise ValueError(f"`split` of check_concept_split must have its `model` ({split.model_id} has none): the "
                         "check compares the split with the model's own logits. Build it with split_model.")
    g = _probe(split, split.g)
    features, last_leaf = g.output, g.last_leaf
    probe = _probe(split, split.model, None if split.head_weight is None else split.head_weight.shape[1])
    faithful = _faithful(split, features, probe.output)
    problems = []
    if features.ndim != 4:
        problems.append(f"its output has shape {tuple(features.shape)}, not a spatial map (N, C, h, w)")
    elif not _non_negative(features, last_leaf):
        why = f"it ends in {last_leaf}, whose outputs reach {_MINIMA[last_leaf]}" if last_leaf in _MINIMA \
            else f"minimum {float(features.min()):.3g} on a probe batch"
        problems.append(f"its features go negative ({why}) and NMF needs non-negative features")
    if split.head_weight is None:
        problems.append(f"the head after pooling is not one linear layer{_head_text(split.model)}, so a concept's "
                        "share of a logit has no exact value")
    elif features.ndim == 4 and not faithful:
        problems.append("the model's logits are not its linear head applied to the pooled output of this layer")
    if not problems:
        return
    layers = _valid_layers(split, probe)
    choices = [f"pick a layer that is non-negative and read linearly by the head with --layer: {', '.join(layers)}"
               if layers else "no layer of this model is both non-negative and read linearly by its head"]
    if last_leaf in _MINIMA and faithful:
        choices.append(f"or add --shift-features: it adds {-_MINIMA[last_leaf] * _MARGIN:.4g} (the lowest output of "
                       f"{last_leaf}, +1 %) to every feature and subtracts it through the head's bias, so logits and "
                       "contributions stay exact; every class page states it")
    raise ValueError(f"the concept stage cannot explain {split.model_id} at layer `{split.layer}`: "
                     f"{'; '.join(problems)}. Choices: {'; '.join(choices)}. Feature visualization "
                     "(concept-lens visualize) works on any model.")


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
    if layer is not None:
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
