"""The built-in objectives: a neuron, a channel, a whole layer, a direction, and the inversion of activations.

Each reads one layer. Build them with the constructors of :class:`~maco.objectives.base.Objective`
(``Objective.neuron(model, "fc", 1)``), which check the arguments first. Those holding a tensor keep their
own copy and compare and hash by its value.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import ClassVar, Mapping

import torch
from torch import nn

from .base import Objective, _per_sample, _target_of_sample

__all__ = ["Channel", "Direction", "Inversion", "Layer", "Neuron"]

COSINE_FLOOR = 0.1
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _dot_cossim(acts: torch.Tensor, vectors: torch.Tensor, cossim_pow: float) -> torch.Tensor:
    """``dot * max(cos, 0.1) ** p`` per sample (averaged over positions).

    ``acts`` is ``(N, C)`` or ``(N, C, H, W)``; ``vectors`` is ``(N, C)``.
    """
    if acts.ndim == 4:
        vectors = vectors[:, :, None, None]
    dot = (acts * vectors).sum(1)
    cos = dot / (acts.norm(dim=1) * vectors.norm(dim=1) + 1e-8)
    score = dot * cos.clamp_min(COSINE_FLOOR) ** cossim_pow if cossim_pow else dot
    return score.flatten(1).mean(1) if score.ndim > 1 else score


def _known_width(module: nn.Module) -> int | None:
    """Channels of a layer's output when its definition tells (linear, conv, batch norm), else ``None``."""
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, _CONVS):
        return module.out_channels
    if isinstance(module, _BATCH_NORMS):
        return module.num_features
    return None


def _content_key(tensor: torch.Tensor) -> tuple[tuple[int, ...], str, bytes]:
    """Shape, dtype and a digest of the content, so that objectives compare and hash by value.

    Computed once per objective (one copy to the host); ``+ 0.0`` turns ``-0.0`` into ``0.0``, which scores the same.
    """
    data = (tensor.detach() + 0.0).cpu().contiguous()
    return tuple(tensor.shape), str(tensor.dtype), hashlib.blake2b(data.numpy().tobytes(), digest_size=16).digest()


def _freeze(objective: Objective, attribute: str) -> None:
    """Give ``objective`` its own copy of a tensor field and the copy's content key.

    The key is only valid while the content stays the same: a caller's later in-place edit of the tensor it
    passed must change neither the scores nor the equality of the objective.
    """
    tensor = getattr(objective, attribute).detach().clone()
    object.__setattr__(objective, attribute, tensor)
    object.__setattr__(objective, "_key", _content_key(tensor))


def _check_channels(acts: torch.Tensor, n_channels: int, layer: str, what: str) -> None:
    if acts.shape[1] != n_channels:
        raise ValueError(
            f"`{what}` has {n_channels} channels but layer {layer!r} outputs {acts.shape[1]}; "
            "give one value per channel of that layer."
        )


