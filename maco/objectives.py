"""Objectives: what a visualization maximises.

An objective reads the activations of one or more layers and returns one
score per target, higher is better. Notation: ``T`` targets, ``K`` crops per
target, ``N = T * K`` samples in one forward pass, target-major (sample ``i``
belongs to target ``i // K``). A target's score is the mean over its own
``K`` crops only: targets batched together never influence each other.

Objectives are frozen dataclasses; ``a + b``, ``a - b``, ``-a`` and
``2.0 * a`` build new objectives and never modify their operands::

    obj = Objective.channel(model, "layer3", 7) + 0.5 * Objective.neuron(model, "fc", 1)

Terms of a sum have either one target (broadcast to all) or the same ``T``.
The render loop minimises ``-sum(scores)``: the sign is flipped there, once.

Objectives compare and hash by value, tensors included (same shape, dtype and
content), so equal objectives are interchangeable as dict keys or set members.
Any function of activations becomes an objective with
:meth:`Objective.from_function`, which handles the per-target reduction.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from numbers import Real
from typing import Callable, ClassVar, Mapping, Sequence

import torch
from torch import nn

from .hooks import resolve_layer

__all__ = ["Channel", "Direction", "FunctionObjective", "Inversion", "Layer", "Neuron", "Objective", "Scaled", "Sum"]

COSINE_FLOOR = 0.1
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _per_sample(acts: torch.Tensor) -> torch.Tensor:
    """Drop trailing 1x1 spatial axes: ``(N, C, 1, 1)`` -> ``(N, C)``."""
    if acts.ndim == 4 and acts.shape[-2:] == (1, 1):
        return acts[:, :, 0, 0]
    return acts


def _target_of_sample(n_samples: int, n_targets: int, device: torch.device) -> torch.Tensor:
    return torch.arange(n_samples, device=device) // (n_samples // n_targets)


def _as_indices(index: int | Sequence[int], what: str) -> tuple[int, ...]:
    values = (index,) if isinstance(index, int) else tuple(index)
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise TypeError(f"`{what}` must be an int or a non-empty sequence of ints; got {index!r}.")
    return values


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


class Objective:
    """Base class. Subclasses define ``layers``, ``n_targets``, ``names`` and ``__call__``.

    ``__call__(acts, n_targets)`` takes the captured activations
    (``{layer: (N, ...)}``) and the batch's number of targets, and returns
    ``(n_targets,)`` scores. A new objective rarely needs a subclass:
    :meth:`from_function` wraps a function of activations.
    """

    model: nn.Module

    @property
    def layers(self) -> tuple[str, ...]:
        raise NotImplementedError

    @property
    def n_targets(self) -> int:
        raise NotImplementedError

    @property
    def names(self) -> list[str]:
        raise NotImplementedError

    def __call__(self, acts: Mapping[str, torch.Tensor], n_targets: int) -> torch.Tensor:
        raise NotImplementedError

    def _reduce(self, per_sample: torch.Tensor, n_targets: int) -> torch.Tensor:
        return per_sample.float().reshape(n_targets, -1).mean(1)

    def __add__(self, other: object) -> "Sum":
        if not isinstance(other, Objective):
            return NotImplemented
        return Sum(self.model, (*_terms(self), *_terms(other)))

    def __neg__(self) -> "Scaled":
        return Scaled(self.model, self, -1.0)

    def __sub__(self, other: object) -> "Sum":
        if not isinstance(other, Objective):
            return NotImplemented
        return self + (-other)

    def __mul__(self, factor: object) -> "Scaled":
        if isinstance(factor, Objective) or not isinstance(factor, Real):
            raise TypeError(f"an Objective can only be multiplied by a real number; got {type(factor).__name__}.")
        return Scaled(self.model, self, float(factor))

    __rmul__ = __mul__

    def __truediv__(self, divisor: object) -> "Scaled":
        if not isinstance(divisor, Real):
            raise TypeError(f"an Objective can only be divided by a real number; got {type(divisor).__name__}.")
        return self * (1.0 / float(divisor))

    # Constructors in the seeds' call shape: Objective.neuron(model, "fc", 1).
    @staticmethod
    def neuron(
        model: nn.Module, layer: str | int, index: int | Sequence[int], *, position: tuple[int, int] | None = None
    ) -> "Neuron":
        """One unit per target: ``index`` is a channel (its centre position on conv layers)."""
        return Neuron(model, _layer_name(model, layer, "neuron"), _as_indices(index, "index"), position)

    @staticmethod
    def channel(model: nn.Module, layer: str | int, index: int | Sequence[int]) -> "Channel":
        """Mean activation of a channel over all positions, one target per index."""
        return Channel(model, _layer_name(model, layer, "channel"), _as_indices(index, "index"))

    @staticmethod
    def layer(model: nn.Module, layer: str | int) -> "Layer":
        """Mean squared activation of the whole layer (DeepDream), one target."""
        return Layer(model, _layer_name(model, layer, "layer"))

    @staticmethod
    def direction(model: nn.Module, layer: str | int, vectors: torch.Tensor, *, cossim_pow: float = 2.0) -> "Direction":
        """``dot * max(cos, 0.1) ** cossim_pow`` with each row of ``vectors`` ((k, C) or (C,)): k targets."""
        return Direction(
            model,
            _layer_name(model, layer, "direction"),
            _as_matrix(vectors, "vectors", "direction"),
            float(cossim_pow),
        )

    @staticmethod
    def inversion(
        model: nn.Module, layer: str | int, targets: torch.Tensor, *, cossim_pow: float | None = None
    ) -> "Inversion":
        """Match reference activations ``targets`` ((T, C) or (T, C, H, W)): T targets.

        The score is the cosine between the activations and their target
        (bounded, so the optimiser cannot trade direction for magnitude). With
        ``cossim_pow`` it is Lucid's caricature instead: the projection on the
        target, ``dot / |t|^2``, times ``max(cos, 0.1) ** cossim_pow``, which can
        exaggerate what the layer keeps (and, on the demo world, sometimes
        collapsed to cosines of 0.1).
        """
        if not isinstance(targets, torch.Tensor) or targets.ndim < 1:
            raise TypeError(
                f"`targets` of Objective.inversion must be a tensor of activations; got {type(targets).__name__}."
            )
        targets = _per_sample(targets.detach().float())
        if targets.ndim == 1:
            targets = targets[None]
        power = None if cossim_pow is None else float(cossim_pow)
        return Inversion(model, _layer_name(model, layer, "inversion"), targets, power)

    @staticmethod
    def from_function(
        model: nn.Module,
        layers: str | int | Sequence[str | int],
        fn: Callable[[Mapping[str | int, torch.Tensor], torch.Tensor], torch.Tensor],
        *,
        n_targets: int = 1,
        name: str | None = None,
    ) -> "FunctionObjective":
        """Turn a function of activations into an objective, as Lucent's ``wrap_objective`` does, per target.

        ``fn`` scores each sample; the objective averages a target's scores over its own crops, exactly as the
        built-in objectives do, so targets stay independent and the crop count (and the chunking of the render
        loop) never reaches ``fn``. The result composes with ``+``, ``-`` and ``*`` and runs in :func:`maco.maco`.

        Parameters
        ----------
        model : nn.Module
            The model whose layers ``fn`` reads.
        layers : str, int or sequence of them
            Every layer ``fn`` reads, by name or child index (``-2``: the pooled features of a ResNet); the
            forward pass stops after the deepest one.
        fn : callable
            ``fn(acts, target) -> scores``. ``acts`` maps each entry of ``layers``, exactly as given, to that
            layer's float32 activations ``(N, ...)``, ``N = T * K`` samples, target-major; ``target`` ``(N,)``
            holds each sample's target, ``0`` to ``n_targets - 1``. It returns ``(N,)`` differentiable scores,
            higher is better; the score of sample ``i`` must read sample ``i`` only, or targets would interact.
        n_targets : int
            ``T``, the number of images optimised together; one target also broadcasts in a sum.
        name : str, optional
            Name in results and plots; ``fn``'s name and the layers if ``None``. With several targets, target
            ``t`` is ``name[t]``.

        Returns
        -------
        FunctionObjective
            Equal to another one built from the same function object with the same settings.

        Examples
        --------
        >>> def two_channels(acts, target):  # target 0: channel 3, target 1: channel 5
        ...     channels = torch.tensor([3, 5], device=target.device)[target]
        ...     return acts["layer3"].mean((2, 3)).gather(1, channels[:, None])[:, 0]
        >>> objective = Objective.from_function(model, "layer3", two_channels, n_targets=2)  # doctest: +SKIP
        >>> images, alphas = maco(objective + 0.1 * Objective.layer(model, "layer3"))  # doctest: +SKIP
        """
        if isinstance(layers, (str, int)):
            keys = (layers,)
        elif isinstance(layers, Sequence) and layers:
            keys = tuple(dict.fromkeys(layers))
        else:
            raise TypeError(
                "`layers` of Objective.from_function must be a layer name or index, or a non-empty sequence of "
                f"them (every layer `fn` reads); got {layers!r}."
            )
        layer_names = tuple(_layer_name(model, key, "from_function") for key in keys)
        if not callable(fn):
            raise TypeError(
                "`fn` of Objective.from_function must be callable as fn(acts, target) -> (N,) scores; "
                f"got {type(fn).__name__}."
            )
        if isinstance(n_targets, bool) or not isinstance(n_targets, int) or n_targets < 1:
            raise ValueError(f"`n_targets` of Objective.from_function must be a positive integer; got {n_targets!r}.")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"`name` of Objective.from_function must be a str or None; got {type(name).__name__}.")
        if name is None:
            name = f"{_function_name(fn)}({', '.join(dict.fromkeys(layer_names))})"
        return FunctionObjective(model, fn, keys, layer_names, n_targets, name)


def _layer_name(model: nn.Module, layer: str | int, where: str) -> str:
    """Check ``model`` before touching it, so a wrong argument is named instead of failing inside torch."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` of Objective.{where} must be a torch.nn.Module; got {type(model).__name__}.")
    return resolve_layer(model, layer)


