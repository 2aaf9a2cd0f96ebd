"""Vision transformers in the concept stage's CNN layout: patch tokens as the spatial grid, and what the head reads.

A ViT layer gives tokens ``(N, T, C)``: ``prefix`` class and register tokens first, then the ``h x w`` patch
tokens in row-major order. The concept stage reads two things from them (:class:`TokenLayout`):

- the *grid* ``(N, C, h, w)``: the patch tokens only, where concept maps live (a concept map of a ViT is the
  patch tokens projected on the concept directions);
- the *pooled* features ``(N, C)``: what the head reads, the class token (``pool="token"``: torchvision's
  ``vit_b_16``, timm's ``global_pool="token"``) or the mean of the patch tokens (``pool="avg"``). For a
  class-token model the pooled features are not the mean of the grid: the concepts are fitted and scored on
  what the head reads, and the maps show where the patch tokens carry the same directions.

:class:`PooledView` runs a model as ``g -> pool -> pooled -> head`` with the model's own modules and parameters
under their own names, so feature visualization can read the pooled features as the output of one module.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

__all__ = ["POOLS", "PooledView", "TokenLayout"]

POOLS = ("token", "avg")


@dataclass(frozen=True)
class TokenLayout:
    """Where a transformer's patch tokens start and which token(s) its head reads.

    Attributes
    ----------
    prefix : int
        Class and register tokens before the patch tokens (timm's ``num_prefix_tokens``; 1 for torchvision).
    pool : {"token", "avg"}
        The head reads the first token (the class token), or the mean of the patch tokens.
    """

    prefix: int
    pool: str

    def __post_init__(self) -> None:
        if isinstance(self.prefix, bool) or not isinstance(self.prefix, int) or self.prefix < 0:
            raise ValueError(f"`prefix` of `TokenLayout` must be an int >= 0; got {self.prefix!r}.")
        if self.pool not in POOLS or (self.pool == "token" and self.prefix == 0):
            raise ValueError(f"`pool` of `TokenLayout` must be one of {', '.join(POOLS)} ('token' needs a class "
                             f"token, prefix >= 1); got {self.pool!r} with prefix {self.prefix}.")

    def _check(self, tokens: torch.Tensor) -> int:
        """The side of the square patch grid of ``tokens`` (N, T, C)."""
        side = math.isqrt(tokens.shape[1] - self.prefix) if tokens.ndim == 3 and tokens.shape[1] > self.prefix else 0
        if side == 0 or side * side != tokens.shape[1] - self.prefix:
            raise ValueError(f"tokens must be (N, {self.prefix} + h*w, C) with a square patch grid; got shape "
                             f"{tuple(tokens.shape)}. Feed the model its own input size.")
        return side

    def grid(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens ``(N, T, C)`` -> the patch tokens as a map ``(N, C, h, w)`` (class and register tokens left out)."""
        side = self._check(tokens)
        return tokens[:, self.prefix:].transpose(1, 2).reshape(len(tokens), tokens.shape[2], side, side)

    def pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens ``(N, T, C)`` -> what the head reads ``(N, C)``: the class token or the patch tokens' mean."""
        self._check(tokens)
        return tokens[:, 0] if self.pool == "token" else tokens[:, self.prefix:].mean(1)


class PooledView(nn.Module):
    """``model`` run as ``head(pooled(pool(g(x))))``, its modules and parameters under their own names.

    The children, parameters and buffers of ``model`` are registered here as they are in ``model`` (shared, not
    copied), so ``--layer blocks.11`` names the same module in both and ``.to()`` moves both; ``pooled`` (an
    identity) outputs the pooled features, where concept directions live.
    """

    def __init__(self, model: nn.Module, g: Callable[[torch.Tensor], torch.Tensor],
                 pool: Callable[[torch.Tensor], torch.Tensor], head: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        for name, child in model.named_children():
            self.add_module(name, child)
        for name, param in model.named_parameters(recurse=False):
            self.register_parameter(name, param)
        for name, buffer in model.named_buffers(recurse=False):
            self.register_buffer(name, buffer)
        self.pooled = nn.Identity()
        # plain attributes: their modules are registered above; `source` is the model itself (for re-splitting)
        object.__setattr__(self, "parts", (g, pool, head))
        object.__setattr__(self, "source", model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, pool, head = self.parts
        return head(self.pooled(pool(g(x))))