@dataclass(frozen=True, repr=False)
class _Leaf(Objective):
    model: nn.Module  # compared by identity: equal objectives must score the same model
    layer_name: str

    @property
    def layers(self) -> tuple[str, ...]:
        return (self.layer_name,)

    def _acts(self, acts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return _per_sample(acts[self.layer_name]).float()


@dataclass(frozen=True, repr=False)
class _Indexed(_Leaf):
    """A leaf that picks one channel per target; indices are checked as early as the layer's width is known.

    Linear, conv and batch-norm layers declare their width, so a bad index fails at construction; other
    layers are checked against the activations' shape at each call (host-side metadata: no device sync).
    """

    indices: tuple[int, ...]
    kind: ClassVar[str]

    def __post_init__(self) -> None:
        width = _known_width(self.model.get_submodule(self.layer_name))
        if min(self.indices) < 0:
            span = f"the layer has {width} {self._units} (0-{width - 1})" if width else "indices start at 0"
            raise ValueError(
                f"Objective.{self.kind}: {self.kind} {min(self.indices)} of layer {self.layer_name!r} is out of "
                f"range: {span}; negative indices are not allowed."
            )
        if width is not None:
            self._check_range(width)

    @property
    def _units(self) -> str:
        return "units" if self.kind == "neuron" else "channels"

    def _check_range(self, width: int) -> None:
        top = max(self.indices)
        if top >= width:
            raise ValueError(
                f"Objective.{self.kind}: {self.kind} {top} of layer {self.layer_name!r} is out of range: "
                f"the layer has {width} {self._units} (0-{width - 1})."
            )


@dataclass(frozen=True, repr=False)
class Neuron(_Indexed):
    position: tuple[int, int] | None = None
    kind = "neuron"

    @property
    def n_targets(self) -> int:
        return len(self.indices)

    @property
    def names(self) -> list[str]:
        return [f"neuron({self.layer_name}, {i})" for i in self.indices]

    def __repr__(self) -> str:
        return f"Objective.neuron(model, {self.layer_name!r}, {list(self.indices)})"

    def __call__(self, acts: Mapping[str, torch.Tensor], n_targets: int) -> torch.Tensor:
        a = self._acts(acts)
        index = torch.tensor(self.indices, device=a.device)[
            _target_of_sample(len(a), n_targets, a.device) % self.n_targets
        ]
        if a.ndim == 4:
            y, x = self.position if self.position is not None else (a.shape[2] // 2, a.shape[3] // 2)
            if not (-a.shape[2] <= y < a.shape[2] and -a.shape[3] <= x < a.shape[3]):
                raise ValueError(
                    f"`position` {(y, x)} of Objective.neuron is outside layer {self.layer_name!r}, whose maps are "
                    f"{a.shape[2]}x{a.shape[3]}; give (y, x) within them, or None for the centre."
                )
            a = a[:, :, y, x]
        if a.ndim != 2:
            raise ValueError(
                f"Objective.neuron needs a (N, C) or (N, C, H, W) layer; {self.layer_name!r} gives {tuple(a.shape)}."
            )
        self._check_range(a.shape[1])
        return self._reduce(a.gather(1, index[:, None])[:, 0], n_targets)


@dataclass(frozen=True, repr=False)
class Channel(_Indexed):
    kind = "channel"

    @property
    def n_targets(self) -> int:
        return len(self.indices)

    @property
    def names(self) -> list[str]:
        return [f"channel({self.layer_name}, {i})" for i in self.indices]

    def __repr__(self) -> str:
        return f"Objective.channel(model, {self.layer_name!r}, {list(self.indices)})"

    def __call__(self, acts: Mapping[str, torch.Tensor], n_targets: int) -> torch.Tensor:
        a = self._acts(acts)
        index = torch.tensor(self.indices, device=a.device)[
            _target_of_sample(len(a), n_targets, a.device) % self.n_targets
        ]
        per_channel = a.flatten(2).mean(2) if a.ndim > 2 else a
        self._check_range(per_channel.shape[1])
        return self._reduce(per_channel.gather(1, index[:, None])[:, 0], n_targets)


@dataclass(frozen=True, repr=False)
class Layer(_Leaf):
    @property
    def n_targets(self) -> int:
        return 1

    @property
    def names(self) -> list[str]:
        return [f"layer({self.layer_name})"]

    def __repr__(self) -> str:
        return f"Objective.layer(model, {self.layer_name!r})"

    def __call__(self, acts: Mapping[str, torch.Tensor], n_targets: int) -> torch.Tensor:
        return self._reduce(self._acts(acts).pow(2).flatten(1).mean(1), n_targets)


@dataclass(frozen=True, repr=False)
class Direction(_Leaf):
    vectors: torch.Tensor = field(compare=False)  # compared through _key, by value
    cossim_pow: float = 2.0
    _key: tuple = field(init=False)

    def __post_init__(self) -> None:
        _freeze(self, "vectors")

    @property
    def n_targets(self) -> int:
        return self.vectors.shape[0]

    @property
    def names(self) -> list[str]:
        return [f"direction({self.layer_name}, {i})" for i in range(self.n_targets)]

    def __repr__(self) -> str:
        shape = tuple(self.vectors.shape)
        return f"Objective.direction(model, {self.layer_name!r}, <{shape} tensor>, cossim_pow={self.cossim_pow})"

    def __call__(self, acts: Mapping[str, torch.Tensor], n_targets: int) -> torch.Tensor:
        a = self._acts(acts)
        _check_channels(a, self.vectors.shape[1], self.layer_name, "vectors")
        rows = _target_of_sample(len(a), n_targets, a.device) % self.n_targets
        return self._reduce(_dot_cossim(a, self.vectors.to(a.device)[rows], self.cossim_pow), n_targets)


@dataclass(frozen=True, repr=False)
class Inversion(_Leaf):
    targets: torch.Tensor = field(compare=False)  # compared through _key, by value
    cossim_pow: float | None = None
    _key: tuple = field(init=False)

    def __post_init__(self) -> None:
        _freeze(self, "targets")

    @property
    def n_targets(self) -> int:
        return self.targets.shape[0]

    @property
    def names(self) -> list[str]:
        return [f"inversion({self.layer_name}, {i})" for i in range(self.n_targets)]

    def __repr__(self) -> str:
        shape = tuple(self.targets.shape)
        return f"Objective.inversion(model, {self.layer_name!r}, <{shape} tensor>, cossim_pow={self.cossim_pow})"

    def __call__(self, acts: Mapping[str, torch.Tensor], n_targets: int) -> torch.Tensor:
        a = self._acts(acts).flatten(1)
        targets = self.targets.to(a.device).flatten(1)
        if a.shape[1] != targets.shape[1]:
            raise ValueError(
                f"`targets` of Objective.inversion have {targets.shape[1]} values per sample but layer "
                f"{self.layer_name!r} gives {a.shape[1]}; compute them at that layer."
            )
        t = targets[_target_of_sample(len(a), n_targets, a.device) % self.n_targets]
        cos = (a * t).sum(1) / (a.norm(dim=1) * t.norm(dim=1) + 1e-8)
        if self.cossim_pow is None:
            return self._reduce(cos, n_targets)
        projection = (a * t).sum(1) / (t.pow(2).sum(1) + 1e-8)
        return self._reduce(projection * cos.clamp_min(COSINE_FLOOR) ** self.cossim_pow, n_targets)