def _known_width(module: nn.Module) -> int | None:
    """Channels of a layer's output when its definition tells (linear, conv, batch norm), else ``None``."""
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, _CONVS):
        return module.out_channels
    if isinstance(module, _BATCH_NORMS):
        return module.num_features
    return None


def _as_matrix(vectors: torch.Tensor, what: str, where: str) -> torch.Tensor:
    if not isinstance(vectors, torch.Tensor):
        raise TypeError(f"`{what}` of Objective.{where} must be a torch.Tensor; got {type(vectors).__name__}.")
    vectors = vectors.detach().float()
    if vectors.ndim == 1:
        vectors = vectors[None]
    if vectors.ndim != 2 or vectors.shape[0] == 0 or not torch.isfinite(vectors).all():
        raise ValueError(
            f"`{what}` of Objective.{where} must be a finite (k, C) or (C,) tensor; got shape {tuple(vectors.shape)}."
        )
    return vectors


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


def _function_name(fn: Callable) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def _terms(objective: Objective) -> tuple[Objective, ...]:
    return objective.terms if isinstance(objective, Sum) else (objective,)


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


class _Activations(dict):
    """The activations given to a user's function: reading an undeclared layer says how to fix it."""

    def __init__(self, acts: Mapping[str | int, torch.Tensor], where: str) -> None:
        super().__init__(acts)
        self.where = where

    def __missing__(self, key: object) -> torch.Tensor:
        raise KeyError(
            f"{self.where} reads layer {key!r}, but its declared layers are {list(self)}; add {key!r} to `layers` "
            "of Objective.from_function so that its activations are captured."
        )


