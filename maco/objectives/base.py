"""The :class:`Objective` interface, its composition into :class:`Sum` and :class:`Scaled`, and its constructors.

The static constructors (``Objective.neuron(...)``, ``Objective.from_function(...)``) check their arguments and
build the objectives of :mod:`maco.objectives.builtin` and :mod:`maco.objectives.custom`; composition works the
same for all of them. Notation and guarantees: :mod:`maco.objectives`.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import torch
from torch import nn

from ..hooks import resolve_layer

if TYPE_CHECKING:
    from .builtin import Channel, Direction, Inversion, Layer, Neuron
    from .custom import FunctionObjective

__all__ = ["Objective", "Scaled", "Sum"]


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

    # Constructors in the seeds' call shape: Objective.neuron(model, "fc", 1). Each imports its class when called:
    # those classes subclass Objective, so a module-level import would be circular.
    @staticmethod
    def neuron(
        model: nn.Module, layer: str | int, index: int | Sequence[int], *, position: tuple[int, int] | None = None
    ) -> Neuron:
        """One unit per target: ``index`` is a channel (its centre position on conv layers)."""
        from .builtin import Neuron

        return Neuron(model, _layer_name(model, layer, "neuron"), _as_indices(index, "index"), position)

    @staticmethod
    def channel(model: nn.Module, layer: str | int, index: int | Sequence[int]) -> Channel:
        """Mean activation of a channel over all positions, one target per index."""
        from .builtin import Channel

        return Channel(model, _layer_name(model, layer, "channel"), _as_indices(index, "index"))

    @staticmethod
    def layer(model: nn.Module, layer: str | int) -> Layer:
        """Mean squared activation of the whole layer (DeepDream), one target."""
        from .builtin import Layer

        return Layer(model, _layer_name(model, layer, "layer"))

    @staticmethod
    def direction(model: nn.Module, layer: str | int, vectors: torch.Tensor, *, cossim_pow: float = 2.0) -> Direction:
        """``dot * max(cos, 0.1) ** cossim_pow`` with each row of ``vectors`` ((k, C) or (C,)): k targets."""
        from .builtin import Direction

        return Direction(
            model,
            _layer_name(model, layer, "direction"),
            _as_matrix(vectors, "vectors", "direction"),
            float(cossim_pow),
        )

    @staticmethod
    def inversion(
        model: nn.Module, layer: str | int, targets: torch.Tensor, *, cossim_pow: float | None = None
    ) -> Inversion:
        """Match reference activations ``targets`` ((T, C) or (T, C, H, W)): T targets.

        The score is the cosine between the activations and their target
        (bounded, so the optimiser cannot trade direction for magnitude). With
        ``cossim_pow`` it is Lucid's caricature instead: the projection on the
        target, ``dot / |t|^2``, times ``max(cos, 0.1) ** cossim_pow``, which can
        exaggerate what the layer keeps (and, on the demo world, sometimes
        collapsed to cosines of 0.1).
        """
        from .builtin import Inversion

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
    ) -> FunctionObjective:
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
        from .custom import FunctionObjective, _function_name

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


def _terms(objective: Objective) -> tuple[Objective, ...]:
    return objective.terms if isinstance(objective, Sum) else (objective,)


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
