"""Find layers, capture their outputs, and stop the forward pass early.

Layers are named as in ``model.named_modules()`` (``"layer4.2.relu"``) or
indexed into ``model.named_children()``: ``-1`` is the last child (``fc``
for a torchvision ResNet) and ``-2`` the one before (``avgpool``, the pooled
features).
"""

from __future__ import annotations

import difflib
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import nn

__all__ = ["capture", "forward_to_layers", "list_layers", "resolve_layer"]


def list_layers(model: nn.Module) -> list[str]:
    """Every addressable layer name of ``model`` (``named_modules`` order)."""
    return [name for name, _ in model.named_modules() if name]


def resolve_layer(model: nn.Module, layer: str | int) -> str:
    """Turn a layer name or a child index into a module name of ``model``."""
    if isinstance(layer, bool) or not isinstance(layer, (str, int)):
        raise TypeError(f"`layer` must be a module name (str) or a child index (int); got {type(layer).__name__}.")
    if isinstance(layer, int):
        children = [name for name, _ in model.named_children()]
        if not -len(children) <= layer < len(children):
            raise ValueError(
                f"`layer` index {layer} is out of range: {type(model).__name__} has {len(children)} "
                f"top-level children ({', '.join(children)}); use -{len(children)}..{len(children) - 1} or a name."
            )
        return children[layer]
    names = list_layers(model)
    if layer not in names:
        close = difflib.get_close_matches(layer, names, n=5, cutoff=0.5)
        hint = f" Close matches: {', '.join(close)}." if close else ""
        raise ValueError(
            f"`layer` {layer!r} is not a module of {type(model).__name__}.{hint} "
            f"maco.list_layers(model) lists all {len(names)} names."
        )
    return layer


class _StopForward(Exception):
    """Raised by a hook once every needed layer has been captured."""


@contextmanager
def capture(model: nn.Module, layers: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of ``layers`` while the context is open.

    The hooks raise once every layer has produced its output, so a forward
    pass run through :func:`forward_to_layers` stops at the deepest needed
    layer. Hooks are removed on exit, even after an error.
    """
    modules = dict(model.named_modules())
    store: dict[str, torch.Tensor] = {}
    needed = set(layers)

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            store.setdefault(name, output)
            if needed.issubset(store):
                raise _StopForward

        return hook

    handles = [modules[name].register_forward_hook(make_hook(name)) for name in needed]
    try:
        yield store
    finally:
        for handle in handles:
            handle.remove()


def forward_to_layers(model: nn.Module, inputs: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """Run ``model`` until every layer in ``layers`` has produced its output."""
    with capture(model, layers) as store:
        try:
            model(inputs)
        except _StopForward:
            pass
    missing = set(layers) - set(store)
    if missing:
        raise RuntimeError(
            f"layers {sorted(missing)} were never called during the forward pass of {type(model).__name__}."
        )
    for name, output in store.items():
        if not isinstance(output, torch.Tensor):
            raise ValueError(
                f"layer {name!r} of {type(model).__name__} outputs a {type(output).__name__}, not a tensor, and an "
                "objective reads one tensor per layer; pick a layer whose output is a tensor (e.g. one of its "
                "submodules; maco.list_layers(model) lists them), or wrap the model in an nn.Module whose layer "
                "returns the tensor you want."
            )
    return dict(store)