@dataclass(frozen=True, repr=False)
class FunctionObjective(Objective):
    """A function of activations as an objective; build it with :meth:`Objective.from_function`.

    ``keys`` are the layers as the caller gave them (the keys ``fn`` reads) and ``layer_names`` the module
    names they resolve to, in the same order. The function compares by identity: two objectives are equal when
    they wrap the same function object with the same model, layers, target count and name.
    """

    model: nn.Module
    fn: Callable[[Mapping[str | int, torch.Tensor], torch.Tensor], torch.Tensor]
    keys: tuple[str | int, ...]
    layer_names: tuple[str, ...]
    target_count: int
    name: str

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.layer_names))

    @property
    def n_targets(self) -> int:
        return self.target_count

    @property
    def names(self) -> list[str]:
        if self.target_count == 1:
            return [self.name]
        return [f"{self.name}[{t}]" for t in range(self.target_count)]

    def __repr__(self) -> str:
        return (
            f"Objective.from_function(model, {list(self.keys)!r}, {_function_name(self.fn)}, "
            f"n_targets={self.target_count}, name={self.name!r})"
        )

    def __call__(self, acts: Mapping[str, torch.Tensor], n_targets: int) -> torch.Tensor:
        where = f"the function {_function_name(self.fn)!r} of Objective.from_function"
        mine = _Activations({key: acts[layer].float() for key, layer in zip(self.keys, self.layer_names)}, where)
        first = acts[self.layer_names[0]]
        target = _target_of_sample(len(first), n_targets, first.device) % self.target_count
        scores = self.fn(mine, target)
        if not isinstance(scores, torch.Tensor):
            raise TypeError(f"{where} must return a torch.Tensor of scores; got {type(scores).__name__}.")
        if scores.shape != (len(first),):
            raise ValueError(
                f"{where} returned shape {tuple(scores.shape)}; it must return one score per sample, shape "
                f"({len(first)},) here ({n_targets} targets x {len(first) // n_targets} crops): reduce the other "
                "axes, e.g. with .flatten(1).mean(1); the mean over each target's crops is taken for you."
            )
        if torch.is_grad_enabled() and not scores.requires_grad and any(a.requires_grad for a in mine.values()):
            raise ValueError(
                f"{where} returned scores that are detached from the activations, so the image would get no "
                "gradient; compute them with differentiable torch operations (no .detach(), .item() or .numpy())."
            )
        return self._reduce(scores, n_targets)


