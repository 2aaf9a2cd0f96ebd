"""A user's function of activations as an objective, built by :meth:`Objective.from_function`.

The function scores each sample; the objective takes the per-target mean over crops, as the built-ins do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch import nn

from .base import Objective, _target_of_sample

__all__ = ["FunctionObjective"]


def _function_name(fn: Callable) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


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