@dataclass(frozen=True, repr=False)
class Scaled(Objective):
    model: nn.Module
    objective: Objective
    factor: float

    @property
    def layers(self) -> tuple[str, ...]:
        return self.objective.layers

    @property
    def n_targets(self) -> int:
        return self.objective.n_targets

    @property
    def names(self) -> list[str]:
        return [f"{self.factor:g} * {name}" for name in self.objective.names]

    def __repr__(self) -> str:
        return f"{self.factor!r} * {self.objective!r}"

    def __call__(self, acts: Mapping[str, torch.Tensor], n_targets: int) -> torch.Tensor:
        return self.factor * self.objective(acts, n_targets)


@dataclass(frozen=True, repr=False)
class Sum(Objective):
    model: nn.Module
    terms: tuple[Objective, ...]

    def __post_init__(self) -> None:
        if any(term.model is not self.model for term in self.terms):
            raise ValueError("all terms of a sum of objectives must use the same model object.")
        counts = {term.n_targets for term in self.terms} - {1}
        if len(counts) > 1:
            raise ValueError(f"terms of a sum must have 1 target or the same number of targets; got {sorted(counts)}.")

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(layer for term in self.terms for layer in term.layers))

    @property
    def n_targets(self) -> int:
        return max(term.n_targets for term in self.terms)

    @property
    def names(self) -> list[str]:
        per_term = [term.names * (self.n_targets if term.n_targets == 1 else 1) for term in self.terms]
        return [" + ".join(parts) for parts in zip(*per_term)]

    def __repr__(self) -> str:
        return " + ".join(repr(term) for term in self.terms)

    def __call__(self, acts: Mapping[str, torch.Tensor], n_targets: int) -> torch.Tensor:
        return torch.stack([term(acts, n_targets).expand(n_targets) for term in self.terms]).sum(0)
